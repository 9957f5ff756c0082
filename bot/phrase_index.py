"""Which of many phrases occur in a text, without testing every phrase against it.

The knowledge base holds about nine hundred rule phrases, and diagnosing a whole log scores
every failed story against all of them: one substring test per phrase cost more than the rest of the
diagnosis. Each phrase is filed under one of its three-letter pieces (the rarest among all the
phrases); a text's own pieces then name the few phrases worth testing, and only those are
tested, with a plain substring test. So the answer is exact: an index of pieces can only leave
out phrases that cannot occur, never claim one that does not.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

from bot.datacache import cached

GRAM = 3  # every rule phrase is at least this long (tests/test_phrase_index.py holds them to it)


def _grams(text: str) -> set[str]:
    return {text[i : i + GRAM] for i in range(len(text) - GRAM + 1)}


def _file(unique: list[str]) -> dict[str, list[str]]:
    grams = [_grams(phrase) for phrase in unique]
    counts = Counter(chain.from_iterable(grams))
    by_gram: dict[str, list[str]] = {}
    for phrase, its in zip(unique, grams, strict=True):
        # the rarest piece, the first in sorted order on a tie (min keeps the first of equals);
        # no Python-level key function: this runs whenever the cache does not have the answer
        anchor = min(sorted(its), key=counts.__getitem__)
        by_gram.setdefault(anchor, []).append(phrase)
    return by_gram


class PhraseIndex:
    def __init__(self, phrases: Iterable[str]):
        unique = sorted(set(phrases))
        short = [p for p in unique if len(p) < GRAM]
        if short:
            raise ValueError(f"phrases shorter than {GRAM} characters cannot be indexed: {short}")
        # Filing the knowledge base's phrases costs more than the rest of a `why` query's
        # diagnosis, and every run of the command line files the same ones: the filing is kept
        # in the data cache, keyed by the phrases and by this file (how they are filed).
        key = "\0".join(unique).encode()
        self._by_gram: dict[str, list[str]] = cached("phrase-index", [Path(__file__)], lambda: _file(unique), key=key)

    def present(self, text: str) -> set[str]:
        """The indexed phrases that occur in text (substring, case as given)."""
        found: set[str] = set()
        for gram in self._by_gram.keys() & _grams(text):
            found.update(phrase for phrase in self._by_gram[gram] if phrase in text)
        return found


class FirstListed:
    """The value of the first (phrase, value) pair of a table, in the table's order, whose phrase
    occurs in a text (substring, case as given); None when none does. Any phrase at all is
    looked for in one regex scan first: most texts hold none, and one search costs less than a
    substring test per phrase. Escaped words only: nothing can backtrack."""

    def __init__(self, table: Iterable[tuple[str, str]]):
        self._table = tuple(table)
        self._any = re.compile("|".join(re.escape(phrase) for phrase, _ in self._table))

    def __call__(self, text: str) -> str | None:
        if self._any.search(text) is None:
            return None
        for phrase, value in self._table:
            if phrase in text:
                return value
        return None
