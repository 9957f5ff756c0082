"""Follow growing logs across rotation (rename or copytruncate) and truncation.

Each read resumes from the saved (inode, offset). When the path's inode changes, the file
we were reading was renamed: we first finish it under its new name (found by inode among
its rotated siblings), then start the new file from its first line. When a file shrinks
below our offset it was truncated in place, and we start again from its beginning.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bot.ingest import IngestStats, ingest_file
from bot.sources.files import expand
from bot.store import Position, Store


def _renamed_to(path: Path, inode: int) -> Path | None:
    for candidate in path.parent.glob(path.name + ".*"):
        try:
            if candidate.suffix != ".gz" and os.stat(candidate).st_ino == inode:
                return candidate
        except OSError:
            continue
    return None


def catch_up(store: Store, path: Path, source: str, stats: IngestStats, stop=None) -> None:
    """Read whatever is new at `path`, handling a rotation that happened since the last read.
    `stop` (a callable) ends the reading after the chunk in hand, as in ingest_file."""
    key = str(path.resolve())
    saved = store.position(key)
    try:
        current = os.stat(path)
    except FileNotFoundError:
        # Renamed, and its successor not created yet; or deleted. Finish a renamed file now, and
        # forget the position either way: whatever appears at this path next is a new file, even
        # if the file system hands it the old inode number (tmpfs and ext4 reuse them at once).
        if saved is not None and saved.inode:
            old = _renamed_to(path, saved.inode)
            if old is not None:
                finish_renamed(store, old, key, source, stats)
            _restart(store, key, inode=0)
        return
    if saved is not None and saved.inode != current.st_ino:
        old = _renamed_to(path, saved.inode)
        if old is not None:
            finish_renamed(store, old, key, source, stats)
        _restart(store, key, current.st_ino)
    elif saved is not None and current.st_size < saved.offset:
        # copytruncate: the same inode, cut back to zero: its new lines start at line 1
        _restart(store, key, current.st_ino)
    ingest_file(store, path, source, stats, stop=stop)


def _restart(store: Store, key: str, inode: int) -> None:
    """The file at `key` is new (or was cut back): read it from its first line."""
    store.set_position(Position(key, inode, 0, 0))


def finish_renamed(store: Store, old: Path, key: str, source: str, stats: IngestStats) -> None:
    """Read the tail of a file that was renamed away, continuing from our position in it."""
    saved = store.position(key)
    old_key = str(old.resolve())
    store.set_position(Position(old_key, saved.inode, saved.offset, saved.lines))
    ingest_file(store, old, source, stats)


def follow_paths(
    store: Store, patterns: list[str], source: str | None, interval: float = 1.0, rounds: int | None = None
) -> IngestStats:
    """Keep indexing; stop on SIGTERM/SIGINT after the round in hand (positions are saved
    with every chunk), or after `rounds` rounds (for tests)."""
    stopping = {"now": False}

    def stop(_signum, _frame):
        stopping["now"] = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    stats = IngestStats()
    done = 0
    try:
        while not stopping["now"] and (rounds is None or done < rounds):
            for pattern in patterns:
                for path in expand(pattern)[-1:]:  # the live file; rotated ones were read already
                    catch_up(store, path, source or pattern, stats)
            done += 1
            if rounds is None or done < rounds:
                time.sleep(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stats
