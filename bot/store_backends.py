"""Where the index lives: an SQLite file (the embedded default) or a PostgreSQL database.

The Store writes one dialect, the subset both engines share (`insert ... on conflict (id) do
update set x = excluded.x`, `?` placeholders, double-quoted identifiers); a backend runs it,
hands rows back as dicts, and owns what differs: connecting, serialising writers, taking a
consistent snapshot for readers, and the one DDL type that differs (an automatic row id).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlite_utils

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# SQLite settings for a writer that keeps large indexes up to date (see SQLiteBackend._pages)
PAGE_SIZE = 16384
WAL_CHECKPOINT_PAGES = 4000
CACHE_BYTES = 16 << 20  # ingest's whole budget, workers included, is 200 MB
# A writer that waits for the lock (busy_timeout) tries again every 100 ms at most (SQLite's
# default busy handler): a group of commits (grouped_commits), which keeps the lock between
# its writes, leaves it free this long after each commit, so that other writers get their turn.
LOCK_FREE_AFTER_GROUP = 0.15


class StoreError(Exception):
    """The database cannot be used: the message says why and what to do."""


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.lower().startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or as ?password=) replaced by ***: safe to log."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
        query = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not even a URL: say nothing of it but its scheme
        return url.partition("://")[0] + "://***"


class SQLiteBackend:
    """One SQLite file through sqlite-utils; the connection is in autocommit mode, so every
    transaction is asked for explicitly (BEGIN IMMEDIATE: writers queue for the lock up front)."""

    kind = "sqlite"
    row_id = "integer primary key"  # an alias of the rowid, filled in by SQLite
    drops_columns = sqlite3.sqlite_version_info >= (3, 35, 0)  # ALTER TABLE ... DROP COLUMN
    hint = "Is it a whyfailed database?"

    def __init__(self, path: str | Path, timeout: float = 30.0):
        self.path = Path(path)
        self.where = str(self.path)
        self._commit_every, self._commit_due, self._committed_at = 0.0, None, 0.0  # set by grouped_commits
        try:
            connection = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            # No sqlite-utils plugins: the index's queries call no function one would add, and
            # finding them reads every installed package's entry points (40 ms a process, an
            # eighth of a `whyfailed why` that reads the index).
            self.db = sqlite_utils.Database(connection, execute_plugins=False)
            self._pages()
            self._wal(timeout)
            self.db.execute("PRAGMA synchronous=NORMAL")
            # A checkpoint copies each page the WAL holds once, however many commits changed it:
            # ingest's commits touch the same index pages again and again, so checkpointing every
            # 64 MB (4000 pages) instead of every 16 MB took 9% of the writes and 38% of the
            # reads off a 200k-line ingest. Readers are unaffected; the WAL file may grow that far.
            self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: cannot open the index ({error}). Is it a whyfailed database?") from None

    def _pages(self) -> None:
        # Ingest inserts every story into indexes keyed by queue ids and addresses, so a chunk
        # dirties pages all over each index, and each commit copies them to the WAL and a
        # checkpoint copies them again. Bigger pages mean fewer of them: on a 1M-line log 16 kB
        # pages take under a third of the write calls of 4 kB ones and a fifth less CPU. The
        # size only takes on a new, empty file; an older index keeps its own.
        self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        # Enough cache for most of those indexes' pages to stay in memory from one chunk to the
        # next: with the default 2 MB each chunk read them from the file again (1M-line log: 586k
        # read calls, 14.2 CPU-s; 16 MB: 152k, 10.2 s; 32 MB: 76k, 9.8 s). A connection's cache
        # only grows as far as it is used.
        self.db.execute(f"PRAGMA cache_size=-{CACHE_BYTES // 1024}")

    def _wal(self, timeout: float) -> None:
        # Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
        # locked" at once, without its busy handler, while another connection does the same
        # (several processes starting on a new index): wait for it like any other lock.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def execute(self, sql: str, params: Sequence = ()) -> None:
        self.db.conn.execute(sql, params)

    def executemany(self, sql: str, rows: list[Sequence]) -> None:
        if rows:
            self.db.conn.executemany(sql, rows)

    def query(self, sql: str, params: Sequence = ()) -> list[dict]:
        return list(self.db.query(sql, params))

    def tables(self) -> set[str]:
        return set(self.db.table_names())

    def columns(self, table: str) -> set[str]:
        return {column.name for column in self.db[table].columns}

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        """All or nothing. `lock` is for PostgreSQL's per-source lock; SQLite has one writer anyway.
        Within grouped_commits, a transaction joins the one left open, and commits it when due."""
        connection = self.db.conn
        grouped = self._commit_due is not None
        if not (grouped and connection.in_transaction):  # (outside a group, a nested one fails as ever)
            if grouped:  # a group's next transaction: the lock stays free a moment first
                pause = self._committed_at + LOCK_FREE_AFTER_GROUP - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            connection.execute("ROLLBACK")  # (in a group: the transactions it joined too)
            raise
        if not grouped or time.monotonic() >= self._commit_due:
            connection.execute("COMMIT")
            if grouped:
                self._committed_at = time.monotonic()
                self._commit_due = self._committed_at + self._commit_every

    @contextmanager
    def grouped_commits(self, seconds: float) -> Iterator[None]:
        """Transactions that follow one another are committed together, once SECONDS have gone
        by since the last commit, and when the block ends. Each is still whole: a failure rolls
        back the group, which was all or nothing too; what an earlier commit wrote stays.

        A commit writes each page it changed to the WAL once, however many rows changed it, and
        ingest's stories land at random places in the keys' indexes: committed chunk by chunk,
        a 1M-line log wrote 1.8 GB of pages for an index of 164 MB. Other connections see
        what was written up to the last commit, and other writers (the bot's audit rows, a
        follower) write between two groups: after each commit the lock stays free for
        LOCK_FREE_AFTER_GROUP, longer than SQLite's busy handler sleeps between its tries."""
        self._commit_every, self._commit_due = seconds, time.monotonic() + seconds
        self._committed_at = float("-inf")
        try:
            yield
        finally:
            self._commit_due = None
            if self.db.conn.in_transaction:  # whole transactions only (a failed one rolled back)
                try:
                    self.db.conn.execute("COMMIT")
                except sqlite3.Error:
                    if self.db.conn.in_transaction:  # (a full disk may leave it open)
                        self.db.conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: in WAL mode its reads see one committed state, whatever writers do meanwhile."""
        if self._commit_due is not None and self.db.conn.in_transaction:  # a group's open transaction: one state
            yield
            return
        self.db.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.db.conn.execute("COMMIT")

    def is_database_error(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.Error)

    def is_disconnect(self, error: BaseException) -> bool:
        return False  # a file does not go away; a lock past busy_timeout is reported, not retried

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        self.db.conn.close()


@lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    # psycopg's placeholders are %s, so a literal % doubles; our SQL has no ? inside a string literal
    return sql.replace("%", "%%").replace("?", "%s")


def one_line(error: BaseException) -> str:
    """An error's first line: libpq adds indented hints ("Is the server running...") below it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[0]) if lines else type(error).__name__


