"""Bounce messages: RFC 3464 delivery-status notifications and the free-text NDRs of
large providers and MTAs (Gmail, Outlook/Exchange, Yahoo, qmail, Exim, Postfix).

The MIME structure is read with the standard library `email` package; the
human-readable part is cut into one block per recipient with bounce.lark, and each
Diagnostic-Code or quoted reply is read with reply.lark. A bounce names its recipients:
each becomes its own delivery.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr

from lark import Transformer
from lark.exceptions import LarkError

from bot.model import Unparsed
from bot.parse.grammars import parser
from bot.parse.reply import parse_reply, stage_from_text

# Where the human-readable part stops and the returned original message begins.
_COPY_MARKERS = (
    "------ this is a copy of the message",
    "--- below this line is a copy of the message",
    "original message headers:",
    "----- original message -----",
    "----- transcript of session follows -----",
    "------- original message -------",
    "content-type: message/rfc822",
    "content-type: text/rfc822-headers",
)
_HEADER_LINE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,60}:[ \t]")
_ACTIONS = {
    "failed": "bounced",
    "delayed": "deferred",
    "delivered": "delivered",
    "relayed": "delivered",
    "expanded": "delivered",
}
_TEMPORARY_PHRASES = (
    "will retry",
    "will be retried",
    "has not yet been delivered",
    "delivery is delayed",
    "temporary failure",
    "still trying",
    "delayed mail",
    "will keep trying",
)
_AUTO_REPLY_SUBJECTS = (
    "out of office",
    "automatic reply",
    "auto:",
    "autoreply",
    "auto-reply",
    "abwesenheit",
    "vacation",
    "away from",
    "réponse automatique",
)


@dataclass
class _Recipient:
    address: str
    lines: list[str] = field(default_factory=list)
    status: str | None = None
    enhanced: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None


class BounceLineTransformer(Transformer):
    def recipient(self, children):
        address = str(children[0]).rstrip(":").strip("<>")
        return ("recipient", address, str(children[1]) if len(children) > 1 else "")

    def exim_step(self, children):
        return ("step", str(children[1]), "")


def _classify(line: str) -> tuple[str, str, str] | None:
    try:
        return parser("bounce", BounceLineTransformer).parse(line.strip())
    except LarkError:
        return None


def _looks_like_email(text: str) -> bool:
    first = text.lstrip()[:2000].split("\n", 8)
    return sum(1 for line in first[:8] if _HEADER_LINE.match(line)) >= 2


def _cut_copy(text: str) -> str:
    lowered = text.lower()
    cut = min((at for marker in _COPY_MARKERS if (at := lowered.find(marker)) >= 0), default=len(text))
    return text[:cut]


def _walk(message: Message, found: dict) -> None:
    """Collect the human-readable text, DSN records, ARF report and the original's headers."""
    ctype = message.get_content_type()
    # The email package reads both report parts as lists of header blocks: collect, don't descend.
    if message.is_multipart() and ctype not in ("message/delivery-status", "message/feedback-report"):
        for part in message.iter_parts() if hasattr(message, "iter_parts") else message.get_payload():
            _walk(part, found)
        return
    if ctype == "message/delivery-status":
        for block in message.get_payload():
            if isinstance(block, Message) and block.get("Final-Recipient"):
                found["dsn"].append(block)
    elif ctype == "message/feedback-report":
        payload = message.get_payload()
        blocks = payload if isinstance(payload, list) else [email.message_from_string(str(payload))]
        found["arf"].extend(b for b in blocks if isinstance(b, Message))
    elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
        payload = message.get_payload()
        original = payload[0] if isinstance(payload, list) and payload else None
        if original is None:
            original = email.message_from_string(str(payload))
        found["original"] = original
    elif ctype == "text/plain" and not found["original"]:
        try:
            found["text"].append(message.get_content())
        except (LookupError, ValueError, AttributeError):
            found["text"].append(str(message.get_payload(decode=True) or b"", "utf-8", "replace"))


def _dsn_from_text(text: str) -> list[Message]:
    """DSN fields pasted as plain text: paragraphs that hold a Final-Recipient field."""
    return [
        email.message_from_string(p.strip() + "\n")
        for p in re.split(r"\n[ \t]*\n", text)
        if "final-recipient:" in p.lower()
    ]


def _address_of(field_value: str | None) -> str | None:
    if not field_value:
        return None
    _, _, address = str(field_value).partition(";")
    return (address or str(field_value)).strip().strip("<>") or None


