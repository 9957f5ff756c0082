"""Filling a new index before building its lookup indexes (Store.lookup_indexes_deferred): the
index ends the same as one kept up story by story, lookups answer meanwhile, and the indexes
are there at the end however the load ended, a `kill -9` included (the next ingest builds them)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.ingest import IngestStats, ingest_paths, parse_block, write_batch
from bot.store import Position, Store
from bot.store_schema import LOOKUP_INDEXES

from .conftest import REPO, index_tables, wait_for_indexed_offset, write_mix_log

sys.path.insert(0, str(REPO / "benchmarks"))
from generate_postfix_log import generate_mix  # noqa: E402

NEVER = 1 << 60  # a threshold no test log reaches: the indexes are kept up story by story


def _lookup_indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("select name from sqlite_master where type = 'index' and tbl_name = 'deliveries'")
        return {name for (name,) in rows if not name.startswith("sqlite_autoindex")}


def test_the_lookup_indexes_are_those_the_schema_builds(tmp_path):
    db = tmp_path / "new.db"
    Store(db).close()
    assert _lookup_indexes(db) == set(LOOKUP_INDEXES)


def test_a_new_index_filled_first_is_the_index_kept_up_story_by_story(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 12000, seed=5)
    deferred_db, kept_db = tmp_path / "deferred.db", tmp_path / "kept.db"
    deferred = ingest_paths(Store(deferred_db), [str(log)], source="s", chunk_lines=1500, bulk_from=0)
    kept = ingest_paths(Store(kept_db), [str(log)], source="s", chunk_lines=1500, bulk_from=NEVER)
    assert deferred.deferred_indexes and not kept.deferred_indexes
    assert deferred.deliveries == kept.deliveries > 1000
    assert index_tables(deferred_db) == index_tables(kept_db)
    assert _lookup_indexes(deferred_db) == _lookup_indexes(kept_db) == set(LOOKUP_INDEXES)
    with sqlite3.connect(deferred_db) as connection:
        plan = connection.execute("explain query plan select id from deliveries where recipient_lc = 'x'").fetchall()
    assert any("idx_deliveries_recipient_lc" in row[-1] for row in plan), plan
    # an index that holds stories already keeps its indexes up as it goes
    more = write_mix_log(tmp_path / "more.log", 3000, seed=6)
    assert not ingest_paths(Store(deferred_db), [str(more)], source="t", bulk_from=0).deferred_indexes


def test_lookups_answer_the_same_while_the_indexes_are_left_out(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 3000, seed=8)
    store = Store(tmp_path / "i.db")
    chunk = parse_block(log.read_bytes(), 1, True, "s")
    address = chunk.rows.deliveries[0][6]  # a recipient of the log (DELIVERY_COLUMNS: recipient)
    with store.lookup_indexes_deferred() as deferred:
        assert deferred and store.missing_lookup_indexes() == list(LOOKUP_INDEXES)
        write_batch(store, "s", [(chunk, Position(str(log), 1, log.stat().st_size, 3000))], IngestStats())
        during = store.find(address.upper())
        failures_during = store.find("@" + address.rpartition("@")[2])
    assert store.missing_lookup_indexes() == []
    assert during and [d.recipient for d in during] == [d.recipient for d in store.find(address)]
    assert [d.queue_id for d in failures_during] == [d.queue_id for d in store.find("@" + address.rpartition("@")[2])]


def test_the_indexes_are_built_when_ingest_stops_half_way(tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 6000, seed=9)
    db = tmp_path / "i.db"

    def interrupted(_bytes: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the first chunk was written

    with pytest.raises(KeyboardInterrupt):
        ingest_paths(Store(db), [str(log)], source="s", on_progress=interrupted, chunk_lines=1000, bulk_from=0)
    assert _lookup_indexes(db) == set(LOOKUP_INDEXES)
    with sqlite3.connect(db) as connection:
        (lines,) = connection.execute("select lines from positions").fetchone()
    assert lines % 1000 == 0 and 0 < lines < 6000  # stopped after the first write (of up to 3 chunks)


def test_postgresql_keeps_its_indexes_up_as_it_goes(pg_url, tmp_path):
    log = write_mix_log(tmp_path / "mail.log", 2000, seed=10)
    stats = ingest_paths(Store(pg_url), [str(log)], source="s", bulk_from=0)
    assert not stats.deferred_indexes and stats.deliveries > 0


_LOAD = """
import sys
from bot.ingest import ingest_paths
from bot.store import Store
ingest_paths(Store(sys.argv[1]), [sys.argv[2]], source="s", chunk_lines=1000, bulk_from=0, commit_every=0.2)
"""


@pytest.mark.slow
def test_a_load_killed_before_it_built_the_indexes_is_mended_by_the_next_ingest(tmp_path):
    # (a bulk load: its commits are grouped, every 0.2 s here, so that some land before the kill)
    log = write_mix_log(tmp_path / "mail.log", 40000, seed=11)
    db = tmp_path / "i.db"
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_LOAD), str(db), str(log)], cwd=REPO)
    assert wait_for_indexed_offset(db, log.stat().st_size // 4, process)
    assert process.poll() is None, "the load finished before it could be killed: make the log bigger"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert _lookup_indexes(db) == set()  # killed mid-load: left out, and lookups still answer by reading the table
    assert Store(db).find("nobody@example.invalid") == []
    stats = ingest_paths(Store(db), [str(log)], source="s", chunk_lines=1000, bulk_from=0)
    assert not stats.deferred_indexes  # the index holds stories: it is not new any more
    assert _lookup_indexes(db) == set(LOOKUP_INDEXES)
    clean = tmp_path / "clean.db"
    ingest_paths(Store(clean), [str(log)], source="s", chunk_lines=1000, bulk_from=NEVER)
    assert index_tables(db) == index_tables(clean)


@pytest.mark.slow
def test_ingest_says_when_it_built_the_lookup_indexes_at_the_end(tmp_path, run_cli):
    # The CLI defers from BULK_FROM (16 MB) on: a log just past it, and one well below.
    from bot.ingest import BULK_FROM

    big = tmp_path / "big.log"
    with open(big, "w") as handle:
        for line in generate_mix(10**7, seed=17):
            handle.write(line + "\n")
            if handle.tell() > BULK_FROM:
                break
    small = write_mix_log(tmp_path / "small.log", 2000, seed=17)
    said = "its lookup indexes were built once, after the lines"
    done = run_cli("ingest", str(big), "--db", str(tmp_path / "big.db"))
    assert done.returncode == 0, done.stderr.decode()
    assert said in done.stdout.decode()
    assert _lookup_indexes(tmp_path / "big.db") == set(LOOKUP_INDEXES)
    done = run_cli("ingest", str(small), "--db", str(tmp_path / "small.db"))
    assert done.returncode == 0, done.stderr.decode()
    assert said not in done.stdout.decode() and "Indexed 2000 new lines" in done.stdout.decode()
    # the big index again: it holds stories now, so nothing is deferred and nothing is said
    done = run_cli("ingest", str(big), "--db", str(tmp_path / "big.db"))
    assert said not in done.stdout.decode() and "Indexed 0 new lines" in done.stdout.decode()
