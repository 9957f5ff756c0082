"""Slack Block Kit: a Reply from the conversation core as blocks, within Slack's limits.

Everything that came from a log is escaped (`&`, `<`, `>`), so a pasted `<!channel>` or
`<@U123>` pings nobody, and every mrkdwn text is `verbatim`, so Slack does not turn a bare
`@channel` or `@here` (which escaping cannot touch) into a ping either. Slack rejects a whole
message that breaks a limit (50 blocks, 3000 characters per section, 150 per header), so we cut
with a note instead and hand back the full report for the adapter to attach as a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.checks import checkable
from bot.conversation import Reply
from bot.knowledge import Article
from bot.model import STAGE_LABELS, Delivery, Report
from bot.render import common
from bot.render.checks import check_lines
from bot.render.common import ICONS, recipient_label, server_label, shorten, stage_label, timeline, verdict
from bot.render.markdown import render_markdown

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_BUTTON_VALUE = 2000
MAX_FALLBACK = 3000  # the notification text; Slack allows more, but nobody reads a longer toast
CUT_NOTE = "_… cut here: too long for one message._"
# where the whole of a cut report is, said in the report's own notes: only the adapter knows
FULL_ATTACHED = "The full report is attached as a file."
FULL_IN_DM = "The full report is a file in your direct messages with me."
FULL_WITH_REQUESTER = "The full report is a file in the direct messages of the person who shared this."
LADDER_WIDTH = 58

ACTION_EVIDENCE = "show_evidence"
ACTION_HELPFUL = "feedback_helpful"
ACTION_NOT_HELPFUL = "feedback_not_helpful"
ACTION_ARTICLE = "show_article"
ACTION_SHARE = "share_in_channel"
ACTION_CHECK = "check_now"


@dataclass
class SlackMessage:
    text: str  # the notification fallback, escaped like the blocks
    blocks: list[dict] = field(default_factory=list)
    truncated: bool = False
    full_report: str | None = None  # markdown of everything, for a file when `truncated`


def escape(text: str | None) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    # an inline code span; a backtick inside would end it early
    return "`" + escape(text).replace("`", "'") + "`"


def _fence(lines: list[str]) -> str:
    return "```\n" + "\n".join(escape(line).replace("```", "'''") for line in lines) + "\n```"


def _fit(text: str, limit: int = MAX_SECTION, note: str = CUT_NOTE) -> tuple[str, bool]:
    """Cut at a line end so a code block or list item is not split mid-way; reopen a cut fence."""
    if len(text) <= limit:
        return text, False
    room = limit - len(note) - 6
    cut = text[:room].rsplit("\n", 1)[0] if "\n" in text[:room] else text[:room]
    if cut.count("```") % 2:
        cut += "\n```"
    return cut + "\n" + note, True


def mrkdwn(text: str) -> dict:
    """A mrkdwn text object Slack shows as written: no auto-parsing of @here, @channel, #names or
    bare URLs (https://api.slack.com/reference/block-kit/composition-objects#text); our own
    explicit <url|label> and <@U...> still work."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str, note: str = CUT_NOTE) -> tuple[dict, bool]:
    body, cut = _fit(text, note=note)
    return {"type": "section", "text": mrkdwn(body)}, cut


def context_block(text: str) -> dict:
    return {"type": "context", "elements": [mrkdwn(_fit(text)[0])]}


def _button(label: str, action_id: str, value: str, style: str | None = None) -> dict:
    button = {"type": "button", "text": {"type": "plain_text", "text": label[:75]}, "action_id": action_id}
    button["value"] = value[:MAX_BUTTON_VALUE]
    if style:
        button["style"] = style
    return button


def _header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": shorten(text, MAX_HEADER)}}


# --- a report -------------------------------------------------------------------------------


def _delivery_text(delivery: Delivery) -> str:
    final, diagnosis = delivery.final, delivery.diagnosis
    out = [f"*{ICONS[delivery.status]} {escape(recipient_label(delivery))}* — {verdict(delivery)}"]
    facts = [
        ("From", escape(delivery.sender) if delivery.sender else None),
        ("SMTP step", stage_label(final)),
        ("Reply", _code(shorten(final.text, 400)) if final and final.text else None),
        (common.remote_label(delivery), escape(server_label(final)) if server_label(final) else None),
    ]
    out += [f"*{name}:* {value}" for name, value in facts if value]
    if diagnosis:
        out.append(
            f"*Diagnosis:* {escape(diagnosis.title)} (`{escape(diagnosis.id)}`, confidence "
            f"{diagnosis.confidence_label} {diagnosis.confidence:.2f})"
        )
        out.append(escape(diagnosis.summary))
        out += [f"_Also:_ {escape(r.title)} ({escape(shorten(r.note, 200))})" for r in diagnosis.related]
    if steps := timeline(delivery):
        out.append("*Timeline:*")
        out += [f"• {_code(s)}" for s in steps[:10]]
        if len(steps) > 10:
            out.append(f"• … {len(steps) - 10} more attempts")
    if diagnosis and diagnosis.next_steps:
        out.append("*Next steps:*")
        out += [f"• {escape(s)}" for s in diagnosis.next_steps]
    return "\n".join(out)


def _checks_text(delivery: Delivery) -> str:
    """The "Checked now" section: its own block, so a long report's section keeps its 3000."""
    return "\n".join(["*Checked now:*", *check_lines(delivery.checks, escape, _code)])


def _delivery_actions(delivery: Delivery, token: str, index: int) -> dict:
    ref = f"{token}:{index}"
    elements = [_button("Show evidence", ACTION_EVIDENCE, ref)]
    if checkable(delivery):
        elements.append(_button("Check now", ACTION_CHECK, ref))
    if delivery.diagnosis:
        diagnosis_id = delivery.diagnosis.id
        elements += [
            _button("Read the article", ACTION_ARTICLE, diagnosis_id),
            _button("Helpful", ACTION_HELPFUL, f"{diagnosis_id}|{ref}"),
            _button("Not helpful", ACTION_NOT_HELPFUL, f"{diagnosis_id}|{ref}"),
        ]
    return {"type": "actions", "block_id": f"delivery-{index}", "elements": elements}


def _footer(report: Report) -> str:
    parts = []
    if report.lines:
        parts.append(f"{report.lines} lines read, {report.parsed} understood")
    if report.formats:
        parts.append("formats: " + ", ".join(report.formats))
    if report.unparsed:
        parts.append(f"{len(report.unparsed)} lines not understood (listed in the full report)")
    parts += [escape(note) for note in report.notes]
    return "; ".join(parts) or escape(report.input)


def render_report(report: Report, token: str, share: bool = False, whole: str = FULL_ATTACHED) -> SlackMessage:
    """One section per recipient, then its buttons; button values are `token:index`, which the
    adapter resolves to the delivery it remembered under `token`. WHOLE says where the full
    report is when this one is cut (the adapter decides: attached, in a DM...)."""
    count = len(report.deliveries)
    failed = sum(d.status != "delivered" for d in report.deliveries)
    title = f"Why it failed: {count} recipient{'s' * (count != 1)}, {failed} not delivered"
    blocks: list[dict] = [_header(title)]
    reserve = 3  # footer, share button, cut note
    per = 3 if any(d.checks for d in report.deliveries) else 2  # section, (checks,) buttons
    room = (MAX_BLOCKS - len(blocks) - reserve) // per
    truncated = count > room
    for index, delivery in enumerate(report.deliveries[:room]):
        section, cut = _section(_delivery_text(delivery), f"_… cut here. {whole}_")
        truncated |= cut
        blocks.append(section)
        if delivery.checks:
            checked, cut = _section(_checks_text(delivery), f"_… cut here. {whole}_")
            truncated |= cut
            blocks.append(checked)
        blocks.append(_delivery_actions(delivery, token, index))
    if not count:  # mail log lines, but none tells a delivery's story (connects, queue lines...)
        blocks.append(_section("No delivery attempts were found in this input: no recipient and no outcome.")[0])
    blocks.append(context_block(_footer(report)))
    if share:
        blocks.append(
            {"type": "actions", "block_id": "share", "elements": [_button("Share in channel", ACTION_SHARE, token)]}
        )
    if count > room:
        blocks.append(context_block(f"Showing {room} of {count} recipients. {whole}"))
    summary = "; ".join(
        f"{recipient_label(d)}: {d.status}" + (f" ({d.diagnosis.id})" if d.diagnosis else "") for d in report.deliveries
    )
    return SlackMessage(
        text=_fit(escape(summary) or title, MAX_FALLBACK)[0],
        blocks=blocks,
        truncated=truncated,
        full_report=render_markdown(report) if truncated else None,
    )


# --- articles, help, notices ----------------------------------------------------------------

_LINK = re.compile(r"\[([^\]\n]{1,200})\]\((https?://[^)\s]{1,500})\)")
_BOLD = re.compile(r"\*\*([^*\n]{1,200})\*\*")


def _mrkdwn(markdown: str) -> str:
    """Our own articles' Markdown as Slack mrkdwn: headings and bold as *bold*, links as <url|text>."""
    out = []
    for line in escape(markdown).splitlines():
        if line.startswith("#"):
            line = "*" + line.lstrip("#").strip() + "*"
        elif line.lstrip().startswith(("- [ ] ", "- [x] ")):
            line = "• " + line.lstrip()[6:]
        elif line.lstrip().startswith("- "):
            line = "• " + line.lstrip()[2:]
        line = _BOLD.sub(r"*\1*", line)
        out.append(_LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", line))
    return "\n".join(out)


def render_article(article: Article, others: list[Article] = ()) -> SlackMessage:
    blocks = [_header(article.title)]
    truncated = False
    paragraphs = _mrkdwn(article.body).split("\n\n")
    chunk = ""
    for paragraph in paragraphs:  # whole paragraphs per section, so no list is split mid-item
        if chunk and len(chunk) + len(paragraph) + 2 > MAX_SECTION - 100:
            section, cut = _section(chunk)
            blocks.append(section)
            truncated |= cut
            chunk = ""
        chunk = f"{chunk}\n\n{paragraph}" if chunk else paragraph
        if len(blocks) >= 20:
            break
    if chunk:
        blocks.append(_section(chunk)[0])
    note = f"`whyfailed kb {escape(article.id)}` shows this article in a terminal."
    if others:
        note = "Also: " + ", ".join(f"`{escape(a.id)}`" for a in others) + ". " + note
    blocks.append(context_block(note))
    return SlackMessage(text=escape(article.title), blocks=blocks, truncated=truncated)


def render_notice(text: str) -> SlackMessage:
    return SlackMessage(text=_fit(escape(text), MAX_FALLBACK)[0], blocks=[_section(escape(text))[0]])


def render_help(text: str) -> SlackMessage:
    lines = text.splitlines()
    intro = [line for line in lines if not line.startswith("  ")]
    commands = [line.strip() for line in lines if line.startswith("  ")]
    body = escape("\n".join(intro)) + "\n" + _fence(commands)
    return SlackMessage(text="How to use whyfailed", blocks=[_section(body)[0]])


def render_reply(reply: Reply, token: str, whole: str = FULL_ATTACHED) -> SlackMessage:
    if reply.kind == "report" and reply.report is not None:
        return render_report(reply.report, token, share=reply.ephemeral, whole=whole)
    if reply.kind == "articles" and reply.articles:
        return render_article(reply.articles[0], reply.articles[1:])
    if reply.kind == "help":
        return render_help(reply.text)
    return render_notice(reply.text)


# --- evidence and the SMTP ladder -----------------------------------------------------------

_SMTP_STEPS = ("connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "end-of-data")
_STEP_COMMAND = {
    "connect": "(connect)",
    "ehlo": "EHLO",
    "starttls": "STARTTLS",
    "auth": "AUTH",
    "mail": "MAIL FROM:<{sender}>",
    "rcpt": "RCPT TO:<{recipient}>",
    "data": "DATA",
    "end-of-data": "(message) .",
}
_STEP_REPLY = {"connect": "220", "starttls": "220", "auth": "235", "data": "354"}


def _arrow(to_server: bool, label: str, mark: str = "") -> str:
    label = shorten(label, LADDER_WIDTH - 8)
    if to_server:
        line = ("|-- " + label + " ").ljust(LADDER_WIDTH - 1, "-") + ">|"
    else:
        line = "|<" + ("-- " + label + " ").ljust(LADDER_WIDTH - 2, "-") + "|"
    return line + (f"  ✗ {mark}" if mark else "")


def _session_rows(delivery: Delivery) -> list[tuple[bool, str]]:
    """The client and server lines of the evidence, read with the core's own parsers (the
    evidence is raw log text; the parsers already know every format's arrows)."""
    from bot.parse import parse_lines

    rows = []
    for event in parse_lines([e.text for e in delivery.evidence()]).events:
        if event.role == "client" and event.command:
            rows.append((True, f"{event.command} {event.argument or ''}".strip()))
        elif event.role == "server" and (event.reply_code or event.text):
            rows.append((False, event.text or str(event.reply_code)))
    return rows


def _implied_rows(delivery: Delivery) -> list[tuple[bool, str]]:
    """No command lines in the log (Postfix, Exim...): the steps up to the one that failed,
    with the replies the protocol implies in parentheses and the real reply at the end."""
    final = delivery.final
    stage = final.stage if final else None
    last = stage if stage in _SMTP_STEPS else ("end-of-data" if delivery.status == "delivered" else None)
    if last is None:
        return []
    rows = []
    for step in _SMTP_STEPS[: _SMTP_STEPS.index(last) + 1]:
        if step in ("starttls", "auth") and step != last:
            continue  # not every session has them; show them only when they failed
        command = _STEP_COMMAND[step].format(sender=delivery.sender or "", recipient=delivery.recipient or "")
        rows.append((True, command))
        if step == last:
            reply = final.text or (str(final.reply_code) if final.reply_code else "(no reply)")
            rows.append((False, reply))
        else:
            rows.append((False, f"({_STEP_REPLY.get(step, '250')})"))
    return rows


def render_ladder(delivery: Delivery) -> str:
    """Client and server columns, each command and reply, the failing step marked with ✗."""
    final = delivery.final
    ours, theirs = delivery.host or "us", server_label(final) or "remote server"
    client, server = (theirs, ours) if delivery.direction == "in" else (ours, theirs)
    rows = _session_rows(delivery) or _implied_rows(delivery)
    head = f"client: {shorten(client, 40)}".ljust(LADDER_WIDTH - 20) + f"server: {shorten(server, 40)}"
    out = [head, "|".ljust(LADDER_WIDTH) + "|"]
    if not rows:
        where = STAGE_LABELS.get(final.stage, final.stage) if final and final.stage else "an unknown step"
        said = f": {shorten(final.text, LADDER_WIDTH)}" if final and final.text else ""
        return "\n".join(out + [f"(no SMTP session in the log: it ended at {where}){said}"])
    if not rows[0][1].startswith(("(connect)", "EHLO", "HELO", "220")):
        out.append("⋮  (earlier steps are not part of this recipient's evidence)")
    failing = None
    if delivery.status != "delivered":
        code = str(final.reply_code) if final and final.reply_code else None
        replies = [i for i, (to_server, label) in enumerate(rows) if not to_server]
        matching = [i for i in replies if code and rows[i][1].startswith(code)]
        failing = (matching or replies or [len(rows) - 1])[-1]
    step = stage_label(final) or "here"
    for index, (to_server, label) in enumerate(rows):
        out.append(_arrow(to_server, label, f"failed at {step}" if index == failing else ""))
    return "\n".join(out)


def _fenced_sections(lines: list[str], title: str, most: int) -> tuple[list[dict], bool]:
    """Log lines in code blocks, as many sections as they need (each within 3000 characters once
    escaped), at most MOST of them; a line longer than a section could hold is cut."""
    sections, chunk, cut = [], [], False
    budget = MAX_SECTION - len(title) - 40
    for line in lines:
        line = shorten(line, 1200)
        if chunk and len(_fence(chunk + [line])) > budget:
            if len(sections) + 1 == most:
                cut = True
                break
            sections.append(chunk)
            chunk = []
        chunk.append(line)
    if chunk:
        sections.append(chunk)
    blocks = [_section((title + "\n" if i == 0 else "") + _fence(part))[0] for i, part in enumerate(sections)]
    return blocks, cut


def render_evidence(delivery: Delivery, most_sections: int = 8) -> SlackMessage:
    """The delivery's log lines in full, then the SMTP ladder: an ephemeral answer to one click."""
    evidence = delivery.evidence()
    title = f"*Evidence for {escape(recipient_label(delivery))}*"
    lines = [f"{e.line:>5} | {e.text}" for e in evidence]
    blocks, cut = (
        _fenced_sections(lines, title, most_sections) if lines else ([_section(title + "\n_no log lines_")[0]], False)
    )
    ladder, cut_ladder = _section("*SMTP session*\n" + _fence(render_ladder(delivery).splitlines()))
    note = "✗ marks the failing step; replies in (parentheses) are implied by the protocol, not in the log."
    if cut:
        note = "Not every evidence line fits in a message: `whyfailed diagnose` shows them all. " + note
    if len(delivery.attempts) > 1:
        note += f" The ladder shows the last of {len(delivery.attempts)} attempts."
    return SlackMessage(
        text=f"Evidence for {escape(recipient_label(delivery))}",
        blocks=blocks + [ladder, context_block(note)],
        truncated=cut or cut_ladder,
    )
