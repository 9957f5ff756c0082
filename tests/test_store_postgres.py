"""A shared PostgreSQL index under real conditions: several `whyfailed` processes at once, and a
database server that restarts under a follower. Real processes, a real server, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from bot.ingest import ingest_paths
from bot.store import Store

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from generate_postfix_log import generate  # noqa: E402

pytestmark = pytest.mark.slow


def _env(url: str) -> dict:
    return {**os.environ, "DATABASE_URL": url, "PYTHONUTF8": "1", "COLUMNS": "120"}


def _whyfailed(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", *args]


def _two_ingests(log: Path, url: str) -> list[subprocess.Popen]:
    """Two `whyfailed ingest` processes on the same log and database at once, in small chunks."""
    return [
        subprocess.Popen(
            _whyfailed("ingest", str(log), "--chunk-lines", "250"),
            cwd=REPO,
            env=_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]


def _wait_for(condition: Callable[[], bool], what: str, explain: Callable[[], str], limit: float = 180) -> None:
    """Wait until `condition` holds; the limit only turns a hang into a failure that says what we waited for."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}\n{explain()}")
        time.sleep(0.2)


def _rows(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql, params).fetchall()


def _snapshot(target: str) -> dict[str, list]:
    """Everything the index says, in a comparable form (SQLite file or PostgreSQL URL)."""
    store = Store(target)
    query = store.backend.query
    try:
        return {
            "deliveries": sorted(
                (r["id"], r["status"], r["direction"], r["sender"], r["first_seen"], r["last_seen"])
                for r in query("select * from deliveries")
            ),
            "attempts": sorted((r["delivery_id"], r["line"], r["status"]) for r in query("select * from attempts")),
            "messages": sorted((r["id"], r["sender"], r["message_id"]) for r in query("select * from messages")),
        }
    finally:
        store.close()


def _reference(tmp_path: Path, log: Path, source: str) -> dict[str, list]:
    db = tmp_path / "reference.db"
    ingest_paths(Store(db), [str(log)], source)
    return _snapshot(str(db))


def test_two_ingest_processes_and_a_why_reader_share_one_database(pg_url, tmp_path):
    log = tmp_path / "mail.log"
    log.write_text("\n".join(generate(8000, seed=11)) + "\n")
    expected = _reference(tmp_path, log, str(log))
    by_recipient: dict[str, int] = {}
    for delivery_id, *_ in expected["deliveries"]:
        recipient = delivery_id.rsplit("|", 1)[1]
        by_recipient[recipient] = by_recipient.get(recipient, 0) + 1
    address = max(sorted(by_recipient), key=by_recipient.get)  # the recipient with the most stories

    out = tmp_path / "why"
    out.mkdir()
    stop = tmp_path / "stop"
    # the reader: `whyfailed why` again and again, every answer kept; once told to stop it answers
    # one last time, so the last answer is of the finished index
    loop = (
        'n=0; while :; do last=; [ -e "$STOP" ] && last=1; "$PY" -m bot why "$ADDR" --limit 500 --format json '
        '>"$OUT/$n.json" 2>"$OUT/$n.err" || echo "$n" >>"$OUT/failed"; n=$((n+1)); [ -n "$last" ] && break; done'
    )
    reader = subprocess.Popen(
        ["bash", "-c", loop],
        cwd=REPO,
        env={**_env(pg_url), "STOP": str(stop), "PY": sys.executable, "ADDR": address, "OUT": str(out)},
    )
    writers = _two_ingests(log, pg_url)
    results = [writer.communicate(timeout=600) for writer in writers]
    stop.touch()
    reader.wait(timeout=600)
    for writer, (_, stderr) in zip(writers, results, strict=True):
        assert writer.returncode == 0, stderr.decode()

    assert _snapshot(pg_url) == expected  # no duplicate, no lost line, the same outcomes
    assert len(expected["attempts"]) == 1600  # one status line per five lines
    assert _rows(pg_url, 'select "offset", lines from positions') == [(log.stat().st_size, 8000)]

    assert not (out / "failed").exists(), (out / "failed").read_text()
    answers = sorted(out.glob("*.json"), key=lambda p: int(p.stem))
    assert len(answers) >= 1
    final = {(d["queue_id"], d["recipient"].lower()): d for d in json.loads(answers[-1].read_text())["deliveries"]}
    for answer in answers:
        stories = json.loads(answer.read_text())["deliveries"]
        keys = [(d["queue_id"], d["recipient"].lower()) for d in stories]
        assert len(keys) == len(set(keys)), f"{answer.name}: a story twice"
        for story in stories:
            lines = [line for attempt in story["attempts"] for line in attempt["lines"]]
            whole = [
                line
                for attempt in final[(story["queue_id"], story["recipient"].lower())]["attempts"]
                for line in attempt["lines"]
            ]
            # writers commit whole chunks in file order, so a reader sees each story up to some line
            assert lines == whole[: len(lines)], f"{answer.name}: {story['queue_id']} read half-written"
            assert story["status"] == story["attempts"][-1]["status"]
    assert len(final) == by_recipient[address]


