"""Postfix: turn the message part of a postfix/* syslog line into Event fields."""

from __future__ import annotations

import re
from functools import cache

from lark import Transformer
from lark.exceptions import LarkError

from bot.parse.grammars import parser
from bot.parse.peers import split_peer, strip_angle
from bot.parse.reply import parse_reply

# Postfix status words -> our delivery statuses.
STATUS_WORDS = {
    "sent": "delivered",
    "deliverable": "delivered",
    "deferred": "deferred",
    "bounced": "bounced",
    "undeliverable": "bounced",
    "expired": "expired",
}

_REJECT_STAGES = {
    "CONNECT": "connect",
    "EHLO": "ehlo",
    "HELO": "ehlo",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
    "BDAT": "end-of-data",
    "END-OF-MESSAGE": "end-of-data",
    "VRFY": "rcpt",
    "ETRN": "ehlo",
}


# The KV terminal of grammar/postfix.lark, word for word (a test holds them together):
# the grammar matched the whole list as one token, this splits it into pairs.
KV_PATTERN = r"[a-z_-]+=(<[^<>\n]*>|[^,\s()]*)"
# The same pattern with the key as a group of its own: findall then gives the pairs in one call.
_KV_PAIRS = re.compile(KV_PATTERN.replace("[a-z_-]+=", "([a-z_-]+)=", 1))


def _kv(children) -> dict[str, str]:
    return dict(_KV_PAIRS.findall(str(children[0])))  # a key given twice: the last value, as Postfix means


def _reply_fields(text: str) -> dict:
    reply = parse_reply(text)
    fields = {"text": reply.text, "stage": reply.stage}
    if reply.code is not None:
        fields["reply_code"] = reply.code
    if reply.enhanced:
        fields["enhanced_status"] = reply.enhanced
    if reply.remote_host or reply.remote_ip:
        fields["remote_host"], fields["remote_ip"] = reply.remote_host, reply.remote_ip
    return fields


# KV_RECORD's other parts, word for word as grammar/postfix.lark has them (the same test holds them).
PAREN_PATTERN = r"\([^\n]*\)"
RETURNED_PATTERN = r",\s*returned to sender"


@cache
def _kv_record_parts() -> re.Pattern:
    # KV_RECORD's parts, each a group: the lexer matched the record as one token, and this
    # splits it the same way (the same regex, so the same split).
    kv = parser("postfix", PostfixTransformer).get_terminal("KV_LIST").pattern.to_regexp()
    return re.compile(f"(?P<kv>{kv})(?: +(?P<paren>{PAREN_PATTERN}))?(?P<returned>{RETURNED_PATTERN})?")


