"""The index of ingested deliveries, in SQLite through sqlite-utils.

Deliveries and their attempts are keyed so that ingesting the same lines twice changes
nothing (an attempt's key is its source file and line number), and each chunk of a log is
written in one transaction together with the position reached, so a crash or a `kill -9`
mid-file resumes with every line indexed exactly once.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlite_utils

from bot.model import Attempt, Delivery, Evidence

SCHEMA_VERSION = 1
DEFAULT_DB = Path("whyfailed.db")


class StoreError(Exception):
    """The database cannot be used: the message says why and what to do."""


def _iso(stamp: datetime | None) -> str | None:
    return stamp.isoformat(sep=" ") if stamp else None


@dataclass(frozen=True)
class Position:
    path: str
    inode: int
    offset: int
    lines: int


class Store:
    def __init__(self, path: str | Path = DEFAULT_DB, timeout: float = 30.0):
        self.path = Path(path)
        try:
            connection = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self.db = sqlite_utils.Database(connection)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: cannot open the index ({error}). Is it a whyfailed database?") from None

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error: the connection is in autocommit
        mode, so atomicity is asked for explicitly (and IMMEDIATE takes the write lock up front,
        so two writers queue instead of failing half way)."""
        self.db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.conn.execute("ROLLBACK")
            raise
        self.db.conn.execute("COMMIT")

    # --- schema ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        db = self.db
        if "meta" not in db.table_names():
            db["meta"].create({"key": str, "value": str}, pk="key")
        row = next(db.query("select value from meta where key = 'schema_version'"), None)
        version = int(row["value"]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer whyfailed (schema {version}); upgrade whyfailed.")
        if version < 1:
            with self.transaction():
                self._create_v1()
                db["meta"].upsert({"key": "schema_version", "value": "1"}, pk="key")

    def _create_v1(self) -> None:
        db = self.db
        db["messages"].create(
            {
                "id": str,
                "source": str,
                "host": str,
                "queue_id": str,
                "sender": str,
                "message_id": str,
                "first_seen": str,
                "context": str,
            },
            pk="id",
            if_not_exists=True,
        )
        db["deliveries"].create(
            {
                "id": str,
                "source": str,
                "format": str,
                "host": str,
                "queue_id": str,
                "message_key": str,
                "recipient": str,
                "recipient_lc": str,
                "recipient_domain": str,
                "sender": str,
                "sender_lc": str,
                "message_id": str,
                "direction": str,
                "status": str,
                "diagnosis_id": str,
                "diagnosis_title": str,
                "confidence": float,
                "first_seen": str,
                "last_seen": str,
            },
            pk="id",
            if_not_exists=True,
        )
        db["attempts"].create(
            {
                "id": str,
                "delivery_id": str,
                "line": int,
                "time": str,
                "status": str,
                "stage": str,
                "reply_code": int,
                "enhanced_status": str,
                "text": str,
                "remote_host": str,
                "remote_ip": str,
                "evidence": str,
            },
            pk="id",
            if_not_exists=True,
        )
        db["positions"].create(
            {"path": str, "inode": int, "offset": int, "lines": int, "updated": float},
            pk="path",
            if_not_exists=True,
        )
        for table, columns in (
            ("deliveries", ["recipient_lc"]),
            ("deliveries", ["recipient_domain"]),
            ("deliveries", ["sender_lc"]),
            ("deliveries", ["queue_id"]),
            ("deliveries", ["message_id"]),
            ("deliveries", ["last_seen"]),
            ("deliveries", ["message_key"]),
            ("attempts", ["delivery_id", "line"]),
            ("messages", ["message_id"]),
        ):
            db[table].create_index(columns, if_not_exists=True)

    @property
    def schema_version(self) -> int:
        row = next(self.db.query("select value from meta where key = 'schema_version'"), None)
        return int(row["value"]) if row else 0

    # --- positions ------------------------------------------------------------------------

    def position(self, path: str) -> Position | None:
        row = next(self.db.query("select * from positions where path = ?", [path]), None)
        return Position(row["path"], row["inode"], row["offset"], row["lines"]) if row else None

    # --- writing --------------------------------------------------------------------------

    def write_chunk(
        self, source: str, deliveries: list[Delivery], messages: list[dict], position: Position | None, diagnose
    ) -> int:
        """Merge one chunk's deliveries and message facts, and move the position, atomically.
        `diagnose(delivery)` recomputes a story's diagnosis from all its attempts.

        Batched: one statement per table per chunk. A story seen for the first time is
        diagnosed from memory; only stories that already had attempts are re-read."""
        stories = [(self._keys(source, d), d) for d in deliveries if d.attempts]
        with self.transaction():  # all of the chunk and its position, or none of it
            self._merge_messages(source, messages)
            known = self._with_attempts([key for (key, _), _ in stories])
            self.db.conn.executemany(
                "insert or ignore into attempts (id, delivery_id, line, time, status, stage, reply_code, "
                "enhanced_status, text, remote_host, remote_ip, evidence) values (?,?,?,?,?,?,?,?,?,?,?,?)",
                [row for (key, _), delivery in stories for row in _attempt_rows(key, delivery)],
            )
            senders = self._message_facts({message_key for (_, message_key), _ in stories})
            rows = []
            for (key, message_key), delivery in stories:
                story = self._load_delivery(key, delivery) if key in known else delivery
                fact = senders.get(message_key, {})
                story.sender = story.sender or delivery.sender or fact.get("sender")
                story.message_id = story.message_id or delivery.message_id or fact.get("message_id")
                # a story new in this chunk was diagnosed already (in the parsing process)
                diagnosis = delivery.diagnosis if key not in known and delivery.diagnosis else diagnose(story)
                rows.append(_delivery_row(source, key, message_key, delivery, story, diagnosis))
            self.db.conn.executemany(
                f"insert or replace into deliveries ({', '.join(_DELIVERY_COLUMNS)}) "
                f"values ({', '.join('?' * len(_DELIVERY_COLUMNS))})",
                rows,
            )
            if position is not None:
                self.db.conn.execute(
                    "insert or replace into positions (path, inode, offset, lines, updated) values (?,?,?,?,?)",
                    (position.path, position.inode, position.offset, position.lines, time.time()),
                )
        return len(stories)

    @staticmethod
    def _keys(source: str, delivery: Delivery) -> tuple[str, str]:
        # Queue-based stories key on their queue id; a session's or an SMTP-time reject's story
        # has none, and keys on the line it starts at.
        anchor = delivery.queue_id or f"L{min((e.line for e in delivery.evidence()), default=0)}"
        message_key = f"{source}|{delivery.host or ''}|{anchor}"
        return f"{message_key}|{(delivery.recipient or '').lower()}", message_key

    def _with_attempts(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0]
                for r in self.db.conn.execute(
                    f"select distinct delivery_id from attempts where delivery_id in ({marks})", part
                )
            )
        return found

    def _message_facts(self, keys: set[str]) -> dict[str, dict]:
        facts: dict[str, dict] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            part = ordered[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, sender, message_id in self.db.conn.execute(
                f"select id, sender, message_id from messages where id in ({marks})", part
            ):
                facts[key] = {"sender": sender, "message_id": message_id}
        return facts

    def _merge_messages(self, source: str, messages: list[dict]) -> None:
        self.db.conn.executemany(
            "insert into messages (id, source, host, queue_id, sender, message_id, first_seen) "
            "values (?,?,?,?,?,?,?) on conflict(id) do update set "
            "sender = coalesce(excluded.sender, messages.sender), "
            "message_id = coalesce(excluded.message_id, messages.message_id), "
            "first_seen = coalesce(messages.first_seen, excluded.first_seen)",
            [
                (
                    f"{source}|{m.get('host') or ''}|{m['queue_id']}",
                    source,
                    m.get("host"),
                    m["queue_id"],
                    m.get("sender"),
                    m.get("message_id"),
                    m.get("first_seen"),
                )
                for m in messages
            ],
        )

    # --- reading --------------------------------------------------------------------------

    def _load_delivery(self, key: str, fallback: Delivery | None = None) -> Delivery | None:
        row = next(self.db.query("select * from deliveries where id = ?", [key]), None)
        if row is None and fallback is not None:
            row = {
                "recipient": fallback.recipient,
                "sender": fallback.sender,
                "queue_id": fallback.queue_id,
                "message_id": fallback.message_id,
                "direction": fallback.direction,
                "format": fallback.source_format,
            }
        attempts = list(self.db.query("select * from attempts where delivery_id = ? order by time, line", [key]))
        if not attempts:
            return None
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

    def find(self, address: str, since: timedelta | None = None, limit: int = 20) -> list[Delivery]:
        """The latest deliveries to or from ADDRESS ('@domain' for a whole domain's failures)."""
        wanted = address.strip().lower()
        clauses, params = [], []
        if wanted.startswith("@"):
            clauses.append("recipient_domain = ? and status != 'delivered'")
            params.append(wanted[1:])
        else:
            clauses.append("(recipient_lc = ? or sender_lc = ?)")
            params += [wanted, wanted]
        if since is not None:
            clauses.append("last_seen >= ?")
            params.append(_iso(datetime.now() - since))
        sql = f"select id from deliveries where {' and '.join(clauses)} order by last_seen desc limit ?"
        rows = list(self.db.query(sql, [*params, limit]))
        return [d for d in (self._load_delivery(r["id"]) for r in rows) if d is not None]

    def prune(self, keep: timedelta) -> int:
        """Forget deliveries last seen before now - keep; returns how many."""
        cutoff = _iso(datetime.now() - keep)
        with self.transaction():
            ids = [r["id"] for r in self.db.query("select id from deliveries where last_seen < ?", [cutoff])]
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                marks = ",".join("?" * len(part))
                self.db.execute(f"delete from attempts where delivery_id in ({marks})", part)
                self.db.execute(f"delete from deliveries where id in ({marks})", part)
        return len(ids)

    def counts(self) -> dict[str, int]:
        return {t: self.db[t].count for t in ("deliveries", "attempts", "messages", "positions")}


_DELIVERY_COLUMNS = (
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


def _attempt_rows(key: str, delivery: Delivery) -> list[tuple]:
    rows = []
    for attempt in delivery.attempts:
        line = attempt.evidence[-1].line if attempt.evidence else 0
        rows.append(
            (
                f"{key}|{line}",
                key,
                line,
                _iso(attempt.timestamp),
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


def _delivery_row(source: str, key: str, message_key: str, delivery: Delivery, story: Delivery, diagnosis) -> tuple:
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
        _iso(min(times)) if times else None,
        _iso(max(times)) if times else None,
    )
