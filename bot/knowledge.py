"""Load the knowledge base: one markdown article per diagnosis, rules in its front matter."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from bot.datacache import cached
from bot.model import STAGES, STATUSES
from bot.phrase_index import GRAM
from bot.resources import knowledge_dir

SEVERITIES = ("permanent", "temporary", "info")
WHO_ACTS = ("sender", "recipient-admin", "our-admin")
VENDORS = (
    "google",
    "microsoft",
    "yahoo",
    "apple",
    "proofpoint",
    "mimecast",
    "barracuda",
    "cisco",
    "zoho",
    "gmx",
    "mailru",
    "yandex",
)
DIRECTIONS = ("in", "out")  # relative to the server that logged: "in" = our server received
MAX_CODE_ONLY_WEIGHT = 0.55  # codes alone are weak evidence: 550 and 5.7.1 stand for many causes


class KnowledgeError(ValueError):
    """An article that does not follow knowledge/README.md."""


@dataclass(frozen=True)
class Rule:
    """One way an article matches a story: its match front matter, one entry."""

    phrases: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()  # in | out: applies only to stories in that direction (or of unknown direction)
    has_code: bool | None = None  # True: only when the reply has a code; False: only when it has none
    weight: float = 0.7


@dataclass(frozen=True)
class Article:
    """A knowledge article (knowledge/<id>.md): what a diagnosis says, and when it applies."""

    id: str
    title: str
    severity: str
    who_acts: str
    summary: str
    priority: int
    statuses: tuple[str, ...]
    rules: tuple[Rule, ...]
    examples: tuple[dict, ...]
    near_misses: tuple[dict, ...]
    body: str
    path: Path
    sections: dict[str, str] = field(default_factory=dict)
    summary_in: str | None = None  # the summary for an inbound story, when our server gave the reply

    def next_steps(self) -> list[str]:
        """The checklist items of the Next steps section, in order."""
        steps = []
        for line in self.sections.get("next steps", "").splitlines():
            item = line.strip()
            if item.startswith(("- [ ]", "- [x]")):
                steps.append(item[5:].strip())
            elif item.startswith(("- ", "* ")):
                steps.append(item[2:].strip())
        return steps


def _words(values, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str | int) for v in values):
        raise KnowledgeError(f"{where}: expected a list of strings")
    return tuple(" ".join(str(v).lower().split()) for v in values)


def _rule(raw: dict, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise KnowledgeError(f"{where}: each rule is a mapping")
    unknown = set(raw) - {"phrases", "also", "unless", "codes", "stages", "vendors", "directions", "has_code", "weight"}
    if unknown:
        raise KnowledgeError(f"{where}: unknown keys {sorted(unknown)}")
    rule = Rule(
        phrases=_words(raw.get("phrases"), where),
        also=_words(raw.get("also"), where),
        unless=_words(raw.get("unless"), where),
        codes=tuple(str(c).upper() for c in raw.get("codes") or ()),
        stages=_words(raw.get("stages"), where),
        vendors=_words(raw.get("vendors"), where),
        directions=_words(raw.get("directions"), where),
        has_code=raw.get("has_code"),
        weight=float(raw.get("weight", 0.7)),
    )
    if rule.has_code not in (None, True, False):
        raise KnowledgeError(f"{where}: has_code is true or false")
    if not 0 < rule.weight <= 1:
        raise KnowledgeError(f"{where}: weight must be in (0, 1]")
    if rule.codes and not rule.phrases and rule.weight > MAX_CODE_ONLY_WEIGHT:
        raise KnowledgeError(f"{where}: a codes-only rule may weigh at most {MAX_CODE_ONLY_WEIGHT}")
    if bad := [s for s in rule.stages if s not in STAGES]:
        raise KnowledgeError(f"{where}: unknown stages {bad}")
    if bad := [d for d in rule.directions if d not in DIRECTIONS]:
        raise KnowledgeError(f"{where}: unknown directions {bad} (in, out)")
    if bad := [v for v in rule.vendors if v not in VENDORS]:
        raise KnowledgeError(f"{where}: unknown vendors {bad}")
    if short := [p for p in rule.phrases if len(p) < GRAM]:
        # the scorer finds phrases through their three-letter pieces (bot/phrase_index.py)
        raise KnowledgeError(f"{where}: phrases of fewer than {GRAM} characters cannot be matched: {short}")
    return rule


def _sections(body: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in body.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def load_article(path: Path) -> Article:
    import frontmatter  # with its YAML parser: only when the cache of parsed articles is cold

    try:
        post = frontmatter.load(path)
    except Exception as error:  # YAML errors come in several types
        raise KnowledgeError(f"{path.name}: front matter does not parse: {error}") from error
    meta = post.metadata
    where = path.name
    for key in ("id", "title", "severity", "who_acts"):
        if not meta.get(key):
            raise KnowledgeError(f"{where}: missing '{key}'")
    if meta["id"] != path.stem:
        raise KnowledgeError(f"{where}: id '{meta['id']}' does not match the file name")
    if meta["severity"] not in SEVERITIES:
        raise KnowledgeError(f"{where}: severity must be one of {SEVERITIES}")
    if meta["who_acts"] not in WHO_ACTS:
        raise KnowledgeError(f"{where}: who_acts must be one of {WHO_ACTS}")
    match = meta.get("match") or {}
    statuses = tuple(match.get("statuses") or ())
    if bad := [s for s in statuses if s not in STATUSES]:
        raise KnowledgeError(f"{where}: unknown statuses {bad}")
    rules = tuple(_rule(r, f"{where} rule {i + 1}") for i, r in enumerate(match.get("rules") or ()))
    for kind in ("examples", "near_misses"):
        for i, example in enumerate(meta.get(kind) or ()):
            if isinstance(example, dict) and example.get("direction", "in") not in DIRECTIONS:
                raise KnowledgeError(f"{where} {kind} {i + 1}: direction must be one of {DIRECTIONS}")
    return Article(
        id=meta["id"],
        title=str(meta["title"]),
        severity=meta["severity"],
        who_acts=meta["who_acts"],
        summary=str(meta.get("summary") or meta["title"]),
        priority=int(match.get("priority", 50)),
        statuses=statuses,
        rules=rules,
        examples=tuple(meta.get("examples") or ()),
        near_misses=tuple(meta.get("near_misses") or ()),
        body=post.content,
        path=path,
        sections=_sections(post.content),
        summary_in=str(meta["summary_in"]) if meta.get("summary_in") else None,
    )


@cache
def load_articles(folder: Path | None = None) -> dict[str, Article]:
    folder = folder or knowledge_dir()
    paths = [p for p in folder.glob("*.md") if p.name.lower() != "readme.md"]
    return cached("knowledge", paths, lambda: _parse_articles(folder))


def _parse_articles(folder: Path) -> dict[str, Article]:
    articles = {}
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        article = load_article(path)
        articles[article.id] = article
    if "unknown" not in articles:
        raise KnowledgeError(f"{folder}: the fallback article unknown.md is missing")
    return articles
