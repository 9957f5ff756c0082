"""Text in, Events out: the front of the pipeline.

`parse_text` sniffs each line, parses it with its format's grammar, re-joins lines that a
chat client or mail program wrapped, and returns every line it could not read as
`Unparsed` so that nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache, lru_cache
from importlib import import_module
from typing import TYPE_CHECKING

from bot.model import Event, Unparsed
from bot.parse.syslog import parse_syslog_header, plain_syslog_fields

if TYPE_CHECKING:
    from datetime import datetime

# A format's parser is imported the first time a line of that format is met (a Postfix log
# never loads the Exim or Exchange grammars' modules): name -> (module, function).
_LAZY = {
    "parse_exchange_row": ("bot.parse.exchange", "parse_exchange_row"),
    "read_fields": ("bot.parse.exchange", "read_fields"),
    # sniffing too: a log whose lines all have a plain syslog header never needs it
    "sniff_line": ("bot.parse.detect", "sniff_line"),
    "looks_like_bounce": ("bot.parse.detect", "looks_like_bounce"),
    "parse_exim_line": ("bot.parse.exim", "parse_exim_line"),
    "unframe": ("bot.parse.framing", "unframe"),
    "parse_haraka_line": ("bot.parse.haraka", "parse_haraka_line"),
    "parse_hmailserver_line": ("bot.parse.hmailserver", "parse_hmailserver_line"),
    "parse_mdaemon_line": ("bot.parse.mdaemon", "parse_mdaemon_line"),
    "parse_opensmtpd_message": ("bot.parse.opensmtpd", "parse_opensmtpd_message"),
    "parse_postfix_message": ("bot.parse.postfix", "parse_postfix_message"),
    "needless": ("bot.parse.prefilter", "needless"),
    "parse_qmail_line": ("bot.parse.qmail", "parse_qmail_line"),
    "parse_sendmail_message": ("bot.parse.sendmail", "parse_sendmail_message"),
    "parse_session_line": ("bot.parse.session", "parse_session_line"),
    "parse_transcript_line": ("bot.parse.transcript", "parse_transcript_line"),
}


@cache
def _load(name: str) -> Callable:
    module, function = _LAZY[name]
    return getattr(import_module(module), function)


def __getattr__(name: str) -> Callable:
    """`from bot.parse import parse_exim_line` and the like still work: imported when asked."""
    if name in _LAZY:
        return _load(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_EVENT_FIELDS = frozenset(f.name for f in fields(Event))
# Events that speak of a delivery; the rest (connects, daemon notices) are context.
RELEVANT_KINDS = frozenset(
    {"status", "reject", "expired", "reply", "command", "connect-error", "lost", "system", "qmail-outcome"}
)
# The header lines of an Exchange message tracking log.
_EXCHANGE_HEADER = ("#Software: Microsoft Exchange", "#Version:", "#Log-type:", "#Date:", "#Fields:")
# How many physical lines one wrapped logical line may span.
_MAX_WRAPPED = 8


@dataclass
class ParseResult:
    events: list[Event] = field(default_factory=list)
    unparsed: list[Unparsed] = field(default_factory=list)
    lines: int = 0
    format_stats: dict[str, Counter] = field(default_factory=dict)

    @property
    def formats(self) -> list[str]:
        return [name for name, stats in self.format_stats.items() if stats["parsed"]]

    def tally(self) -> None:
        """Per-format counts of parsed, delivery-relevant and unparsed lines."""
        stats: dict[str, Counter] = {}
        for event in self.events:
            counter = stats.setdefault(event.format, Counter())
            counter["parsed"] += 1
            counter["relevant"] += event.kind in RELEVANT_KINDS
        for item in self.unparsed:
            stats.setdefault(_load("sniff_line")(item.text) or "unknown", Counter())["unparsed"] += 1
        self.format_stats = stats


def make_event(line: int, raw: str, fmt: str, values: dict) -> Event:
    try:  # what the grammars give: Event's fields only (a test of the keys first cost more than the Event)
        return Event(line=line, raw=raw, format=fmt, **values)
    except TypeError:  # a key that is no field of Event: left out
        return Event(line=line, raw=raw, format=fmt, **{k: v for k, v in values.items() if k in _EVENT_FIELDS})


# Line formats with a grammar of their own: sniffed name -> parser of the whole line.
_LINE_PARSERS = {
    "session": "parse_session_line",
    "transcript": "parse_transcript_line",
    "exim": "parse_exim_line",
    "hmailserver": "parse_hmailserver_line",
    "mdaemon": "parse_mdaemon_line",
    "qmail": "parse_qmail_line",
    "haraka": "parse_haraka_line",
}

# Syslog programs with a grammar for their messages: (test on the program name, format, parser).
_PROGRAMS = (
    (lambda p: "postfix" in p, "postfix", "parse_postfix_message"),
    (lambda p: p.startswith("exim"), "exim", "parse_exim_line"),
    (lambda p: p in ("sendmail", "sm-mta") or p.startswith("sm-"), "sendmail", "parse_sendmail_message"),
    (lambda p: p == "smtpd", "opensmtpd", "parse_opensmtpd_message"),
    (lambda p: p.startswith("qmail"), "qmail", "parse_qmail_line"),
    (lambda p: p == "haraka", "haraka", "parse_haraka_line"),
)


def parse_line(line: str, kind: str | None = "sniff") -> tuple[str, dict, int] | None:
    """(format, event fields, quality) for one logical line; quality 2 = fully understood,
    1 = framing understood but not the message (kept as an 'info' event)."""
    if kind == "sniff":
        kind = _load("sniff_line")(line)
    if kind == "exim":
        # "2026-11-28 10:15:02 host program[pid]: ..." is syslog with an ISO stamp, not Exim:
        # only a real syslog header makes the syslog grammar win (Exim's fields never fit one).
        framed = parse_syslog_header(line)
        if framed is not None:
            return parse_program_message(*framed)
    if kind in _LINE_PARSERS:
        values = _load(_LINE_PARSERS[kind])(line)
        return (kind, values, 2) if values is not None else None
    if kind == "syslog":
        framed = parse_syslog_header(line)
        return parse_program_message(*framed) if framed else None
    return None


@lru_cache(maxsize=1024)  # a log names a handful of programs, on every line
def _grammar_for(program: str) -> tuple[str, Callable[[str], dict | None]] | None:
    for wanted, fmt, parser in _PROGRAMS:
        if wanted(program):
            return fmt, _load(parser)
    return None


def parse_program_message(header: dict, message: str) -> tuple[str, dict, int]:
    """A syslog (or journald) message, read by its program's grammar when we have one."""
    found = _grammar_for(header.get("program") or "")
    if found is None:
        return _as_info("syslog", header, message)
    fmt, parse = found
    values = parse(message)
    if values is not None:
        for key, value in header.items():  # (each grammar returns a dict of its own, made for this line)
            if value is not None:
                values[key] = value
        return fmt, values, 2
    return _as_info(fmt, header, message)


