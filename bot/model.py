"""The one data model every format, rule and surface shares.

Parsers produce `Event`s; correlation groups them into `Delivery`s made of `Attempt`s;
rules attach a `Diagnosis`; a `Report` carries it all to the renderers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.checks import CheckResult

# SMTP stages, in protocol order. "dns" and "local" are the steps around SMTP where
# deliveries fail too (finding the MX; handing to a mailbox).
STAGES = ("dns", "connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "end-of-data", "local", "queue")

STAGE_LABELS = {
    "dns": "DNS lookup (finding the receiving server)",
    "connect": "connection / greeting",
    "ehlo": "EHLO/HELO",
    "starttls": "STARTTLS",
    "auth": "AUTH",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
    "data": "DATA",
    "end-of-data": "end of DATA (after the message was sent)",
    "local": "local delivery to the mailbox",
    "queue": "in the queue",
}

# Final states of a delivery, in the order a story can move through them.
STATUSES = ("delivered", "deferred", "bounced", "rejected", "expired", "unknown")


# Every class here has a docstring: without one, @dataclass makes one from inspect.signature,
# at import (a tenth of a millisecond each, in every command).
# Not frozen: a frozen dataclass sets each of its 26 fields through object.__setattr__, which
# made creating an Event cost as much as parsing its line's header; ingest makes one per line.
# Nothing changes an Event after the parser made it (correlation uses dataclasses.replace).
@dataclass(slots=True)
class Event:
    """One understood log line (or bounce field), normalised across formats."""

    line: int  # 1-based line number in the input
    raw: str  # the line as it was read (after unwrapping)
    format: str  # postfix | session | transcript | bounce | syslog
    kind: str  # status | reject | command | reply | connect | disconnect | queued | message-id | dns | info | ...
    timestamp: datetime | None = None
    host: str | None = None  # the host that wrote the log line
    program: str | None = None
    pid: int | None = None
    session: str | None = None  # session id, or queue id for queue-based MTAs
    direction: str | None = None  # in | out (relative to the server that logged)
    role: str | None = None  # client | server: who spoke an SMTP line
    command: str | None = None  # SMTP verb, e.g. RCPT
    argument: str | None = None  # the command's argument text
    reply_code: int | None = None
    enhanced_status: str | None = None
    sender: str | None = None
    recipient: str | None = None
    orig_recipient: str | None = None
    remote_host: str | None = None
    remote_ip: str | None = None
    relay: str | None = None
    delay: float | None = None
    status: str | None = None  # status word as the MTA wrote it: sent, deferred, bounced, expired...
    stage: str | None = None  # SMTP stage the line itself names ("in reply to RCPT TO command")
    message_id: str | None = None
    text: str | None = None  # free text: the server's reply, the status explanation


@dataclass(frozen=True, slots=True)
class Evidence:
    """One line a story rests on: its number in the input, and its text."""

    line: int
    text: str


@dataclass(slots=True)
class Attempt:
    """One try at delivering to one recipient: a session's RCPT, or one status line."""

    status: str  # delivered | deferred | bounced | rejected | expired | unknown
    timestamp: datetime | None = None
    stage: str | None = None
    reply_code: int | None = None
    enhanced_status: str | None = None
    text: str | None = None
    remote_host: str | None = None
    remote_ip: str | None = None
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(slots=True)
class Delivery:
    """The story of one message to one recipient."""

    recipient: str | None
    sender: str | None = None
    queue_id: str | None = None
    message_id: str | None = None
    direction: str | None = None
    source_format: str | None = None
    host: str | None = None  # the host that logged it (queue ids repeat across hosts)
    attempts: list[Attempt] = field(default_factory=list)
    context: list[Evidence] = field(default_factory=list)  # lines about the message, not one attempt
    diagnosis: Diagnosis | None = None
    checks: list[CheckResult] | None = None  # "Checked now" (bot/checks): None when none was asked for

    @property
    def final(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def status(self) -> str:
        return self.final.status if self.final else "unknown"

    def first_line(self) -> int:
        """The number of the story's first line (0 when it has none): evidence()[0].line, without
        building the whole list, for sorting the stories of a chunk and keying those without a queue id."""
        first = min((item.line for item in self.context), default=0)
        for attempt in self.attempts:
            for item in attempt.evidence:
                if item.line < first or not first:
                    first = item.line
        return first

    def evidence(self) -> list[Evidence]:
        seen: dict[int, Evidence] = {}
        for item in self.context:
            seen.setdefault(item.line, item)
        for attempt in self.attempts:
            for item in attempt.evidence:
                seen.setdefault(item.line, item)
        return [seen[k] for k in sorted(seen)]


@dataclass(frozen=True, slots=True)
class Related:
    """Another article behind a diagnosis: an earlier transient cause, the cause of an expiry."""

    id: str
    title: str
    note: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why one delivery failed (or did not): a knowledge article, applied to this delivery."""

    id: str
    title: str
    severity: str  # permanent | temporary | info
    who_acts: str  # sender | recipient-admin | our-admin
    confidence: float  # 0..1
    summary: str  # one sentence: what happened, for this delivery
    next_steps: tuple[str, ...] = ()
    article: str = ""  # path or URL of the knowledge article
    explanation: str = ""  # what the codes mean (from the RFC tables)
    related: tuple[Related, ...] = ()  # earlier transient causes, the cause behind an expiry

    @property
    def confidence_label(self) -> str:
        if self.confidence >= 0.75:
            return "high"
        if self.confidence >= 0.5:
            return "medium"
        return "low"


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A line not understood: listed with its number, never dropped."""

    line: int
    text: str


@dataclass(slots=True)
class Report:
    """What a surface renders: the deliveries and their diagnoses, and the lines not understood."""

    input: str
    formats: list[str]
    lines: int
    parsed: int
    deliveries: list[Delivery]
    unparsed: list[Unparsed]
    notes: list[str] = field(default_factory=list)  # e.g. "input was truncated at 5 MB"
    format_stats: dict[str, dict[str, int]] = field(default_factory=dict)
