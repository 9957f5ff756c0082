"""OpenSMTPD: 'smtpd[pid]: <session> <smtp|mta> <event> key=value ...'."""

from __future__ import annotations

import re

from lark import Transformer

from bot.parse.grammars import parse_or_none
from bot.parse.peers import strip_angle
from bot.parse.reply import parse_reply

_PAIR = re.compile(r'([a-z][a-z0-9_-]*)=("[^"]*"|\S*)')
_RESULTS = {"ok": "delivered", "tempfail": "deferred", "permfail": "bounced", "loop": "bounced"}


def _pairs(run: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip('"') for m in _PAIR.finditer(run)}


class OpenSmtpdTransformer(Transformer):
    def start(self, children):
        session, subsystem, event = str(children[0]), str(children[1]), str(children[2])
        pairs = _pairs(str(children[3])) if len(children) > 3 else {}
        # An envelope id's first 8 hex digits are its message id: deliveries of one message
        # happen in several sessions (a deferral, then a retry), so the story keys on that.
        evpid = pairs.get("evpid", "")
        fields: dict = {
            "session": evpid[:8] if len(evpid) == 16 else session,
            "kind": "info",
            "text": f"{subsystem} {event}",
        }
        if event == "connected":
            fields.update(kind="connect", remote_ip=pairs.get("address"), remote_host=pairs.get("host"))
        elif event == "envelope":
            fields.update(
                kind="queued",
                sender=strip_angle(pairs.get("from", "")),
                recipient=strip_angle(pairs.get("to", "")) or None,
            )
        elif event in ("delivery", "bounce"):
            status = _RESULTS.get(pairs.get("result", "").lower(), "unknown")
            reply = parse_reply(pairs.get("stat", ""))
            relay = pairs.get("relay", "")  # "192.0.2.25 (mx.example.org)"
            ip, _, name = relay.partition(" (")
            fields.update(
                kind="status",
                status=status,
                recipient=strip_angle(pairs.get("to", "")),
                sender=strip_angle(pairs.get("from", "")),
                text=reply.text,
                reply_code=reply.code,
                enhanced_status=reply.enhanced,
                stage=reply.stage,
                remote_ip=ip or None,
                remote_host=name.rstrip(")") or None,
                direction="out" if subsystem == "mta" else "in",
            )
        elif event == "failed-command":
            fields["session"] = None  # an SMTP-time refusal: no message was queued
            command = pairs.get("command", "")
            reply = parse_reply(pairs.get("result", ""))
            verb = command.split(" ", 1)[0].upper()
            stage = {
                "RCPT": "rcpt",
                "MAIL": "mail",
                "DATA": "data",
                "EHLO": "ehlo",
                "HELO": "ehlo",
                "STARTTLS": "starttls",
                "AUTH": "auth",
            }.get(verb)
            recipient = command.partition(":")[2].strip().strip("<>") if verb == "RCPT" else None
            fields.update(
                kind="reject",
                status="rejected" if (reply.code or 500) >= 500 else "deferred",
                recipient=recipient or None,
                text=reply.text,
                reply_code=reply.code,
                enhanced_status=reply.enhanced,
                stage=stage,
                direction="in",
            )
        return fields


def parse_opensmtpd_message(message: str) -> dict | None:
    return parse_or_none("opensmtpd", OpenSmtpdTransformer, message)
