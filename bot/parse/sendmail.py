"""Sendmail: stat=, dsn=, relay=, ruleset= reject lines, and DSN notices."""

from __future__ import annotations

import re

from lark import Transformer

from bot.parse.grammars import parse_or_none
from bot.parse.peers import strip_angle
from bot.parse.reply import parse_reply

# Split "a=1, b=two words, c=3" before each ", key=": values may hold spaces and commas.
_FIELD_SPLIT = re.compile(r", (?=[a-z][a-z0-9_]*=)")


def _pairs(run: str) -> dict[str, str]:
    pairs = {}
    for item in _FIELD_SPLIT.split(run):
        key, _, value = item.partition("=")
        pairs[key] = value
    return pairs


def _relay(value: str | None) -> tuple[str | None, str | None]:
    """'mx.example.org. [192.0.2.25]' -> ('mx.example.org', '192.0.2.25'); '[192.0.2.25]' -> (None, ip)."""
    if not value:
        return None, None
    name, _, rest = value.partition("[")
    ip = rest.split("]", 1)[0] or None
    name = name.strip().rstrip(".")
    if name.startswith("localhost") or not name:
        name = name or None
    return name, ip


def _delay(value: str | None) -> float | None:
    """'00:00:01' or '1+02:03:04' -> seconds."""
    if not value:
        return None
    days, _, clock = value.rpartition("+")
    try:
        hours, minutes, seconds = (int(x) for x in clock.split(":"))
    except ValueError:
        return None
    return (int(days) if days else 0) * 86400 + hours * 3600 + minutes * 60 + seconds


class SendmailTransformer(Transformer):
    def fields(self, children):
        pairs = _pairs(str(children[0]))
        fields: dict = {"kind": "info"}
        if "to" in pairs:
            fields.update(kind="status", recipient=strip_angle(pairs["to"].split(",")[0]), direction="out")
            fields["remote_host"], fields["remote_ip"] = _relay(pairs.get("relay"))
            fields["delay"] = _delay(pairs.get("delay"))
            fields["enhanced_status"] = pairs.get("dsn")
            stat = pairs.get("stat", "")
            fields["text"] = stat
            fields.update(_status(stat, pairs.get("dsn")))
            if "(" in stat:  # "Sent (4ABC Message accepted for delivery)" / "Deferred: 451 4.7.1 ..."
                inner = stat[stat.find("(") + 1 : stat.rfind(")")]
                fields["text"] = inner or stat
            reply = parse_reply(stat.split(": ", 1)[1] if ": " in stat else stat)
            if reply.code is not None:
                fields["reply_code"] = reply.code
            fields["stage"] = reply.stage
            if "relay" in pairs:
                fields["relay"] = pairs["relay"]
        elif "from" in pairs:
            fields.update(kind="queued", sender=strip_angle(pairs["from"]))
            fields["message_id"] = strip_angle(pairs["msgid"]) if "msgid" in pairs else None
            fields["remote_host"], fields["remote_ip"] = _relay(pairs.get("relay"))
        elif "reject" in pairs:
            reply = parse_reply(pairs["reject"])
            ruleset = pairs.get("ruleset", "")
            fields.update(
                kind="reject",
                status="rejected" if (reply.code or 500) >= 500 else "deferred",
                text=reply.text,
                reply_code=reply.code,
                enhanced_status=reply.enhanced,
                direction="in",
            )
            fields["remote_host"], fields["remote_ip"] = _relay(pairs.get("relay"))
            stage = {
                "check_rcpt": "rcpt",
                "check_mail": "mail",
                "check_relay": "connect",
                "check_data": "end-of-data",
                "check_compat": "rcpt",
            }.get(ruleset)
            fields["stage"] = stage
            argument = strip_angle(pairs.get("arg1", ""))
            if stage == "mail":
                fields["sender"] = argument
            elif "@" in argument:
                fields["recipient"] = argument
        return fields

    def dsn_notice(self, children):
        return {"kind": "notification", "text": f"DSN {children[0]}: {children[1]}"}

    def address_note(self, children):
        address, _, text = str(children[0]).partition("... ")
        return {"kind": "info", "recipient": strip_angle(address), "text": text}

    def queue_record(self, children):
        fields = dict(children[1])
        fields["session"] = str(children[0])
        return fields


def _status(stat: str, dsn: str | None) -> dict:
    lowered = stat.lower()
    if lowered.startswith("sent"):
        return {"status": "delivered"}
    if lowered.startswith("deferred") or (dsn or "").startswith("4"):
        return {"status": "deferred"}
    if "queued" in lowered and not dsn:
        return {"status": "deferred"}
    return {"status": "bounced"}


def parse_sendmail_message(message: str) -> dict | None:
    return parse_or_none("sendmail", SendmailTransformer, message)
