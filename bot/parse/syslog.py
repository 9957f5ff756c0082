"""Syslog framing: split a line into its header fields and the program's message."""

from __future__ import annotations

from lark import Token, Transformer
from lark.exceptions import LarkError

from bot.parse.grammars import parser
from bot.parse.timestamps import parse_any


class SyslogTransformer(Transformer):
    def program(self, children):
        name = str(children[0])
        pid = int(children[1]) if len(children) > 1 else None
        return name, pid

    def header_bsd(self, children):
        fields = {}
        for child in children:
            if isinstance(child, tuple):
                fields["program"], fields["pid"] = child
            elif child.type in ("TS_3164", "TS_ISO"):
                fields["timestamp"] = parse_any(child.type, str(child))
            elif child.type == "HOSTNAME":
                fields["host"] = str(child)
        return fields

    def header_5424(self, children):
        tokens = {c.type: str(c) for c in children}
        procid = tokens.get("PROCID", "-")
        return {
            "timestamp": parse_any("TS_ISO", tokens["TS_ISO"]),
            "host": tokens.get("HOSTNAME"),
            "program": tokens.get("APP_NAME"),
            "pid": int(procid) if procid.isdigit() else None,
        }

    def start(self, children):
        header = children[0]
        message = str(children[1]) if len(children) > 1 and isinstance(children[1], Token) else ""
        return header, message


def parse_syslog_header(line: str) -> tuple[dict, str] | None:
    """Return (header fields, message text), or None when the line has no syslog header."""
    try:
        return parser("syslog", SyslogTransformer).parse(line)
    except LarkError:
        return None
