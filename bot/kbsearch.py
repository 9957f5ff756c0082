"""Search the knowledge base: SQLite FTS5 (through sqlite-utils), ranked by bm25, built in memory
once per process from the articles (titles weigh most, then rule phrases, then the prose)."""

from __future__ import annotations

import re
import sqlite3
import threading
from functools import cache

import sqlite_utils

from bot.knowledge import Article, load_articles

_WORD = re.compile(r"[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*")


_LOCK = threading.Lock()  # one in-memory index, shared by the chat adapters' worker threads


@cache
def _index() -> sqlite_utils.Database:
    # (no plugins, as for the index in bot/store_backends.py: full-text search needs none)
    db = sqlite_utils.Database(sqlite3.connect(":memory:", check_same_thread=False), execute_plugins=False)
    rows = []
    for article in load_articles().values():
        codes = [c for rule in article.rules for c in rule.codes]
        # "X.7.26" stands for 4.7.26 and 5.7.26: index both, so a pasted code finds its article
        spelled = [c.replace("X", d, 1) for c in codes for d in "45"] if codes else []
        phrases = " ".join([p for rule in article.rules for p in rule.phrases] + codes + spelled)
        rows.append({"id": article.id, "title": article.title, "phrases": phrases, "body": article.body})
    db["articles"].insert_all(rows, pk="id")
    db["articles"].enable_fts(["id", "title", "phrases", "body"], tokenize="porter")
    return db


def search_articles(query: str, limit: int = 5) -> list[Article]:
    """Articles matching QUERY (an id, a code like 5.7.1, or words), best first."""
    articles = load_articles()
    wanted = query.strip().lower()
    if wanted in articles:
        return [articles[wanted]]
    words = _WORD.findall(query)[:12]  # user text never reaches FTS5's query syntax unquoted
    if not words:
        return []
    match = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
    sql = (
        "select articles.id from articles_fts join articles on articles.rowid = articles_fts.rowid "
        "where articles_fts match ? order by bm25(articles_fts, 5.0, 10.0, 3.0, 1.0) limit ?"
    )
    with _LOCK:
        index = _index()
        ids = [row["id"] for row in index.query(sql, [match, limit])]
    return [articles[i] for i in ids]
