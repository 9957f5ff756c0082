"""The index of ingested deliveries: an SQLite file by default, or PostgreSQL (DATABASE_URL).

Deliveries and their attempts are keyed so that ingesting the same lines twice changes
nothing (an attempt's key is its source file and line number), and each chunk of a log is
written in one transaction together with the position reached, so a crash or a `kill -9`
mid-file resumes with every line indexed exactly once. For the same reason a chunk whose
connection broke can simply be written again once the database is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from bot import store_location
from bot.model import Delivery
from bot.store_backends import StoreError, one_line, open_backend
from bot.store_rows import (
    INSERT_ATTEMPT,
    UPSERT_DELIVERY,
    UPSERT_MESSAGE,
    ChunkRows,
    delivery_from_rows,
    facts_wanted,
    iso,
    merged_rows,
    rows_for,
)
from bot.store_schema import AUDIT_COLUMNS, FEEDBACK_COLUMNS, LOOKUP_INDEXES, SCHEMA_VERSION, migrate, read_version

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "Position", "Store", "StoreError", "open_store"]

DEFAULT_DB = Path(store_location.DEFAULT_DB)  # the one default, which the settings use too
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Position:
    path: str
    inode: int
    offset: int
    lines: int


class _Rollback(Exception):
    """Raised inside a transaction to undo it on purpose (the doctor's trial write)."""


class Store:
    """The index. `Store(target)`: a postgresql:// URL opens PostgreSQL, anything else an SQLite file.

    `patience` is how long (seconds) a call waits for a PostgreSQL server that went away before
    giving up with a StoreError; None waits for ever (what `ingest --follow` wants)."""

    def __init__(self, target: str | Path = DEFAULT_DB, timeout: float = 30.0, patience: float | None = 60.0):
        self.backend = open_backend(target, timeout)
        self.kind = self.backend.kind
        self.where = self.backend.where  # for people and logs: a path, or the URL without its password
        self.path = self.backend.path if self.kind == "sqlite" else None
        self.patience = patience
        try:
            migrate(self.backend, self.where)
        except Exception as error:
            self.close()
            if isinstance(error, StoreError):
                raise
            if self.backend.is_database_error(error):
                raise StoreError(
                    f"{self.where}: cannot open the index ({one_line(error)}). {self.backend.hint}"
                ) from None
            raise

    @classmethod
    def open(cls, target: str | Path, **options) -> Store:
        return cls(target, **options)

    def close(self) -> None:
        self.backend.close()

    @contextmanager
    def transaction(self, lock: str | None = None):
        """All or nothing; with `lock`, writers of the same name (a source) run one at a time."""
        with self.backend.transaction(lock):
            yield

    @contextmanager
    def lookup_indexes_deferred(self, defer: bool = True):
        """Around ingest's first filling of an index: when DEFER and the index holds no story
        yet (SQLite), the lookup indexes (LOOKUP_INDEXES) are dropped, and built again at the
        end, also when the work fails or is stopped. One sort per index at the end costs a
        fraction of inserting every story into each of them at a random place (1M-line log:
        the writer's CPU fell from about 9.5 s to 6.5 s with the build included), and lookups
        meanwhile still answer, by reading the table. Otherwise (and after a run that was
        killed before it built them) missing lookup indexes are built first. Yields whether
        they were deferred."""
        deferred = False
        if defer and self.kind == "sqlite":
            with self.transaction(lock="lookup-indexes"):  # (no other writer between the look and the drop)
                deferred = self._has_no_story()
                for name in LOOKUP_INDEXES if deferred else ():
                    self.backend.execute(f"drop index if exists {name}")
        if not deferred:
            self.build_lookup_indexes()
        try:
            yield deferred
        finally:
            if deferred:
                self.build_lookup_indexes()

    @contextmanager
    def grouped_commits(self, seconds: float):
        """Writes that follow one another committed together, every SECONDS at most (SQLite: see
        SQLiteBackend.grouped_commits); each write stays whole, its position with its rows.
        PostgreSQL commits each: a write there is retried alone when the connection breaks."""
        if self.kind != "sqlite":
            yield
            return
        with self.backend.grouped_commits(seconds):
            yield

    def build_lookup_indexes(self) -> list[str]:
        """Build the lookup indexes that are missing; returns their names."""
        missing = self.missing_lookup_indexes()
        if missing:
            with self.transaction(lock="lookup-indexes"):
                for name in missing:
                    self.backend.execute(LOOKUP_INDEXES[name])
        return missing

    def missing_lookup_indexes(self) -> list[str]:
        if self.kind != "sqlite":
            return []  # never deferred there
        present = {r["name"] for r in self._query("select name from sqlite_master where type = 'index'")}
        return [name for name in LOOKUP_INDEXES if name not in present]

    def _has_no_story(self) -> bool:
        return not self._query("select 1 from deliveries limit 1")

    def _retrying(self, what: str, work: Callable[[], T]) -> T:
        """Run `work`; when the PostgreSQL connection breaks, wait (1 s, doubling to 30 s), reconnect
        and run it again. Safe because every write is one transaction, keyed so that a repeat
        changes nothing: a chunk is either committed with its position or not at all."""
        waited, delay, attempt = 0.0, 1.0, 0
        while True:
            try:
                return work()
            except Exception as error:
                if not self.backend.is_disconnect(error):
                    raise
                attempt += 1
                if self.patience is not None and waited >= self.patience:
                    raise StoreError(
                        f"{self.where}: the database is unreachable ({one_line(error)}); gave up after "
                        f"{waited:.0f} s. What was indexed before is kept, and the next run resumes from there."
                    ) from None
                log.warning(
                    "database %s unavailable while %s (%s); reconnecting in %.0f s (try %d)",
                    self.where,
                    what,
                    one_line(error),
                    delay,
                    attempt,
                )
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 30.0)
                try:
                    self.backend.reconnect()
                    log.warning("database %s: reconnected; %s again", self.where, what)
                except StoreError as again:
                    log.warning("%s", again)

    # --- schema ---------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self._retrying("reading the schema version", lambda: read_version(self.backend))

    def check_writable(self) -> None:
        """A trial write, rolled back: raises if the database is read-only, full or locked."""
        try:
            with self.transaction(lock="doctor"):
                self.backend.execute(
                    "insert into meta (key, value) values ('doctor', ?) "
                    "on conflict (key) do update set value = excluded.value",
                    [str(time.time())],
                )
                raise _Rollback
        except _Rollback:
            pass

    # --- positions ------------------------------------------------------------------------

    def position(self, path: str) -> Position | None:
        rows = self._retrying(
            "reading a position", lambda: self._query("select * from positions where path = ?", [path])
        )
        return Position(rows[0]["path"], rows[0]["inode"], rows[0]["offset"], rows[0]["lines"]) if rows else None

    def set_position(self, position: Position) -> None:
        """Move a position by hand (a rotated or truncated file starts again)."""

        def write() -> None:
            with self.transaction():  # one statement; the transaction is for SQLite's write lock
                self._save_position(position)

        self._retrying("saving a position", write)

    def _save_position(self, position: Position) -> None:
        self.backend.execute(
            'insert into positions (path, inode, "offset", lines, updated) values (?,?,?,?,?) '
            'on conflict (path) do update set inode = excluded.inode, "offset" = excluded."offset", '
            "lines = excluded.lines, updated = excluded.updated",
            [position.path, position.inode, position.offset, position.lines, time.time()],
        )

    def has_index(self) -> bool:
        """Whether anything was ever indexed here (a database an audit write created holds nothing)."""
        return bool(
            self._retrying(
                "looking for an index",
                lambda: (
                    self._query("select 1 as found from deliveries limit 1")
                    or self._query("select 1 as found from positions limit 1")
                ),
            )
        )

    # --- journald cursors -----------------------------------------------------------------

    def cursor(self, key: str, lines: int) -> str | None:
        rows = self._retrying(
            "reading a cursor",
            lambda: self._query("select cursor from cursors where path = ? and lines = ?", [key, lines]),
        )
        return rows[0]["cursor"] if rows else None

    def save_cursor(self, key: str, lines: int, cursor: str) -> None:
        self._retrying(
            "saving a cursor",
            lambda: self.backend.execute(
                "insert into cursors (path, lines, cursor, updated) values (?,?,?,?) on conflict (path, lines) "
                "do update set cursor = excluded.cursor, updated = excluded.updated",
                [key, lines, cursor, time.time()],
            ),
        )

    def forget_cursors_before(self, key: str, lines: int) -> None:
        self._retrying(
            "pruning cursors",
            lambda: self.backend.execute("delete from cursors where path = ? and lines < ?", [key, lines]),
        )

    # --- audit and feedback ---------------------------------------------------------------

    def record_audit(self, surface: str, user: str, channel: str | None, query: str, outcome: str) -> None:
        """One row per /whyfailed ADDRESS query: who asked, where, and what they were told."""
        row = {"time": time.time(), "surface": surface, "user": user, "channel": channel, "query": query}
        self._insert_row("audit", AUDIT_COLUMNS, {**row, "outcome": outcome})

    def record_feedback(self, surface: str, **fields) -> None:
        """One row per Helpful / Not helpful click; `fields` are feedback columns (user, diagnosis, helpful...)."""
        unknown = set(fields) - set(FEEDBACK_COLUMNS)
        if unknown:
            raise TypeError(f"not feedback columns: {', '.join(sorted(unknown))}")
        if "helpful" in fields and fields["helpful"] is not None:
            fields["helpful"] = int(bool(fields["helpful"]))
        self._insert_row("feedback", FEEDBACK_COLUMNS, {"time": time.time(), "surface": surface, **fields})

    def _insert_row(self, table: str, columns: dict, row: dict) -> None:
        names = [name for name in columns if name in row]
        quoted = ", ".join(f'"{name}"' for name in names)  # "user" is a reserved word in PostgreSQL
        sql = f"insert into {table} ({quoted}) values ({', '.join('?' * len(names))})"

        def write() -> None:
            with self.transaction():
                self.backend.execute(sql, [row[name] for name in names])

        self._retrying(f"writing {table}", write)

    def audit_rows(self) -> list[dict]:
        return self._query('select time, surface, "user", channel, query, outcome from audit order by time')

    def feedback_rows(self) -> list[dict]:
        columns = ", ".join(f'"{name}"' for name in FEEDBACK_COLUMNS)
        return self._query(f"select {columns} from feedback order by time")

    # --- writing --------------------------------------------------------------------------

    def write_chunk(
        self, source: str, deliveries: list[Delivery], messages: list[dict], position: Position | None
    ) -> int:
        """Merge one chunk's deliveries and message facts, and move the position, atomically.
        write_rows with the rows built here; ingest builds them in its worker processes instead."""
        return self.write_rows(source, rows_for(source, deliveries, messages), position)

    def write_rows(self, source: str, rows: ChunkRows, position: Position | None) -> int:
        """Merge one chunk's rows (store_rows.rows_for) and move the position, atomically;
        returns how many stories it wrote.

        Batched: one statement per table per chunk. A story seen for the first time is written
        as it comes; those an earlier chunk wrote are read back (one query for their rows, one
        for their attempts) and merged with this chunk's attempts. Writers of one source run one
        at a time (PostgreSQL: an advisory lock on the source's name), since the merge reads what
        an earlier chunk wrote."""
        return self.write_rows_batch(source, [(rows, position)])

    def write_rows_batch(self, source: str, batch: list[tuple[ChunkRows, Position | None]]) -> int:
        """write_rows for consecutive chunks, in one transaction: each is merged in turn (a later
        one reads what an earlier one wrote, as across transactions) and the last position is
        the one that stays. One commit for several chunks: they change many of the same index
        pages, which a commit writes to the WAL once each however many rows changed them."""

        def write() -> None:
            with self.transaction(lock=source):  # all of the chunks and their position, or none of it
                for number, (rows, position) in enumerate(batch, start=1):
                    self._merge_rows(rows, position if number == len(batch) else None)

        self._retrying(f"writing {'a chunk' if len(batch) == 1 else f'{len(batch)} chunks'} of {source}", write)
        return sum(len(rows.deliveries) for rows, _ in batch)

    def _merge_rows(self, rows: ChunkRows, position: Position | None) -> None:
        self.backend.executemany(UPSERT_MESSAGE, rows.messages)
        # A story an earlier chunk wrote has a deliveries row (exactly then: a story's row and its
        # attempts are written, and pruned, together); a new one is written as the worker built it.
        stored = {r["id"]: r for r in self._rows_in("select * from deliveries where id in", rows.keys())}
        self.backend.executemany(INSERT_ATTEMPT, rows.attempts)
        # the stories an earlier chunk wrote, read back with all their attempts, this chunk's too
        attempts: dict[str, list[dict]] = {key: [] for key in stored}
        for attempt in self._rows_in("select * from attempts where delivery_id in", stored, "order by time, line"):
            attempts[attempt["delivery_id"]].append(attempt)
        wanted = facts_wanted(rows, stored)
        facts = {r["id"]: r for r in self._rows_in("select id, sender, message_id from messages where id in", wanted)}
        merged = merged_rows(rows, stored, attempts, facts)
        self.backend.executemany(UPSERT_DELIVERY, merged)
        if position is not None:
            self._save_position(position)

    def _query(self, sql: str, params=()) -> list[dict]:
        return self.backend.query(sql, params)

    def _rows_in(self, select: str, values, order: str = "") -> list[dict]:
        """`SELECT ... in (VALUES)`, in batches that stay below both engines' limits on parameters."""
        rows: list[dict] = []
        values = sorted(values)
        for start in range(0, len(values), 500):
            part = values[start : start + 500]
            rows += self._query(f"{select} ({','.join('?' * len(part))}) {order}", part)
        return rows

    # --- reading --------------------------------------------------------------------------

    def _load_delivery(self, key: str) -> Delivery | None:
        found = self._query("select * from deliveries where id = ?", [key])
        attempts = self._query("select * from attempts where delivery_id = ? order by time, line", [key])
        return delivery_from_rows(key, found[0] if found else None, attempts) if attempts else None

    def find(
        self, address: str, since: timedelta | None = None, limit: int = 20, source: str | None = None
    ) -> list[Delivery]:
        """The latest deliveries to or from ADDRESS ('@domain' for a whole domain's failures; a
        Message-ID finds its message's stories, and a word without '@' is a queue id), from one
        SOURCE or all, read in one snapshot, so a story and its attempts agree even while
        ingest writes."""
        given = address.strip().strip("<>")
        wanted = given.lower()
        clauses, params = [], []
        if wanted.startswith("@"):
            clauses.append("recipient_domain = ? and status != 'delivered'")
            params.append(wanted[1:])
        elif "@" in wanted:  # an address, or a Message-ID, which looks like one (compared as given)
            clauses.append("(recipient_lc = ? or sender_lc = ? or message_id = ?)")
            params += [wanted, wanted, given]
        else:  # queue ids are case-sensitive (Postfix's long ones mix both cases)
            clauses.append("queue_id = ?")
            params.append(given)
        if since is not None:
            clauses.append("last_seen >= ?")
            params.append(iso(datetime.now() - since))
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        sql = f"select id from deliveries where {' and '.join(clauses)} order by last_seen desc limit ?"

        def read() -> list[Delivery]:
            with self.backend.snapshot():
                rows = self._query(sql, [*params, limit])
                return [d for d in (self._load_delivery(r["id"]) for r in rows) if d is not None]

        return self._retrying("answering a query", read)

    def prune(self, keep: timedelta) -> int:
        """Forget deliveries last seen before now - keep; returns how many."""
        cutoff = iso(datetime.now() - keep)

        def delete() -> int:
            with self.transaction(lock="prune"):
                ids = [r["id"] for r in self._query("select id from deliveries where last_seen < ?", [cutoff])]
                for chunk in range(0, len(ids), 500):
                    part = ids[chunk : chunk + 500]
                    marks = ",".join("?" * len(part))
                    self.backend.execute(f"delete from attempts where delivery_id in ({marks})", part)
                    self.backend.execute(f"delete from deliveries where id in ({marks})", part)
            return len(ids)

        return self._retrying("pruning", delete)

    def counts(self) -> dict[str, int]:
        def count() -> dict[str, int]:
            return {
                t: self._query(f"select count(*) as n from {t}")[0]["n"]
                for t in ("deliveries", "attempts", "messages", "positions")
            }

        return self._retrying("counting", count)


def open_store(settings=None, **options) -> Store:
    """The store the settings point at: DATABASE_URL (or WHYFAILED_DATABASE_URL) if set, else WHYFAILED_DB."""
    from bot.settings import Settings

    settings = settings or Settings()
    return Store(settings.store_target, **options)