class PostgresBackend:
    """A PostgreSQL database through psycopg 3, in autocommit mode with explicit transactions.

    Writers take a transaction-scoped advisory lock named after what they write (a source), so
    two ingest processes merging the same stories queue for each other instead of interleaving
    their read-merge-write; readers take a repeatable-read snapshot."""

    kind = "postgresql"
    row_id = "bigint generated by default as identity primary key"
    drops_columns = True
    hint = "Check that the user may create tables in the database."

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url
        self.where = redact_url(url)
        self.timeout = timeout
        self.conn = None
        self._connect()

    def _connect(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        try:
            self.conn = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(2, int(self.timeout)),
                application_name="whyfailed",
            )
        except psycopg.Error as error:
            # psycopg's messages name the host, port, user and database, never the password
            raise StoreError(f"{self.where}: cannot connect to PostgreSQL ({one_line(error)})") from None

    def execute(self, sql: str, params: Sequence = ()) -> None:
        self.conn.execute(_pg_sql(sql), params)

    def executemany(self, sql: str, rows: list[Sequence]) -> None:
        if rows:
            with self.conn.cursor() as cursor:
                cursor.executemany(_pg_sql(sql), rows)

    def query(self, sql: str, params: Sequence = ()) -> list[dict]:
        return self.conn.execute(_pg_sql(sql), params).fetchall()

    def tables(self) -> set[str]:
        rows = self.query("select table_name from information_schema.tables where table_schema = current_schema()")
        return {row["table_name"] for row in rows}

    def columns(self, table: str) -> set[str]:
        rows = self.query(
            "select column_name from information_schema.columns where table_schema = current_schema() "
            "and table_name = ?",
            [table],
        )
        return {row["column_name"] for row in rows}

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        with self.conn.transaction():
            if lock is not None:
                self.conn.execute("select pg_advisory_xact_lock(hashtext(%s))", [f"whyfailed:{lock}"])
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self.conn.transaction():
            self.conn.execute("set transaction isolation level repeatable read, read only")
            yield

    def is_database_error(self, error: BaseException) -> bool:
        import psycopg

        return isinstance(error, psycopg.Error)

    def is_disconnect(self, error: BaseException) -> bool:
        import psycopg

        # OperationalError: the server went away, restarted, or refused us; InterfaceError: the
        # connection object was already closed by an earlier failure
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)

    def reconnect(self) -> None:
        self.close()
        self._connect()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a broken connection: nothing left to lose
                pass


def open_backend(target: str | Path, timeout: float = 30.0) -> SQLiteBackend | PostgresBackend:
    """A postgresql:// (or postgres://) URL opens PostgreSQL; anything else is an SQLite file path."""
    if is_postgres_url(target):
        return PostgresBackend(str(target), timeout)
    return SQLiteBackend(target, timeout)
