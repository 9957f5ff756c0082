"""Markdown: for tickets, wikis and chat surfaces that speak it."""

from __future__ import annotations

from bot.model import Report
from bot.render.checks import markdown_checks
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


def _code(text: str) -> str:
    # Log lines go in code spans; a backtick inside would end the span early.
    return "`" + text.replace("`", "'") + "`"


def render_markdown(report: Report) -> str:
    out = [f"# Why it failed: {report.input}", ""]
    if not report.deliveries:
        out += ["No delivery attempts were found in this input.", ""]
    for delivery in report.deliveries:
        final, diagnosis = delivery.final, delivery.diagnosis
        out.append(f"## {ICONS[delivery.status]} {recipient_label(delivery)}: {verdict(delivery)}")
        out.append("")
        facts = [
            ("From", delivery.sender),
            ("SMTP step", stage_label(final)),
            ("Reply", _code(shorten(final.text, 300)) if final and final.text else None),
            (remote_label(delivery), server_label(final)),
            ("Queue id", delivery.queue_id),
        ]
        out += [f"- **{name}:** {value}" for name, value in facts if value]
        if diagnosis:
            out.append(
                f"- **Diagnosis:** {diagnosis.title} (`{diagnosis.id}`, confidence "
                f"{diagnosis.confidence_label} {diagnosis.confidence:.2f})"
            )
            out += ["", diagnosis.summary]
            if diagnosis.explanation and diagnosis.id not in ("unknown", "delivered"):
                out += ["", f"*Codes:* {diagnosis.explanation}"]
            for related in diagnosis.related:
                out.append(f"- *Also:* {related.title} ({related.note})")
        if steps := timeline(delivery):
            out += ["", "**Timeline**", ""] + [f"1. {_code(s)}" for s in steps]
        out += markdown_checks(delivery.checks)
        evidence = delivery.evidence()
        if evidence:
            out += ["", "**Evidence**", "", "```"]
            out += [f"{e.line:>5} | {e.text}".replace("```", "'''") for e in evidence[:MAX_EVIDENCE]]
            if len(evidence) > MAX_EVIDENCE:
                out.append(f"  ... {len(evidence) - MAX_EVIDENCE} more lines")
            out.append("```")
        if diagnosis and diagnosis.next_steps:
            out += ["", "**Next steps**", ""] + [f"- [ ] {s}" for s in diagnosis.next_steps]
        out.append("")
    if report.unparsed:
        out += [f"## Lines not understood ({len(report.unparsed)})", "", "```"]
        out += [f"{u.line:>5} | {u.text}".replace("```", "'''") for u in report.unparsed[:50]]
        out += ["```", ""]
    out += [f"*{report.lines} lines read, {report.parsed} understood; formats: {', '.join(report.formats) or 'none'}.*"]
    out += [f"*Note: {n}*" for n in report.notes]
    # printed to terminals by `diagnose --format markdown` too: no control bytes from the log
    return printable("\n".join(out) + "\n")
