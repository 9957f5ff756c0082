"""Ingest builds a chunk's index rows in the worker that parsed it; the sources that parse in
the writing process (SSH, syslog, journald) hand it Delivery objects instead. Both must write
the same index, including the stories that span chunks (read back and merged)."""

from __future__ import annotations

import sys
from concurrent.futures import Executor, Future
from pathlib import Path

from bot.ingest import IngestStats, ingest_file, parse_block, parse_chunk, write_parsed
from bot.sources.files import inode_of, read_chunks
from bot.store import Position, Store

from .conftest import REPO
from .test_prefilter import _dump

sys.path.insert(0, str(REPO / "benchmarks"))
from generate_postfix_log import generate_mix  # noqa: E402


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "mail.log"
    log.write_text("".join(f"{line}\n" for line in generate_mix(20000, seed=3)))
    return log


def test_rows_built_in_the_worker_give_the_index_the_writer_would_build(tmp_path):
    log = _log(tmp_path)
    key = str(log.resolve())

    by_rows = tmp_path / "rows.db"
    stats = IngestStats()
    ingest_file(Store(by_rows), log, "s", stats, chunk_lines=1500)

    by_objects = tmp_path / "objects.db"
    store, other = Store(by_objects), IngestStats()
    for chunk in read_chunks(log, chunk_lines=1500):
        parsed = parse_chunk(chunk.lines, chunk.first_line)
        assert parsed.rows is None  # the Delivery objects path
        position = Position(key, inode_of(log), chunk.end_offset, chunk.first_line + chunk.count - 1)
        write_parsed(store, "s", parsed, position, other)

    assert stats.deliveries == other.deliveries > 500
    rows, objects = _dump(by_rows), _dump(by_objects)
    assert rows == objects
    # stories that span chunks were merged: more attempts than stories, some stories with several
    assert len(rows["attempts"]) > len(rows["deliveries"])


class _BatchCountingStore(Store):
    """The real store, noting how many chunks each transaction wrote."""

    def __init__(self, path):
        super().__init__(path)
        self.batches: list[int] = []

    def write_rows_batch(self, source, batch):
        self.batches.append(len(batch))
        return super().write_rows_batch(source, batch)


class _InlineExecutor(Executor):
    """An executor whose work is done by the time submit returns: every chunk ahead of the
    writer is ready, so every commit takes as many as it may (a process pool's timing varies)."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_chunks_written_several_to_a_transaction_give_the_index_one_at_a_time_gives(tmp_path):
    log = _log(tmp_path)
    one_by_one = tmp_path / "one.db"
    ingest_file(Store(one_by_one), log, "s", IngestStats(), chunk_lines=500)
    batched = _BatchCountingStore(tmp_path / "batched.db")
    stats = IngestStats()
    ingest_file(batched, log, "s", stats, chunk_lines=500, pool=_InlineExecutor())
    assert stats.lines == 20000
    assert sum(batched.batches) == 40 and max(batched.batches) == 3  # commits of three chunks
    assert _dump(tmp_path / "batched.db") == _dump(one_by_one)


def test_the_worker_hands_back_rows_not_stories(tmp_path):
    chunk = next(read_chunks(_log(tmp_path), chunk_lines=1500))
    parsed = parse_block(chunk.data, chunk.first_line, source="s")
    assert parsed.deliveries == [] and parsed.messages == []
    assert parsed.rows is not None and parsed.rows.deliveries and parsed.rows.attempts and parsed.rows.messages
    assert all(isinstance(row, tuple) for row in parsed.rows.deliveries + parsed.rows.attempts)


def test_rows_cross_to_the_writer_whole(tmp_path):
    """A chunk's rows leave the worker as one marshal string (ChunkRows.__reduce__): pickled as
    the process pool pickles a result, they come back equal, value for value and type for type."""
    import pickle

    from bot.store_rows import ChunkRows

    chunk = next(read_chunks(_log(tmp_path), chunk_lines=1500))
    rows = parse_block(chunk.data, chunk.first_line, source="s").rows
    odd = ChunkRows(
        [("k", None, 0, -1, 2**62, 0.5, 1e300, "", "ünïcødé 日本語 😀", "lone surrogate \ud800", "nul \x00")],
        [("k", 7, None, "deferred")],
        [],
    )
    for original in (rows, odd):
        back = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))
        assert isinstance(back, ChunkRows) and back == original
        assert [list(map(type, row)) for row in back.deliveries] == [list(map(type, r)) for r in original.deliveries]


def test_evidence_is_written_as_json_dumps_writes_it():
    import json

    from bot.model import Evidence
    from bot.store_rows import evidence_json

    texts = [line for line in generate_mix(300, seed=5)] + [
        "",
        'quote " backslash \\ tab \t',
        "ünïcødé — 日本語 😀",
        "control \x00\x1b[31m\x7f\x85",
        "lone surrogate \ud800",
    ]
    for count in (0, 1, 3):
        for start in range(0, len(texts), 7):
            evidence = [Evidence(start + i, texts[(start + i) % len(texts)]) for i in range(count)]
            expected = json.dumps([[e.line, e.text] for e in evidence])
            assert evidence_json(evidence) == expected
            assert json.loads(evidence_json(evidence)) == [[e.line, e.text] for e in evidence]


def test_times_are_written_as_isoformat_writes_each_of_them():
    """iso() remembers the text of naive times (a log's lines repeat each second); two aware
    times at one instant are equal datetimes but keep their own offsets."""
    from datetime import UTC, datetime, timedelta, timezone

    from bot.store_rows import iso

    paris = datetime(2026, 11, 29, 10, tzinfo=timezone(timedelta(hours=1)))
    utc = datetime(2026, 11, 29, 9, tzinfo=UTC)
    assert paris == utc
    assert [iso(paris), iso(utc), iso(paris)] == [
        "2026-11-29 10:00:00+01:00",
        "2026-11-29 09:00:00+00:00",
        "2026-11-29 10:00:00+01:00",
    ]
    for stamp in (datetime(2026, 11, 29, 9), datetime(2026, 11, 29, 9, 0, 0, 123456), datetime(2026, 1, 2, 3, 4, 5)):
        assert iso(stamp) == iso(stamp) == stamp.isoformat(sep=" ")
    assert iso(None) is None
