"""Deliveries -> diagnoses, by the rules in the knowledge articles.

The server's words weigh most, then the SMTP stage, the codes and the receiving vendor;
codes alone never give more than a low-confidence answer. Phrases are plain substrings of
lower-cased, white-space-folded text: there is no regular expression to backtrack.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.codes import explain_codes
from bot.knowledge import Article, Rule, load_articles
from bot.model import Attempt, Delivery, Diagnosis, Related
from bot.phrase_index import PhraseIndex
from bot.vendors import detect_vendor

THRESHOLD = 0.3  # below this, nothing wins and the diagnosis is `unknown`
CODE_BONUS = 0.1
MAX_CONFIDENCE = 0.98  # a rule never makes a diagnosis certain
FAILED = ("deferred", "bounced", "rejected", "expired", "unknown")


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and diagnosing a
# whole log (`whyfailed diagnose` of a day's mail.log) makes one of these for every story.
# Nothing changes a Facts after Facts.of made it.
@dataclass(slots=True)
class Facts:
    """What the rules read of one attempt: its status, stage, codes, text, vendor, direction."""

    status: str
    stage: str | None
    reply_code: int | None
    enhanced: str | None
    text: str  # lower case, white space folded
    vendor: str | None
    direction: str | None = None  # in | out, relative to the server that logged; None: not known

    @classmethod
    def of(cls, attempt: Attempt, status: str | None = None, direction: str | None = None) -> Facts:
        text = " ".join((attempt.text or "").lower().split())
        return cls(
            status=status or attempt.status,
            stage=attempt.stage,
            reply_code=attempt.reply_code,
            enhanced=attempt.enhanced_status,
            text=text,
            # the vendor is the receiving side's; inbound that is us, not the client's provider
            vendor=detect_vendor(None if direction == "in" else attempt.remote_host, attempt.text),
            direction=direction,
        )


def _code_matches(codes: tuple[str, ...], facts: Facts) -> bool:
    for code in codes:
        if "." in code:
            if facts.enhanced and (code == facts.enhanced or (code[0] == "X" and code[1:] == facts.enhanced[1:])):
                return True
        elif facts.reply_code is not None and code == str(facts.reply_code):
            return True
    return False


def score_rule(rule: Rule, facts: Facts) -> float:
    if rule.vendors and facts.vendor not in rule.vendors:
        return 0.0
    if rule.stages and facts.stage is not None and facts.stage not in rule.stages:
        return 0.0
    # The same words mean opposite things by direction ("blocked using zen.spamhaus.org" is about
    # us when a remote MX says it, about the client when our smtpd does); unknown fits both.
    if rule.directions and facts.direction is not None and facts.direction not in rule.directions:
        return 0.0
    if rule.has_code is not None and rule.has_code != (facts.reply_code is not None or facts.enhanced is not None):
        return 0.0
    # phrases first: most rules fail there, so the longer unless/also lists are rarely read.
    # map() over the bound `in` test: a whole log's diagnosis scores every story, and a generator
    # expression costs a Python frame per phrase.
    contains = facts.text.__contains__
    if rule.phrases and not any(map(contains, rule.phrases)):
        return 0.0
    if rule.also and not all(map(contains, rule.also)):
        return 0.0
    if rule.unless and any(map(contains, rule.unless)):
        return 0.0
    if rule.phrases:
        return rule.weight + (CODE_BONUS if rule.codes and _code_matches(rule.codes, facts) else 0.0)
    if rule.codes:
        return rule.weight if _code_matches(rule.codes, facts) else 0.0
    return rule.weight  # status-only rule (the article's statuses already matched)


@dataclass(frozen=True)
class _Plan:
    """One status's share of the knowledge base, laid out for scoring many stories: the
    articles that can match an outcome of that status (in their order: ties go to the first),
    each rule with its phrase set, and an index of those phrases when there are many."""

    # (article, the phrases of all its rules or None when a rule has none, (rule, its phrases))
    articles: tuple[tuple[Article, frozenset[str] | None, tuple[tuple[Rule, frozenset[str] | None], ...]], ...]
    # every word a rule of the plan looks for (phrases, also, unless): an index when there are many
    words: PhraseIndex | tuple[str, ...]
    # best_match's answers by what they depend on (see best_match): stories repeat those far
    # more than they repeat their texts, and a delivered story's text never matters at all
    answers: dict

    def words_in(self, text: str) -> frozenset[str]:
        if isinstance(self.words, PhraseIndex):
            return frozenset(self.words.present(text))
        return frozenset(word for word in self.words if word in text)


_INDEX_FROM = 100  # words; below this, testing each word costs less than reading the index


def _plan(articles: dict[str, Article], status: str) -> _Plan:
    """Built once per knowledge base and status. Most stories are delivered, and only an article
    or two speaks of those: filtering by status once, not per story, skips most of the scoring."""
    cached = _PLANS.get(id(articles))
    if cached is None or cached[0] is not articles:
        cached = _PLANS[id(articles)] = (articles, {})
    plans = cached[1]
    if status not in plans:
        chosen = [a for a in articles.values() if status in (a.statuses or FAILED) and a.id != "unknown"]
        laid_out = tuple(
            (
                article,
                frozenset(p for rule in article.rules for p in rule.phrases)
                if all(rule.phrases for rule in article.rules)
                else None,
                tuple((rule, frozenset(rule.phrases) if rule.phrases else None) for rule in article.rules),
            )
            for article in chosen
        )
        words = {w for article in chosen for rule in article.rules for w in (*rule.phrases, *rule.also, *rule.unless)}
        plans[status] = _Plan(laid_out, PhraseIndex(words) if len(words) >= _INDEX_FROM else tuple(sorted(words)), {})
    return plans[status]


_PLANS: dict[int, tuple[dict, dict]] = {}


_MAX_ANSWERS = 10_000  # per plan: a long-running bot's varied replies must not grow it without end


def best_match(facts: Facts, articles: dict[str, Article], exclude: tuple[str, ...] = ()) -> tuple[Article, float]:
    plan = _plan(articles, facts.status)
    present = plan.words_in(facts.text)
    # score_rule reads a story's text only through which of the plan's words occur in it: with
    # those, everything it reads is in this key, so an answer found once holds for every story
    # with the same key.
    key = (exclude, facts.stage, facts.reply_code, facts.enhanced, facts.vendor, facts.direction, present)
    answer = plan.answers.get(key)
    if answer is None:
        if len(plan.answers) >= _MAX_ANSWERS:
            plan.answers.clear()
        answer = plan.answers[key] = _best_match(plan, facts, articles, exclude, present)
    return answer


def _best_match(
    plan: _Plan, facts: Facts, articles: dict[str, Article], exclude: tuple[str, ...], present: frozenset[str]
) -> tuple[Article, float]:
    # A rule none of whose phrases occur scores 0 (score_rule's first text test): with the
    # words present known at once, such rules are passed over without being scored.
    best: tuple[float, int, str] | None = None
    for article, all_phrases, rules in plan.articles:
        if article.id in exclude or (all_phrases is not None and all_phrases.isdisjoint(present)):
            continue  # (an article none of whose phrases occur: every rule of it scores 0)
        score = 0.0
        for rule, phrases in rules:
            if phrases is not None and phrases.isdisjoint(present):
                continue
            rule_score = score_rule(rule, facts)
            if rule_score > score:
                score = rule_score
        score = min(MAX_CONFIDENCE, score)  # an article's score: its best rule's, capped
        if score >= THRESHOLD and (best is None or (score, article.priority) > best[:2]):
            best = (score, article.priority, article.id)
    if best is None:
        return articles["unknown"], 0.0
    return articles[best[2]], best[0]


def _summary(article: Article, delivery: Delivery, attempt: Attempt) -> str:
    recipient = delivery.recipient or "the recipient"
    values = {
        "recipient": recipient,
        "domain": recipient.rpartition("@")[2] or recipient,
        "sender": delivery.sender or "the sender",
        # inbound, the remote party is the client that connected to us, not a receiving server
        "remote": attempt.remote_host
        or attempt.remote_ip
        or ("the sending client" if delivery.direction == "in" else "the receiving server"),
        "code": attempt.reply_code or "",
        "enhanced": attempt.enhanced_status or "",
    }
    # an article matched in both directions words its summary for each, when it says so
    summary = article.summary_in if delivery.direction == "in" and article.summary_in else article.summary
    try:
        return summary.format_map(values)
    except (KeyError, ValueError, IndexError):
        return summary


def _related_for_history(delivery: Delivery, articles: dict[str, Article]) -> tuple[Related, ...]:
    """Transient failures earlier in the story: what held the message up before the outcome."""
    seen: dict[str, Related] = {}
    for attempt in delivery.attempts[:-1]:
        if attempt.status != "deferred":
            continue
        facts = Facts.of(attempt, direction=delivery.direction)
        article, score = best_match(facts, articles, exclude=("expired-in-queue",))
        if article.id not in seen and article.id != "unknown":
            when = f" at {attempt.timestamp:%H:%M:%S}" if attempt.timestamp else ""
            seen[article.id] = Related(article.id, article.title, f"deferred{when}: {attempt.text or ''}".strip())
    return tuple(seen.values())


def classify_delivery(delivery: Delivery, articles: dict[str, Article]) -> tuple[Article, float]:
    """The article a delivery's outcome matches, and how well."""
    if delivery.status == "expired" and "expired-in-queue" in articles:
        return articles["expired-in-queue"], 0.9
    final = delivery.final or Attempt(status="unknown")
    return best_match(Facts.of(final, delivery.status, delivery.direction), articles)


