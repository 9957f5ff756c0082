"""grep_lines finds every line holding a needle, numbered as in the file, case-insensitively
when asked, whichever search it picks (anchored, lowered blocks, compressed blocks)."""

from __future__ import annotations

import gzip

import pytest

from bot.sources import scan
from bot.sources.scan import grep_lines

LINES = [
    "Nov 29 04:21:13 mail postfix/smtp[1]: ABCDE12345: to=<Ops1234@Slow.Example.NET>, status=deferred",
    "Nov 29 04:21:14 mail postfix/qmgr[1]: ABCDE12345: removed",
    "",
    "ops1234@slow.example.net appears twice: ops1234@slow.example.net",
    "no match 1234@ here",
    "OPS@SLOW.EXAMPLE.NET, the last line, has no newline",
]


def _expected(needle: str, ignore_case: bool):
    def holds(line: str) -> bool:
        return needle.lower() in line.lower() if ignore_case else needle in line

    return [(n, line) for n, line in enumerate(LINES, start=1) if holds(line)]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("block", [16, 1 << 20])
@pytest.mark.parametrize(
    ("needle", "ignore_case"),
    [("ops1234@slow.example.net", True), ("ops@slow.example.net", True), ("ABCDE12345", False), ("1234@", False)],
)
def test_grep_lines_finds_what_a_line_by_line_search_finds(tmp_path, monkeypatch, suffix, block, needle, ignore_case):
    monkeypatch.setattr(scan, "BLOCK", block)
    path = tmp_path / f"mail.log{suffix}"
    data = "\n".join(LINES).encode()
    path.write_bytes(gzip.compress(data) if suffix else data)
    assert grep_lines(path, [needle.encode()], ignore_case) == _expected(needle, ignore_case)


def test_a_common_anchor_falls_back_to_lowered_blocks(tmp_path):
    path = tmp_path / "mail.log"
    path.write_text("\n".join(["1234@ filler"] * 50 + LINES) + "\n")
    assert scan._search_anchored(open(path, "rb").read(), b"ops1234@slow.example.net", most=10) is None
    assert [line for _, line in grep_lines(path, [b"ops1234@slow.example.net"], True)] == [LINES[0], LINES[3]]
