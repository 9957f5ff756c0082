"""Discord embeds: a Reply from the conversation core, within Discord's limits.

Discord refuses a whole message that breaks one limit (title 256, description 4096, 25 fields
of 256/1024, footer 2048, 6000 characters across a message's embeds, 10 embeds), so every
piece is cut to its own budget here, recipients are packed into as few messages as fit, and
what still does not fit is handed back as the full Markdown report for a file attachment.

Everything echoed from a log is escaped: Markdown so a `*` or `_` in a log line shows as
itself, and mentions so `@everyone`, `<@id>` and `<@&role>` ping nobody even if a message
were ever sent without `AllowedMentions.none()`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import discord

from bot.conversation import Reply
from bot.knowledge import Article
from bot.model import Delivery, Report
from bot.render import common
from bot.render.checks import check_lines
from bot.render.common import ICONS, recipient_label, server_label, shorten, stage_label, timeline, verdict
from bot.render.markdown import render_markdown

MAX_TITLE, MAX_DESCRIPTION, MAX_FIELDS = 256, 4096, 25
MAX_FIELD_NAME, MAX_FIELD_VALUE, MAX_FOOTER = 256, 1024, 2048
MAX_TOTAL, MAX_EMBEDS, MAX_CONTENT = 6000, 10, 2000
# Discord counts the 6000 across embeds its own way; a margin keeps us clear of any off-by-some
TOTAL_BUDGET = 5800
EMBED_BUDGET = TOTAL_BUDGET - 600  # one recipient's embed, with room for the footer (<= 500)
MAX_MESSAGES = 5  # more than this many messages is a flood: the rest goes in the attached file
REPORT_FILE = "whyfailed-report.md"
CUT = "… (cut: the full report is attached)"

COLOURS = {
    "delivered": discord.Colour.green(),
    "deferred": discord.Colour.gold(),
    "bounced": discord.Colour.red(),
    "rejected": discord.Colour.red(),
    "expired": discord.Colour.dark_red(),
    "unknown": discord.Colour.light_grey(),
}

_PING = re.compile(r"@(?=everyone\b|here\b|[!&]?\d)")


@dataclass
class DiscordMessage:
    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)


@dataclass
class DiscordReply:
    messages: list[DiscordMessage]
    truncated: bool = False
    full_report: str | None = None  # Markdown of everything, for a file when `truncated`
    diagnoses: list[str] = field(default_factory=list)  # ids the feedback buttons refer to
    thread_name: str = "whyfailed"

    @property
    def long(self) -> bool:
        """Too much for one message in a busy channel: it belongs in a thread."""
        return len(self.messages) > 1 or self.truncated


# --- escaping and cutting ------------------------------------------------------------------


def unping(text: str) -> str:
    """A zero-width space after `@` breaks every mention form but leaves the text readable."""
    return _PING.sub("@\u200b", text)


def safe(text: str | None) -> str:
    """Text from a log or a person, shown as itself: Markdown escaped, mentions broken."""
    return unping(discord.utils.escape_markdown(text or ""))


def clip(text: str, limit: int, note: str = "…") -> tuple[str, bool]:
    """Cut to `limit` characters at a line end where there is one, never inside a code block,
    and never leaving half of a backslash escape behind."""
    if len(text) <= limit:
        return text, False
    room = limit - len(note) - 5
    cut = text[:room]
    if "\n" in cut[room // 2 :]:
        cut = cut.rsplit("\n", 1)[0]
    cut = cut.rstrip("\\")
    if cut.count("```") % 2:
        cut += "\n```"
    return f"{cut}\n{note}" if "\n" in cut else f"{cut}{note}", True


def code(text: str) -> str:
    # an inline code span: Markdown does not apply inside, so only backticks and mentions need care
    return "`" + unping(text.replace("`", "'")) + "`"


def fence(lines: list[str]) -> str:
    return "```\n" + "\n".join(unping(line.replace("```", "'''")) for line in lines) + "\n```"


# --- one recipient -------------------------------------------------------------------------


def _facts(delivery: Delivery) -> list[tuple[str, str, int]]:
    """(name, value, budget) for the short fields; the budgets add up to well under 6000."""
    final, diagnosis = delivery.final, delivery.diagnosis
    facts = [
        ("From", safe(delivery.sender), 300),
        ("Failing step" if delivery.status != "delivered" else "Last step", safe(stage_label(final)), 200),
        ("Queue id", safe(delivery.queue_id), 100),
        ("Reply", code(shorten(final.text, 600)) if final and final.text else "", 700),
        (common.remote_label(delivery), safe(server_label(final)), 300),
    ]
    if diagnosis:
        label = f"{diagnosis.confidence_label} ({diagnosis.confidence:.2f})"
        facts.append(("Diagnosis", f"{unping(diagnosis.title)}\n`{diagnosis.id}`, confidence {label}", 400))
        related = [f"• {unping(r.title)} ({safe(shorten(r.note, 200))})" for r in diagnosis.related]
        facts.append(("Before that", "\n".join(related), 600))
    return [(name, value, budget) for name, value, budget in facts if value]


def _article_ref(article: str, article_url: str) -> str:
    article_id = unping(article.rsplit("/", 1)[-1].removesuffix(".md").replace("`", "'"))[:100]
    if not article_id:
        return ""
    ref = f"`/whyfailed kb {article_id}`"
    if article_url:
        return f"[{article_id}]({article_url.rstrip('/')}/{article_id}.md) · {ref}"
    return ref


def render_delivery(delivery: Delivery, article_url: str = "") -> tuple[discord.Embed, bool]:
    """One embed: verdict as the title, the diagnosis as the description, the facts as fields.
    What came from the log (addresses, replies, the summary that quotes them) is escaped; what
    came from our knowledge base (titles, code meanings, next steps) is Markdown we wrote."""
    diagnosis, cut = delivery.diagnosis, False
    title, was_cut = clip(safe(f"{ICONS[delivery.status]} {recipient_label(delivery)}: {verdict(delivery)}"), MAX_TITLE)
    cut |= was_cut
    description = ""
    if diagnosis:
        description = safe(diagnosis.summary)
        if diagnosis.explanation and diagnosis.id not in ("unknown", "delivered"):
            description += f"\n\n*Codes:* {unping(diagnosis.explanation)}"
    description, was_cut = clip(description, 1200)
    cut |= was_cut
    embed = discord.Embed(title=title, description=description or None, colour=COLOURS[delivery.status])
    for name, value, budget in _facts(delivery):
        value, was_cut = clip(value, min(budget, MAX_FIELD_VALUE))
        cut |= was_cut
        embed.add_field(name=name, value=value, inline=name in ("From", "Queue id", "Failing step", "Last step"))
    if steps := timeline(delivery):
        value, was_cut = clip(fence(steps), 800)
        embed.add_field(name="Timeline", value=value, inline=False)
        cut |= was_cut
    if delivery.checks:  # what a live check found now: DNS answers are someone else's text, escaped
        value, was_cut = clip("\n".join(check_lines(delivery.checks, safe, code, facts=3)), MAX_FIELD_VALUE)
        embed.add_field(name="Checked now", value=value, inline=False)
        cut |= was_cut
    if diagnosis and diagnosis.next_steps:
        # the knowledge base's own Markdown (`virtual_mailbox_maps`), shown as written
        value, was_cut = clip("\n".join(f"• {unping(s)}" for s in diagnosis.next_steps), MAX_FIELD_VALUE)
        embed.add_field(name="Next steps", value=value, inline=False)
        cut |= was_cut
    if diagnosis and (ref := _article_ref(diagnosis.article or diagnosis.id, article_url)):
        embed.add_field(name="Article", value=ref, inline=False)
    return embed, _shrink(embed, EMBED_BUDGET) or cut


def _shrink(embed: discord.Embed, budget: int) -> bool:
    """Each piece has its own budget, but all of them at once can still pass what one message
    holds: cut the longest field until the embed fits (leaving room for the report's footer)."""
    cut = False
    while len(embed) > budget and embed.fields:
        index, longest = max(enumerate(embed.fields), key=lambda pair: len(pair[1].value))
        excess = len(embed) - budget
        value, _ = clip(longest.value, max(40, len(longest.value) - excess - 10))
        embed.set_field_at(index, name=longest.name, value=value, inline=longest.inline)
        cut = True
        if len(value) <= 60:
            break
    return cut


# --- a report ------------------------------------------------------------------------------


def _summary(report: Report) -> str:
    counts = Counter(d.status for d in report.deliveries)
    parts = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    if len(report.deliveries) == 1:
        return f"1 recipient: {report.deliveries[0].status}"
    return f"{len(report.deliveries)} recipients: {parts}" if report.deliveries else "No delivery attempts found"


def _footer(report: Report) -> str:
    text = f"{report.lines} lines read, {report.parsed} understood; formats: {', '.join(report.formats) or 'none'}."
    if report.unparsed:
        text += f" {len(report.unparsed)} lines not understood (in the full report)."
    for note in report.notes:
        text += f" Note: {note}"
    return clip(unping(text), 500)[0]


def pack(embeds: list[discord.Embed]) -> list[list[discord.Embed]]:
    """Embeds into messages: at most 10 per message and TOTAL_BUDGET characters across them."""
    pages: list[list[discord.Embed]] = [[]]
    for embed in embeds:
        page = pages[-1]
        if page and (len(page) >= MAX_EMBEDS or sum(map(len, page)) + len(embed) > TOTAL_BUDGET):
            pages.append([])
        pages[-1].append(embed)
    return [p for p in pages if p]


def render_report(report: Report, article_url: str = "") -> DiscordReply:
    embeds, truncated = [], False
    for delivery in report.deliveries:
        embed, cut = render_delivery(delivery, article_url)
        embeds.append(embed)
        truncated |= cut
    if not embeds:
        embeds.append(discord.Embed(description="No delivery attempts were found in this input."))
    embeds[-1].set_footer(text=_footer(report))
    pages = pack(embeds)
    if len(pages) > MAX_MESSAGES:
        left = sum(len(p) for p in pages[MAX_MESSAGES:])
        pages = pages[:MAX_MESSAGES]
        last = pages[-1]
        note = f"{left} more recipients are in the attached report. " + _footer(report)
        if len(last) >= MAX_EMBEDS or sum(map(len, last)) + len(note) > TOTAL_BUDGET:
            last.pop()
            note = f"{left + 1} more recipients are in the attached report. " + _footer(report)
        last.append(discord.Embed(description=clip(note, MAX_DESCRIPTION)[0]))
        truncated = True
    summary = unping(_summary(report))
    messages = [DiscordMessage(content=summary if i == 0 else "", embeds=page) for i, page in enumerate(pages)]
    failing = [d.diagnosis.id for d in report.deliveries if d.diagnosis and d.status != "delivered"]
    diagnoses = list(dict.fromkeys(failing or [d.diagnosis.id for d in report.deliveries if d.diagnosis]))
    return DiscordReply(
        messages,
        truncated=truncated,
        full_report=unping(render_markdown(report)),
        diagnoses=diagnoses,
        thread_name=clip(f"whyfailed: {_summary(report)}", 100)[0],
    )


# --- articles, help, notices ---------------------------------------------------------------

HELP = """\
Paste a mail log or a bounce message in a help channel (plain text, a code block, or a \
`.log`/`.txt`/`.eml` file), or mention me with one anywhere: I answer with what happened to \
each recipient, at which SMTP step, how sure I am, and what to do next.

**Commands**
`/whyfailed address user@example.org [since:2d] [check:True]` the latest deliveries to or from an address \
(`@example.org` for a domain's failures); only you see the answer. `check:True` also checks now what the \
diagnosis blames (DNS, reverse DNS, blocklists, SPF/DKIM/DMARC)
`/whyfailed kb QUERY` search the knowledge base (a code like `5.7.1` works)
`/whyfailed help` this text
Right-click a message > **Apps** > **Diagnose delivery problem** diagnoses any message for you alone.
**Check now** under an answer runs those live checks on it, for you alone."""


def render_article(article: Article, others: list[Article] = ()) -> DiscordReply:
    # our own articles: trusted Markdown, shown as written; only mentions are broken, to be safe
    body, cut = clip(unping(article.body), MAX_DESCRIPTION - 200, "… (cut: the rest is in the knowledge base)")
    embed = discord.Embed(title=clip(article.title, MAX_TITLE)[0], description=body, colour=discord.Colour.blurple())
    if others:
        also = ", ".join(f"`{a.id}`" for a in others)
        embed.add_field(name="Also matching", value=clip(also, MAX_FIELD_VALUE)[0], inline=False)
    embed.set_footer(text=f"/whyfailed kb {article.id} · whyfailed kb {article.id} in a terminal"[:MAX_FOOTER])
    return DiscordReply([DiscordMessage(embeds=[embed])], truncated=cut)


def render_notice(text: str) -> DiscordReply:
    return DiscordReply([DiscordMessage(content=clip(safe(text), MAX_CONTENT)[0])])


def render_reply(reply: Reply, article_url: str = "") -> DiscordReply:
    if reply.kind == "report" and reply.report is not None:
        return render_report(reply.report, article_url)
    if reply.kind == "articles" and reply.articles:
        return render_article(reply.articles[0], reply.articles[1:])
    if reply.kind == "help":
        embed = discord.Embed(title="whyfailed: why an email was not delivered", description=HELP)
        return DiscordReply([DiscordMessage(embeds=[embed])])
    return render_notice(reply.text)
