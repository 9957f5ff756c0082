"""Grouped commits (Store.grouped_commits, used by a bulk ingest): chunks written one after
another are committed together, each still whole with its position, so that whatever ends the
group (its time, the end of the load, a failure, a Ctrl-C) the index holds each line once."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from bot.ingest import IngestStats, ingest_paths, parse_block, write_batch
from bot.store import Position, Store

from .conftest import index_tables, write_mix_log

NEVER = 1 << 60  # a bulk threshold no test log reaches: chunks committed one by one


def _chunks(log: Path, size: int) -> list[tuple]:
    """The log's chunks of SIZE lines, parsed, each with the position after it."""
    lines = log.read_bytes().splitlines(keepends=True)
    chunks, offset = [], 0
    for start in range(0, len(lines), size):
        data = b"".join(lines[start : start + size])
        offset += len(data)
        position = Position(str(log), 1, offset, start + len(lines[start : start + size]))
        chunks.append((parse_block(data, start + 1, True, "s"), position))
    return chunks


def _seen_by_another_reader(db: Path) -> tuple[int, int | None]:
    """(stories, lines of the saved position) as a second connection sees them: only what was committed."""
    with sqlite3.connect(db) as connection:
        stories = connection.execute("select count(*) from deliveries").fetchone()[0]
        position = connection.execute("select lines from positions").fetchone()
    return stories, position[0] if position else None


def test_a_group_is_committed_when_it_ends_and_not_before(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 3000, seed=21)
    db = tmp_path / "i.db"
    store = Store(db)
    first, second = _chunks(log, 1500)
    with store.grouped_commits(3600):
        write_batch(store, "s", [first], IngestStats())
        write_batch(store, "s", [second], IngestStats())
        assert _seen_by_another_reader(db) == (0, None)  # nothing committed yet
        assert store.position(str(log)).lines == 3000  # the writer reads its own writes
        assert store.find(first[0].rows.deliveries[0][6])  # (and answers lookups from them)
    stories, lines = _seen_by_another_reader(db)
    assert stories > 100 and lines == 3000


def test_a_group_commits_once_its_time_has_come(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 4500, seed=22)
    db = tmp_path / "i.db"
    store = Store(db)
    first, second, third = _chunks(log, 1500)
    with store.grouped_commits(0.3):
        write_batch(store, "s", [first], IngestStats())
        assert _seen_by_another_reader(db)[1] is None
        time.sleep(0.35)
        write_batch(store, "s", [second], IngestStats())  # the first write that ends after the time
        assert _seen_by_another_reader(db)[1] == 3000
        write_batch(store, "s", [third], IngestStats())  # the next group has only begun
        assert _seen_by_another_reader(db)[1] == 3000
    assert _seen_by_another_reader(db)[1] == 4500


def test_a_failed_write_rolls_back_its_group_and_the_next_run_indexes_each_line_once(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 6000, seed=23)
    db, clean = tmp_path / "i.db", tmp_path / "clean.db"
    store = Store(db)
    # a real SQLite failure in the fourth chunk's write: a trigger refuses one of its stories
    refused = _chunks(log, 1000)[3][0].rows.deliveries[0][0]
    quoted = "'" + refused.replace("'", "''") + "'"  # (a trigger's body takes no parameters)
    store.backend.execute(
        f"create trigger refuse before insert on deliveries when new.id = {quoted} "
        "begin select raise(abort, 'refused'); end"
    )
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        ingest_paths(store, [str(log)], source="s", chunk_lines=1000, bulk_from=0, commit_every=3600)
    assert _seen_by_another_reader(db) == (0, None)  # the group, its first chunks too, was rolled back
    store.backend.execute("drop trigger refuse")
    again = ingest_paths(store, [str(log)], source="s", chunk_lines=1000, bulk_from=0, commit_every=3600)
    assert again.lines == 6000
    ingest_paths(Store(clean), [str(log)], source="s", chunk_lines=1000, bulk_from=NEVER)
    assert index_tables(db) == index_tables(clean)


