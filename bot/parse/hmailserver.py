"""hMailServer: tab-separated SMTPD/SMTPC lines; the payload is an SMTP command or reply."""

from __future__ import annotations

from lark import Transformer

from bot.parse.grammars import parse_or_none
from bot.parse.timestamps import parse_iso
from bot.parse.transcript import parse_transcript_line


class HmailTransformer(Transformer):
    def start(self, children):
        log_type = str(children[0]).strip('"')
        numbers = [str(c) for c in children if c.type == "NUMBER"]
        stamp = next(str(c).strip('"') for c in children if c.type == "QUOTED_TIME")
        quoted = [str(c)[1:-1] for c in children if c.type == "QUOTED"]
        fields: dict = {"timestamp": parse_iso(stamp), "program": log_type}
        if log_type in ("SMTPD", "SMTPC") and len(quoted) >= 2 and len(numbers) >= 2:
            ip, payload = quoted[0], quoted[1]
            fields.update(
                session=f"{log_type}-{numbers[1]}",
                remote_ip=ip or None,
                direction="in" if log_type == "SMTPD" else "out",
            )
            speaker, _, rest = payload.partition(": ")
            smtp = parse_transcript_line(f"{speaker}: {rest}") if speaker in ("SENT", "RECEIVED") else None
            if smtp is not None:
                fields.update(smtp)
                return fields
            fields.update(kind="system", text=payload)
            return fields
        fields.update(kind="info", text=" ".join(quoted))
        return fields


def parse_hmailserver_line(line: str) -> dict | None:
    return parse_or_none("hmailserver", HmailTransformer, line)
