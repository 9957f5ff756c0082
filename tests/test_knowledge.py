"""Every knowledge article is its own test: its examples must diagnose to its id,
its near-misses must not (the fail2ban way: each rule carries the lines that prove it)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.kbcheck import diagnose_example
from bot.knowledge import KnowledgeError, Rule, load_article, load_articles
from bot.rules import Facts, score_rule

ARTICLES = load_articles()


def _diagnose_example(example: dict) -> list[str]:
    return diagnose_example(example, ARTICLES)


def _cases(kind: str):
    for article in ARTICLES.values():
        for index, example in enumerate(getattr(article, kind)):
            yield pytest.param(article.id, example, id=f"{article.id}-{index + 1}")


def test_every_taxonomy_id_has_an_article():
    taxonomy = """unknown-user mailbox-disabled mailbox-full recipient-rejected dns-mx-failure dns-lookup-failed
    host-unreachable tls-failure expired-in-queue relay-denied blocked-reputation reverse-dns-missing
    auth-spf-dkim-dmarc smtp-auth-failed sender-rejected rate-limited greylisted spam-content-rejected
    virus-attachment message-too-large policy-rejected remote-server-error smtp-protocol-error mail-loop
    suppressed-by-provider delivered auto-reply spam-complaint unknown""".split()
    # Inbound: our own server refused the client; DESIGN.md's list predates them.
    taxonomy += ["client-blocklisted", "client-reverse-dns-missing", "client-auth-spf-dkim-dmarc"]
    assert sorted(taxonomy) == sorted(ARTICLES)


def test_every_article_has_the_body_sections_and_steps():
    for article in ARTICLES.values():
        for section in ("what happened", "why it happens", "next steps", "references"):
            assert article.sections.get(section), f"{article.id}: missing '## {section.title()}'"
        assert article.next_steps(), f"{article.id}: Next steps has no checklist"


@pytest.mark.parametrize(("article_id", "example"), list(_cases("examples")))
def test_example_diagnoses_to_its_article(article_id, example):
    found = _diagnose_example(example)
    assert article_id in found, f"{article_id} example diagnosed as {found}: {example}"


@pytest.mark.parametrize(("article_id", "example"), list(_cases("near_misses")))
def test_near_miss_does_not_diagnose_to_its_article(article_id, example):
    found = _diagnose_example(example)
    assert found, f"near-miss for {article_id} produced no delivery: {example}"
    assert article_id not in found, f"near-miss for {article_id} matched it: {example}"


def test_a_direction_selector_applies_to_its_direction_and_to_an_unknown_one():
    rule = Rule(phrases=("blocked using",), directions=("out",), weight=0.9)
    facts = Facts(status="bounced", stage="rcpt", reply_code=554, enhanced=None, text="blocked using x", vendor=None)
    assert score_rule(rule, facts) == 0.9  # a pasted reply: direction not known
    assert score_rule(rule, replace(facts, direction="out")) == 0.9
    assert score_rule(rule, replace(facts, direction="in")) == 0.0


def test_an_unknown_direction_in_a_rule_or_an_example_is_refused(tmp_path):
    article = (ARTICLES["greylisted"].path).read_text()
    bad_rule = article.replace("  rules:\n", "  rules:\n    - phrases: [x]\n      directions: [sideways]\n", 1)
    (tmp_path / "greylisted.md").write_text(bad_rule)
    with pytest.raises(KnowledgeError, match="directions"):
        load_article(tmp_path / "greylisted.md")
    bad_example = article.replace("examples:\n", "examples:\n  - reply: '450 x'\n    direction: up\n", 1)
    (tmp_path / "greylisted.md").write_text(bad_example)
    with pytest.raises(KnowledgeError, match="direction"):
        load_article(tmp_path / "greylisted.md")