def test_follow_waits_for_a_restarted_database_and_indexes_every_line_once(pg_server, tmp_path):
    url = pg_server.new_database()
    Store(url).close()  # the tables, so that the test can watch positions from the start
    lines = list(generate(600, seed=21))
    live = tmp_path / "mail.log"
    live.write_text("\n".join(lines[:200]) + "\n")
    errors = tmp_path / "ingest.err"
    with open(errors, "wb") as stderr:
        follower = subprocess.Popen(
            _whyfailed("ingest", str(live), "--follow", "--interval", "0.2"),
            cwd=REPO,
            env=_env(url),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    key = str(live.resolve())

    def indexed() -> int:
        rows = _rows(url, "select lines from positions where path = %s", [key])
        return rows[0][0] if rows else 0

    def explain() -> str:
        return f"ingest stderr:\n{errors.read_text()[-3000:]}\nserver log:\n{pg_server.log_tail()}"

    try:
        _wait_for(lambda: indexed() == 200, "the first 200 lines", explain)
        pg_server.stop()
        with open(live, "a") as handle:  # written while the database is down
            handle.write("\n".join(lines[200:400]) + "\n")
        _wait_for(lambda: "reconnecting" in errors.read_text(), "ingest to notice the database is gone", explain)
        pg_server.start()
        with open(live, "a") as handle:
            handle.write("\n".join(lines[400:]) + "\n")
        _wait_for(lambda: indexed() == 600, "all 600 lines after the restart", explain)
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=120)
    assert follower.returncode == 0, explain()
    log = errors.read_text()
    assert "unavailable while" in log and "reconnected" in log and "Traceback" not in log
    assert _snapshot(url) == _reference(tmp_path, live, str(live))  # every line once, nothing lost


def test_two_ingest_processes_and_the_web_process_share_one_database(pg_url, tmp_path):
    """The deployment the Procfile describes: two `ingest` processes write the shared index while
    `serve web` answers /whyfailed from it. Every query is answered from the database (never an
    apology), and the index ends exactly as one ingest of the log would leave it."""
    from .serve_process import start_web
    from .slack_fakes import FakeSlackAPI, SlackSender

    log = tmp_path / "mail.log"
    log.write_text("\n".join(generate(8000, seed=12)) + "\n")
    expected = _reference(tmp_path, log, str(log))
    address = expected["deliveries"][-1][0].rsplit("|", 1)[1]  # a recipient the finished index knows
    bot_token, secret = "xoxb-1000000001-2000000002-fakefakefakefakefake", "8f742231b10e8888abcd99edabcd00d1"
    api = FakeSlackAPI(bot_token)
    web, port = start_web(tmp_path, bot_token, secret, api.api_url, DATABASE_URL=pg_url)
    try:
        slack = SlackSender(f"http://127.0.0.1:{port}/slack/events", secret, api)
        writers = _two_ingests(log, pg_url)
        asked = 0
        while any(writer.poll() is None for writer in writers) and asked < 200:
            status, _ = slack.command(address, name=f"q{asked}")
            assert status == 200
            asked += 1
            api.wait_for(lambda calls, n=asked: [c for c in calls if c.path.endswith(f"/q{n - 1}")])
        results = [writer.communicate(timeout=600) for writer in writers]
        for writer, (_, stderr) in zip(writers, results, strict=True):
            assert writer.returncode == 0, stderr.decode()
        assert slack.command(address, name="final")[0] == 200
        [final] = api.wait_for(lambda calls: [c for c in calls if c.path.endswith("/final")])
        web.terminate()
        assert web.wait() == 0, web.stderr()
    finally:
        web.kill()
        api.close()
    answers = [c for c in api.calls if c.method == "response"]
    assert asked >= 1 and len(answers) == asked + 1  # one answer per query, none twice
    texts = [json.dumps(c.args) for c in answers]
    assert not [t for t in texts if "Sorry" in t or "went wrong" in t]
    assert address in json.dumps(final.args) and "No deliveries" not in json.dumps(final.args)
    assert _snapshot(pg_url) == expected  # no duplicate, no lost line, the same outcomes
