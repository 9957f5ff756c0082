"""Rows of the index, to and from the model: what the writer stores for a chunk's stories and
their attempts, and the Delivery that find() rebuilds from them.

`rows_for` turns a chunk's stories into finished rows where the chunk was parsed (an ingest
worker process), so that the writer, which is alone and serial, only has to merge them: it
reads back just the stories an earlier chunk already wrote (see `merged_row`).
"""

from __future__ import annotations

import json
import marshal
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json_string  # json.dumps of a str, in C

from bot.model import Attempt, Delivery, Evidence

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
UPSERT_MESSAGE = (
    "insert into messages (id, source, host, queue_id, sender, message_id, first_seen) "
    "values (?,?,?,?,?,?,?) on conflict (id) do update set "
    "sender = coalesce(excluded.sender, messages.sender), "
    "message_id = coalesce(excluded.message_id, messages.message_id), "
    "first_seen = coalesce(messages.first_seen, excluded.first_seen)"
)
# where a deliveries row holds its keys, and what the writer may still have to fill in or recompute
KEY, MESSAGE_KEY, _SENDER, _MESSAGE_ID, _DIRECTION = (
    DELIVERY_COLUMNS.index(name) for name in ("id", "message_key", "sender", "message_id", "direction")
)


@dataclass
class ChunkRows:
    """A chunk's stories (those with attempts) as rows: each deliveries row is what the story
    says on its own, as if it were new; the writer completes it (see merged_row)."""

    deliveries: list[tuple]
    attempts: list[tuple]
    messages: list[tuple]

    def keys(self) -> list[str]:
        return [row[KEY] for row in self.deliveries]

    def __reduce__(self):
        # Pickled (from an ingest worker to the writer) as one marshal string: rows are tuples of
        # str, int, float and None, which marshal writes without pickle's memo of every object
        # (1.2 of about 24 CPU-s a worker spent per 1M lines, about 0.45 less this way). Both
        # ends are the same interpreter, and the data is our own.
        return (_rows_from_marshal, (marshal.dumps((self.deliveries, self.attempts, self.messages)),))


def _rows_from_marshal(data: bytes) -> ChunkRows:
    return ChunkRows(*marshal.loads(data))


def iso(stamp: datetime | None) -> str | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:  # (aware ones with equal instants are equal keys, but not equal text)
        return _naive_iso(stamp)
    return stamp.isoformat(sep=" ")


@lru_cache(maxsize=4096)
def _naive_iso(stamp: datetime) -> str:
    # A log's lines repeat each second many times over (parse_bsd hands them the same datetime),
    # and a worker writes three or four of these per story: a lookup costs less than formatting.
    return stamp.isoformat(sep=" ")


def story_keys(source: str, delivery: Delivery) -> tuple[str, str]:
    """The story's key and its message's key. Queue-based stories key on their queue id; a
    session's or an SMTP-time reject's story has none, and keys on the line it starts at."""
    anchor = delivery.queue_id or f"L{delivery.first_line()}"
    message_key = f"{source}|{delivery.host or ''}|{anchor}"
    return f"{message_key}|{(delivery.recipient or '').lower()}", message_key


def rows_for(source: str, deliveries: list[Delivery], messages: list[dict]) -> ChunkRows:
    """A chunk's rows: its stories' facts and evidence. No diagnosis: the index keeps what the
    log says, and a story is diagnosed when it is read (Store.find's callers), by the knowledge
    base of that day."""
    stories, attempts = [], []
    for delivery in deliveries:
        if not delivery.attempts:
            continue
        key, message_key = story_keys(source, delivery)
        attempts += attempt_rows(key, delivery)
        stories.append(delivery_row(source, key, message_key, delivery, delivery))
    return ChunkRows(stories, attempts, [message_row(source, message) for message in messages])


