"""Haraka: plugin hook results (retval=DENY/DENYSOFT) and outbound delivered/temp-fail/bounce lines."""

from __future__ import annotations

import re

from lark import Transformer

from bot.parse.grammars import parse_or_none
from bot.parse.peers import strip_angle
from bot.parse.reply import parse_reply
from bot.parse.timestamps import parse_iso

_PAIR = re.compile(r'([a-z][a-z0-9_]*)=("[^"]*"|\S*)')
_HOOK_STAGES = {
    "rcpt": "rcpt",
    "mail": "mail",
    "data_post": "end-of-data",
    "data": "data",
    "helo": "ehlo",
    "ehlo": "ehlo",
    "connect": "connect",
    "queue": "end-of-data",
    "queue_outbound": "end-of-data",
}


def _pairs(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip('"') for m in _PAIR.finditer(text)}


class HarakaTransformer(Transformer):
    def start(self, children):
        tokens = {c.type: str(c) for c in children}
        uuid = tokens["UUID"].strip("[]")
        plugin = tokens["PLUGIN"].strip("[]")
        text = tokens.get("HARAKA_TEXT", "")
        fields: dict = {"kind": "info", "text": text, "session": uuid.split(".")[0] or None, "program": "haraka"}
        if "HARAKA_TIME" in tokens:
            fields["timestamp"] = parse_iso(tokens["HARAKA_TIME"])
        if plugin == "core" and text.startswith("hook="):
            pairs = _pairs(text)
            retval = pairs.get("retval", "")
            if retval in ("DENY", "DENYSOFT", "DENYDISCONNECT", "DENYSOFTDISCONNECT"):
                hook = pairs.get("hook", "")
                message = pairs.get("msg", "")
                reply = parse_reply(message)
                fields.update(
                    kind="reject",
                    status="deferred" if "SOFT" in retval else "rejected",
                    stage=_HOOK_STAGES.get(hook),
                    text=f"{retval} by {pairs.get('plugin', '')}: {message}",
                    reply_code=reply.code,
                    enhanced_status=reply.enhanced,
                    direction="in",
                )
                if hook == "rcpt":
                    fields["recipient"] = strip_angle(pairs.get("params", "").split(" ")[0]) or None
                elif hook == "mail":
                    fields["sender"] = strip_angle(pairs.get("params", "").split(" ")[0]) or None
        elif plugin == "outbound":
            pairs = _pairs(text)
            lowered = text.lower()
            status = (
                "delivered"
                if lowered.startswith("delivered")
                else "deferred"
                if "temp fail" in lowered or lowered.startswith("temp_fail")
                else "bounced"
                if "bounce" in lowered
                else None
            )
            if status:
                response = pairs.get("response") or text.split(":", 1)[-1]
                reply = parse_reply(response.strip())
                domain = pairs.get("domain")
                fields.update(
                    kind="status",
                    status=status,
                    recipient=f"@{domain}" if domain else None,
                    remote_host=pairs.get("host"),
                    remote_ip=pairs.get("ip"),
                    text=reply.text,
                    reply_code=reply.code,
                    enhanced_status=reply.enhanced,
                    stage=reply.stage,
                    direction="out",
                )
        return fields


def parse_haraka_line(line: str) -> dict | None:
    return parse_or_none("haraka", HarakaTransformer, line)
