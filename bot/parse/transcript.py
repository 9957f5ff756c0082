"""Raw SMTP transcripts: 'S: 250 OK' / 'C: RCPT TO:<x>' and arrow variants."""

from __future__ import annotations

from bot.parse.grammars import parse_or_none
from bot.parse.smtp_lines import SmtpLineTransformer


class TranscriptTransformer(SmtpLineTransformer):
    def start(self, children):
        return dict(children[1])


def parse_transcript_line(line: str) -> dict | None:
    return parse_or_none("transcript", TranscriptTransformer, line.strip())
