"""Raw SMTP transcripts: 'S: 250 OK' / 'C: RCPT TO:<x>' and arrow variants."""

from __future__ import annotations

from lark.exceptions import LarkError

from bot.parse.grammars import parser
from bot.parse.smtp_lines import SmtpLineTransformer


class TranscriptTransformer(SmtpLineTransformer):
    def start(self, children):
        return dict(children[1])


def parse_transcript_line(line: str) -> dict | None:
    try:
        return parser("transcript", TranscriptTransformer).parse(line.strip())
    except LarkError:
        return None
