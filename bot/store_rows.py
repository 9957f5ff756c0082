"""Rows of the index, to and from the model: what write_chunk stores for a story and its
attempts, and the Delivery that find() rebuilds from them."""

from __future__ import annotations

import json
from datetime import datetime

from bot.model import Attempt, Delivery, Evidence


def iso(stamp: datetime | None) -> str | None:
    return stamp.isoformat(sep=" ") if stamp else None


def delivery_from_rows(key: str, row: dict | None, attempts: list[dict]) -> Delivery:
    """A story from its deliveries row (None: not written yet) and its attempts, oldest first."""
    delivery = Delivery(
        recipient=(row or {}).get("recipient") or key.rsplit("|", 1)[1] or None,
        sender=(row or {}).get("sender"),
        queue_id=(row or {}).get("queue_id"),
        message_id=(row or {}).get("message_id"),
        direction=(row or {}).get("direction"),
        source_format=(row or {}).get("format"),
    )
    for item in attempts:
        delivery.attempts.append(
            Attempt(
                status=item["status"],
                timestamp=datetime.fromisoformat(item["time"]) if item["time"] else None,
                stage=item["stage"],
                reply_code=item["reply_code"],
                enhanced_status=item["enhanced_status"],
                text=item["text"],
                remote_host=item["remote_host"],
                remote_ip=item["remote_ip"],
                evidence=[Evidence(line, text) for line, text in json.loads(item["evidence"] or "[]")],
            )
        )
    return delivery


DELIVERY_COLUMNS = (
    "id",
    "source",
    "format",
    "host",
    "queue_id",
    "message_key",
    "recipient",
    "recipient_lc",
    "recipient_domain",
    "sender",
    "sender_lc",
    "message_id",
    "direction",
    "status",
    "diagnosis_id",
    "diagnosis_title",
    "confidence",
    "first_seen",
    "last_seen",
)
UPSERT_DELIVERY = (
    f"insert into deliveries ({', '.join(DELIVERY_COLUMNS)}) values ({', '.join('?' * len(DELIVERY_COLUMNS))}) "
    "on conflict (id) do update set " + ", ".join(f"{c} = excluded.{c}" for c in DELIVERY_COLUMNS if c != "id")
)


INSERT_ATTEMPT = (
    "insert into attempts (delivery_id, line, time, status, stage, reply_code, enhanced_status, text, "
    "remote_host, remote_ip, evidence) values (?,?,?,?,?,?,?,?,?,?,?) on conflict (delivery_id, line) do nothing"
)


def attempt_rows(key: str, delivery: Delivery) -> list[tuple]:
    rows = []
    for attempt in delivery.attempts:
        rows.append(
            (
                key,
                attempt.evidence[-1].line if attempt.evidence else 0,
                iso(attempt.timestamp),
                attempt.status,
                attempt.stage,
                attempt.reply_code,
                attempt.enhanced_status,
                attempt.text,
                attempt.remote_host,
                attempt.remote_ip,
                json.dumps([[e.line, e.text] for e in attempt.evidence]),
            )
        )
    return rows


def delivery_row(source: str, key: str, message_key: str, delivery: Delivery, story: Delivery, diagnosis) -> tuple:
    recipient = delivery.recipient or ""
    times = [a.timestamp.replace(tzinfo=None) for a in story.attempts if a.timestamp]
    return (
        key,
        source,
        delivery.source_format,
        delivery.host,
        delivery.queue_id,
        message_key,
        recipient,
        recipient.lower(),
        recipient.rpartition("@")[2].lower(),
        story.sender,
        (story.sender or "").lower(),
        story.message_id,
        delivery.direction,
        story.status,
        diagnosis.id,
        diagnosis.title,
        diagnosis.confidence,
        iso(min(times)) if times else None,
        iso(max(times)) if times else None,
    )
