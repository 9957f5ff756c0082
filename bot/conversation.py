"""What the bot says, whatever the surface: the one core every chat adapter calls.

Adapters turn their platform's events into `on_message` (a pasted log, a file) and
`on_command` (`/whyfailed ...`) calls, and render the `Reply` for their surface. Nothing here
knows Slack, Discord or a terminal; nothing there parses a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import timedelta

from bot.checklimit import CheckLimiter
from bot.kbsearch import search_articles
from bot.knowledge import Article
from bot.model import Attempt, Delivery, Evidence, Report
from bot.report import diagnose_text
from bot.settings import Settings

HELP = """\
Paste a mail log excerpt or a bounce message and I will tell you why the mail was not delivered:
Postfix, Exim, Sendmail, Exchange, qmail, OpenSMTPD, hMailServer, MDaemon, Haraka, VisNetic-style
session logs, S:/C: transcripts and bounces (DSN, Gmail, Outlook, Yahoo...).
Where a live check (DNS, reverse DNS, blocklists, SPF/DKIM/DMARC) can confirm a diagnosis,
the answer has a "Check now" button.

Commands:
  /whyfailed user@example.org [--since 2d]   the latest deliveries to or from an address
  /whyfailed @example.org                     a domain's recent failures
  /whyfailed user@example.org --check         ... and check it now (DNS, SPF...)
  /whyfailed kb QUERY                          search the knowledge base (a code like 5.7.1 works)
  /whyfailed help                              this text"""

CHECK_REFUSED = (
    "Sorry, live checks send DNS queries on your behalf and, like /whyfailed ADDRESS, are not enabled for you "
    "here. Ask an admin to add this channel or your account to the allowed list."
)
NOTHING_TO_CHECK = "Nothing to check: that answer is gone from my memory (I was restarted, or it is old)."
NO_CHECK_APPLIES = (
    "No live check applies to these diagnoses: checks confirm DNS, reverse DNS, blocklist and SPF/DKIM/DMARC problems."
)

# An address: a bounded local part (no nested quantifiers, so no backtracking) then @domain.
_ADDRESS = re.compile(r"([A-Za-z0-9._%+=-])[A-Za-z0-9._%+=-]{0,63}@([A-Za-z0-9.-]{1,253})")
# A local part with no domain, as Postfix logs a local sender or recipient: from=<anna>, to=<root>.
_BARE_LOCAL = re.compile(r"\b((?:from|to|orig_to)=<)([A-Za-z0-9._%+=-])[A-Za-z0-9._%+=-]{0,63}>")


@dataclass(frozen=True)
class Context:
    surface: str  # console | slack | discord
    user: str
    channel: str | None = None
    groups: tuple[str, ...] = ()


@dataclass
class Reply:
    kind: str  # report | articles | help | refusal | notice
    text: str = ""
    report: Report | None = None
    articles: list[Article] = field(default_factory=list)
    ephemeral: bool = False
    address: str | None = None


def looks_like_mail_log(report: Report) -> bool:
    """Worth a reply: it told a delivery story, or at least held lines of a mail format."""
    if report.deliveries:
        return True
    relevant = sum(stats.get("relevant", 0) for stats in report.format_stats.values())
    return relevant > 0


def redact(text: str | None) -> str | None:
    """j.smith@example.org -> j***@example.org, from=<anna> -> from=<a***>: who can be named in a
    channel is not ours to decide."""
    if text is None:
        return None
    text = _ADDRESS.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _BARE_LOCAL.sub(lambda m: f"{m.group(1)}{m.group(2)}***>", text)


def redact_report(report: Report) -> Report:
    def attempt(item: Attempt) -> Attempt:
        return replace(item, text=redact(item.text), evidence=[Evidence(e.line, redact(e.text)) for e in item.evidence])

    deliveries = []
    for story in report.deliveries:
        copy = replace(
            story,
            recipient=redact(story.recipient),
            sender=redact(story.sender),
            attempts=[attempt(a) for a in story.attempts],
            context=[Evidence(e.line, redact(e.text)) for e in story.context],
        )
        if story.diagnosis is not None:
            copy.diagnosis = replace(story.diagnosis, summary=redact(story.diagnosis.summary))
        deliveries.append(copy)
    return replace(report, deliveries=deliveries, unparsed=[replace(u, text=redact(u.text)) for u in report.unparsed])


class Conversation:
    def __init__(self, settings: Settings | None = None, audit=None):
        self.settings = settings or Settings()
        self.audit = audit  # callable(context, query, outcome) or None
        self.limiter = CheckLimiter(self.settings.check_rate)

    # --- pasted logs ----------------------------------------------------------------------

    def on_message(self, text: str, context: Context, name: str = "paste") -> Reply | None:
        """A message or file from chat: a Reply when it holds a mail log, None otherwise."""
        data = text.encode("utf-8", "replace")
        notes = []
        if len(data) > self.settings.max_paste_bytes:
            text = data[: self.settings.max_paste_bytes].decode("utf-8", "ignore").rsplit("\n", 1)[0]
            notes.append(f"Only the first {self.settings.max_paste_bytes // 1000} kB were read.")
        report = diagnose_text(text, name, notes)
        if not looks_like_mail_log(report):
            return None
        if self.settings.redact_local_parts and context.surface != "console":
            report = redact_report(report)
        return Reply("report", report=report)

    # --- /whyfailed -----------------------------------------------------------------------

    def on_command(self, arguments: str, context: Context) -> Reply:
        """Every command is audited, not only the ones that show log data: who asked what, and when,
        is the record an admin reads to see how the bot is used (and misused)."""
        words = arguments.strip().split()
        if words and words[0].lower() == "check":  # /whyfailed check ADDRESS reads as well as --check
            words = [*words[1:], "--check"]
        if not words or words[0].lower() in ("help", "-h", "--help", "?"):
            self._audit(context, " ".join(words)[:300] or "help", "help")
            return Reply("help", text=HELP, ephemeral=True)
        if words[0].lower() == "kb":
            return self._kb(" ".join(words[1:]), context)
        return self._why(words, context)

    def _kb(self, query: str, context: Context) -> Reply:
        if not query:
            self._audit(context, "kb", "bad request")
            return Reply(
                "notice", text="Usage: /whyfailed kb QUERY (words, an id, or a code like 5.7.1)", ephemeral=True
            )
        found = search_articles(query[:200])
        self._audit(context, f"kb {query}"[:300], "answered: kb" if found else "answered: kb, no match")
        if not found:
            return Reply("notice", text="No article matches that. Try a reply code or other words.", ephemeral=True)
        return Reply("articles", articles=found, ephemeral=True)

    def may_query(self, context: Context) -> bool:
        """/whyfailed ADDRESS shows log data: only where and to whom it was allowed."""
        if context.surface == "console":
            return True
        allowed_users = set(self.settings.allowed_users)
        if context.user in allowed_users or allowed_users & set(context.groups):
            return True
        return context.channel is not None and context.channel in self.settings.allowed_channels

    def _why(self, words: list[str], context: Context) -> Reply:
        from bot.why import normalise_address, parse_duration

        query = " ".join(words)[:300]
        check = "--check" in words
        words = [w for w in words if w != "--check"]
        if not self.may_query(context):
            self._audit(context, query, "refused")
            return Reply(
                "refusal",
                ephemeral=True,
                text=(
                    "Sorry, /whyfailed ADDRESS shows mail log data and is not enabled for you here. "
                    "Ask an admin to add this channel or your account to the allowed list."
                ),
            )
        try:
            if not words:  # "/whyfailed check" or "--check" alone
                raise ValueError("say which address: /whyfailed check user@example.org")
            address = normalise_address(words[0])
            since = None
            if len(words) >= 3 and words[1] == "--since":
                since = parse_duration(words[2])
            elif len(words) > 1:
                raise ValueError("write it as: /whyfailed user@example.org [--since 2d] [--check]")
        except ValueError as error:
            self._audit(context, query, "bad request")
            return Reply("notice", text=f"{error}. Try /whyfailed help.", ephemeral=True)
        report = self._lookup(address, since)
        if self.settings.redact_local_parts:
            report = redact_report(report)
        outcome = f"answered: {len(report.deliveries)} stories"
        if check and report.deliveries:
            report, limited = self._run_checks(report, context)
            if limited:  # the answer still comes, without checks: the limit is about queries, not log data
                report.notes.append(limited)
            outcome += ", check rate-limited" if limited else ", checked"
        self._audit(context, query, outcome)
        if not report.deliveries:
            return Reply(
                "notice",
                ephemeral=True,
                address=address,
                text=f"No deliveries to or from {redact(address) if self.settings.redact_local_parts else address}"
                f" were found{' in that time' if since else ''}.",
            )
        return Reply("report", report=report, ephemeral=True, address=address)

    # --- Checked now ----------------------------------------------------------------------

    def check_reply(self, reply: Reply | None, context: Context) -> Reply:
        """Run the live checks on an answer already given (a pasted log's, or /whyfailed's), for a
        "Check now" button or the console's /check. Blocks for up to the checks' total timeout:
        call it from a worker thread, never from an event loop. The same rule as /whyfailed
        ADDRESS decides who may (checks send queries on the asker's behalf), and every ask is audited."""
        what = f"check {reply.address}" if reply is not None and reply.address else "check (a pasted log's answer)"
        if not self.may_query(context):
            self._audit(context, what, "refused")
            return Reply("refusal", text=CHECK_REFUSED, ephemeral=True)
        if reply is None or reply.report is None or not reply.report.deliveries:
            self._audit(context, what, "bad request")
            return Reply("notice", text=NOTHING_TO_CHECK, ephemeral=True)
        report, limited = self._run_checks(reply.report, context)
        if limited:
            self._audit(context, what, "rate-limited")
            return Reply("notice", text=limited, ephemeral=True)
        found = sum(len(d.checks or ()) for d in report.deliveries)
        self._audit(context, what, f"answered: {found} checks")
        return Reply("report", report=report, ephemeral=True, address=reply.address)

    def _run_checks(self, report: Report, context: Context) -> tuple[Report, str | None]:
        """A checked copy of REPORT (the one remembered behind a button stays as it was, for the
        next click), or REPORT and why not: the person's rate limit. The console is one person at
        their own terminal, who could run `whyfailed diagnose --check` as well: no limit there."""
        from bot.checks.run import CheckSettings, check_report

        key = f"{context.surface}:{context.user}"
        if context.surface != "console" and (limited := self.limiter.acquire(key)):
            return report, limited
        try:
            copy = replace(report, deliveries=[replace(d, checks=None) for d in report.deliveries])
            copy.notes = list(report.notes)
            check_report(copy, CheckSettings.from_settings(self.settings))
        finally:
            self.limiter.release(key)
        if not any(d.checks for d in copy.deliveries):
            copy.notes.append(NO_CHECK_APPLIES)
        return copy, None

    def _lookup(self, address: str, since: timedelta | None) -> Report:
        """From the index when there is one worth asking (a shared database, or a file that holds
        indexed deliveries or ingest positions); else by scanning the configured logs. A file that
        exists is not enough: the audit of an earlier query creates an empty one."""
        import os

        from bot.store import Store
        from bot.why import why_from_logs, why_from_store

        limit = self.settings.max_results
        target = self.settings.store_target
        if self.settings.database_url or os.path.exists(target):
            store = Store(target)
            try:
                if self.settings.database_url or store.has_index() or not self.settings.logs:
                    return why_from_store(store, address, since, limit)
            finally:
                store.close()
        if self.settings.logs:
            return why_from_logs(self.settings.logs, address, since, limit)
        return Report(input="nothing configured", formats=[], lines=0, parsed=0, deliveries=[], unparsed=[])

    def _audit(self, context: Context, query: str, outcome: str) -> None:
        if self.audit is not None:
            self.audit(context, query, outcome)


def store_audit(target: str):
    """An audit callable that writes one row per query into the index's `audit` table
    (`target`: the SQLite file or the PostgreSQL URL, as Settings.store_target gives it)."""

    def write(context: Context, query: str, outcome: str) -> None:
        from bot.store import Store

        store = Store(target)
        try:
            store.record_audit(context.surface, context.user, context.channel, query, outcome)
        finally:
            store.close()

    return write


def deliveries_of(reply: Reply) -> list[Delivery]:
    return reply.report.deliveries if reply.report else []
