"""Log files: a path or glob, rotated siblings (mail.log.1, mail.log.2.gz) read oldest first,
and the position (inode, byte offset, line count) to resume from."""

from __future__ import annotations

import glob
import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_ROTATION = re.compile(r"\.(\d+)(\.gz)?$")


@dataclass(frozen=True)
class Chunk:
    lines: list[str]
    first_line: int  # line number of lines[0] in the file, from 1
    end_offset: int  # byte offset after the chunk (uncompressed, for .gz)


def expand(pattern: str) -> list[Path]:
    """A path or glob -> the files, rotated ones first (mail.log.3.gz, ..., mail.log.1, mail.log)."""
    paths = [Path(p) for p in glob.glob(pattern)] if any(c in pattern for c in "*?[") else [Path(pattern)]
    if len(paths) == 1 and not any(c in pattern for c in "*?["):
        base = paths[0]
        siblings = [Path(p) for p in glob.glob(glob.escape(str(base)) + ".*") if _ROTATION.search(p)]
        paths = siblings + [base]

    def age(path: Path) -> tuple[int, str]:
        match = _ROTATION.search(path.name)
        return (-int(match.group(1)) if match else 0, path.name)

    return sorted({p for p in paths}, key=age)


def inode_of(path: Path) -> int:
    return os.stat(path).st_ino


def read_chunks(
    path: Path, offset: int = 0, first_line: int = 1, chunk_lines: int = 20000, max_line: int = 16 * 1024
) -> Iterator[Chunk]:
    """Whole lines from byte `offset` on, in chunks. A last line without its newline is left
    for the next read (the writer may be half way through it)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        if offset:
            if path.suffix == ".gz":
                _skip(handle, offset)
            else:
                handle.seek(offset)
        position, number = offset, first_line
        batch: list[str] = []
        start = number
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            position += len(raw)
            batch.append(raw[:max_line].decode("utf-8", "replace").rstrip("\r\n"))
            number += 1
            if len(batch) >= chunk_lines:
                yield Chunk(batch, start, position)
                batch, start = [], number
        if batch:
            yield Chunk(batch, start, position)


def _skip(handle, count: int) -> None:
    while count > 0:
        block = handle.read(min(count, 1 << 20))
        if not block:
            return
        count -= len(block)


def size_of(path: Path) -> int:
    if path.suffix == ".gz":
        return os.stat(path).st_size  # compressed size: good enough for a progress bar
    return os.stat(path).st_size
