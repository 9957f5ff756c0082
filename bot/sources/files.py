"""Log files: a path or glob, rotated siblings (mail.log.1, mail.log.2.gz) read oldest first,
and the position (inode, byte offset, line count) to resume from."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_ROTATION = re.compile(r"\.(\d+)(\.gz)?$")


MAX_LINE = 16 * 1024  # longer lines are cut: a runaway line must not eat memory
BLOCK = 1 << 20
# Lines per transaction by default. With the parse-ahead pool, a few chunks are in flight at once:
# on 1M lines (benchmarks/bench_issue4.py) 15,000 with two chunks ahead peaked at 186 MB for the
# process and its workers in 71 s; 20,000 took as long at 201 MB, 10,000 took 85 s at 166 MB.
CHUNK_LINES = 15_000


@dataclass(frozen=True)
class Chunk:
    """Whole lines as the file holds them: the reader only counts newlines, and the lines are
    decoded where they are parsed (a worker process), so the writer process does not pay
    per line and a chunk crosses processes as one bytes object, not thousands of strings."""

    data: bytes
    first_line: int  # line number of the first line in the file, from 1
    count: int  # how many lines (newlines) data holds
    end_offset: int  # byte offset after the chunk (uncompressed, for .gz)

    @property
    def lines(self) -> list[str]:
        return decode_lines(self.data)


def decode_lines(data: bytes, max_line: int = MAX_LINE) -> list[str]:
    """The lines of whole-line bytes as text: undecodable bytes replaced, line ends stripped,
    each line cut at max_line bytes (its newline counted)."""
    raw = data.split(b"\n")
    raw.pop()  # data ends with a newline: nothing after it
    if raw and max(map(len, raw)) >= max_line:
        return [(line + b"\n")[:max_line].decode("utf-8", "replace").rstrip("\r\n") for line in raw]
    # The common case, one decode for the whole block: a newline byte never sits inside a UTF-8
    # sequence, so this equals decoding line by line.
    lines = data.decode("utf-8", "replace").split("\n")
    lines.pop()
    return [line.rstrip("\r") for line in lines] if b"\r" in data else lines


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
    path: Path, offset: int = 0, first_line: int = 1, chunk_lines: int = CHUNK_LINES, block: int = BLOCK
) -> Iterator[Chunk]:
    """Whole lines from byte `offset` on, chunk_lines at a time. A last line without its newline
    is left for the next read (the writer may be half way through it)."""
    if path.suffix == ".gz":
        import gzip  # here: `why --log` on plain files never pays for it

        opener = gzip.open
    else:
        opener = open
    with opener(path, "rb") as handle:
        if offset:
            if path.suffix == ".gz":
                _skip(handle, offset)
            else:
                handle.seek(offset)
        buffer, count = bytearray(), 0  # count: the newlines in buffer
        while True:
            data = handle.read(block)
            buffer += data
            count += data.count(b"\n")  # (the new block only: what is left of the buffer was counted)
            while count >= chunk_lines or (not data and count):
                take = min(count, chunk_lines)
                cut = take_lines(buffer, take, count)
                offset += cut
                yield Chunk(bytes(memoryview(buffer)[:cut]), first_line, take, offset)
                del buffer[:cut]
                first_line, count = first_line + take, count - take
            if not data:
                return


def take_lines(buffer: bytes | bytearray, take: int, count: int) -> int:
    """The length of BUFFER's first TAKE lines, BUFFER holding COUNT newlines (1 <= TAKE <= COUNT).
    Finding the TAKE-th newline one find() at a time was a Python step per line of the log in
    the writer process: start instead where it would be if all lines were of one length, count
    the newlines before that point, and step only over the difference (a few dozen lines on a
    real log)."""
    at = len(buffer) * take // count
    before = buffer.count(b"\n", 0, at)  # newlines in buffer[:at]
    if before < take:
        for _ in range(take - before):  # each step: just past the next newline
            at = buffer.find(b"\n", at) + 1
        return at
    for _ in range(before - take):  # each step: buffer[:at] holds one newline fewer
        at = buffer.rfind(b"\n", 0, at)
    return buffer.rfind(b"\n", 0, at) + 1  # just past the last newline left, the TAKE-th


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
