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
    monkeypatch.setattr(scan, "SPAN", block)
    path = tmp_path / f"mail.log{suffix}"
    data = "\n".join(LINES).encode()
    path.write_bytes(gzip.compress(data) if suffix else data)
    assert grep_lines(path, [needle.encode()], ignore_case) == _expected(needle, ignore_case)


def test_a_common_anchor_falls_back_to_a_regular_expression(tmp_path):
    path = tmp_path / "mail.log"
    path.write_text("\n".join(["1234@ filler"] * 50 + LINES) + "\n")
    assert scan._search_anchored(open(path, "rb").read(), b"ops1234@slow.example.net", most=10) is None
    assert [line for _, line in grep_lines(path, [b"ops1234@slow.example.net"], True)] == [LINES[0], LINES[3]]


@pytest.mark.parametrize(
    "needle",
    [
        "ann@example.org",  # the anchor is '@': the regular expression, the head 'ann' checked
        "@example.org",  # a domain: the anchor is the needle's first byte
        "a@a@",  # overlapping matches: of 'b@a@a@', the second '@a@' is the one with its head
        "q1@b",  # an anchor of two bytes, in the middle
        "ann",  # no byte without case: lowered blocks
    ],
)
def test_a_case_insensitive_search_finds_every_case_variant(tmp_path, needle):
    lines = [
        "to=<ANN@Example.ORG> first",
        "to=<Ann@example.org>, to=<ann@EXAMPLE.org>",
        "b@a@a@ and B@A@A@",
        "nothing here: an@example.org, bann@example.orgy",
        "Q1@B q1@b",
        "q1 @b, ann@exampleXorg",
        "xq1@Bx",
    ]
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    assert grep_lines(path, [needle.encode()], True) == _reference(data, [needle.encode()], True)
    assert scan._search_folded(data, needle.encode()) == {
        data.rfind(b"\n", 0, at) + 1 for at in range(len(data)) if data[at:].lower().startswith(needle.encode())
    }


# A queue id search after an address search numbers lines from the hits the first one counted:
# lines before, between and after those hits, the first and the last line, and an id that is
# also part of a longer token (a substring match, like grep -F).
MESSAGE = [
    "Nov 29 04:20:59 mail postfix/pickup[7]: 0F1E2D3C4B: uid=0 from=<root>",
    "Nov 29 04:21:00 mail postfix/qmgr[1]: 0F1E2D3C4B: from=<root@mail>, size=310, nrcpt=1 (queue active)",
    "Nov 29 04:21:01 mail postfix/smtpd[2]: connect from unknown[192.0.2.1]",
    "Nov 29 04:21:13 mail postfix/smtp[1]: 0F1E2D3C4B: to=<Ops@Slow.Example.NET>, status=deferred",
    "Nov 29 04:21:14 mail postfix/cleanup[3]: X0F1E2D3C4BX: message-id=<a@b>",
    "",
    "Nov 29 05:21:13 mail postfix/smtp[1]: 0F1E2D3C4B: to=<ops@slow.example.net>, status=bounced",
    "Nov 29 05:21:14 mail postfix/qmgr[1]: 0F1E2D3C4B: removed",
]


def _reference(data: bytes, needles: list[bytes], ignore_case: bool) -> list[tuple[int, str]]:
    """A line by line search, the obvious way."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()

    def holds(line: bytes) -> bool:
        return any((n.lower() in line.lower()) if ignore_case else (n in line) for n in needles)

    return [(n, line.decode()) for n, line in enumerate(lines, start=1) if holds(line)]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("block", [16, 1 << 20])
@pytest.mark.parametrize("ending", ["\n", ""], ids=["final-newline", "no-final-newline"])
@pytest.mark.parametrize("address_first", [True, False])
def test_searches_of_one_open_log_number_lines_as_the_file_does(tmp_path, monkeypatch, suffix, block, ending,
                                                                 address_first):  # fmt: skip
    monkeypatch.setattr(scan, "BLOCK", block)
    monkeypatch.setattr(scan, "SPAN", block)
    data = ("\n".join(MESSAGE) + ending).encode()
    path = tmp_path / f"mail.log{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    searches = [([b"ops@slow.example.net"], True), ([b"0F1E2D3C4B", b"no-such-id"], False)]
    with scan.open_log(path) as log:
        for needles, ignore_case in searches if address_first else searches[::-1]:
            assert log.grep(needles, ignore_case) == _reference(data, needles, ignore_case)
    ids = [number for number, _ in _reference(data, [b"0F1E2D3C4B"], False)]
    assert ids == [1, 2, 4, 5, 7, 8]  # the first and the last line, and the id inside a longer token


def test_a_log_searched_again_finds_the_same_lines(tmp_path):
    path = tmp_path / "mail.log"
    path.write_text("\n".join(MESSAGE * 3) + "\n")
    with scan.open_log(path) as log:
        first = log.grep([b"0F1E2D3C4B"])
        assert log.grep([b"slow.example"], True) == _reference(path.read_bytes(), [b"slow.example"], True)
        assert log.grep([b"0F1E2D3C4B"]) == first == _reference(path.read_bytes(), [b"0F1E2D3C4B"], False)


@pytest.mark.parametrize("span", [7, 64, 4096, 1 << 20])
def test_line_numbers_are_right_across_spans_and_searches(tmp_path, monkeypatch, span):
    # hits in the same span, in spans far apart, on span edges and on empty lines' neighbours:
    # each search numbers from what the one before counted
    monkeypatch.setattr(scan, "SPAN", span)
    lines = [f"Nov 29 04:{n % 60:02d}:00 mail postfix/smtp[{n}]: Q{n % 37:04d}X: line {n}" for n in range(600)]
    lines[17] = lines[301] = lines[302] = lines[599] = "to=<Ann@Example.ORG> and ann@example.org"
    lines[40] = lines[41] = ""
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    with scan.open_log(path) as log:
        for needles, ignore_case in [
            ([b"ann@example.org"], True),
            ([b"Q0005X", b"Q0036X"], False),
            ([b"line 4"], False),
        ]:
            assert log.grep(needles, ignore_case) == _reference(data, needles, ignore_case)
