"""MDaemon: 'Day YYYY-MM-DD hh:mm:ss: --> reply' session logs, sessions marked by 'Session N;'."""

from __future__ import annotations

from bot.parse.grammars import parse_or_none
from bot.parse.smtp_lines import SmtpLineTransformer
from bot.parse.timestamps import parse_iso


class MdaemonTransformer(SmtpLineTransformer):
    def exchange(self, children):
        arrow, fields = str(children[0]), dict(children[1])
        sent_by_us = arrow == "-->"
        if fields["role"] == "client":
            fields["direction"] = "out" if sent_by_us else "in"
        else:
            fields["direction"] = "in" if sent_by_us else "out"
        return fields

    def session_start(self, children):
        return {
            "kind": "system",
            "session": f"mdaemon-{children[0]}",
            "text": f"Session {children[0]}",
            "session_start": True,
        }

    def system(self, children):
        return {"kind": "system", "text": str(children[0])}

    def start(self, children):
        stamp = str(children[0])
        if stamp[:1].isalpha():
            stamp = stamp[4:]
        fields = dict(children[1])
        fields["timestamp"] = parse_iso(stamp)
        return fields


def parse_mdaemon_line(line: str) -> dict | None:
    return parse_or_none("mdaemon", MdaemonTransformer, line)
