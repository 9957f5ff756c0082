"""Postfix's key=value lists (grammar/postfix.lark's KV_LIST) are mostly split on ", " rather
than read by a findall: both must give the same pairs for every list the grammar accepts."""

from __future__ import annotations

import random
import re

import pytest

from bot.parse.grammars import parser
from bot.parse.postfix import _KV_PAIRS, PostfixTransformer, kv_pairs


def _findall(text: str) -> dict[str, str]:
    return dict(_KV_PAIRS.findall(text))


@pytest.mark.parametrize(
    "text",
    [
        "to=<a@b.example>, relay=mx[192.0.2.1]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent",
        "from=<>, size=1, nrcpt=1",
        "message-id=<20261127080001.7A1B2C3D4E@mx1.example.com>",
        "to=<a@b>, orig_to=<c@d>, to=<e@f>",  # a key given twice: the last value
        "client=x[192.0.2.1], sasl_method=PLAIN, sasl_username=user",
        'to=<"a, b"@x.example>, status=sent',  # ", " inside angle brackets: the findall reads it
        "to=<a b@x.example>, status=sent",  # a space inside angle brackets
        "helo=<x> proto=ESMTP",  # a lone space between pairs
        "k=<ab>>, x=y",  # a value the findall reads only the start of
        "k=<ab, x=y",  # "<" with no ">"
        "k=a=b, empty=, x=<>",
    ],
)
def test_a_list_splits_into_the_pairs_the_findall_reads(text):
    assert kv_pairs(text) == _findall(text)


def test_every_list_the_grammar_accepts_splits_as_the_findall_reads_it():
    kv_list = re.compile(parser("postfix", PostfixTransformer).get_terminal("KV_LIST").pattern.to_regexp())
    rng = random.Random(1)
    alphabet = "ab=<>, x-_.@:;/[]'\"\\tq"
    inside = alphabet.replace("<", "").replace(">", "")  # what a value in angle brackets may hold

    def value() -> str:
        if rng.random() < 0.4:
            return "<" + "".join(rng.choice(inside) for _ in range(rng.randint(0, 6))) + ">"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    checked = split = 0
    for _ in range(60000):
        text = "".join(
            (rng.choice([", ", " "]) if i else "") + rng.choice(["to", "relay", "a", "b-c", "x_y"]) + "=" + value()
            for i in range(rng.randint(1, 4))
        )
        if not kv_list.fullmatch(text):
            continue
        checked += 1
        split += text.count(" ") == text.count(", ")
        assert kv_pairs(text) == _findall(text), text
    assert checked > 30000 and split > 5000  # both ways were taken, many times
