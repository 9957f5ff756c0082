"""Text in, Report out: the whole engine behind every surface."""

from __future__ import annotations

from bot.correlate import correlate_events
from bot.model import Report
from bot.parse import parse_text
from bot.rules import diagnose_deliveries


def diagnose_text(text: str, input_name: str = "-", notes: list[str] | None = None) -> Report:
    parsed = parse_text(text)
    deliveries = diagnose_deliveries(correlate_events(parsed.events))
    return Report(
        input=input_name,
        formats=parsed.formats,
        lines=parsed.lines,
        parsed=sum(stats["parsed"] for stats in parsed.format_stats.values()),
        deliveries=deliveries,
        unparsed=parsed.unparsed,
        notes=list(notes or []),
        format_stats={name: dict(stats) for name, stats in parsed.format_stats.items()},
    )