def _blocks(text: str) -> dict[str, _Recipient]:
    """Cut the human-readable text into one block of lines per recipient it names."""
    recipients: dict[str, _Recipient] = {}
    current: _Recipient | None = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        kind = _classify(line) if len(line) < 1000 else None
        if kind and kind[0] == "recipient":
            address = kind[1].lower()
            current = recipients.setdefault(address, _Recipient(kind[1]))
            if kind[2]:
                current.lines.append(kind[2])
            continue
        if current is not None:
            current.lines.append(line.strip())
    return recipients


def _mentioned(text: str) -> list[str]:
    """Recipients named in prose: "wasn't delivered to bob@example.org because ..."."""
    found = []
    for phrase in ("delivered to ", "delivery to ", "deliver your message to ", "recipient ", "address "):
        at = 0
        lowered = text.lower()
        while (at := lowered.find(phrase, at)) >= 0:
            candidate = text[at + len(phrase) :].split(maxsplit=1)
            at += len(phrase)
            if candidate:
                kind = _classify(candidate[0].strip(".,;:'\""))
                if kind and kind[0] == "recipient" and kind[1].lower() not in (a.lower() for a in found):
                    found.append(kind[1])
    return found


def _reply_text(lines: list[str]) -> str:
    """The SMTP reply inside a recipient's block, its continuation lines joined."""
    for index, line in enumerate(lines):
        reply = parse_reply(line)
        if reply.code is None:
            continue
        parts = [line]
        prefix = f"{reply.code}-"
        for follow in lines[index + 1 :]:
            stripped = follow.strip()
            if stripped.startswith((prefix, f"{reply.code} ")):
                stripped = stripped[4:]
                if reply.enhanced and stripped.startswith(reply.enhanced):
                    stripped = stripped[len(reply.enhanced) :]
            parts.append(stripped.strip())
        return " ".join(p for p in parts if p)
    return ""


def parse_bounce(text: str):
    from bot.parse import ParseResult, make_event

    lines = text.split("\n")
    result = ParseResult(lines=len(lines))
    line_index: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        line_index.setdefault(line.strip().lower(), number)

    found = {"text": [], "dsn": [], "arf": [], "original": None}
    top: Message | None = None
    if _looks_like_email(text):
        top = email.message_from_string(text, policy=email.policy.default)
        _walk(top, found)
    if not found["text"] and not found["dsn"] and not found["arf"]:
        found["text"].append(text if top is None else str(top.get_payload()))
    human = _cut_copy("\n".join(found["text"]))
    dsn = found["dsn"] or _dsn_from_text(text)

    original = found["original"]
    sender = parseaddr(str(original.get("From", "")))[1] or None if original is not None else None
    if sender is None and top is not None:
        # A bounce goes back to the original sender: its To is who sent the failed message.
        sender = parseaddr(str(top.get("To", "")))[1] or None
    message_id = (original.get("Message-ID") or "").strip("<> ") or None if original is not None else None

    def locate(snippet: str) -> int:
        wanted = snippet.strip().lower()
        if not wanted:
            return 0
        if wanted in line_index:
            return line_index[wanted]
        # A block line may be the tail of a longer line ("<bob@...>: host ... said: 550").
        return next((n for n, line in enumerate(lines[:5000], start=1) if wanted in line.lower()), 0)

    def emit(values: dict, evidence: list[str]) -> None:
        first = next((locate(x) for x in evidence if locate(x)), 0)
        raw = next((x.strip() for x in evidence if x.strip()), values.get("text") or "")
        result.events.append(make_event(first, raw, "bounce", values))
        for snippet in evidence:
            number = locate(snippet)
            if number and number != first:
                result.events.append(
                    make_event(
                        number, snippet.strip(), "bounce", {"kind": "evidence", "recipient": values.get("recipient")}
                    )
                )

    if top is not None and _is_auto_reply(top) and not dsn:
        emit(_auto_reply_values(top, human), [f"Subject: {top.get('Subject', '')}"])
        result.tally()
        return result
    for report in found["arf"]:
        emit(_arf_values(report), [f"Feedback-Type: {report.get('Feedback-Type', '')}"])

    blocks = _blocks(human)
    records = {(_address_of(r.get("Final-Recipient")) or "").lower(): r for r in dsn}
    addresses = list(dict.fromkeys([*records, *blocks])) or [a.lower() for a in _mentioned(human)]
    only_one = len(addresses) == 1
    for address in addresses:
        if not address:
            continue
        block = blocks.get(address, _Recipient(address))
        record = records.get(address)
        if only_one and not _reply_text(block.lines):
            # Gmail-style: the reply stands apart from the sentence that names the recipient.
            block.lines.extend(line.strip() for line in human.splitlines() if line.strip())
        values = _recipient_values(address, block, record, human if only_one else "")
        values.update(sender=sender, message_id=message_id)
        evidence = [*block.lines[:12]]
        if record is not None and record.get("Diagnostic-Code"):
            evidence.insert(0, f"Diagnostic-Code: {record.get('Diagnostic-Code')}")
        emit(values, evidence or [address])
    if not result.events:
        # It looked like a bounce but named no recipient we could read: show every line.
        result.unparsed.extend(Unparsed(n, line) for n, line in enumerate(lines, start=1) if line.strip())
    result.tally()
    return result


