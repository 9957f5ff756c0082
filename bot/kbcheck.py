"""Run the knowledge base's own examples: each must diagnose to its article, each near-miss
must not. The test suite and `whyfailed doctor` both call this."""

from __future__ import annotations

from dataclasses import dataclass

from bot.knowledge import Article, load_articles
from bot.model import Attempt, Delivery
from bot.parse.reply import parse_reply
from bot.report import diagnose_text
from bot.rules import diagnose_delivery


@dataclass(frozen=True)
class ExampleResult:
    article: str
    index: int
    near_miss: bool
    found: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return (self.article not in self.found) if self.near_miss else (self.article in self.found)


def _status_for(example: dict) -> str:
    if example.get("status"):
        return example["status"]
    code = str(example["reply"]).strip()[:1]
    # a 5xx our own server gave (inbound) is a reject in the log, not a bounce
    failed = "rejected" if example.get("direction") == "in" else "bounced"
    return {"2": "delivered", "4": "deferred"}.get(code, failed)


def diagnose_example(example: dict, articles: dict[str, Article] | None = None) -> list[str]:
    """The diagnosis ids an example yields: a `reply` is one delivery, a `log` as many as it tells.
    A reply's `direction` (in | out) is the story's; a log's stories take theirs from the log."""
    articles = articles or load_articles()
    if "reply" in example:
        reply = parse_reply(str(example["reply"]))
        attempt = Attempt(
            status=_status_for(example),
            stage=example.get("stage") or reply.stage,
            reply_code=reply.code,
            enhanced_status=reply.enhanced,
            text=str(example["reply"]),
            remote_host=example.get("remote"),
        )
        delivery = Delivery(recipient="bob@example.org", direction=example.get("direction"), attempts=[attempt])
        return [diagnose_delivery(delivery, articles).id]
    return [d.diagnosis.id for d in diagnose_text(str(example["log"])).deliveries]


def check_examples(articles: dict[str, Article] | None = None) -> list[ExampleResult]:
    articles = articles or load_articles()
    results = []
    for article in articles.values():
        for near_miss, examples in ((False, article.examples), (True, article.near_misses)):
            for index, example in enumerate(examples, start=1):
                results.append(ExampleResult(article.id, index, near_miss, tuple(diagnose_example(example, articles))))
    return results
