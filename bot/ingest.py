"""Index log files: parse them chunk by chunk, merge each chunk's stories into the store.

Resumable: the position after each chunk is written in the same transaction as the chunk,
so a restart (even after `kill -9`) continues where the last committed chunk ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.correlate import correlate_events
from bot.knowledge import load_articles
from bot.parse import parse_lines
from bot.rules import diagnose_delivery
from bot.sources.files import Chunk, expand, inode_of, read_chunks
from bot.store import Position, Store

_MESSAGE_KINDS = ("queued", "message-id")


@dataclass
class IngestStats:
    files: int = 0
    lines: int = 0
    deliveries: int = 0
    unparsed: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)


def _messages(events) -> list[dict]:
    facts: dict[tuple, dict] = {}
    for event in events:
        if event.kind in _MESSAGE_KINDS and event.session:
            fact = facts.setdefault((event.host, event.session), {"host": event.host, "queue_id": event.session})
            if event.sender is not None:
                fact["sender"] = event.sender
            if event.message_id:
                fact["message_id"] = event.message_id
            if event.timestamp and "first_seen" not in fact:
                fact["first_seen"] = event.timestamp.isoformat(sep=" ")
    return list(facts.values())


def ingest_chunk(store: Store, source: str, chunk: Chunk, position: Position, stats: IngestStats) -> None:
    parsed = parse_lines(chunk.lines, chunk.first_line)
    deliveries = correlate_events(parsed.events)
    articles = load_articles()
    stats.deliveries += store.write_chunk(
        source, deliveries, _messages(parsed.events), position, lambda story: diagnose_delivery(story, articles)
    )
    stats.lines += len(chunk.lines)
    stats.unparsed += len(parsed.unparsed)


def ingest_file(
    store: Store,
    path: Path,
    source: str,
    stats: IngestStats,
    on_progress: Callable[[int], None] | None = None,
    chunk_lines: int = 20000,
) -> None:
    """Index one file from its saved position (or from the start, if it is new or was rotated)."""
    key = str(path.resolve())
    inode = inode_of(path)
    saved = store.position(key)
    offset, first_line = 0, 1
    if (
        saved is not None
        and saved.inode == inode
        and saved.offset <= path.stat().st_size
        or (saved is not None and path.suffix == ".gz" and saved.inode == inode)
    ):
        offset, first_line = saved.offset, saved.lines + 1
    for chunk in read_chunks(path, offset, first_line, chunk_lines):
        position = Position(key, inode, chunk.end_offset, chunk.first_line + len(chunk.lines) - 1)
        ingest_chunk(store, source, chunk, position, stats)
        if on_progress:
            on_progress(chunk.end_offset - offset)
        offset = chunk.end_offset
    stats.files += 1


def ingest_paths(
    store: Store,
    patterns: list[str],
    source: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    chunk_lines: int = 20000,
) -> IngestStats:
    stats = IngestStats()
    started = time.perf_counter()
    for pattern in patterns:
        paths = expand(pattern)
        for path in paths:
            if not path.exists():
                stats.skipped.append(f"{path}: no such file")
                continue
            try:
                ingest_file(store, path, source or pattern, stats, on_progress, chunk_lines)
            except PermissionError:
                stats.skipped.append(f"{path}: permission denied")
            except OSError as error:
                stats.skipped.append(f"{path}: {error.strerror or error}")
    stats.seconds = time.perf_counter() - started
    return stats