class PostfixTransformer(Transformer):
    kv_list = staticmethod(_kv)

    def kv_record(self, children):
        session, record = str(children[0]), str(children[1])
        parts = _kv_record_parts().fullmatch(record)
        fields = self._kv_fields(_kv([parts.group("kv")]), parts.group("paren"), parts.group("returned"))
        fields["session"] = session
        return fields

    @staticmethod
    def _kv_fields(pairs: dict, paren: str | None, returned: str | None) -> dict:
        fields: dict = {"kind": "info"}
        if "to" in pairs:
            fields["recipient"] = strip_angle(pairs["to"])
            fields["kind"] = "status" if "status" in pairs else "info"
        if "orig_to" in pairs:
            fields["orig_recipient"] = strip_angle(pairs["orig_to"])
        if "from" in pairs:
            fields["sender"] = strip_angle(pairs["from"])
            if "to" not in pairs:
                fields["kind"] = "queued"
        if "message-id" in pairs:
            fields["message_id"] = strip_angle(pairs["message-id"])
            fields["kind"] = "message-id"
        if "client" in pairs:
            fields["remote_host"], fields["remote_ip"] = split_peer(pairs["client"])
            fields["kind"] = "client"
        if "relay" in pairs:
            fields["relay"] = pairs["relay"]
            host, ip = split_peer(pairs["relay"])
            fields["remote_host"], fields["remote_ip"] = host, ip
        if "delay" in pairs:
            try:
                fields["delay"] = float(pairs["delay"])
            except ValueError:
                pass
        if "dsn" in pairs:
            fields["enhanced_status"] = pairs["dsn"]
        if "status" in pairs:
            fields["status"] = STATUS_WORDS.get(pairs["status"], pairs["status"])
        if paren is not None and fields["kind"] == "status":
            dsn = fields.get("enhanced_status")
            fields.update(_reply_fields(paren[1:-1]))
            if dsn:  # the dsn= field is Postfix's own verdict: it wins over the quoted text
                fields["enhanced_status"] = dsn
        elif paren is not None:
            fields["text"] = paren[1:-1]
        if returned is not None:
            fields["kind"] = "expired"
            fields["status"] = "expired"
            fields["text"] = "the message expired in the queue and was returned to the sender"
        return fields

    def removed(self, _children):
        return {"kind": "removed"}

    def notification(self, children):
        return {"kind": "notification", "text": f"{children[0]} {children[1]}"}

    def reject(self, children):
        action, stage, peer, text, pairs = (
            str(children[0]),
            str(children[1]),
            str(children[2]),
            str(children[3]),
            children[4],
        )
        fields = _reply_fields(text)
        host, ip = split_peer(peer)
        fields.update(
            kind="reject",
            status="rejected" if action.startswith(("reject", "milter-reject")) else action.rstrip(":"),
            stage=_REJECT_STAGES.get(stage, fields.get("stage")),
            remote_host=host,
            remote_ip=ip,
            direction="in",
        )
        if action == "reject_warning:" or action.startswith("defer"):
            fields["status"] = "deferred" if action.startswith("defer") else "warning"
        if "from" in pairs:
            fields["sender"] = strip_angle(pairs["from"])
        if "to" in pairs:
            fields["recipient"] = strip_angle(pairs["to"])
        return fields

    def reject_check(self, children):
        action, text = str(children[0]), str(children[1])
        fields: dict = {"kind": "reject", "status": "rejected" if "reject" in action else action.rstrip(":")}
        fields["direction"] = "in"
        # "header Subject: x from host[ip]; from=<a> to=<b> proto=ESMTP helo=<h>: 5.7.1 text"
        detail, _, reply_text = text.rpartition(">: ")
        for key in ("from", "to"):
            at = text.find(f" {key}=<")
            if at >= 0:
                end = text.find(">", at)
                fields["sender" if key == "from" else "recipient"] = text[at + len(key) + 3 : end]
        if detail:
            fields.update(_reply_fields(reply_text))
        else:
            fields["text"] = text
        fields["stage"] = "end-of-data"
        return fields

    def queue_record(self, children):
        fields = children[1]  # a dict this parse made: no copy needed
        fields["session"] = str(children[0])
        return fields

    def noqueue(self, children):
        return children[0]

    def peer_event(self, children):
        verb, peer = str(children[0]), split_peer(str(children[1]))
        return {
            "kind": verb,
            "remote_host": peer[0],
            "remote_ip": peer[1],
            "direction": "in",
            "text": str(children[2]) if len(children) > 2 else None,
        }

    def peer_after(self, children):
        verb, step, peer = str(children[0]), str(children[1]), split_peer(str(children[2]))
        stage = _REJECT_STAGES.get(step.split()[0].upper())
        return {
            "kind": "lost",
            "remote_host": peer[0],
            "remote_ip": peer[1],
            "stage": stage,
            "direction": "in",
            "text": f"{verb} {step}",
        }

    def postscreen_event(self, children):
        return {"kind": "postscreen", "text": " ".join(str(c) for c in children), "direction": "in"}

    def smtp_connect_error(self, children):
        host, ip = split_peer(str(children[0]))
        return {
            "kind": "connect-error",
            "remote_host": host,
            "remote_ip": ip,
            "stage": "connect",
            "direction": "out",
            "text": f"connect to {children[0]}: {children[1]}",
        }

    def warning(self, children):
        return {"kind": "warning", "text": f"{children[0]} {children[1]}"}


def parse_postfix_message(message: str) -> dict | None:
    try:
        fields = parser("postfix", PostfixTransformer).parse(message)
    except LarkError:
        return None
    if fields.get("kind") == "status" and fields.get("direction") is None:
        fields["direction"] = "out"
    return fields
