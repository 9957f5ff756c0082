"""Token paths (bot/parse/grammars.py token_path) must read a line exactly as the Lark parser
reads it: whenever a path takes a line, the parser gives the same fields; a line it does not
take goes to the parser anyway. Checked on every fixture line, generated log lines, hand-made
edge lines and thousands of seeded mutations of real ones (a space, a character or a piece
more or less), which is where a path and the parser could part ways."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest
from lark import Lark
from lark.exceptions import LarkError

from bot.parse.grammars import first_tokens, parser, token_path, token_pattern
from bot.parse.postfix import (
    PostfixTransformer,
    _kv,
    _noqueue_reject_path,
    _queue_record_path,
    _queue_removed_path,
    _record_fields,
    _reject_fields,
    parse_postfix_message,
)
from bot.parse.reply import (
    ReplyTransformer,
    _plain_reply_path,
    _read_reply,
    _reply_start,
    _strip_stage_suffix,
    parse_reply,
)
from bot.parse.syslog import plain_syslog_fields

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from generate_postfix_log import generate_mix  # noqa: E402

# Where a path and the parser could disagree: spaces, ids, keys and the parenthesised text.
EDGE_MESSAGES = [
    "3F2A1B4C5D: removed=x",
    "3F2A1B4C5D: removed",
    "3F2A1B4C5D:removed  ",
    "3F2A1B4C5D : removed",
    "3F2A1B4C5D: removedx",
    "3F2A1B4C5D: removed x",
    "3F2A1B4C5D: removed, returned to sender",
    "4bTk2w1Xz4z9Hq: removed",
    "3F2A: removed",
    "3F2A1B4C5D: reject=x",
    "3F2A1B4C5D:to=<a@b.example>, status=sent (250 ok)",
    "3F2A1B4C5D :  to=<a@b.example>,  status=sent  (250 ok)  ",
    "  3F2A1B4C5D: from=<>, size=10, nrcpt=1 (queue active)",
    "3F2A1B4C5D: from=<a@b.example>, size=10, nrcpt=1 (queue active) trailing",
    "3F2A1B4C5D: from=<a@b.example>, status=expired, returned to sender",
    "3F2A1B4C5D: to=<a@b.example>, status=bounced (x) , returned to sender",
    "3F2A1B4C5D: to=<a@b.example>, status=deferred (a (nested) text)",
    "3F2A1B4C5D: to=<a@b.example>, status=deferred ()",
    "3F2A1B4C5D: to=<a@b.example>,status=sent",
    "3F2A1B4C5D: to=<a@b.example>,, status=sent",
    "3F2A1B4C5D: to=<a@b.example> status=sent",
    "3F2A: to=<a@b.example>, status=sent (250 ok)",  # too short for a queue id
    "4bTk2w1Xz4z9Hq: to=<a@b.example>, status=sent (250 ok)",
    "4bTk2w1Xz4z9Hq: message-id=<x@y>",
    "NOQUEUE: to=<a@b.example>",
    "3F2A1B4C5D: sender non-delivery notification: 4ABC123DEF",
    "3F2A1B4C5D: reject: RCPT from x[192.0.2.1]: 550 5.1.1 no; from=<a> to=<b>",
    "3F2A1B4C5D: to=<a@b.example>, status=sent (250 ok)\r",
    "3F2A1B4C5D: to=<a@b.example>, status=sent (250 ok)\n",
    "3F2A1B4C5D: to=<a@b.example\n>, status=sent",
    "3F2A1B4C5D: to=<a@b.example>, status=sent\t(250 ok)",
    "NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <b@c>: no; from=<a@d> to=<b@c> proto=ESMTP helo=<h>",
    "NOQUEUE: reject: RCPTX from x[192.0.2.1]: 550 no; from=<a> to=<b>",
    "NOQUEUE: reject: header Subject: x from y[192.0.2.1]; from=<a> to=<b>: 5.7.1 no",
    "NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 no; from=<a>; from=<b> to=<c>",
    "NOQUEUE: reject: RCPT from x[192.0.2.1]:550 no;from=<a> to=<b>",
    "NOQUEUE:reject:RCPT from [192.0.2.1]: 4.7.1 x; from=<a> to=<b>",
    "NOQUEUE: defer_if_permit: RCPT from x[2001:db8::1]:25: 450 4.7.1 x; from=<> to=<b> proto=SMTP",
    "NOQUEUE: milter-reject: END-OF-MESSAGE from x[192.0.2.1]: 5.7.1 spam; from=<a> to=<b>",
    "NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 no; from=<a> to=<b> trailing (x)",
    "NOQUEUE: reject: RCPT from x[192.0.2.1]: ; from=<a> to=<b>",
]
EDGE_REPLIES = [
    "250 2.0.0 Ok: queued as 4ABC123",
    "250 2.0.0",
    "250",
    "250-2.0.0 Ok",
    "250:ok",
    "2500 not a code",
    "250 2.0.0.1 not an enhanced code",
    "250 2.0 short",
    "550 5.1.1. trailing dot",
    "host mx.example.org[192.0.2.25] said: 550 5.1.1 <x@example.org>: User unknown",
    "hostmx.example.org said: 550 5.1.1 x",
    "host [192.0.2.25] said:550 5.1.1 x",
    "host mx.example.org[192.0.2.25] said: smtp; 550 5.1.1 x",
    "host mx.example.org said: '550 5.1.1 quoted'",
    "host said: 550 x",
    "host mx.example.org[192.0.2.25] said:",
    "smtp; 550 5.1.1 User unknown",
    "'550 5.1.10 RESOLVER.ADR.RecipientNotFound'",
    "Remote Server returned '550 5.1.10 x'",
    "Remote host said: 554 5.7.1 x",
    "connect to mx.example.org[192.0.2.25]:25: Connection timed out",
    "  550   5.1.1   spaced   ",
    "550 5.1.1 x\ty",
    "550 5.1.1 x\nmore",
    "delivered to maildir",
    "delivered via dovecot service",
    "Host or domain name not found. Name service error for name=x.example type=MX: Host not found",
    "   ",
    "",
    " 550 x",
    "SMTP; 550 5.1.1 x",
    "x-postfix;550 5.1.1 x",
    "x-postfix 550 5.1.1 x",
    "Remote Server returned",
    "Remote server returned '550 x'",
    "hosts 550 x",
    "'",
    "600 not a code",
]


def _fixture_lines() -> list[str]:
    files = [p for p in (ROOT / "tests" / "fixtures").rglob("*") if p.is_file() and p.suffix in (".log", ".txt")]
    files += list((ROOT / "examples").iterdir())
    lines = [line for path in files for line in path.read_text(errors="replace").splitlines()]
    return lines + [line.rstrip("\n") for line in generate_mix(4000)]


def _postfix_messages() -> list[str]:
    messages = []
    for line in _fixture_lines():
        fields = plain_syslog_fields(line)  # (timestamp, host, program, pid, message)
        if fields is not None and "postfix" in fields[2]:
            messages.append(fields[4])
    return messages


MESSAGES = _postfix_messages()


def _mutations(texts: list[str], count: int, seed: int) -> list[str]:
    """COUNT seeded edits of TEXTS: a character dropped, doubled or replaced by one of the
    characters the grammars care about, or a piece cut off either end."""
    rng = random.Random(seed)
    alphabet = " ,:;=<>()[]\t.-5Aa@"
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        if not text:
            continue
        at = rng.randrange(len(text))
        edit = rng.randrange(5)
        if edit == 0:
            text = text[:at] + text[at + 1 :]
        elif edit == 1:
            text = text[:at] + text[at] + text[at:]
        elif edit == 2:
            text = text[:at] + rng.choice(alphabet) + text[at + 1 :]
        elif edit == 3:
            text = text[:at]
        else:
            text = text[at:]
        out.append(text)
    return out


def _lark_or_none(lark: Lark, text: str):
    try:
        return lark.parse(text)
    except LarkError:
        return None


def _replies_quoted(messages: list[str]) -> list[str]:
    replies = []
    for message in messages:
        match = re.search(r"\((.*)\)$", message)
        if match:
            replies.append(_strip_stage_suffix(match.group(1).strip())[0])
    return replies


def test_the_common_records_take_the_path():
    lark = parser("postfix", PostfixTransformer)
    records = [m for m in MESSAGES if re.match(r"[0-9A-F]{10}: (to|from|message-id)=", m) and _lark_or_none(lark, m)]
    assert len(records) > 1000
    missed = [m for m in records if _queue_record_path().fullmatch(m) is None]
    assert missed == []
    rejects = [m for m in MESSAGES if m.startswith("NOQUEUE: reject: RCPT") and _lark_or_none(lark, m)]
    assert len(rejects) > 40
    assert [m for m in rejects if _noqueue_reject_path().fullmatch(m) is None] == []
    removed = [m for m in MESSAGES if m.endswith(": removed")]
    assert len(removed) > 300
    assert [m for m in removed if _queue_removed_path().fullmatch(m) is None] == []


def _reject_from(match: re.Match) -> dict:
    action, stage, peer, said, pairs = match.group("action", "stage", "peer", "text", "pairs")
    return _reject_fields(action, stage, peer, said, _kv([pairs]))


# name: (the path, its fields from a match, the parser it stands for, the texts it meets, the
# seed of their mutations, how many of them it must take at least)
PATHS = {
    "queue record": (
        _queue_record_path,
        lambda match: _record_fields(match.group("session"), match),
        lambda: parser("postfix", PostfixTransformer),
        lambda: MESSAGES + EDGE_MESSAGES,
        4,
        2000,
    ),
    "noqueue reject": (
        _noqueue_reject_path,
        _reject_from,
        lambda: parser("postfix", PostfixTransformer),
        lambda: [m for m in MESSAGES + EDGE_MESSAGES if m.startswith("NOQUEUE")],
        6,
        100,
    ),
    "queue removed": (
        _queue_removed_path,
        lambda match: parse_postfix_message(match.string),
        lambda: parser("postfix", PostfixTransformer),
        lambda: [m for m in MESSAGES + EDGE_MESSAGES if "remove" in m],
        7,
        300,
    ),
    "reply": (
        _plain_reply_path,
        lambda match: _read_reply(match.string),
        lambda: parser("reply", ReplyTransformer),
        lambda: _replies_quoted(MESSAGES) + EDGE_REPLIES,
        5,
        1000,
    ),
}


@pytest.mark.parametrize("name", PATHS)
def test_a_token_path_reads_what_the_parser_reads(name):
    path, fields_of, lark, corpus, seed, least = PATHS[name]
    texts = corpus() + _mutations(corpus(), 6000, seed=seed)
    taken = 0
    for text in texts:
        match = path().fullmatch(text)
        if match is None:
            continue
        taken += 1
        assert fields_of(match) == _lark_or_none(lark(), text), repr(text)
    assert taken > least  # the path takes the lines it is there for


def test_a_reply_the_path_does_not_take_still_parses():
    for text in ("smtp; 550 5.1.1 User unknown", "Remote Server returned '550 5.1.10 x'"):
        assert _plain_reply_path().fullmatch(text) is None
        assert _read_reply(text)["REPLY_CODE_ANY"].startswith("550")
    assert _read_reply("no reply here") is None


def test_a_text_the_reply_start_refuses_the_parser_refuses_too():
    # _read_reply answers "no reply" from _reply_start alone: that must be the parser's answer
    lark = parser("reply", ReplyTransformer)
    texts = _replies_quoted(MESSAGES) + EDGE_REPLIES
    texts += _mutations(texts, 6000, seed=9) + _mutations(EDGE_REPLIES, 3000, seed=10)
    refused = [t for t in texts if _reply_start().match(t) is None]
    assert [t for t in refused if _lark_or_none(lark, t) is not None] == []
    assert len(refused) > 500  # Postfix's texts that quote no reply are among them
    for text in ("delivered to maildir", "connect to mx.example.org[192.0.2.25]:25: Connection timed out", ""):
        assert text in refused
    # and what it lets through is read as before: by the path, else by the parser
    for text in texts:
        if _reply_start().match(text) is not None and _plain_reply_path().fullmatch(text) is None:
            assert _read_reply(text) == _lark_or_none(lark, text), repr(text)


def test_a_status_text_that_quotes_no_reply_keeps_its_stage_hints():
    told = parse_reply("connect to mx.example.org[192.0.2.25]:25: Connection timed out")
    assert (told.code, told.enhanced, told.stage) == (None, None, "connect")
    assert told.text == "connect to mx.example.org[192.0.2.25]:25: Connection timed out"
    assert parse_reply("delivered to maildir") == parse_reply.__wrapped__("delivered to maildir")
    assert parse_reply("delivered to maildir").stage is None


def test_first_tokens_are_the_start_states_terminals_with_or_without_lark_cython():
    grammar = 'start: "say" WORD | NUMBER WORD\nWORD: /[a-z]+/\nNUMBER: /[0-9]+/\n%ignore " "'
    for plugins in ({}, {"_plugins": __import__("lark_cython").plugins}):
        lark = Lark(grammar, parser="lalr", **plugins)
        start = re.compile(first_tokens(lark))
        assert start.match("say hi") and start.match("  42 x") and start.match("sayx")
        assert start.match("hi") is None and start.match("") is None and start.match("\tsay hi") is None


def test_a_message_reads_the_same_with_and_without_its_path():
    # through the public function: the path's fields, then the post-processing both share
    lark = parser("postfix", PostfixTransformer)
    for text in MESSAGES[:3000]:
        expected = _lark_or_none(lark, text)
        if expected is not None and expected.get("kind") == "status" and expected.get("direction") is None:
            expected["direction"] = "out"
        assert parse_postfix_message(text) == expected, text


def test_a_path_refuses_a_grammar_that_ignores_more_than_spaces():
    lark = Lark("start: WORD\nWORD: /[a-z]+/\n%ignore /[ \\t]+/", parser="lalr")
    with pytest.raises(RuntimeError, match="ignores single spaces"):
        token_path(lark, token_pattern(lark, "WORD"))
