"""benchmarks/bench_issue4.py writes its 1M-delivery index straight through SQL, in the store's
columns: a small one must be an index the store reads, or the benchmark breaks with the schema."""

from __future__ import annotations

import sys

from bot.store import Store
from bot.why import why_from_store

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_issue4 import build_index  # noqa: E402


def test_the_benchmarks_index_is_one_the_store_reads(tmp_path):
    db = tmp_path / "bench.db"
    recipients = build_index(db, 300)
    store = Store(db)
    assert store.counts()["deliveries"] == len(set(recipients)) == 300
    rows = store.backend.query("select recipient, status from deliveries")
    failed = next(r["recipient"] for r in rows if r["status"] == "bounced")
    delivered = next(r["recipient"] for r in rows if r["status"] == "delivered")
    (story,) = why_from_store(store, failed.upper(), None).deliveries  # addresses are found in any case
    assert (story.recipient, story.status, story.diagnosis.id) == (failed, "bounced", "unknown-user")
    (story,) = why_from_store(store, delivered, None).deliveries
    assert story.diagnosis.id == "delivered"
    domain = why_from_store(store, "@" + failed.split("@")[1], None).deliveries
    assert failed in {d.recipient for d in domain} and all(d.status != "delivered" for d in domain)
