"""The plain-syslog fast path of the line parser must give what the general path gives:
the same header, the same message, and no other reading of the line (sniffer, framing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.parse import parse_lines
from bot.parse.detect import sniff_line
from bot.parse.framing import unframe
from bot.parse.syslog import parse_syslog_header, plain_syslog_fields

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from generate_postfix_log import generate_mix  # noqa: E402


def _lines() -> list[str]:
    files = [
        p for p in (ROOT / "tests" / "fixtures").rglob("*") if p.is_file() and p.suffix in (".log", ".txt", ".eml")
    ]
    files += list((ROOT / "examples").iterdir())
    lines = [line for path in files for line in path.read_text(errors="replace").splitlines()]
    lines += [line.rstrip("\n") for line in generate_mix(3000)]
    # the edges: forms that look plain but are not, and plain ones with every optional part
    lines += [
        "Nov 1 00:00:01 mx1 postfix/smtp[1]: x",  # one space, one digit: not syslog to the sniffer
        "Nov  1 00:00:01 -mx1 postfix/smtp[1]: x",  # a host that does not start with a letter or digit
        "<22>Nov 29 00:00:01.123 mx1 postfix/smtp[01]:x",
        "2026-11-28 10:15:02 mx1 postfix/qmgr[7]: 3F2A1B4C5D: removed",  # Exim-shaped stamp
        "2026-11-28T10:15:02.123456+01:00 mx1 postfix/qmgr: 3F2A1B4C5D: removed",
        "2026-11-28T10:15:02Z stdout F: not CRI",
        "2026-11-28T10:15:02Z stdout F Nov 29 00:00:01 mx1 postfix/smtp[1]: CRI",
        "postfix-1  | Nov 29 00:00:01 mx1 postfix/smtp[1]: compose",
        "Sep 29 00:00:01 S: 250 ok",
        "Nov 29 00:00:01 mx1 postfix/smtp[12a]: a pid that is not one",
        "Nov 29 00:00:01 mx1 postfix/qmgr[1]: 3F2A1B4C5D: removed\r\r",  # line ends a paste may keep
        # plain headers whose message no grammar reads: kept as info events, header and all
        "Nov 29 00:00:01 mx1 dovecot[9]: imap-login: Login: user=<a@b.example>",  # no grammar for it
        "Nov 29 00:00:01 mx1 postfix/smtp[1]: %% nothing the Postfix grammar has a rule for %%",
        "Feb 30 00:00:01 mx1 postfix/qmgr: 3F2A1B4C5D: removed",  # no such day: no timestamp, no pid
    ]
    return lines


LINES = _lines()


def test_a_plain_line_reads_as_the_general_path_reads_it():
    plain = 0
    for line in LINES:
        fields = plain_syslog_fields(line)
        if fields is None:
            continue
        plain += 1
        timestamp, host, program, pid, message = fields
        header = {"timestamp": timestamp, "host": host, "program": program, "pid": pid}
        assert (header, message) == parse_syslog_header(line), line
        assert sniff_line(line) in ("syslog", "exim"), line
        inner, journal = unframe(line)
        assert inner is line and journal is None, line
    assert plain > 3000  # most fixture and generated lines take the fast path


@pytest.mark.parametrize(
    "line",
    [
        "Nov 1 00:00:01 mx1 postfix/smtp[1]: x",
        "Nov  1 00:00:01 -mx1 postfix/smtp[1]: x",
        "postfix-1  | Nov 29 00:00:01 mx1 postfix/smtp[1]: compose",
        "2026-11-28T10:15:02Z stdout F Nov 29 00:00:01 mx1 postfix/smtp[1]: CRI",
        "> Nov 29 00:00:01 mx1 postfix/smtp[1]: quoted in chat",
    ],
)
def test_lines_the_general_path_must_read_are_left_to_it(line):
    assert plain_syslog_fields(line) is None


def test_fixtures_parse_to_the_same_events_with_and_without_the_fast_path():
    """Quoting every line ('> ' as chat does) sends it down the general path, which takes the
    quote off: both runs must give the same events and the same unparsed lines."""
    for path in [*sorted((ROOT / "tests" / "fixtures").rglob("*.log")), None]:
        lines = path.read_text(errors="replace").split("\n") if path else LINES
        fast = parse_lines(lines)
        general = parse_lines([f"> {line}" for line in lines])
        assert fast.events == general.events, path  # every field of every event
        assert [u.line for u in fast.unparsed] == [u.line for u in general.unparsed], path