def message_row(source: str, message: dict) -> tuple:
    return (
        f"{source}|{message.get('host') or ''}|{message['queue_id']}",
        source,
        message.get("host"),
        message["queue_id"],
        message.get("sender"),
        message.get("message_id"),
        message.get("first_seen"),
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
                evidence_json(attempt.evidence),
            )
        )
    return rows


def evidence_json(evidence: list[Evidence]) -> str:
    """json.dumps([[line, text], ...]) to the character (tests/test_ingest_rows.py holds it to
    that), without the encoder's set-up per call: a worker writes one for every attempt."""
    return "[" + ", ".join([f"[{int(e.line)}, {_json_string(e.text)}]" for e in evidence]) + "]"


def delivery_row(source: str, key: str, message_key: str, delivery: Delivery, story: Delivery) -> tuple:
    """DELIVERY_COLUMNS for DELIVERY as told in this chunk, with what STORY (all its attempts) says."""
    recipient = delivery.recipient or ""
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
        *_outcome_columns(story),
    )


def _outcome_columns(story: Delivery) -> tuple:
    """status, first and last seen: what all of a story's attempts say."""
    attempts = story.attempts
    if len(attempts) == 1:  # most stories: first and last seen are the one time
        stamp = attempts[0].timestamp
        seen = first = iso(stamp.replace(tzinfo=None)) if stamp else None
    else:
        times = [a.timestamp.replace(tzinfo=None) for a in attempts if a.timestamp]
        first, seen = (iso(min(times)), iso(max(times))) if times else (None, None)
    return (story.status, first, seen)


def facts_wanted(rows: ChunkRows, stored: dict[str, dict]) -> set[str]:
    """The message keys of the stories that lack a sender or a Message-ID, which their message's
    earlier lines (the messages table) may give."""
    wanted = set()
    for row in rows.deliveries:
        known = stored.get(row[KEY]) or {}
        if not ((known.get("sender") or row[_SENDER]) and (known.get("message_id") or row[_MESSAGE_ID])):
            wanted.add(row[MESSAGE_KEY])
    return wanted


def merged_rows(
    rows: ChunkRows,
    stored: dict[str, dict],
    attempts: dict[str, list[dict]],
    facts: dict[str, dict],
) -> list[tuple]:
    """The deliveries rows to write: merged_row for each story of the chunk. STORED: the rows of
    the stories an earlier chunk wrote, ATTEMPTS their attempts, FACTS the messages wanted."""
    merged = []
    for row in rows.deliveries:
        key = row[KEY]
        if key not in stored and row[_SENDER] and row[_MESSAGE_ID]:
            merged.append(row)  # most stories: new, and told whole in this chunk
        else:
            fact = facts.get(row[MESSAGE_KEY], {})
            merged.append(merged_row(row, stored.get(key), attempts.get(key, []), fact))
    return merged


def merged_row(row: tuple, stored: dict | None, attempts: list[dict], fact: dict) -> tuple:
    """The deliveries row to write for ROW (from rows_for): as it is, with the sender and
    Message-ID its message's earlier lines gave (FACT), for a new story; for a story an earlier
    chunk wrote (STORED, and ATTEMPTS: all of its attempts, this chunk's included, oldest
    first) the story read back whole and merged: its status and times are all of its attempts'."""
    if stored is None:
        if row[_SENDER] and row[_MESSAGE_ID]:
            return row
        sender = row[_SENDER] or fact.get("sender")
        message_id = row[_MESSAGE_ID] or fact.get("message_id")
        return (*row[:_SENDER], sender, (sender or "").lower(), message_id, *row[_DIRECTION:])
    story = delivery_from_rows(row[KEY], stored, attempts)
    story.sender = story.sender or row[_SENDER] or fact.get("sender")
    story.message_id = story.message_id or row[_MESSAGE_ID] or fact.get("message_id")
    return (
        *row[:_SENDER],
        story.sender,
        (story.sender or "").lower(),
        story.message_id,
        row[_DIRECTION],
        *_outcome_columns(story),
    )


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
