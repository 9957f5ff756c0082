"""`whyfailed doctor` finds what a new user got wrong, and says what to fix."""

from __future__ import annotations

import json

from bot.ingest import ingest_paths
from bot.store import SCHEMA_VERSION, Store

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
    assert f"writable, schema {SCHEMA_VERSION}, 1 stories" in found["database"]["detail"]
    assert found["knowledge base"]["state"] == "ok" and found["grammars"]["state"] == "ok"
    assert found["SLACK_BOT_TOKEN"]["state"] == "ok"
    assert found["Slack reachability"]["state"] == "not checked"


def test_missing_lookup_indexes_are_a_warning_that_names_the_fix(run_cli, tmp_path):
    db = tmp_path / "i.db"
    store = Store(db)
    ingest_paths(store, [str(FIXTURES / "postfix" / "expired.log")])
    store.backend.execute("drop index idx_deliveries_sender_lc")  # as a load killed half way leaves it
    found = _findings(run_cli("doctor", "-f", "json", env={**CLEAN, "WHYFAILED_DB": str(db)}))
    assert found["database"]["state"] == "warning"
    assert "1 lookup indexes are missing" in found["database"]["detail"]
    assert "builds them" in found["database"]["fix"]
    ingest_paths(store, [str(FIXTURES / "postfix" / "expired.log")])  # an ingest mends them
    found = _findings(run_cli("doctor", "-f", "json", env={**CLEAN, "WHYFAILED_DB": str(db)}))
    assert found["database"]["state"] == "ok"


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


# --- what issue 7 asks of it ---------------------------------------------------------------------

BOT_TOKEN = "xoxb-1000000001-2000000002-fakefakefakefakefake"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:  # bound, never listening, then closed: nothing answers there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tokens_in_dotenv_are_checked_too(run_cli, tmp_path):
    (tmp_path / ".env").write_text("SLACK_APP_TOKEN=xoxb-not-an-app-token\nSLACK_BOT_TOKEN=" + BOT_TOKEN + "\n")
    import subprocess
    import sys

    from .serve_process import clean_env  # no token variables at all: an empty one would win over .env

    done = subprocess.run(
        [sys.executable, "-m", "bot", "doctor", "-f", "json"],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(WHYFAILED_DB=str(tmp_path / "none.db")),
    )
    found = _findings(done)
    assert found["SLACK_BOT_TOKEN"]["state"] == "ok"
    assert found["SLACK_APP_TOKEN"]["state"] == "problem" and "xapp-" in found["SLACK_APP_TOKEN"]["fix"]


def test_a_bot_token_with_neither_secret_nor_app_token_is_a_problem(run_cli, tmp_path):
    done = run_cli("doctor", "-f", "json", env={**CLEAN, "SLACK_BOT_TOKEN": BOT_TOKEN}, cwd=tmp_path)
    found = _findings(done)
    assert done.returncode == 1 and found["Slack"]["state"] == "problem"
    assert "SLACK_SIGNING_SECRET" in found["Slack"]["fix"]


def test_online_slack_check_reports_an_accepted_and_a_refused_token(run_cli, tmp_path):
    from .slack_fakes import FakeSlackAPI

    api = FakeSlackAPI(BOT_TOKEN)
    try:
        env = {**CLEAN, "WHYFAILED_SLACK_API_URL": api.api_url, "SLACK_SIGNING_SECRET": "0" * 32}
        good = _findings(run_cli("doctor", "--online", "-f", "json", env={**env, "SLACK_BOT_TOKEN": BOT_TOKEN}))
        assert good["Slack reachability"]["state"] == "ok" and "team Fake" in good["Slack reachability"]["detail"]
        assert "Discord reachability" not in good  # Discord is not configured: not asked
        refused = run_cli("doctor", "--online", "-f", "json", env={**env, "SLACK_BOT_TOKEN": BOT_TOKEN[:-4] + "XXXX"})
        found = _findings(refused)
        assert refused.returncode == 1 and "invalid_auth" in found["Slack reachability"]["detail"]
    finally:
        api.close()