def parse_plain_message(
    timestamp: datetime | None, host: str, program: str, pid: int | None, message: str
) -> tuple[str, dict, int]:
    """parse_program_message for the fields of a plain syslog header (syslog.plain_syslog_fields),
    most lines of a log file: the header's fields go straight into the grammar's, with no dict
    of them to make and merge (1.6% of an ingest worker's instructions)."""
    found = _grammar_for(program)
    values = found[1](message) if found is not None else None
    if values is None:
        header = {"timestamp": timestamp, "host": host, "program": program, "pid": pid}
        return _as_info(found[0] if found is not None else "syslog", header, message)
    values["host"] = host  # (a plain header always has both)
    values["program"] = program
    if timestamp is not None:
        values["timestamp"] = timestamp
    if pid is not None:
        values["pid"] = pid
    return found[0], values, 2


def _as_info(fmt: str, header: dict, message: str) -> tuple[str, dict, int]:
    """A message no grammar read: kept as an 'info' event, its header understood (quality 1)."""
    return fmt, {**header, "kind": "info", "text": message}, 1


def _clean(line: str) -> str:
    # Chat and mail quoting: "> Nov 29 ..." and code fences around the paste.
    line = line.rstrip("\r\n")
    if line.startswith("> "):
        line = line[2:]
    return line


def parse_text(text: str) -> ParseResult:
    if _load("looks_like_bounce")(text):
        from bot.parse.bounce import parse_bounce

        return parse_bounce(text)
    return _parse_lines(text.split("\n"))


