"""qmail-send: deliveries are numbered; 'starting delivery N: msg M to remote R' links them."""

from __future__ import annotations

from lark import Transformer

from bot.parse.grammars import parse_or_none
from bot.parse.peers import strip_angle
from bot.parse.reply import parse_reply, stage_from_text

_OUTCOMES = {"success": "delivered", "failure": "bounced", "deferral": "deferred"}


def decode_report(report: str) -> str:
    """qmail writes ' ' as '_' and a line break as '/'."""
    return " ".join(report.replace("_", " ").replace("/", " ").split())


class QmailTransformer(Transformer):
    def starting(self, children):
        delivery, message, channel, address = (str(c) for c in children)
        return {
            "kind": "starting",
            "session": f"msg {message}",
            "argument": f"delivery {delivery}",
            "recipient": address,
            "direction": "out" if channel == "remote" else "in",
            "relay": channel,
        }

    def outcome(self, children):
        delivery, outcome = str(children[0]), str(children[1])
        text = decode_report(str(children[2])) if len(children) > 2 else ""
        fields = {
            "kind": "qmail-outcome",
            "argument": f"delivery {delivery}",
            "status": _OUTCOMES[outcome],
            "text": text,
        }
        said = text.lower().find("remote host said:")
        reply = parse_reply(text[said:] if said >= 0 else text)
        fields.update(
            reply_code=reply.code,
            enhanced_status=reply.enhanced,
            stage=stage_from_text(text[:said]) if said > 0 else reply.stage,
        )
        if said >= 0 and " " in text[:said]:
            fields["remote_ip"] = text.split(" ", 1)[0] if text[:1].isdigit() else None
        return fields

    def info_msg(self, children):
        return {"kind": "queued", "session": f"msg {children[0]}", "sender": strip_angle(str(children[2]))}

    def new_msg(self, children):
        return {"kind": "info", "session": f"msg {children[0]}", "text": f"new msg {children[0]}"}

    def end_msg(self, children):
        return {"kind": "removed", "session": f"msg {children[0]}", "text": f"end msg {children[0]}"}

    def bounce_msg(self, children):
        return {"kind": "notification", "session": f"msg {children[0]}", "text": "bounce sent"}

    def note(self, children):
        return {"kind": "info", "text": str(children[0])}

    def start(self, children):
        return dict(children[-1])


def parse_qmail_line(line: str) -> dict | None:
    return parse_or_none("qmail", QmailTransformer, line)
