"""VisNetic / IceWarp / Merak session logs: 'IP [session] time >>> payload'."""

from __future__ import annotations

from bot.parse.grammars import parse_or_none
from bot.parse.smtp_lines import SmtpLineTransformer
from bot.parse.timestamps import parse_any


class SessionTransformer(SmtpLineTransformer):
    # ">>>" is what the logging server sent. When it sent commands it was the client,
    # so the message was going out; when it sent replies, the message was coming in.
    def sent(self, children):
        fields = children[0]
        return {**fields, "direction": "out" if fields["role"] == "client" else "in"}

    def received(self, children):
        fields = children[0]
        return {**fields, "direction": "in" if fields["role"] == "client" else "out"}

    def system(self, children):
        return {"kind": "system", "text": str(children[0])}

    def start(self, children):
        peer, session, stamp, body = children
        fields = dict(body)
        fields["session"] = str(session)
        fields["timestamp"] = parse_any(stamp.type, str(stamp))
        if str(peer) != "SYSTEM":
            fields["remote_ip"] = str(peer)
        return fields


def parse_session_line(line: str) -> dict | None:
    return parse_or_none("session", SessionTransformer, line)
