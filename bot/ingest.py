"""Index log files: parse them chunk by chunk, merge each chunk's stories into the store.

Resumable: the position after each chunk is written in the same transaction as the chunk,
so a restart (even after `kill -9`) continues where the last committed chunk ended.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from bot.correlate import correlate_events
from bot.malloc import fix_mmap_threshold
from bot.parse import parse_lines
from bot.sources.files import CHUNK_LINES, decode_lines, expand, inode_of, read_chunks
from bot.store import Position, Store
from bot.store_rows import ChunkRows, rows_for

_MESSAGE_KINDS = ("queued", "message-id")
_BATCH = 3  # chunks written in one transaction, when the workers have them ready (Store.write_rows_batch)
# Chunks read ahead of the writer, parsed or waiting for a worker. More than a batch: while the
# writer writes a batch, the workers still have chunks to parse. With 2 ahead, a batch of 3
# took them all, and the cores were idle for 1.4 s of a 1M-line ingest's 25 (sampled every
# 0.25 s); memory stays bounded (see CHUNK_LINES).
_LOOKAHEAD = 4
# Logs at least this big are a bulk load, written for throughput: their chunks are committed
# together every COMMIT_EVERY seconds (Store.grouped_commits), and into an index with no story
# yet they are written before its lookup indexes are built (Store.lookup_indexes_deferred).
# Smaller ones cost little either way, and are committed chunk by chunk.
BULK_FROM = 16 << 20
# 1M-line log: committing every 3 s instead of every batch of chunks wrote 40% fewer pages and
# took 1.3 s off 20.6 (the main process's CPU: 9.5 -> 8.7 s). A `kill -9` loses at most that
# much work, which the next run reads again; other readers see the index that much later.
COMMIT_EVERY = 3.0


@contextmanager
def cycles_collected_after():
    """Run a chunk's work with the cyclic garbage collector paused, and let it run after.
    A chunk makes hundreds of thousands of objects that live until the chunk is done (events,
    stories, rows), and the collector traversed each of them several times over while they
    aged through its generations, for nothing: the pipeline makes no reference cycles, and
    whatever it freed is freed by reference counting. On a 1M-line log that took 7.5 CPU-s off
    ingest's 47. The collector is turned back on however the work ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # What the chunk made and still holds (the rows it returns) would all be young again to
        # the collector, which would traverse it at its next allocation: put it with the old
        # objects instead, as if it had aged there (freeze, then unfreeze into the oldest
        # generation), where it is looked at only in the rare full collections.
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


@contextmanager
def _pool_for(path: Path, chunk_lines: int):
    """Worker processes for files of several chunks, on machines with more than one core."""
    cores = os.cpu_count() or 1
    big = path.stat().st_size > chunk_lines * 200  # about two chunks of typical log lines
    if cores < 2 or not big:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=min(cores, 4), initializer=_start_worker, initargs=(os.getpid(),))
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


