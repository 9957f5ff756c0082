"""Find the lines of a big log that mention some strings, at close to grep's speed: the file
is memory-mapped and searched with mmap.find (a fast C search, no copy), and only then are
the matching lines cut out and numbered. A case-insensitive search lowers one block of the
map at a time; compressed files are read block by block."""

from __future__ import annotations

import gzip
import mmap
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

BLOCK = 8 * 1024 * 1024


def grep_lines(path: Path, needles: Iterable[bytes], ignore_case: bool = False) -> list[tuple[int, str]]:
    """(line number, line) for every line holding any needle, in file order."""
    wanted = [n.lower() if ignore_case else n for n in needles if n]
    if path.suffix == ".gz" or os.stat(path).st_size == 0:
        return _grep_blocks(path, wanted, ignore_case)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if not ignore_case:
            starts = _search(data, wanted)
        else:
            starts = set()
            for needle in wanted:
                found = _search_anchored(data, needle)
                starts |= found if found is not None else _search_lowered(data, [needle])
        return _numbered(data, sorted(starts))


def _anchor(needle: bytes) -> bytes:
    """The longest run of the needle's bytes that have no case (digits, '@', '.', '-'...)."""
    runs = re.split(rb"[A-Za-z]+", needle)
    return max(runs, key=len)


def _search_anchored(data, needle: bytes, most: int = 20000) -> set[int] | None:
    """A case-insensitive search without lowering the file: find the needle's caseless anchor
    (like '1625@' in 'x1625@dest.example') at C speed, then check only those lines. None
    when the needle has no anchor long enough, or it is too common to be worth it."""
    anchor = _anchor(needle)
    if len(anchor) < 4:
        return None
    starts: set[int] = set()
    at, seen = data.find(anchor), 0
    while at >= 0:
        seen += 1
        if seen > most:
            return None
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        end = end if end >= 0 else len(data)
        if needle in data[start:end].lower():
            starts.add(start)
        at = data.find(anchor, end)
    return starts


def _search(data, needles: list[bytes]) -> set[int]:
    """The start offsets of the lines that hold a needle."""
    starts: set[int] = set()
    for needle in needles:
        at = data.find(needle)
        while at >= 0:
            starts.add(data.rfind(b"\n", 0, at) + 1)
            end = data.find(b"\n", at)
            at = data.find(needle, end) if end >= 0 else -1
    return starts


def _search_lowered(data, needles: list[bytes]) -> set[int]:
    """_search, case-insensitive: block by block (cut at line ends), each block lowered once."""
    starts: set[int] = set()
    size, position = len(data), 0
    while position < size:
        end = data.rfind(b"\n", position, position + BLOCK) + 1
        if end <= position:  # one line longer than a block: take all of it
            end = data.find(b"\n", position + BLOCK) + 1 or size
        block = data[position:end].lower()
        starts.update(position + start for start in _search(block, needles))
        position = end
    return starts


def _numbered(data, starts: list[int]) -> list[tuple[int, str]]:
    found, number, counted = [], 1, 0
    for start in starts:
        number += data[counted:start].count(b"\n")  # newlines between the last hit and this one
        counted = start
        end = data.find(b"\n", start)
        found.append((number, data[start : end if end >= 0 else len(data)].decode("utf-8", "replace")))
    return found


def _blocks(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        rest = b""
        while True:
            data = handle.read(BLOCK)
            if not data:
                if rest:
                    yield rest + b"\n"
                return
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield data[: cut + 1]
            rest = data[cut + 1 :]


def _grep_blocks(path: Path, wanted: list[bytes], ignore_case: bool) -> list[tuple[int, str]]:
    """grep_lines for compressed files: decompressed block by block."""
    found: dict[int, tuple[int, str]] = {}
    base_line = 1
    for block in _blocks(path):
        haystack = block.lower() if ignore_case else block
        number, counted = base_line, 0
        for start in sorted(_search(haystack, wanted)):
            number += block.count(b"\n", counted, start)
            counted = start
            end = block.find(b"\n", start)
            found[number] = (number, block[start:end].decode("utf-8", "replace"))
        base_line += block.count(b"\n")
    return [found[k] for k in sorted(found)]
