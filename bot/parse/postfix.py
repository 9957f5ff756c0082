"""Postfix: turn the message part of a postfix/* syslog line into Event fields."""

from __future__ import annotations

import re
from functools import cache

from bot.parse import grammars
from bot.parse.grammars import derived_regexes, parser, token_path, token_pattern
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
    return kv_pairs(str(children[0]))


def kv_pairs(text: str) -> dict[str, str]:
    """The pairs of TEXT, a KV_LIST (grammar/postfix.lark): what _KV_PAIRS.findall reads, a key
    given twice keeping its last value, as Postfix means. Most lists are split on ", " instead
    (1% of a worker's instructions less than the findall), which reads them the same when
    - every space in TEXT is in a ", ": then the pairs are separated by ", " (the grammar's other
      separator is a lone space), and a space in a value comes with a comma, and
    - each value that starts with "<" is one whole <...> with no other "<" or ">" in it, as the
      findall reads it: a value in angle brackets that a split cut, or one the findall would
      read only the start of, fails that, and the findall reads the list."""
    items = text.split(", ")
    if text.count(" ") == len(items) - 1:
        pairs = {}
        for item in items:
            key, _, value = item.partition("=")
            if value[:1] == "<" and (value[-1:] != ">" or "<" in value[1:] or ">" in value[1:-1]):
                break
            pairs[key] = value
        else:
            return pairs
    return dict(_KV_PAIRS.findall(text))


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
def _kv_record_parts() -> str:
    # KV_RECORD with its parts as groups: the lexer matched the record as one token, and this
    # splits it the same way (the same regex, so the same split).
    return _token_path_regexes()["kv_record_parts"]


@cache
def _queue_record_path() -> re.Pattern:
    """`QUEUE_ID ":" KV_RECORD -> kv_record` of grammar/postfix.lark as one regex (token_path):
    the from=, message-id= and to=...status= lines that are most of what ingest keeps. It reads
    them as the parser does: QUEUE_ID is the only terminal of priority 2, so the lexer tries it
    first; ":" is the only token that can follow it; and after the colon KV_RECORD, of unbounded
    width, comes first of the priority-0 terminals, none of which can start with "key=".
    Any other line (or a record followed by anything else) goes to the parser."""
    return re.compile(_token_path_regexes()["queue_record"])


@cache
def _token_path_regexes() -> dict[str, str]:
    # built from the grammar once, then read from the data cache: a log whose lines all take
    # these paths is read without importing Lark
    return derived_regexes("postfix", _derive_token_path_regexes, __file__)


def _derive_token_path_regexes() -> dict[str, str]:
    lark = parser("postfix", PostfixTransformer)
    kv = lark.get_terminal("KV_LIST").pattern.to_regexp()
    parts = f"(?P<kv>{kv})(?: +(?P<paren>{PAREN_PATTERN}))?(?P<returned>{RETURNED_PATTERN})?"
    record = f"(?>{parts})"  # KV_RECORD's own regex, its parts named
    queue_record = token_path(lark, token_pattern(lark, "QUEUE_ID", "session"), ":", record)
    noqueue_reject = token_path(
        lark,
        "NOQUEUE:",
        token_pattern(lark, "REJECT_ACTION", "action"),
        token_pattern(lark, "REJECT_STAGE", "stage"),
        "from",
        token_pattern(lark, "PEER", "peer"),
        ":",
        token_pattern(lark, "REJECT_TEXT", "text"),
        ";",
        token_pattern(lark, "KV_LIST", "pairs"),
    )
    removed = token_path(lark, token_pattern(lark, "QUEUE_ID", "session"), ":", token_pattern(lark, "REMOVED"))
    return {
        "kv_record_parts": parts,
        "queue_record": queue_record.pattern,
        "noqueue_reject": noqueue_reject.pattern,
        "queue_removed": removed.pattern,
    }


def _record_fields(session: str, parts: re.Match) -> dict:
    """The fields of a queue record: SESSION, its queue id, and PARTS, KV_RECORD split."""
    fields = _kv_fields(kv_pairs(parts.group("kv")), parts.group("paren"), parts.group("returned"))
    fields["session"] = session
    return fields


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


def _reject_fields(action: str, stage: str, peer: str, text: str, pairs: dict) -> dict:
    """The fields of an SMTP-time reject: REJECT_ACTION, REJECT_STAGE, PEER, REJECT_TEXT, kv_list."""
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


class PostfixTransformer:  # Lark's transformer protocol, without importing Lark (grammars.parser)
    kv_list = staticmethod(_kv)

    def kv_record(self, children):
        parts = re.fullmatch(_kv_record_parts(), str(children[1]))  # re caches the compiled pattern
        return _record_fields(str(children[0]), parts)

    def removed(self, _children):
        return {"kind": "removed"}

    def notification(self, children):
        return {"kind": "notification", "text": f"{children[0]} {children[1]}"}

    def reject(self, children):
        return _reject_fields(str(children[0]), str(children[1]), str(children[2]), str(children[3]), children[4])

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


@cache
def _noqueue_reject_path() -> re.Pattern:
    """`"NOQUEUE:" REJECT_ACTION REJECT_STAGE "from" PEER ":" REJECT_TEXT ";" KV_LIST` of
    grammar/postfix.lark (noqueue, reject, kv_list) as one regex (token_path): smtpd's rejects,
    the inbound half of a busy log's failures. It reads them as the parser does: no other
    terminal of the first state can match "NOQUEUE:" (queue ids have no O or U), and after it
    each state has one terminal to try, REJECT_STAGE coming before CHECK_TEXT (priority -1)."""
    return re.compile(_token_path_regexes()["noqueue_reject"])


@cache
def _queue_removed_path() -> re.Pattern:
    """`QUEUE_ID ":" "removed"` of grammar/postfix.lark (queue_record, removed) as one regex
    (token_path): qmgr's last line of every message, which `why --log` reads with the rest of a
    message's lines (ingest's prefilter skips it). It reads it as the parser does: QUEUE_ID is
    tried first, as for a record; after the colon "removed" is the only terminal of that state
    that can match a word without "=" that is not a reject action or a notification."""
    return re.compile(_token_path_regexes()["queue_removed"])


def prepare() -> None:
    """Build the token paths' regexes now, not at the first line that needs them."""
    _queue_record_path()
    _noqueue_reject_path()
    _queue_removed_path()


def parse_postfix_message(message: str) -> dict | None:
    record = _queue_record_path().fullmatch(message)
    reject = _noqueue_reject_path().fullmatch(message) if record is None and message[:1] == "N" else None
    removed = _queue_removed_path().fullmatch(message) if record is None and reject is None else None
    if record is not None:
        fields = _record_fields(record.group("session"), record)
    elif reject is not None:
        action, stage, peer, text, pairs = reject.group("action", "stage", "peer", "text", "pairs")
        fields = _reject_fields(action, stage, peer, text, kv_pairs(pairs))
    elif removed is not None:
        fields = {"kind": "removed", "session": removed.group("session")}
    else:
        try:
            fields = parser("postfix", PostfixTransformer).parse(message)
        except grammars.LarkError:
            return None
    if fields.get("kind") == "status" and fields.get("direction") is None:
        fields["direction"] = "out"
    return fields