def test_a_stop_between_writes_commits_the_chunks_written(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 6000, seed=24)
    db, clean = tmp_path / "i.db", tmp_path / "clean.db"
    store = Store(db)
    written = []

    def stop_after_two(size: int) -> None:
        written.append(size)
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_paths(
            store, [str(log)], source="s", on_progress=stop_after_two, chunk_lines=1000, bulk_from=0, commit_every=3600
        )
    # committed as the group ended, though its time had not come: the two chunks reported, and
    # any written with them (the workers may have had a batch of up to three ready)
    lines = _seen_by_another_reader(db)[1]
    assert lines % 1000 == 0 and 2000 <= lines < 6000, lines
    ingest_paths(store, [str(log)], source="s", chunk_lines=1000, bulk_from=0)
    ingest_paths(Store(clean), [str(log)], source="s", chunk_lines=1000, bulk_from=NEVER)
    assert index_tables(db) == index_tables(clean)


def test_only_a_bulk_load_groups_its_commits(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 3000, seed=25)

    def committed_as_reported(db: Path, bulk_from: int) -> list[int | None]:
        """The lines committed, as another reader saw them, each time a chunk was reported written."""
        seen: list[int | None] = []
        progress = lambda _size: seen.append(_seen_by_another_reader(db)[1])  # noqa: E731
        ingest_paths(Store(db), [str(log)], "s", progress, chunk_lines=1000, bulk_from=bulk_from, commit_every=3600)
        return seen

    # each chunk committed when it was written (with those of its batch, when the workers had several ready)
    small = committed_as_reported(tmp_path / "small.db", bulk_from=NEVER)
    assert len(small) == 3 and all(lines is not None and lines >= 1000 * n for n, lines in enumerate(small, 1))
    # the same log as a bulk load: committed as the load ended
    assert committed_as_reported(tmp_path / "bulk.db", bulk_from=0) == [None, None, None]
    assert _seen_by_another_reader(tmp_path / "bulk.db")[1] == 3000


def test_a_bulk_load_builds_its_lookup_indexes_in_its_last_group(tmp_path):
    """The last chunks and the lookup indexes built after them are committed together: one
    commit (and its sync and checkpoint) at the end of the load, not two."""
    from bot.store_schema import LOOKUP_INDEXES

    log = write_mix_log(tmp_path / "mail.log", 3000, seed=26)
    db = tmp_path / "i.db"
    store = Store(db)
    statements: list[str] = []
    store.backend.db.conn.set_trace_callback(statements.append)
    stats = ingest_paths(store, [str(log)], "s", chunk_lines=1000, bulk_from=0, commit_every=3600)
    assert stats.deferred_indexes
    commits = [n for n, sql in enumerate(statements) if sql.strip().upper() == "COMMIT"]
    built = [n for n, sql in enumerate(statements) if sql.lower().startswith("create index")]
    assert len(commits) == 1 and len(built) == len(LOOKUP_INDEXES) and max(built) < commits[0]
    with sqlite3.connect(db) as connection:  # as another reader sees it
        names = {row[0] for row in connection.execute("select name from sqlite_master where type = 'index'")}
    assert set(LOOKUP_INDEXES) <= names and _seen_by_another_reader(db)[1] == 3000


def test_other_writers_get_their_turn_between_groups(tmp_path):
    """A bulk writer with chunks always ready keeps the lock between its writes; the bot's audit
    rows (another connection, waiting on the lock as SQLite does) still get in, between groups."""
    log = write_mix_log(tmp_path / "mail.log", 3000, seed=26)
    chunks = _chunks(log, 500)
    db = tmp_path / "i.db"
    Store(db).close()
    stop, started, errors = threading.Event(), threading.Event(), []

    def bulk_writer() -> None:
        store = Store(db)  # (a connection belongs to its thread)
        try:
            with store.grouped_commits(0.3):
                while not stop.is_set():
                    for chunk in chunks:  # written again and again: the keys make it change nothing
                        write_batch(store, "s", [chunk], IngestStats())
                        started.set()
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            store.close()

    writer = threading.Thread(target=bulk_writer)
    writer.start()
    try:
        assert started.wait(30)
        other = Store(db, timeout=3)  # waits at most 3 s for the lock, then fails: "database is locked"
        for number in range(5):
            other.record_audit("slack", "U1", "C1", f"why q{number}@example.com", "answered")
        assert len(other.audit_rows()) == 5
    finally:
        stop.set()
        writer.join()
    assert not errors


def test_outside_a_group_a_transaction_joins_none(tmp_path):
    store = Store(tmp_path / "i.db")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        with store.transaction(), store.transaction():
            pass
    with store.grouped_commits(3600), store.transaction(), store.transaction():
        pass  # in a group, the second joins the first
