"""The phrase index must answer exactly what testing every phrase would: the scorer skips the
rules whose phrases it says are absent."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.knowledge import KnowledgeError, load_article, load_articles
from bot.phrase_index import PhraseIndex
from bot.rules import Facts, best_match, score_rule

ARTICLES = load_articles()
PHRASES = sorted({p for a in ARTICLES.values() for r in a.rules for p in r.phrases})
FIXTURES = Path(__file__).parent / "fixtures"


def _texts() -> list[str]:
    """Lower-cased, folded fixture lines (what Facts.text holds), and pieces of phrases glued
    together: a text where a phrase starts at the last character or spans two others."""
    texts = [
        " ".join(line.lower().split()) for path in FIXTURES.rglob("*.log") for line in path.read_text().splitlines()
    ]
    rng = random.Random(5)
    for _ in range(300):
        a, b = rng.sample(PHRASES, 2)
        texts.append(a[rng.randrange(len(a)) :] + b[: rng.randrange(1, len(b) + 1)])
        texts.append(f"{a}{b}")
    texts += ["", "ab", PHRASES[0], PHRASES[-1]]
    return texts


def test_the_index_finds_exactly_the_phrases_a_test_of_each_would():
    index = PhraseIndex(PHRASES)
    texts = _texts()
    assert len(texts) > 1000
    found_any = 0
    for text in texts:
        expected = {p for p in PHRASES if p in text}
        assert index.present(text) == expected, text
        found_any += bool(expected)
    assert found_any > 300  # the texts do hold phrases: the check above is not of empty sets


def test_a_phrase_shorter_than_the_index_reads_is_refused():
    with pytest.raises(ValueError, match="shorter"):
        PhraseIndex(["ok", "user unknown"])


def test_the_knowledge_base_refuses_such_a_phrase_with_its_place(tmp_path):
    article = ARTICLES["greylisted"].path.read_text()
    (tmp_path / "greylisted.md").write_text(article.replace("  rules:\n", "  rules:\n    - phrases: [gl]\n", 1))
    with pytest.raises(KnowledgeError, match=r"greylisted.*fewer than 3 characters.*'gl'"):
        load_article(tmp_path / "greylisted.md")


def _best_by_scoring_every_rule(facts: Facts) -> tuple[str, float]:
    """best_match as it was before the index: every candidate article's every rule scored."""
    best = None
    for article in ARTICLES.values():
        if article.id == "unknown" or facts.status not in (
            article.statuses or ("deferred", "bounced", "rejected", "expired", "unknown")
        ):
            continue
        score = min(0.98, max((score_rule(rule, facts) for rule in article.rules), default=0.0))
        if score >= 0.3 and (best is None or (score, article.priority) > best[:2]):
            best = (score, article.priority, article.id)
    return (best[2], best[0]) if best else ("unknown", 0.0)


@pytest.mark.parametrize("status", ["bounced", "deferred", "rejected", "delivered"])
def test_best_match_picks_what_scoring_every_rule_picks(status):
    from bot.rules import _plan

    rng = random.Random(status)
    picked = set()
    answers_before = len(_plan(ARTICLES, status).answers)
    for text in _texts():
        facts = Facts(
            status=status,
            stage=rng.choice([None, "rcpt", "data", "connect"]),
            reply_code=rng.choice([None, 550, 450, 554]),
            enhanced=rng.choice([None, "5.1.1", "4.2.2", "5.7.1"]),
            text=text,
            vendor=rng.choice([None, "google", "microsoft"]),
            direction=rng.choice([None, "in", "out"]),
        )
        article, score = best_match(facts, ARTICLES)
        assert (article.id, score) == _best_by_scoring_every_rule(facts), facts
        picked.add(article.id)
    if status != "delivered":
        assert len(picked) > 10  # many different articles won: the comparison covered them
    # and best_match answered some of them from its memo (texts that differ, with the same words
    # of the plan in them): those answers were checked above like the others. (The memo lives as
    # long as the knowledge base, so earlier tests' answers may be in it: count what this added.)
    assert len(_plan(ARTICLES, status).answers) - answers_before < len(_texts())


def test_a_filing_from_the_data_cache_is_the_one_filing_would_make(tmp_path, monkeypatch):
    from bot.phrase_index import _file

    monkeypatch.setenv("WHYFAILED_CACHE_DIR", str(tmp_path))
    first = PhraseIndex(PHRASES)  # filed, and kept
    assert [p.name.startswith("phrase-index-") for p in tmp_path.iterdir()] == [True]
    assert PhraseIndex(PHRASES)._by_gram == first._by_gram == _file(PHRASES)
    fewer = PhraseIndex(PHRASES[1:])  # other phrases are filed for themselves, never read from another's
    assert PHRASES[0] in first.present(PHRASES[0]) and PHRASES[0] not in fewer.present(PHRASES[0])