def _recipient_values(address: str, block: _Recipient, record: Message | None, context: str) -> dict:
    reply_source = _reply_text(block.lines)
    status_word = None
    enhanced = None
    remote = None
    if record is not None:
        diagnostic = " ".join(str(record.get("Diagnostic-Code", "")).split())
        reply_source = diagnostic or reply_source
        status_word = _ACTIONS.get(str(record.get("Action", "")).strip().lower())
        enhanced = str(record.get("Status", "")).strip().split(" ")[0] or None
        remote = _address_of(record.get("Remote-MTA"))
    reply = parse_reply(reply_source) if reply_source else None
    block_text = " ".join(block.lines)
    everything = " ".join(x for x in (reply.text if reply else "", block_text, context) if x)
    values = {
        "kind": "status",
        "recipient": block.address if "@" in block.address else address,
        "text": " ".join(everything.split())[:4000],
        "stage": (reply.stage if reply else None) or _block_stage(block),
        "direction": "out",
    }
    if reply and reply.code:
        values["reply_code"] = reply.code
    values["enhanced_status"] = enhanced or (reply.enhanced if reply else None)
    values["remote_host"] = remote or (reply.remote_host if reply else None)
    if reply and reply.remote_ip:
        values["remote_ip"] = reply.remote_ip
    values["status"] = status_word or _status_from(values, everything)
    if values["status"] == "bounced" and _gave_up_retrying(values.get("enhanced_status"), everything):
        values["status"] = "expired"
    return values


_EXPIRY_PHRASES = (
    "delivery time expired",
    "retry timeout exceeded",
    "queue.expired",
    "message expired",
    "too long in queue",
    "gave up retrying",
    "could not be delivered within",
)


def _gave_up_retrying(enhanced: str | None, text: str) -> bool:
    """A bounce sent after retries ran out (X.4.7, "delivery time expired"): an expiry."""
    lowered = text.lower()
    return (enhanced or "")[1:] == ".4.7" or any(phrase in lowered for phrase in _EXPIRY_PHRASES)


def _block_stage(block: _Recipient) -> str | None:
    quoted = _reply_text(block.lines)
    return (parse_reply(quoted).stage if quoted else None) or stage_from_text(" ".join(block.lines))


def _status_from(values: dict, text: str) -> str:
    code = values.get("reply_code")
    enhanced = values.get("enhanced_status") or ""
    if enhanced.startswith("4") or (code and 400 <= code < 500):
        return "deferred"
    if enhanced.startswith("5") or (code and code >= 500):
        return "bounced"
    lowered = text.lower()
    if any(phrase in lowered for phrase in _TEMPORARY_PHRASES):
        return "deferred"
    return "bounced"


def _is_auto_reply(message: Message) -> bool:
    auto = str(message.get("Auto-Submitted", "")).lower()
    subject = str(message.get("Subject", "")).lower()
    return auto.startswith("auto-replied") or any(subject.startswith(s) for s in _AUTO_REPLY_SUBJECTS)


def _auto_reply_values(message: Message, human: str) -> dict:
    replier = parseaddr(str(message.get("From", "")))[1] or None
    return {
        "kind": "status",
        "status": "delivered",
        "recipient": replier,
        "text": f"Auto-Submitted: {message.get('Auto-Submitted', 'auto-replied')}; "
        f"Subject: {message.get('Subject', '')}; {' '.join(human.split())[:500]}",
    }


def _arf_values(report: Message) -> dict:
    return {
        "kind": "status",
        "status": "delivered",
        "recipient": _address_of(report.get("Original-Rcpt-To")),
        "sender": _address_of(report.get("Original-Mail-From")),
        "remote_ip": str(report.get("Source-IP", "")).strip() or None,
        "text": f"Feedback-Type: {report.get('Feedback-Type', '')}; User-Agent: {report.get('User-Agent', '')}",
    }
