"""The "Checked now" section: what the live checks (bot/checks) found, for each surface."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # every renderer imports this module: bot.checks (a dataclass) only when checks ran
    from bot.checks import CheckResult

ICONS = {"ok": "✓", "problem": "✗", "warning": "!", "could-not-check": "?", "skipped": "–"}
LABELS = {
    "ok": "fine now",
    "problem": "problem",
    "warning": "warning",
    "could-not-check": "could not check",
    "skipped": "not run",
}
_STYLE = {"ok": "green", "problem": "red", "warning": "yellow", "could-not-check": "magenta", "skipped": "dim"}
NAMES = {
    "dns": "DNS",
    "reverse": "reverse DNS",
    "dnsbl": "blocklists",
    "spf": "SPF",
    "dmarc": "DMARC",
    "dkim": "DKIM",
    "tls": "TLS",
}


def checks_to_list(checks: list[CheckResult] | None) -> list[dict]:
    """The JSON fragment: one object per check (see CheckResult.to_dict)."""
    return [c.to_dict() for c in checks or []]


def print_checks(checks: list[CheckResult] | None, say: Callable[[str], None], verbose: bool = False) -> None:
    """Rich-markup lines for bot/render/text.py (say = console.print)."""
    if not checks:
        return
    from rich.markup import escape  # here, not at the top: the JSON report imports this module too

    say("  [bold]Checked now:[/bold]")
    for check in checks:
        style = _STYLE.get(check.status, "")
        say(
            f"   [{style}]{ICONS.get(check.status, '?')} {escape(NAMES.get(check.check, check.check))}"
            f" {escape(check.target)}[/{style}]: {escape(check.summary)}"
        )
        for fact in check.facts if verbose else check.facts[:6]:
            say(f"       [dim]{escape(fact)}[/dim]")
        if not verbose and len(check.facts) > 6:
            say(f"       [dim]... {len(check.facts) - 6} more (use --verbose)[/dim]")


def markdown_checks(checks: list[CheckResult] | None) -> list[str]:
    """Markdown lines for bot/render/markdown.py."""
    if not checks:
        return []
    out = ["", "**Checked now**", ""]
    for check in checks:
        label = (
            ""
            if check.summary.startswith(("Could not", "Not checked"))
            else f" ({LABELS.get(check.status, check.status)})"
        )
        out.append(
            f"- {ICONS.get(check.status, '?')} **{NAMES.get(check.check, check.check)}** "
            f"`{check.target}`{label}: {check.summary}"
        )
        out += [f"  - `{fact.replace('`', chr(39))}`" for fact in check.facts[:8]]
    return out


def check_lines(
    checks: list[CheckResult] | None, text: Callable[[str], str], code: Callable[[str], str], facts: int = 4
) -> list[str]:
    """Lines for a chat surface's markup: TEXT escapes what a check says (a TXT record is someone
    else's text), CODE makes an inline code span; the surface cuts them to its own limits."""
    lines = []
    for check in checks or []:
        label = NAMES.get(check.check, check.check)
        lines.append(f"{ICONS.get(check.status, '?')} *{label}* {code(check.target)}: {text(check.summary)}")
        lines += [f"      {code(fact[:300])}" for fact in check.facts[:facts]]
        if len(check.facts) > facts:
            lines.append(f"      … {len(check.facts) - facts} more")
    return lines


def plain_checks(checks: list[CheckResult] | None) -> list[str]:
    """Plain lines, for chat surfaces without markup."""
    lines = []
    for check in checks or []:
        lines.append(
            f"{ICONS.get(check.status, '?')} {NAMES.get(check.check, check.check)} {check.target}: {check.summary}"
        )
        lines += [f"    {fact}" for fact in check.facts[:6]]
    return lines