def parse_lines(lines: list[str], first_line: int = 1, skip_needless: bool = False, tally: bool = True) -> ParseResult:
    """Parse log lines (no bounce detection): what ingest calls on each chunk of a file.
    `skip_needless`: leave out the lines an index never needs (bot/parse/prefilter.py);
    `tally`: count lines per format (for --stats; ingest does without)."""
    return _parse_lines(lines, first_line, _load("needless") if skip_needless else None, tally)


def _parse_lines(lines: list[str], first_line: int = 1, skip=None, tally: bool = True) -> ParseResult:
    result = ParseResult(lines=len(lines))
    # The last logical line: its first line number, text, quality, and where its output went.
    last: dict | None = None
    exchange_fields: list[str] | None = None  # set by an Exchange tracking log's "#Fields:" header
    for number, physical in enumerate(lines, start=first_line):
        if skip is not None and exchange_fields is None and skip(physical):
            last = None  # nothing to re-join a wrapped line onto: it stays unparsed, as it is noise
            continue
        if exchange_fields is None:
            # Most lines of a log file: a plain syslog header, read by one regex (see
            # plain_syslog_fields); the rest of this loop is for pastes and other shapes.
            line = physical.rstrip("\r\n") if physical[-1:] in ("\r", "\n") else physical  # as _clean
            plain = plain_syslog_fields(line)
            if plain is not None:
                fmt, values, quality = parse_plain_message(*plain)
                result.events.append(make_event(number, line, fmt, values))
                last = {
                    "line": number,
                    "text": line,
                    "quality": quality,
                    "slot": ("event", len(result.events) - 1),
                    "span": 1,
                }
                continue
        line = _clean(physical)
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            last = None if not stripped else last
            continue
        if stripped.startswith(_EXCHANGE_HEADER) or (stripped.startswith("#") and exchange_fields is not None):
            if stripped.startswith("#Fields:"):
                exchange_fields = _load("read_fields")(stripped)
            result.events.append(make_event(number, line, "exchange", {"kind": "info", "text": stripped}))
            continue
        if exchange_fields is not None and stripped[:1].isdigit() and "," in stripped:
            rows = _load("parse_exchange_row")(stripped, exchange_fields)
            if rows:
                result.events.extend(make_event(number, line, "exchange", values) for values in rows)
                continue
        inner, journal = _load("unframe")(line)
        if journal is not None:
            fmt, values, quality = parse_program_message(journal, inner)
            result.events.append(make_event(number, line, fmt, values))
            last = None
            continue
        kind = _load("sniff_line")(inner)
        if kind is None and inner is line and last is not None and _try_unwrap(result, last, line):
            continue
        parsed = parse_line(inner, kind)
        if parsed is None:
            result.unparsed.append(Unparsed(number, line))
            last = {
                "line": number,
                "text": line,
                "quality": 0,
                "slot": ("unparsed", len(result.unparsed) - 1),
                "span": 1,
            }
            continue
        fmt, values, quality = parsed
        result.events.append(make_event(number, line, fmt, values))
        last = {"line": number, "text": line, "quality": quality, "slot": ("event", len(result.events) - 1), "span": 1}
        if inner is not line:
            last = None  # a collector's framing holds whole lines: nothing to re-join
    if tally:
        result.tally()
    return result


def _try_unwrap(result: ParseResult, last: dict, line: str) -> bool:
    """Join a line with no recognisable start onto the line before, when that reads better."""
    if last["span"] >= _MAX_WRAPPED:
        return False
    previous = last["text"]
    if last["quality"] == 2 and not (line[:1].isspace() or previous.count("(") > previous.count(")")):
        return False  # the line before was complete: this one is something else
    joined = f"{previous} {line.strip()}"
    parsed = parse_line(joined)
    if parsed is None or parsed[2] < last["quality"] or (parsed[2] == last["quality"] < 2):
        return False
    where, index = last["slot"]
    fmt, values, quality = parsed
    event = make_event(last["line"], joined, fmt, values)
    if where == "event":
        result.events[index] = event
    else:
        result.unparsed.pop(index)
        result.events.append(event)
        last["slot"] = ("event", len(result.events) - 1)
    last.update(text=joined, quality=quality, span=last["span"] + 1)
    return True
