"""Reading a log in chunks of bytes gives exactly the lines, numbers and offsets that reading
it line by line does: invalid UTF-8, CRLF, over-long lines, a half-written last line, .gz."""

from __future__ import annotations

import gzip
import random

import pytest

from bot.sources.files import MAX_LINE, read_chunks, take_lines


def _line_by_line(path, offset=0, first_line=1):
    """The reference: what ingest read before chunks became bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        handle.read(offset)
        lines, position = [], offset
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            position += len(raw)
            lines.append((raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r\n"), position))
    return lines


CONTENT = (
    b"Nov 29 04:21:13 mail postfix/qmgr[1]: ABCDE12345: removed\n"
    b"caf\xc3\xa9 and a cut sequence \xe2\x82\n"
    b"\xff\xfe invalid start\r\n"
    b"\n"
    b"crlf line\r\n"
    + b"x" * (MAX_LINE - 1)
    + b"\n"
    + b"y" * (MAX_LINE + 5)
    + b"\xc3\xa9\n"
    + b"\xe2\x82\xac" * (MAX_LINE // 3 + 2)
    + b"\n"
    + b"last whole line\n"
    + b"half written"
)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("chunk_lines", [1, 2, 3, 100])
@pytest.mark.parametrize("offset", [0, 58])
def test_chunks_hold_the_same_lines_and_offsets(tmp_path, suffix, chunk_lines, offset):
    path = tmp_path / f"mail.log{suffix}"
    path.write_bytes(gzip.compress(CONTENT) if suffix else CONTENT)
    expected = _line_by_line(path, offset, 1)
    chunks = list(read_chunks(path, offset, 1, chunk_lines, block=7))
    got = [(line, None) for chunk in chunks for line in chunk.lines]
    assert [line for line, _ in got] == [line for line, _ in expected]
    assert all(len(chunk.lines) == chunk.count <= chunk_lines for chunk in chunks)
    ends = {position for _, position in expected}
    assert all(chunk.end_offset in ends for chunk in chunks)
    assert chunks[-1].end_offset == expected[-1][1]
    assert [c.first_line for c in chunks] == [1 + sum(c.count for c in chunks[:n]) for n in range(len(chunks))]


def test_the_first_lines_of_a_buffer_end_where_counting_newlines_says():
    generator = random.Random(5)
    for _ in range(3000):
        lines = [b"x" * generator.choice([0, 1, 2, 40, 300, 5000]) for _ in range(generator.randint(1, 60))]
        buffer = bytearray(b"\n".join(lines) + b"\n" + b"y" * generator.randint(0, 50))  # a half line may follow
        count = buffer.count(b"\n")
        take = generator.randint(1, count)
        expected = -1
        for _ in range(take):
            expected = buffer.find(b"\n", expected + 1)
        assert take_lines(buffer, take, count) == expected + 1, (lines, take)
