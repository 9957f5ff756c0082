"""`whyfailed doctor` finds what a new user got wrong, and says what to fix."""

from __future__ import annotations

import json

from bot.ingest import ingest_paths
from bot.store import Store

from .conftest import FIXTURES

CLEAN = {"SLACK_BOT_TOKEN": "", "SLACK_APP_TOKEN": "", "SLACK_SIGNING_SECRET": "", "DISCORD_TOKEN": ""}


def _findings(done) -> dict[str, dict]:
    return {f["area"]: f for f in json.loads(done.stdout)}


def test_a_good_setup_passes_and_stays_offline(run_cli, tmp_path):
    db = tmp_path / "i.db"
    ingest_paths(Store(db), [str(FIXTURES / "postfix" / "expired.log")])
    done = run_cli(
        "doctor",
        "-f",
        "json",
        env={
            **CLEAN,
            "WHYFAILED_DB": str(db),
            "SLACK_BOT_TOKEN": "xoxb-1234567890-abcdefghij",
            "SLACK_SIGNING_SECRET": "0123456789abcdef0123456789abcdef",
        },
    )
    found = _findings(done)
    assert done.returncode == 0, found
    assert found["database"]["state"] == "ok" and found["database"]["detail"].startswith("SQLite ")
    assert "writable, schema 2, 1 stories" in found["database"]["detail"]
    assert found["knowledge base"]["state"] == "ok" and found["grammars"]["state"] == "ok"
    assert found["SLACK_BOT_TOKEN"]["state"] == "ok"
    assert found["Slack reachability"]["state"] == "not checked"


def test_problems_are_named_with_a_fix_and_exit_1(run_cli, tmp_path):
    broken_db = tmp_path / "broken.db"
    broken_db.write_bytes(b"this is not a database" * 100)
    done = run_cli(
        "doctor",
        "-f",
        "json",
        env={
            **CLEAN,
            "WHYFAILED_DB": str(broken_db),
            "SLACK_BOT_TOKEN": "xoxp-user-token",
            "WHYFAILED_LOGS": json.dumps([str(tmp_path / "missing.log")]),
        },
    )
    found = _findings(done)
    assert done.returncode == 1
    assert found["SLACK_BOT_TOKEN"]["state"] == "problem" and "xoxb" in found["SLACK_BOT_TOKEN"]["fix"]
    assert found["database"]["state"] == "problem"
    assert found[f"log {tmp_path / 'missing.log'}"]["state"] == "problem"