def _start_worker(parent: int) -> None:
    fix_mmap_threshold()
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """In each worker: exit when the ingest process is gone. A worker waits on a queue whose
    pipe it shares with its siblings, so after a `kill -9` of the parent it would never see
    end-of-file and would wait forever, an orphan per kill."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


@dataclass
class IngestStats:
    files: int = 0
    lines: int = 0
    deliveries: int = 0
    unparsed: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    deferred_indexes: bool = False  # a new index was filled first, its lookup indexes built at the end


def _messages(events) -> list[dict]:
    facts: dict[tuple, dict] = {}
    for event in events:
        if event.kind in _MESSAGE_KINDS and event.session:
            key = (event.host, event.session)
            fact = facts.get(key)
            if fact is None:  # (a dict per message, not one per line to throw away)
                fact = facts[key] = {"host": event.host, "queue_id": event.session}
            if event.sender is not None:
                fact["sender"] = event.sender
            if event.message_id:
                fact["message_id"] = event.message_id
            if event.timestamp and "first_seen" not in fact:
                fact["first_seen"] = event.timestamp.isoformat(sep=" ")
    return list(facts.values())


@dataclass
class ParsedChunk:
    deliveries: list
    messages: list[dict]
    unparsed: int
    lines: int
    # The same stories as the index's rows, when the worker that parsed them built those too:
    # tuples of plain values cross back to the writer process for a fraction of what pickling
    # the Delivery objects cost (unpickling them was about a fifth of the writer's time).
    rows: ChunkRows | None = None


def parse_chunk(lines: list[str], first_line: int, prefilter: bool = True) -> ParsedChunk:
    """The pure part of ingesting a chunk: parse, and correlate the stories it holds.
    Runs in a worker process, so both cores parse while the main process writes.
    `prefilter`: skip the lines the index never needs before any parsing (bot/parse/prefilter.py).
    No diagnosis: the index keeps what the log says, and a story is diagnosed when it is read,
    by the knowledge base of that day (one that was stored would go stale with an edit of it;
    none was ever read, and making them took a tenth of ingest's CPU time)."""
    parsed = parse_lines(lines, first_line, skip_needless=prefilter, tally=False)
    return _correlated(parsed.events, len(parsed.unparsed), len(lines))


def _correlated(events: list, unparsed: int, lines: int) -> ParsedChunk:
    return ParsedChunk(correlate_events(events), _messages(events), unparsed, lines)


def parse_block(data: bytes, first_line: int, prefilter: bool = True, source: str | None = None) -> ParsedChunk:
    """parse_chunk for a file's chunk as bytes: decoding the lines is part of the work a
    worker process takes off the writer, and so is building the rows of `source`'s index."""
    with cycles_collected_after():
        parsed = parse_chunk(decode_lines(data), first_line, prefilter)
        if source is None:
            return parsed
        return ParsedChunk([], [], parsed.unparsed, parsed.lines, rows_for(source, parsed.deliveries, parsed.messages))


def parse_events_chunk(events: list, unparsed: int, lines: int) -> ParsedChunk:
    """parse_chunk for sources that read their own records into events (journald's JSON):
    correlate the stories the events tell."""
    return _correlated(events, unparsed, lines)


def write_parsed(store: Store, source: str, parsed: ParsedChunk, position: Position, stats: IngestStats) -> None:
    write_batch(store, source, [(parsed, position)], stats)


def write_batch(store: Store, source: str, batch: list[tuple[ParsedChunk, Position]], stats: IngestStats) -> None:
    """Consecutive chunks, in one transaction when the workers built their rows."""
    if all(parsed.rows is not None for parsed, _ in batch):
        stats.deliveries += store.write_rows_batch(source, [(parsed.rows, position) for parsed, position in batch])
    else:
        for parsed, position in batch:
            stats.deliveries += store.write_chunk(source, parsed.deliveries, parsed.messages, position)
    for parsed, _ in batch:
        stats.lines += parsed.lines
        stats.unparsed += parsed.unparsed


def ingest_file(
    store: Store,
    path: Path,
    source: str,
    stats: IngestStats,
    on_progress: Callable[[int], None] | None = None,
    chunk_lines: int = CHUNK_LINES,
    pool: Executor | None = None,
    stop: Callable[[], bool] | None = None,
    prefilter: bool = True,
) -> None:
    """Index one file from its saved position (or from the start, if it is new or was rotated).
    With a pool, chunks are parsed ahead in other processes and written here in file order.
    When `stop()` turns true, no further chunk is read; those in hand are written, with their
    positions, so the next run starts exactly after the last line written."""
    key = str(path.resolve())
    inode = inode_of(path)
    saved = store.position(key)
    offset, first_line = 0, 1
    if saved is not None and saved.inode == inode and (path.suffix == ".gz" or saved.offset <= path.stat().st_size):
        offset, first_line = saved.offset, saved.lines + 1
    pending: deque = deque()

    def write_oldest() -> None:
        """Write the oldest chunk, and with it the next ones its workers have finished too."""
        nonlocal offset
        batch = [pending.popleft()]
        while pool is not None and pending and pending[0][0].done() and len(batch) < _BATCH:
            batch.append(pending.popleft())
        with cycles_collected_after():  # (the rows unpickled here are as many objects again)
            write_batch(store, source, [(f.result() if pool is not None else f, p) for f, p in batch], stats)
        for _, position in batch:
            if on_progress:
                on_progress(position.offset - offset)
            offset = position.offset

    for chunk in read_chunks(path, offset, first_line, chunk_lines):
        if stop is not None and stop():
            break
        position = Position(key, inode, chunk.end_offset, chunk.first_line + chunk.count - 1)
        if pool is None:
            pending.append((parse_block(chunk.data, chunk.first_line, prefilter, source), position))
        else:
            pending.append((pool.submit(parse_block, chunk.data, chunk.first_line, prefilter, source), position))
        while len(pending) > (_LOOKAHEAD if pool is not None else 0):
            write_oldest()
    while pending:
        write_oldest()
    stats.files += 1


def ingest_paths(
    store: Store,
    patterns: list[str],
    source: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    chunk_lines: int = CHUNK_LINES,
    prefilter: bool = True,
    bulk_from: int = BULK_FROM,
    commit_every: float = COMMIT_EVERY,
) -> IngestStats:
    stats = IngestStats()
    started = time.perf_counter()
    fix_mmap_threshold()  # (and in each worker: see bot/malloc.py)
    planned = [(pattern, expand(pattern)) for pattern in patterns]
    size = sum(_size(path) for _, paths in planned for path in paths)
    bulk = size >= bulk_from
    grouped = store.grouped_commits(commit_every) if bulk else nullcontext()
    # (the group outside: the lookup indexes, dropped and built again inside it, are committed
    # with the first chunks and the last, not on their own: one commit's sync and checkpoint
    # less at the end of the load, about 0.2 s of its one-core tail)
    with grouped, store.lookup_indexes_deferred(defer=bulk) as deferred:
        stats.deferred_indexes = deferred
        for pattern, paths in planned:
            for path in paths:
                _ingest_one(store, path, source or pattern, stats, on_progress, chunk_lines, prefilter)
    stats.seconds = time.perf_counter() - started
    return stats


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # missing or unreadable: _ingest_one says so
        return 0


def _ingest_one(store, path: Path, source: str, stats: IngestStats, on_progress, chunk_lines, prefilter) -> None:
    """One file, or the reason it was skipped in stats.skipped."""
    if not path.exists():
        stats.skipped.append(f"{path}: no such file")
        return
    try:
        with _pool_for(path, chunk_lines) as pool:
            ingest_file(store, path, source, stats, on_progress, chunk_lines, pool, prefilter=prefilter)
    except PermissionError:
        stats.skipped.append(f"{path}: permission denied")
    except OSError as error:
        stats.skipped.append(f"{path}: {error.strerror or error}")
