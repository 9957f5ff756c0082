"""Events -> deliveries: one story per message and recipient, made of attempts.

Queue-based logs (Postfix) are linked by queue id; SMTP sessions (session logs and
transcripts) are replayed command by command, pairing each reply with the command it
answers (pipelining included); bounces already name their recipients. A deferral
followed by a later attempt for the same message and recipient stays one story.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import replace

from bot.model import Attempt, Delivery, Event, Evidence

_FAILURE_BY_DIRECTION = {"out": "bounced", "in": "rejected", None: "rejected"}
# Formats whose lines carry a queue or message id, and those that log SMTP sessions.
QUEUED_FORMATS = ("postfix", "exim", "sendmail", "opensmtpd", "qmail", "haraka", "exchange")
SESSION_FORMATS = ("session", "transcript", "hmailserver", "mdaemon")


def _no_attempt_made(event: Event) -> bool:
    text = (event.text or "").lower()
    return event.status == "deferred" and "retry time not reached" in text


def _evidence(event: Event) -> Evidence:
    return Evidence(event.line, event.raw)


def _attempt(event: Event, status: str, stage: str | None = None, text: str | None = None) -> Attempt:
    return Attempt(
        status=status,
        timestamp=event.timestamp,
        stage=stage or event.stage,
        reply_code=event.reply_code,
        enhanced_status=event.enhanced_status,
        text=text if text is not None else event.text,
        remote_host=event.remote_host,
        remote_ip=event.remote_ip,
        evidence=[_evidence(event)],
    )


def correlate_events(events: list[Event]) -> list[Delivery]:
    by_format: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_format[event.format].append(event)
    deliveries: list[Delivery] = []
    by_format["qmail"] = link_qmail_deliveries(by_format.get("qmail", []))
    for fmt in QUEUED_FORMATS:
        deliveries += correlate_queued(by_format.get(fmt, []), fmt)
    sessions = SessionCorrelator()
    for fmt in SESSION_FORMATS:
        for event in by_format.get(fmt, []):
            sessions.feed(event)
    deliveries += sessions.finish()
    deliveries += correlate_bounce(by_format.get("bounce", []))
    deliveries.sort(key=Delivery.first_line)
    return deliveries


# --- Queue-based MTAs (Postfix, Exim): stories linked by queue id -----------------------


def correlate_queued(events: list[Event], source_format: str) -> list[Delivery]:
    messages: dict[tuple, dict] = {}
    standalone: list[Delivery] = []
    # smtp client lines without a queue id ("connect to x[ip]:25: Connection timed out"),
    # kept per process until the status line they explain.
    pending_by_pid: dict[tuple, list[Event]] = defaultdict(list)

    def message(event: Event) -> dict:
        key = (event.host, event.session)
        if key not in messages:
            messages[key] = {"sender": None, "message_id": None, "context": [], "recipients": {}}
        return messages[key]

    def delivery_for(msg: dict, event: Event, recipient: str) -> Delivery:
        key = recipient.lower()
        if key not in msg["recipients"]:
            msg["recipients"][key] = Delivery(
                recipient=recipient,
                sender=msg["sender"],
                queue_id=event.session,
                message_id=msg["message_id"],
                direction=event.direction,
                source_format=source_format,
                host=event.host,
            )
        return msg["recipients"][key]

    for event in events:
        if event.kind == "connect-error":
            pending_by_pid[(event.host, event.pid)].append(event)
            continue
        if event.session is None:
            if event.kind == "reject" and event.recipient is not None:
                delivery = Delivery(
                    recipient=event.recipient, sender=event.sender, direction="in", source_format=source_format
                )
                delivery.attempts.append(_attempt(event, event.status or "rejected"))
                standalone.append(delivery)
            continue
        msg = message(event)
        if event.kind == "message-id":
            msg["message_id"] = event.message_id
            msg["context"].append(_evidence(event))
        elif event.kind in ("queued", "client", "removed", "notification", "completed"):
            if event.kind == "queued" and event.sender is not None:
                msg["sender"] = event.sender
            if event.message_id:
                msg["message_id"] = event.message_id
            msg["context"].append(_evidence(event))
        elif event.kind == "status" and event.recipient is not None:
            delivery = delivery_for(msg, event, event.recipient)
            if delivery.attempts and _no_attempt_made(event):
                # Exim's "retry time not reached": no new try, so the last real one still explains it
                delivery.attempts[-1].evidence.append(_evidence(event))
                continue
            attempt = _attempt(event, event.status or "unknown")
            for earlier in pending_by_pid.pop((event.host, event.pid), []):
                attempt.evidence.insert(0, _evidence(earlier))
            delivery.attempts.append(attempt)
        elif event.kind == "expired":
            for delivery in msg["recipients"].values():
                if delivery.status == "deferred":
                    last = delivery.final
                    expired = _attempt(event, "expired", stage=last.stage, text=last.text)
                    expired.reply_code, expired.enhanced_status = last.reply_code, last.enhanced_status
                    expired.remote_host, expired.remote_ip = last.remote_host, last.remote_ip
                    delivery.attempts.append(expired)
        elif event.kind == "reject":
            targets = (
                [delivery_for(msg, event, event.recipient)] if event.recipient else list(msg["recipients"].values())
            )
            for delivery in targets:
                delivery.attempts.append(_attempt(event, event.status or "rejected"))
        else:
            msg["context"].append(_evidence(event))

    found: list[Delivery] = []
    for msg in messages.values():
        for delivery in msg["recipients"].values():
            delivery.sender = delivery.sender or msg["sender"]
            delivery.message_id = delivery.message_id or msg["message_id"]
            delivery.context = msg["context"]
            found.append(delivery)
    return found + standalone


def link_qmail_deliveries(events: list[Event]) -> list[Event]:
    """qmail reports outcomes by delivery number; 'starting delivery N: msg M to remote R'
    says which message and recipient that number stands for (numbers are reused later)."""
    current: dict[str, Event] = {}
    linked = []
    for event in events:
        if event.kind == "starting":
            current[event.argument] = event
            linked.append(replace(event, kind="info"))
        elif event.kind == "qmail-outcome" and event.argument in current:
            start = current[event.argument]
            linked.append(
                replace(
                    event, kind="status", session=start.session, recipient=start.recipient, direction=start.direction
                )
            )
        else:
            linked.append(event)
    return linked


# --- SMTP sessions (session logs and transcripts) --------------------------------------


class _Session:
    def __init__(self, key: str):
        self.key = key
        self.sender: str | None = None
        self.pending: deque[Event] = deque()  # commands waiting for their reply
        self.recipients: list[Delivery] = []  # this transaction's recipients, accepted or not
        self.accepted: list[Delivery] = []
        self.awaiting_end_of_data = False
        self.greeted = False
        self.continued: list[Event] = []  # lines of a multi-line reply so far
        self.context: list[Evidence] = []
        self.direction: str | None = None
        self.remote_ip: str | None = None
        self.failure: tuple[Event, str] | None = None  # a session-wide failure (greeting, EHLO, DNS)
        self.dns_failure: Delivery | None = None


class SessionCorrelator:
    def __init__(self):
        self.sessions: dict[str, _Session] = {}
        self.stories: dict[tuple, Delivery] = {}  # (sender, recipient) -> delivery, to link retries
        self.deliveries: list[Delivery] = []

    def feed(self, event: Event) -> None:
        if event.format == "mdaemon":
            # MDaemon writes a session as a block that opens with "Session N;": the lines
            # after it belong to it.
            if event.session:
                self.current_block = event.session
            event = replace(event, session=getattr(self, "current_block", None))
        key = event.session or f"{event.format}"
        session = self.sessions.get(key)
        if session is None or (
            event.kind == "reply" and event.reply_code == 220 and session.greeted and not session.pending
        ):
            if session is not None:
                self._close(session)
            session = self.sessions[key] = _Session(key)
        session.direction = session.direction or event.direction
        session.remote_ip = session.remote_ip or event.remote_ip
        if event.kind == "command":
            self._command(session, event)
        elif event.kind == "reply-continued":
            session.continued.append(event)
        elif event.kind == "reply":
            self._reply(session, event)
        elif event.kind == "system":
            self._system(session, event)

    def _command(self, session: _Session, event: Event) -> None:
        verb = event.command
        if verb == "MAIL":
            session.sender = event.sender
            session.recipients, session.accepted = [], []
        elif verb == "RCPT" and event.recipient:
            delivery = self._story(session, event.recipient)
            session.recipients.append(delivery)
        elif verb == "QUIT":
            return  # its 221 says nothing about deliveries
        session.pending.append(event)

    def _story(self, session: _Session, recipient: str) -> Delivery:
        key = ((session.sender or "").lower(), recipient.lower())
        story = self.stories.get(key)
        if story is None or story.status not in ("deferred", "unknown") or not story.attempts:
            story = Delivery(
                recipient=recipient, sender=session.sender, direction=session.direction, source_format=None
            )
            self.stories[key] = story
            self.deliveries.append(story)
        return story

    def _reply(self, session: _Session, event: Event) -> None:
        lines = [*session.continued, event]
        session.continued = []
        text = " ".join(e.text or "" for e in lines)
        evidence = [_evidence(e) for e in lines]
        code = event.reply_code or 0
        if session.awaiting_end_of_data and not session.pending:
            session.awaiting_end_of_data = False
            for delivery in session.accepted:
                self._record(session, delivery, event, text, evidence, "end-of-data")
            session.accepted = []
            return
        if not session.pending:
            stage = "connect" if not session.greeted else "queue"
            session.greeted = True
            if code >= 400:
                session.failure = (event, stage)
                for delivery in session.recipients:
                    self._record(session, delivery, event, text, evidence, stage)
                self._remember_failure(session, event, text, evidence, stage)
            else:
                session.context.extend(evidence)
            return
        command = session.pending.popleft()
        evidence.insert(0, _evidence(command))
        verb = command.command
        stage = {
            "MAIL": "mail",
            "RCPT": "rcpt",
            "DATA": "data",
            "BDAT": "end-of-data",
            "EHLO": "ehlo",
            "HELO": "ehlo",
            "LHLO": "ehlo",
            "STARTTLS": "starttls",
            "AUTH": "auth",
        }.get(verb, "queue")
        if verb == "RCPT":
            delivery = next((d for d in reversed(session.recipients) if d.recipient == command.recipient), None)
            if delivery is None:
                return
            if code < 400:
                session.accepted.append(delivery)
                delivery.context.extend(evidence)
            else:
                self._record(session, delivery, event, text, evidence, stage)
        elif verb == "DATA" and code == 354:
            session.awaiting_end_of_data = True
            for delivery in session.accepted:
                delivery.context.extend(evidence)
        elif verb in ("DATA", "BDAT") and code >= 400 or (verb == "BDAT" and code < 400):
            for delivery in session.accepted:
                self._record(session, delivery, event, text, evidence, stage)
            session.accepted = []
        elif code >= 400 and verb in ("MAIL", "EHLO", "HELO", "LHLO", "STARTTLS", "AUTH"):
            session.failure = (event, stage)
            self._remember_failure(session, event, text, evidence, stage)
        else:
            session.context.extend(evidence)

    def _remember_failure(self, session, event, text, evidence, stage) -> None:
        """A failure before any RCPT: nobody to pin it on yet; keep it as its own story."""
        delivery = Delivery(recipient=None, sender=session.sender, direction=session.direction)
        delivery.attempts.append(self._attempt(session, event, text, evidence, stage))
        delivery.context.extend(session.context)
        self.deliveries.append(delivery)

    def _attempt(self, session, event, text, evidence, stage) -> Attempt:
        code = event.reply_code or 0
        if code >= 500:
            status = _FAILURE_BY_DIRECTION.get(session.direction, "rejected")
        elif code >= 400:
            status = "deferred"
        else:
            status = "delivered"
        return Attempt(
            status=status,
            timestamp=event.timestamp,
            stage=stage,
            reply_code=event.reply_code,
            enhanced_status=event.enhanced_status,
            text=text,
            remote_ip=session.remote_ip,
            evidence=list(evidence),
        )

    def _record(self, session, delivery, event, text, evidence, stage) -> None:
        if delivery.sender is None:
            delivery.sender = session.sender
        delivery.direction = delivery.direction or session.direction
        delivery.attempts.append(self._attempt(session, event, text, evidence, stage))

    def _system(self, session: _Session, event: Event) -> None:
        text = (event.text or "").lower()
        session.context.append(_evidence(event))
        failed_dns = text.startswith("dns query") and "[ok" not in text
        if failed_dns or "no mx" in text or "cannot resolve" in text or "could not resolve" in text:
            if session.dns_failure is not None:  # more lines about the same failed lookup
                attempt = session.dns_failure.final
                attempt.text = f"{attempt.text} {event.text}"
                attempt.evidence.append(_evidence(event))
                return
            domain = (event.text or "").split("'")[1] if (event.text or "").count("'") >= 2 else None
            delivery = Delivery(recipient=f"@{domain}" if domain else None, sender=session.sender, direction="out")
            delivery.attempts.append(
                Attempt(
                    status="deferred" if "temporar" in text else "bounced",
                    timestamp=event.timestamp,
                    stage="dns",
                    text=event.text,
                    evidence=list(session.context),
                )
            )
            session.dns_failure = delivery
            self.deliveries.append(delivery)
        elif any(
            p in text
            for p in (
                "timed out",
                "connection refused",
                "cannot connect",
                "connection failed",
                "no route to host",
                "network is unreachable",
            )
        ):
            failure = Attempt(
                status="deferred",
                timestamp=event.timestamp,
                stage="connect" if not session.greeted else "queue",
                text=event.text,
                remote_ip=session.remote_ip,
                evidence=[_evidence(event)],
            )
            targets = session.accepted or session.recipients
            if targets:
                for delivery in targets:
                    delivery.attempts.append(failure)
            else:
                delivery = Delivery(recipient=None, sender=session.sender, direction=session.direction or "out")
                delivery.attempts.append(failure)
                delivery.context.extend(session.context)
                self.deliveries.append(delivery)

    def _close(self, session: _Session) -> None:
        if session.continued:
            session.context.extend(_evidence(e) for e in session.continued)
        for delivery in session.accepted:
            if not delivery.attempts or delivery.status == "deferred":
                delivery.attempts.append(
                    Attempt(
                        status="unknown",
                        stage="end-of-data" if session.awaiting_end_of_data else "data",
                        text="The session ended before the server confirmed the message (no reply to the end of DATA).",
                        remote_ip=session.remote_ip,
                        evidence=[],
                    )
                )

    def finish(self) -> list[Delivery]:
        for session in self.sessions.values():
            self._close(session)
        for delivery in self.deliveries:
            delivery.source_format = delivery.source_format or "session"
        return [d for d in self.deliveries if d.attempts or d.context]


# --- Bounces ----------------------------------------------------------------------------


def correlate_bounce(events: list[Event]) -> list[Delivery]:
    stories: dict[str, Delivery] = {}
    for event in events:
        key = (event.recipient or "").lower()
        if event.kind == "status":
            delivery = stories.setdefault(
                key,
                Delivery(
                    recipient=event.recipient,
                    sender=event.sender,
                    message_id=event.message_id,
                    direction="out",
                    source_format="bounce",
                ),
            )
            delivery.attempts.append(_attempt(event, event.status or "bounced"))
        elif event.kind == "evidence" and key in stories:
            stories[key].context.append(_evidence(event))
    return list(stories.values())