def _diagnosis(article: Article, score: float, **told) -> Diagnosis:
    """The diagnosis an article gives at SCORE; TOLD is what was worked out for the story."""
    return Diagnosis(
        id=article.id,
        title=article.title,
        severity=article.severity,
        who_acts=article.who_acts,
        confidence=round(score, 2),
        article=f"knowledge/{article.id}.md",
        **told,
    )


def diagnose_delivery(delivery: Delivery, articles: dict[str, Article] | None = None) -> Diagnosis:
    articles = articles or load_articles()
    attempt = delivery.final or Attempt(status="unknown")
    related = _related_for_history(delivery, articles)
    article, score = classify_delivery(delivery, articles)
    if delivery.status == "expired" and "expired-in-queue" in articles:
        deferred = Facts.of(attempt, "deferred", delivery.direction)
        cause, cause_score = best_match(deferred, articles, exclude=("expired-in-queue",))
        if cause.id != "unknown":
            related = (Related(cause.id, cause.title, f"last reason given: {attempt.text or ''}"),) + tuple(
                r for r in related if r.id != cause.id
            )
    related = tuple(r for r in related if r.id != article.id)  # the outcome's own cause is not "also"
    if article.id == "delivered" and related:
        notes = ", ".join(r.title.lower() for r in related)
        summary = f"Delivered after a temporary failure that resolved itself ({notes})."
    else:
        summary = _summary(article, delivery, attempt)
    explanation = explain_codes(attempt.reply_code, attempt.enhanced_status)
    if article.id == "unknown":
        summary = "No rule recognises this reply. " + (explanation or "The log gives no reply code to explain.")
    return _diagnosis(
        article,
        score,
        summary=summary,
        next_steps=tuple(article.next_steps()),
        explanation=explanation,
        related=related,
    )


def diagnose_deliveries(deliveries: list[Delivery]) -> list[Delivery]:
    articles = load_articles()
    for delivery in deliveries:
        delivery.diagnosis = diagnose_delivery(delivery, articles)
    return deliveries
