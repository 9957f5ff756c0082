"""Text for a person at a terminal: rich, coloured when it is a terminal, plain when piped."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape

from bot.model import Report
from bot.render.checks import print_checks
from bot.render.common import (
    ICONS,
    MAX_EVIDENCE,
    printable,
    recipient_label,
    remote_label,
    server_label,
    shorten,
    stage_label,
    timeline,
    verdict,
)

_STYLE = {
    "delivered": "green",
    "deferred": "yellow",
    "bounced": "red",
    "rejected": "red",
    "expired": "red",
    "unknown": "magenta",
}


def print_report(report: Report, console: Console, verbose: bool = False) -> None:
    def say(markup: str) -> None:
        # one gate for everything below: log lines, replies, addresses, check results (DNS TXT
        # records are someone else's text too) reach the terminal with their control bytes shown
        console.print(printable(markup))

    if not report.deliveries:
        say("[bold]No delivery attempts were found in this input.[/bold]")
        if not report.unparsed:
            say("It holds no mail log lines or bounce text that whyfailed knows.")
    for delivery in report.deliveries:
        final, diagnosis = delivery.final, delivery.diagnosis
        style = _STYLE[delivery.status]
        say(
            f"[bold {style}]{ICONS[delivery.status]} {escape(recipient_label(delivery))}[/] "
            f"[{style}]— {verdict(delivery)}[/]"
        )
        facts = [
            ("From", delivery.sender),
            ("SMTP step", stage_label(final)),
            ("Reply", shorten(final.text, 400) if final and final.text else None),
            (remote_label(delivery), server_label(final)),
            ("Queue id", delivery.queue_id),
        ]
        for name, value in facts:
            if value:
                say(f"  [bold]{name + ':':<11}[/bold] {escape(value)}")
        if diagnosis:
            say(
                f"  [bold]{'Diagnosis:':<11}[/bold] [bold]{escape(diagnosis.title)}[/bold] "
                f"[dim]({diagnosis.id}, confidence {diagnosis.confidence_label} {diagnosis.confidence:.2f})[/dim]"
            )
            say(f"  {'':<11} {escape(diagnosis.summary)}")
            if diagnosis.explanation and diagnosis.id not in ("unknown", "delivered"):
                say(f"  [bold]{'Codes:':<11}[/bold] {escape(diagnosis.explanation)}")
            for related in diagnosis.related:
                note = escape(shorten(related.note, 160))
                say(f"  [bold]{'Also:':<11}[/bold] {escape(related.title)} [dim]— {note}[/dim]")
        steps = timeline(delivery)
        if steps:
            say("  [bold]Timeline:[/bold]")
            for step in steps:
                say(f"    {escape(step)}")
        print_checks(delivery.checks, say, verbose)
        evidence = delivery.evidence()
        if evidence:
            say("  [bold]Evidence:[/bold]")
            shown = evidence if verbose else evidence[:MAX_EVIDENCE]
            for item in shown:
                say(f"  [dim]{item.line:>5} |[/dim] {escape(shorten(item.text, 240 if not verbose else 4000))}")
            if len(evidence) > len(shown):
                say(f"  [dim]  ... {len(evidence) - len(shown)} more lines (use --verbose)[/dim]")
        if diagnosis and diagnosis.next_steps:
            say("  [bold]Next steps:[/bold]")
            for step in diagnosis.next_steps:
                say(f"   • {escape(step)}")
        if diagnosis:
            say(f"  [dim]Read more: whyfailed kb {diagnosis.id}[/dim]")
        say("")
    if report.unparsed:
        say(f"[bold]Lines not understood ({len(report.unparsed)}):[/bold]")
        limit = len(report.unparsed) if verbose else 20
        for item in report.unparsed[:limit]:
            say(f"  [dim]{item.line:>5} |[/dim] {escape(shorten(item.text, 200))}")
        if len(report.unparsed) > limit:
            say(f"  [dim]  ... {len(report.unparsed) - limit} more (use --verbose)[/dim]")
        say("")
    if report.lines:
        say(
            f"[dim]{report.lines} lines read, {report.parsed} understood; "
            f"formats: {', '.join(report.formats) or 'none'}.[/dim]"
        )
    for note in report.notes:
        say(f"[yellow]Note:[/yellow] {escape(note)}")


def render_text(report: Report, width: int = 100) -> str:
    """Plain text, no colour: for tests, files and chat surfaces without markup."""
    buffer = io.StringIO()
    print_report(report, Console(file=buffer, width=width, no_color=True, highlight=False, soft_wrap=True))
    return buffer.getvalue()
