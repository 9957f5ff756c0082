"""Syslog framing: split a line into its header fields and the program's message."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

from bot.parse import grammars
from bot.parse.grammars import derived_regexes, parser
from bot.parse.timestamps import parse_any, parse_bsd, parse_iso

if TYPE_CHECKING:
    from datetime import datetime


def _split_program(field: str) -> tuple[str, int | None]:
    """'postfix/smtp[2211]:' -> ('postfix/smtp', 2211)."""
    field = field.rstrip(":")
    name, bracket, pid = field.partition("[")
    pid = pid.rstrip("]")
    return name, int(pid) if bracket and pid.isdigit() else None


class SyslogTransformer:  # Lark's transformer protocol, without importing Lark (grammars.parser)
    def header_bsd(self, children):
        text = str(children[0])
        if text.startswith("<"):
            text = text[text.index(">") + 1 :]
        parts = text.split()
        if text[:1].isdigit() and "T" not in parts[0] and len(parts) > 1 and ":" in parts[1][:3]:
            # "2026-11-28 10:15:02 host ...": an ISO date and time with a space between
            stamp, rest = parse_any("TS_ISO", f"{parts[0]} {parts[1]}"), parts[2:]
        elif text[:1].isdigit():  # ISO-8601: one field of time
            stamp, rest = parse_any("TS_ISO", parts[0]), parts[1:]
        else:  # RFC 3164: "Nov 28 10:15:02"
            stamp, rest = parse_any("TS_3164", " ".join(parts[:3])), parts[3:]
        program, pid = _split_program(rest[1])
        return {"timestamp": stamp, "host": rest[0], "program": program, "pid": pid}

    def header_5424(self, children):
        # "<22>1 TIMESTAMP HOST APP PROCID MSGID SD"
        parts = str(children[0]).split(" ", 6)
        procid = parts[4]
        return {
            "timestamp": parse_any("TS_ISO", parts[1]),
            "host": parts[2],
            "program": parts[3],
            "pid": int(procid) if procid.isdigit() else None,
        }

    def start(self, children):
        message = str(children[1]) if len(children) > 1 else ""
        return children[0], message


@cache
def _bsd_header_regex() -> re.Pattern:
    # The grammar's own BSD_HEADER terminal, compiled once: the header is on every line of
    # every log, and one regex match costs a fraction of a parser run. The grammar stays
    # the single definition of what a header is (derived from it, then kept in the data cache).
    return re.compile(derived_regexes("syslog", _derive_bsd_header, __file__)["bsd_header"])


def _derive_bsd_header() -> dict[str, str]:
    terminal = parser("syslog", SyslogTransformer).get_terminal("BSD_HEADER")
    return {"bsd_header": terminal.pattern.to_regexp() + " ?"}


_TRANSFORMER = SyslogTransformer()

# The plain header of most lines of a busy log, with its fields as groups: the timestamp forms
# that both the grammar's BSD_HEADER and the sniffer's syslog test accept, and a host name that
# starts with a letter or digit. On such a line the sniffer answers syslog (or exim, which
# tries this header first), no collector framing applies, and BSD_HEADER matches the same span:
# tests/test_parse_fast_path.py holds plain_syslog_fields to parse_syslog_header on every
# fixture line. Anything else takes the general path.
_PLAIN = re.compile(
    r"(?:<[0-9]{1,3}>)?"
    r"(?:(?P<bsd>[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)"
    r"|(?P<iso>[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?))"
    r" (?P<host>[A-Za-z0-9][A-Za-z0-9._-]*) (?P<program>[^\s\[\]:]+)(?:\[(?P<pid>[0-9]+)\])?: ?"
)


def plain_syslog_fields(line: str) -> tuple[datetime | None, str, str, int | None, str] | None:
    """parse_syslog_header for a plain syslog line, from one regex match, as a tuple: (timestamp,
    host, program, pid, message), host and program never empty, for the parser's fast path
    (bot.parse.parse_plain_message). None for any other line."""
    match = _PLAIN.match(line)
    if match is None:
        return None
    bsd, iso, host, program, pid = match.group("bsd", "iso", "host", "program", "pid")
    # parse_bsd splits the stamp into its fields itself: "Nov  1" and "Nov 1" read the same
    timestamp = parse_bsd(bsd) if bsd else parse_iso(iso)
    return timestamp, host, program, int(pid) if pid else None, line[match.end() :]


def parse_syslog_header(line: str) -> tuple[dict, str] | None:
    """Return (header fields, message text), or None when the line has no syslog header."""
    match = _bsd_header_regex().match(line)
    if match is not None:
        return _TRANSFORMER.header_bsd([match.group(0).rstrip()]), line[match.end() :]
    try:
        return parser("syslog", SyslogTransformer).parse(line)
    except grammars.LarkError:
        return None
