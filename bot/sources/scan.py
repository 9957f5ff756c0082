"""Find the lines of a big log that mention some strings, at close to grep's speed: the file
is memory-mapped and searched with mmap.find (a fast C search, no copy), and only then are
the matching lines cut out and numbered. A case-insensitive search looks for the part of
the needle that has no case (the '485@' of 'nobody485@example.com'), with mmap.find or a
regular expression, and checks the rest of the needle where it is found; compressed files
are read block by block.

A log opened with open_log can be searched several times (`why`: the address, then its queue
ids) and counts each stretch of newlines about once: the newlines before each span of the
file are counted the first time a hit lies past it, and a hit's own span from its start."""

from __future__ import annotations

import gzip
import mmap
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

BLOCK = 8 * 1024 * 1024  # a block read (or lowered) at a time
SPAN = 256 * 1024  # line numbering counts newlines a span at a time


def grep_lines(path: Path, needles: Iterable[bytes], ignore_case: bool = False) -> list[tuple[int, str]]:
    """(line number, line) for every line holding any needle, in file order."""
    with open_log(path) as log:
        return log.grep(needles, ignore_case)


def open_log(path: Path) -> MappedLog | StreamedLog:
    """A log to search one or more times: mapped in memory, or read block by block when it is
    compressed or empty (an empty file cannot be mapped)."""
    if path.suffix == ".gz" or os.stat(path).st_size == 0:
        return StreamedLog(path)
    return MappedLog(path)


class MappedLog:
    """A plain log file, memory-mapped once for all its searches."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "rb")  # noqa: SIM115 - closed by close(), with the map
        try:
            self._data = mmap.mmap(self._handle.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self._handle.close()
            raise
        self._numbers = _LineNumbers(self._data)

    def grep(self, needles: Iterable[bytes], ignore_case: bool = False) -> list[tuple[int, str]]:
        """(line number, line) for every line holding any needle, in file order."""
        wanted = [n.lower() if ignore_case else n for n in needles if n]
        ordered = sorted(_line_starts(self._data, wanted, ignore_case))
        return list(zip(self._numbers.of(ordered), map(self._line_at, ordered), strict=True))

    def _line_at(self, start: int) -> str:
        end = self._data.find(b"\n", start)
        return self._data[start : end if end >= 0 else len(self._data)].decode("utf-8", "replace")

    def close(self) -> None:
        self._data.close()
        self._handle.close()

    def __enter__(self) -> MappedLog:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class StreamedLog:
    """A compressed (or empty) log: each search decompresses it again, block by block."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def grep(self, needles: Iterable[bytes], ignore_case: bool = False) -> list[tuple[int, str]]:
        wanted = [n.lower() if ignore_case else n for n in needles if n]
        return _grep_blocks(self._path, wanted, ignore_case)

    def close(self) -> None:
        pass

    def __enter__(self) -> StreamedLog:
        return self

    def __exit__(self, *_exc) -> None:
        pass


class _LineNumbers:
    """Line numbers of line starts in a map. The map is cut into spans of SPAN bytes; the
    newlines before each span are counted once, the first time a search needs them, and never
    past the span of its last hit. A hit's number adds the newlines between its span's start
    (or the hit before it in that span) and itself, so a second search counts only within spans."""

    def __init__(self, data) -> None:
        self._data = data
        self._before = [0]  # newlines before span k, for the spans counted so far
        self._buffer = bytearray()  # one span's bytes at a time

    def of(self, starts: list[int]) -> list[int]:
        """The numbers of these line starts (sorted, as given)."""
        span, before, numbers = SPAN, self._before, []
        at, newlines = -1, 0  # the last hit numbered, and the newlines before it
        for start in starts:
            k = start // span
            while len(before) <= k:  # count the spans up to this one
                first = (len(before) - 1) * span
                before.append(before[-1] + self._newlines(first, first + span))
            if at < k * span:  # the first hit in its span: count from the span's start
                at, newlines = k * span, before[k]
            newlines += self._newlines(at, start)
            at = start
            numbers.append(newlines + 1)
        return numbers

    def _newlines(self, start: int, end: int) -> int:
        """The newlines in data[start:end], a span at most. Copied into one buffer, not a new
        bytes object each time: the allocator gives a freed span back to the system, and
        taking it again costs a page fault per page (five times slower in all)."""
        buffer = self._buffer
        if len(buffer) != SPAN:
            buffer[:] = bytes(SPAN)
        with memoryview(self._data) as view, view[start:end] as part:
            size = len(part)
            buffer[:size] = part
        if size < SPAN:
            return buffer.count(b"\n", 0, size)
        # bytes.count tests every byte in a loop; replace() finds each newline with memchr, in
        # about a fifth of the instructions (callgrind), and the difference in length counts them
        return SPAN - len(buffer.replace(b"\n", b""))


def _line_starts(data, needles: list[bytes], ignore_case: bool) -> set[int]:
    """The start offsets of the lines of a map or block that hold a needle (lower-cased needles
    when ignore_case)."""
    if not ignore_case:
        return _search(data, needles)
    starts: set[int] = set()
    for needle in needles:
        found = _search_anchored(data, needle)
        starts |= found if found is not None else _search_folded(data, needle)
    return starts


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


def _search_folded(data, needle: bytes) -> set[int]:
    """A case-insensitive search for a needle whose caseless anchor is short or common: a
    regular expression for the needle from its anchor on, which the regex engine scans for by
    its literal prefix (the anchor) and matches, whatever the case, in C. Only its matches have
    the letters before the anchor checked. A needle with no caseless byte has lowered blocks."""
    anchor = _anchor(needle)
    if not anchor:
        return _search_lowered(data, [needle])
    cut = needle.find(anchor)
    head, pattern = needle[:cut], re.compile(re.escape(needle[cut:]), re.IGNORECASE)
    starts: set[int] = set()
    match = pattern.search(data)
    while match:
        at = match.start() - cut
        if at < 0 or data[at : match.start()].lower() != head:
            match = pattern.search(data, match.start() + 1)  # an overlapping match may hold it
            continue
        starts.add(data.rfind(b"\n", 0, at) + 1)
        end = data.find(b"\n", match.end())
        match = pattern.search(data, end) if end >= 0 else None
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
        number, counted = base_line, 0
        for start in sorted(_line_starts(block, wanted, ignore_case)):
            number += block.count(b"\n", counted, start)
            counted = start
            end = block.find(b"\n", start)
            found[number] = (number, block[start:end].decode("utf-8", "replace"))
        base_line += block.count(b"\n")
    return [found[k] for k in sorted(found)]