def test_offline_is_said_plainly_not_as_a_crash(run_cli, tmp_path):
    port = _closed_port()
    done = run_cli(
        "doctor",
        "--online",
        env={
            **CLEAN,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": "0" * 32,
            "DISCORD_TOKEN": "MTAwMDAwMDAwMDAwMDAwMDAwMA.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB",
            "WHYFAILED_SLACK_API_URL": f"http://127.0.0.1:{port}/api/",
            "WHYFAILED_DISCORD_API_URL": f"http://127.0.0.1:{port}/api/v10",
        },
    )
    out = done.stdout.decode()
    assert done.returncode == 1 and "Traceback" not in out + done.stderr.decode()
    assert out.count("could not reach 127.0.0.1: offline?") == 2
    assert "problem(s) to fix" in out


def test_online_discord_check_asks_discord_who_we_are(tmp_path):
    import asyncio
    import os
    import sys

    from .discord_wire import TOKEN, FakeDiscord

    async def scenario() -> tuple[int, dict]:
        fake = await FakeDiscord().start()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "doctor",
                "--online",
                "-f",
                "json",
                cwd=tmp_path,
                env={**os.environ, **CLEAN, "DISCORD_TOKEN": TOKEN, "WHYFAILED_DISCORD_API_URL": fake.api},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(process.communicate(), 120)
            return process.returncode, {f["area"]: f for f in json.loads(out)}
        finally:
            await fake.stop()

    _, found = asyncio.run(scenario())
    assert found["DISCORD_TOKEN"]["state"] == "ok"
    assert found["Discord reachability"]["state"] == "ok" and "whyfailed" in found["Discord reachability"]["detail"]


def test_named_sources_are_checked(run_cli, tmp_path):
    log = tmp_path / "mail.log"
    log.write_text("x\n")
    sources = {
        "mx1": {"kind": "file", "path": str(log)},
        "gone": {"kind": "file", "path": str(tmp_path / "gone.log")},
        "journal": {"kind": "journald", "unit": "postfix", "journalctl": "no-such-journalctl-here"},
        "edge": {"kind": "ssh", "host": "edge", "user": "logs", "path": "/var/log/mail.log", "key": "/no/such/key"},
    }
    done = run_cli("doctor", "-f", "json", env={**CLEAN, "WHYFAILED_SOURCES": json.dumps(sources)}, cwd=tmp_path)
    found = _findings(done)
    assert found["source mx1"]["state"] == "ok"
    assert found["source gone"]["state"] == "problem" and "no such file" in found["source gone"]["detail"]
    assert found["source journal"]["state"] == "problem" and "not installed" in found["source journal"]["detail"]
    assert found["source edge"]["state"] == "problem" and "/no/such/key" in found["source edge"]["detail"]


def test_a_sources_configuration_that_does_not_parse_is_named(run_cli, tmp_path):
    done = run_cli("doctor", "-f", "json", env={**CLEAN, "WHYFAILED_SOURCES": "{not json"}, cwd=tmp_path)
    found = _findings(done)
    assert found["sources"]["state"] == "problem" and "not valid JSON" in found["sources"]["detail"]


def test_settings_that_do_not_validate_are_reported_not_raised(run_cli, tmp_path):
    done = run_cli("doctor", env={**CLEAN, "WHYFAILED_MAX_RESULTS": "lots"}, cwd=tmp_path)
    out = done.stdout.decode()
    assert done.returncode == 1 and "max_results" in out and "Traceback" not in out + done.stderr.decode()


def test_every_broken_article_and_failing_example_is_named(tmp_path):
    import shutil

    from bot.doctor import FAIL, OK, check_knowledge
    from bot.resources import knowledge_dir

    folder = tmp_path / "knowledge"
    shutil.copytree(knowledge_dir(), folder)
    assert [f.state for f in check_knowledge(folder)] == [OK]
    greylisted = (folder / "greylisted.md").read_text()
    (folder / "greylisted.md").write_text(greylisted.replace("who_acts:", "who_acts: nobody\nold_who_acts:", 1))
    (folder / "mailbox-full.md").write_text("---\nid: mailbox-full\ntitle: [unclosed\n---\n")
    found = {f.area: f for f in check_knowledge(folder)}
    assert found["article greylisted.md"].state == FAIL and "who_acts" in found["article greylisted.md"].detail
    assert (
        found["article mailbox-full.md"].state == FAIL and "does not parse" in found["article mailbox-full.md"].detail
    )
