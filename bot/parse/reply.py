"""Read one SMTP reply as MTAs quote it: code, enhanced status, text, stage, remote host.

Used for Postfix status texts, bounce Diagnostic-Code fields and NDR lines alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from bot.parse import grammars
from bot.parse.grammars import derived_regexes, first_tokens, optional, parser, token_path, token_pattern
from bot.parse.peers import split_peer
from bot.phrase_index import FirstListed

# "(in reply to RCPT TO command)" and friends: the step the reply answered.
_IN_REPLY_TO = {
    "mail from": "mail",
    "rcpt to": "rcpt",
    "data": "data",
    "end of data": "end-of-data",
    "ehlo": "ehlo",
    "helo": "ehlo",
    "lhlo": "ehlo",
    "starttls": "starttls",
    "auth": "auth",
    "xforward": "ehlo",
    "xclient": "ehlo",
}

# Phrases that name the step without the "(in reply to ...)" suffix.
_STAGE_PHRASES = (
    ("initial server greeting", "connect"),
    ("while sending mail from", "mail"),
    ("while sending rcpt to", "rcpt"),
    ("while sending data command", "data"),
    ("while sending message body", "end-of-data"),
    ("while sending end of data", "end-of-data"),
    ("after end of data", "end-of-data"),
    ("after rcpt to", "rcpt"),
    ("after mail from", "mail"),
    ("after data", "data"),
    ("[rcpt_to]", "rcpt"),
    ("does not like recipient", "rcpt"),
    ("does not like sender", "mail"),
    ("[mail_from]", "mail"),
    ("[data]", "end-of-data"),
    ("connect to ", "connect"),
    ("connection refused", "connect"),
    ("connection timed out", "connect"),
    ("no route to host", "connect"),
    ("network is unreachable", "connect"),
    ("name service error", "dns"),
    ("host or domain name not found", "dns"),
    ("host not found", "dns"),
    ("mx record", "dns"),
    ("starttls", "starttls"),
)


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply read from a log line: its codes, text, the stage it answered, who said it."""

    code: int | None
    enhanced: str | None
    text: str  # the whole reply text, code included, suffix removed
    stage: str | None
    remote_host: str | None = None
    remote_ip: str | None = None


class ReplyTransformer:  # Lark's transformer protocol, without importing Lark (grammars.parser)
    def host_said(self, children):
        return ("peer", str(children[0]))

    def remote_server(self, children):
        return ("origin", "remote")

    def remote_said(self, children):
        return ("origin", "remote")

    def start(self, children):
        fields = {}
        for child in children:
            if isinstance(child, tuple):
                fields[child[0]] = child[1]
            else:
                fields[child.type] = str(child)
        return fields


def _strip_stage_suffix(text: str) -> tuple[str, str | None]:
    lowered = text.lower()
    at = lowered.rfind("(in reply to ")
    if at < 0:
        return text, None
    end = lowered.find(" command", at)
    name = lowered[at + len("(in reply to ") : end if end > 0 else None].strip(" )")
    return text[:at].rstrip(), _IN_REPLY_TO.get(name)


_FIRST_STAGE = FirstListed(_STAGE_PHRASES)  # in the table's order: the first phrase listed wins


def stage_from_text(text: str) -> str | None:
    return _FIRST_STAGE(text.lower())


@cache
def _plain_reply_path() -> re.Pattern:
    """`origin? REPLY_CODE_ANY ENHANCED? REPLY_TEXT?` of grammar/reply.lark, with "host PEER said:"
    as the only origin, as one regex (token_path): Postfix's own status texts and the replies
    it quotes, the shapes nearly every reply has. It reads them as the parser does: a text that
    starts with "host" or a digit leaves the lexer one terminal to try at each step (HOST, then
    PEER_HOST, then "said:"; REPLY_CODE_ANY), and after the code ENHANCED is tried before
    REPLY_TEXT (priority 3). Replies with a diagnostic type, a quote or another origin go to
    the parser. Derived from the grammar once, then read from the data cache."""
    return re.compile(_reply_regexes()["plain_reply"])


@cache
def _reply_start() -> re.Pattern:
    """How every reply the grammar reads begins (grammars.first_tokens): a code, "host", "Remote
    ...", a diagnostic type or a quote. Postfix's status texts that quote no reply ("delivered
    to maildir", "connect to ...: Connection timed out", a fifth of a busy log's status lines)
    fail it, and are told apart from replies without a parser run."""
    return re.compile(_reply_regexes()["reply_start"])


@cache
def _reply_regexes() -> dict[str, str]:
    return derived_regexes("reply", _derive_reply_regexes, __file__)


def _derive_reply_regexes() -> dict[str, str]:
    lark = parser("reply", ReplyTransformer)
    host_said = token_path(lark, token_pattern(lark, "HOST"), token_pattern(lark, "PEER_HOST", "peer"), "said:")
    path = token_path(
        lark,
        optional(host_said.pattern),
        token_pattern(lark, "REPLY_CODE_ANY", "REPLY_CODE_ANY"),
        optional(token_pattern(lark, "ENHANCED", "ENHANCED")),
        optional(token_pattern(lark, "REPLY_TEXT", "REPLY_TEXT")),
    )
    return {"plain_reply": path.pattern, "reply_start": first_tokens(lark)}


def prepare() -> None:
    """Build the reply paths' regexes now, not at the first reply that needs them."""
    _plain_reply_path()
    _reply_start()


def _read_reply(body: str) -> dict | None:
    """The fields ReplyTransformer gives for BODY; None when it is no reply."""
    plain = _plain_reply_path().fullmatch(body)
    if plain is not None:
        return {name: value for name, value in plain.groupdict().items() if value is not None}
    if _reply_start().match(body) is None:  # the parser would refuse it at its first token
        return None
    try:
        return parser("reply", ReplyTransformer).parse(body)
    except grammars.LarkError:
        return None


@lru_cache(maxsize=4096)
def parse_reply(text: str) -> Reply:
    """Parse a quoted reply; text that holds no reply still yields its stage hints."""
    body, stage = _strip_stage_suffix(text.strip())
    fields = _read_reply(body)
    if fields is None:
        return Reply(None, None, body, stage or stage_from_text(body))
    code = int(fields["REPLY_CODE_ANY"][:3])
    enhanced = fields.get("ENHANCED")
    rest = fields.get("REPLY_TEXT", "").rstrip("'")
    host, ip = split_peer(fields["peer"]) if "peer" in fields else (None, None)
    reply_text = " ".join(x for x in (str(code), enhanced, rest) if x)
    return Reply(code, enhanced, reply_text, stage or stage_from_text(rest), host, ip)
