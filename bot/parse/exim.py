"""Exim main and reject logs: delivery flags (<= => -> ** == *> >>), H=/R=/T= fields, rejects."""

from __future__ import annotations

from lark import Transformer

from bot.parse.grammars import parse_or_none
from bot.parse.peers import strip_angle
from bot.parse.reply import parse_reply
from bot.parse.timestamps import parse_iso

_FLAGS = {
    "=>": ("status", "delivered"),
    "->": ("status", "delivered"),
    ">>": ("status", "delivered"),  # cutthrough delivery
    "*>": ("status", "delivered"),  # delivery suppressed by -N: still counts as accepted here
    "**": ("status", "bounced"),
    "==": ("status", "deferred"),
    "<=": ("queued", None),
}


def _fields(tokens) -> dict[str, str]:
    """'H=mx.example.org [192.0.2.25]:25' -> {'H': 'mx.example.org [192.0.2.25]:25'}."""
    found = {}
    for token in tokens:
        key, _, value = str(token).partition("=")
        found[key] = value.strip('"') if value.startswith('"') else value
    return found


def _host(value: str | None) -> tuple[str | None, str | None]:
    """'mx.example.org [192.0.2.25]:25' -> ('mx.example.org', '192.0.2.25'); '(helo) [ip]' -> (None, ip)."""
    if not value:
        return None, None
    name, _, rest = value.partition(" [")
    ip = rest.split("]", 1)[0] or None
    if name.startswith("[") and not rest:
        name, ip = "", name.strip("[]").split("]")[0]
    if name.startswith("("):
        name = ""
    return name or None, ip


def _error_fields(text: str) -> dict:
    """': SMTP error from remote mail server after RCPT TO:<x>: 550 5.1.1 ...' -> reply fields."""
    text = text[1:].strip() if text.startswith(":") else text.strip()
    fields: dict = {"text": text}
    lowered = text.lower()
    marker = "from remote mail server after "
    at = lowered.find(marker)
    if at < 0:
        at = lowered.find(marker := "from remote server after ")
    if at >= 0:
        after = text[at + len(marker) :]
        step, _, reply = after.partition(": ")
        if reply and reply[:1].isdigit():
            parsed = parse_reply(reply)
            fields.update(text=parsed.text, reply_code=parsed.code, enhanced_status=parsed.enhanced)
        fields["stage"] = _step(step)
        return fields
    parsed = parse_reply(text)
    if parsed.code is not None:
        fields.update(reply_code=parsed.code, enhanced_status=parsed.enhanced)
    fields["stage"] = parsed.stage
    return fields


def _step(step: str) -> str | None:
    lowered = step.lower()
    for prefix, stage in (
        ("rcpt", "rcpt"),
        ("mail", "mail"),
        ("end of data", "end-of-data"),
        ("data", "data"),
        ("ehlo", "ehlo"),
        ("helo", "ehlo"),
        ("starttls", "starttls"),
        ("initial connection", "connect"),
        ("pipelined", "rcpt"),
        ("auth", "auth"),
    ):
        if lowered.startswith(prefix):
            return stage
    return None


class EximTransformer(Transformer):
    def delivery(self, children):
        flag, address = str(children[0]), str(children[1])
        kind, status = _FLAGS[flag]
        fields: dict = {"kind": kind}
        tokens = [c for c in children[2:] if c.type == "FIELD"]
        pairs = _fields(tokens)
        if kind == "queued":
            fields["sender"] = strip_angle(address) if address != "<>" else ""
            fields["message_id"] = pairs.get("id")
            fields["remote_host"], fields["remote_ip"] = _host(pairs.get("H"))
            fields["direction"] = "in"
            return fields
        fields.update(status=status, recipient=address, direction="out")
        fields["remote_host"], fields["remote_ip"] = _host(pairs.get("H"))
        if "R" in pairs or "T" in pairs:
            fields["relay"] = " ".join(f"{k}={pairs[k]}" for k in ("R", "T") if k in pairs)
        for child in children[2:]:
            if child.type == "ORIGINAL":
                fields["orig_recipient"] = strip_angle(str(child))
            elif child.type == "ERROR_TEXT":
                fields.update(_error_fields(str(child)))
            elif child.type == "DEFER":
                fields["defer"] = str(child)
        if "C" in pairs and "text" not in fields:  # the remote's confirmation: C="250 2.0.0 Ok"
            reply = parse_reply(pairs["C"])
            fields.update(text=reply.text, reply_code=reply.code, enhanced_status=reply.enhanced)
        text = (fields.get("text") or "").lower()
        if status == "bounced" and ("retry timeout exceeded" in text or "retry time not reached for any host" in text):
            fields["status"] = "expired"
        if "defer" in fields and "text" not in fields:
            fields["text"] = fields["defer"]
        return fields

    def reject(self, children):
        verb = str(children[0])
        fields: dict = {"kind": "reject", "direction": "in"}
        fields["status"] = "deferred" if verb.startswith("temporarily") or "defer" in verb else "rejected"
        lowered = verb.lower()
        fields["stage"] = next(
            (
                s
                for word, s in (
                    ("rcpt", "rcpt"),
                    ("mail", "mail"),
                    ("after data", "end-of-data"),
                    ("data", "data"),
                    ("helo", "ehlo"),
                    ("ehlo", "ehlo"),
                    ("connect", "connect"),
                    ("sender verify", "mail"),
                    ("recipient verify", "rcpt"),
                )
                if word in lowered
            ),
            None,
        )
        for child in children[1:]:
            if child.type == "TARGET":
                address = strip_angle(str(child))
                key = "sender" if fields["stage"] == "mail" else "recipient"
                fields[key] = address
            elif child.type == "ERROR_TEXT":
                text = str(child)[1:].strip()
                reply = parse_reply(text)
                fields.update(text=f"{verb}: {text}", reply_code=reply.code, enhanced_status=reply.enhanced)
        fields.setdefault("text", verb)
        return fields

    def _reject_with(self, children, fields_at):
        *head, body = children
        pairs = _fields([c for c in head if getattr(c, "type", None) == "FIELD"])
        fields = dict(body)
        fields["remote_host"], fields["remote_ip"] = _host(pairs.get("H"))
        if "F" in pairs:
            fields.setdefault("sender", strip_angle(pairs["F"]))
        return fields

    def reject_line(self, children):
        return self._reject_with(children, 0)

    def with_id(self, children):
        fields = dict(children[1])
        fields["session"] = str(children[0])
        return fields

    def with_id_reject(self, children):
        fields = self._reject_with(children[1:], 0)
        fields["session"] = str(children[0])
        return fields

    def with_id_note(self, children):
        note = str(children[1])
        lowered = note.lower()
        kind = "completed" if lowered.startswith("completed") else "frozen" if "frozen" in lowered else "info"
        return {"session": str(children[0]), "kind": kind, "text": note}

    def with_id_host_note(self, children):
        pairs = _fields([c for c in children[1:-1]])
        note = str(children[-1]).lstrip(": ").strip()
        host, ip = _host(pairs.get("H"))
        return {"session": str(children[0]), "kind": "info", "text": note, "remote_host": host, "remote_ip": ip}

    def connection_note(self, children):
        return {"kind": "info", "text": str(children[0]), "direction": "in"}

    def start(self, children):
        fields = dict(children[-1])
        first = children[0]
        if getattr(first, "type", None) == "EXIM_TIME":
            fields["timestamp"] = parse_iso(str(first)[:19])
        fields["program"] = "exim"
        return fields


def parse_exim_line(line: str) -> dict | None:
    return parse_or_none("exim", EximTransformer, line)
