"""Text in, Events out: the front of the pipeline.

`parse_text` sniffs each line, parses it with its format's grammar, re-joins lines that a
chat client or mail program wrapped, and returns every line it could not read as
`Unparsed` so that nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from bot.model import Event, Unparsed
from bot.parse.detect import looks_like_bounce, sniff_line
from bot.parse.exim import parse_exim_line
from bot.parse.postfix import parse_postfix_message
from bot.parse.sendmail import parse_sendmail_message
from bot.parse.session import parse_session_line
from bot.parse.syslog import parse_syslog_header
from bot.parse.transcript import parse_transcript_line

_EVENT_FIELDS = frozenset(f.name for f in fields(Event))
# Events that speak of a delivery; the rest (connects, daemon notices) are context.
RELEVANT_KINDS = frozenset({"status", "reject", "expired", "reply", "command", "connect-error", "lost", "system"})
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
            stats.setdefault(sniff_line(item.text) or "unknown", Counter())["unparsed"] += 1
        self.format_stats = stats


def make_event(line: int, raw: str, fmt: str, values: dict) -> Event:
    return Event(line=line, raw=raw, format=fmt, **{k: v for k, v in values.items() if k in _EVENT_FIELDS})


def parse_line(line: str, kind: str | None = "sniff") -> tuple[str, dict, int] | None:
    """(format, event fields, quality) for one logical line; quality 2 = fully understood,
    1 = framing understood but not the message (kept as an 'info' event)."""
    if kind == "sniff":
        kind = sniff_line(line)
    if kind == "session":
        values = parse_session_line(line)
        return ("session", values, 2) if values else None
    if kind == "transcript":
        values = parse_transcript_line(line)
        return ("transcript", values, 2) if values else None
    if kind == "exim":
        values = parse_exim_line(line)
        return ("exim", values, 2) if values else _parse_syslog_line(line)
    if kind == "syslog":
        return _parse_syslog_line(line)
    return None


def _parse_syslog_line(line: str) -> tuple[str, dict, int] | None:
    framed = parse_syslog_header(line)
    if framed is None:
        return None
    header, message = framed
    program = header.get("program") or ""
    if "postfix" in program:
        values = parse_postfix_message(message)
        if values is not None:
            return "postfix", {**header, **values}, 2
        return "postfix", {**header, "kind": "info", "text": message}, 1
    if program in ("sendmail", "sm-mta", "sm-msp-queue") or program.startswith("sm-"):
        values = parse_sendmail_message(message)
        if values is not None:
            return "sendmail", {**header, **values}, 2
        return "sendmail", {**header, "kind": "info", "text": message}, 1
    if program.startswith("exim"):
        values = parse_exim_line(message)
        if values is not None:
            return "exim", {**values, **header}, 2
        return "exim", {**header, "kind": "info", "text": message}, 1
    return "syslog", {**header, "kind": "info", "text": message}, 1


def _clean(line: str) -> str:
    # Chat and mail quoting: "> Nov 29 ..." and code fences around the paste.
    line = line.rstrip("\r\n")
    if line.startswith("> "):
        line = line[2:]
    return line


def parse_text(text: str) -> ParseResult:
    if looks_like_bounce(text):
        from bot.parse.bounce import parse_bounce

        return parse_bounce(text)
    return _parse_lines(text.split("\n"))


def _parse_lines(lines: list[str]) -> ParseResult:
    result = ParseResult(lines=len(lines))
    # The last logical line: its first line number, text, quality, and where its output went.
    last: dict | None = None
    for number, physical in enumerate(lines, start=1):
        line = _clean(physical)
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            last = None if not stripped else last
            continue
        kind = sniff_line(line)
        if kind is None and last is not None and _try_unwrap(result, last, line):
            continue
        parsed = parse_line(line, kind)
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
