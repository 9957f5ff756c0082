"""The Procfile's processes, run for real: `whyfailed serve web|worker|ingest` as subprocesses,
against the local Slack Web API (tests/slack_fakes.py) and temporary logs, stopped with SIGTERM."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.error
import urllib.request

import pytest

from bot.ingest import ingest_paths
from bot.store import Store

from .conftest import FIXTURES, REPO
from .serve_process import ServeProcess, clean_env, free_port, start_web
from .slack_fakes import (
    WAIT,
    FakeSlackAPI,
    FakeSocketModeServer,
    SlackSender,
    events_envelope,
    message_event,
    signature,
    slackify,
)

LOG = FIXTURES / "postfix" / "deferred-then-bounced.log"
BOT_TOKEN = "xoxb-1000000001-2000000002-fakefakefakefakefake"
APP_TOKEN = "xapp-1-A0001-3000000003-fakefakefake"
SECRET = "8f742231b10e8888abcd99edabcd00d1"


def test_the_procfile_names_the_three_processes():
    lines = [line for line in (REPO / "Procfile").read_text().splitlines() if line.strip()]
    kinds = dict(line.split(":", 1) for line in lines)
    assert set(kinds) == {"web", "worker", "ingest"}
    assert kinds["web"].split()[:3] == ["whyfailed", "serve", "web"]
    assert kinds["worker"].split()[:3] == ["whyfailed", "serve", "worker"]
    assert kinds["ingest"].split()[:3] == ["whyfailed", "serve", "ingest"]


# --- web -------------------------------------------------------------------------------------


def _web(tmp_path, api: FakeSlackAPI, **extra) -> tuple[ServeProcess, int]:
    db = tmp_path / "w.db"
    ingest_paths(Store(db), [str(LOG)])
    return start_web(tmp_path, BOT_TOKEN, SECRET, api.api_url, WHYFAILED_DB=str(db), **extra)


def _partial_request(port: int, body: bytes, headers: dict) -> socket.socket:
    """An HTTP request whose last bytes have not been sent yet: a request in flight."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": str(len(body))}.items())
    conn.sendall(f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body[:-10])
    return conn


@pytest.mark.slow
def test_web_finishes_requests_and_answers_in_flight_at_sigterm_then_exits_0(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN)
    held = api.hold("chat.postMessage")
    process, port = _web(tmp_path, api)
    try:
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET, api)
        # A: acked, its reply on its way to Slack (held there) when SIGTERM comes
        assert sender.event(message_event(slackify(LOG.read_text()), "1700000100.000100"))[0] == 200
        api.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage (held)"])
        # B: its request still being sent when SIGTERM comes
        body = sender.event_body(message_event(slackify(LOG.read_text()), "1700000200.000100"))
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature(SECRET, stamp, body),
        }
        slow = _partial_request(port, body.encode(), headers)
        # the accept queue is first in, first out: once a later connection is answered, B was accepted
        assert process.wait_http(f"http://127.0.0.1:{port}/healthz")[0] == 200
        process.terminate()
        process.wait_event("stopping")
        slow.sendall(body.encode()[-10:])
        answer = slow.recv(65536).decode()
        slow.close()
        assert answer.startswith("HTTP/1.0 200"), answer
        process.wait_event("stopped listening")
        with pytest.raises(OSError):  # no new work once stopping
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        held.set()
        assert process.wait() == 0, process.stderr()
        posts = api.made("chat.postMessage")
        assert sorted(p.args["thread_ts"] for p in posts) == ["1700000100.000100", "1700000200.000100"]
        stopped = process.wait_event("stopped")
        assert stopped["process"] == "web" and stopped["clean"] is True and stopped["signal"] == "SIGTERM"
    finally:
        held.set()
        process.kill()
        api.close()


@pytest.mark.slow
def test_web_serves_prometheus_metrics_without_addresses(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN)
    process, port = _web(tmp_path, api)
    try:
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET, api)
        assert sender.event(message_event(slackify(LOG.read_text()), "1700000300.000100"))[0] == 200
        assert sender.command("ops@slow.example.net", name="metrics")[0] == 200
        api.wait_calls("chat.postMessage")
        api.wait_calls("response")
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        body = sender.event_body(message_event(slackify(LOG.read_text()), "1700000301.000100"), "Ev0METRICS")
        assert sender.post(body, "application/json", headers=retry)[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as hostile:
            hostile.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
            assert hostile.recv(1024).startswith(b"HTTP/1.0 400")
        status, text = process.wait_http(f"http://127.0.0.1:{port}/metrics")
        exposition = text.decode()
        assert status == 200
        assert 'whyfailed_build_info{python="' in exposition
        assert 'whyfailed_http_requests_total{kind="event",route="/slack/events",status="200"} 2.0' in exposition
        assert 'whyfailed_http_requests_total{kind="command",route="/slack/events",status="200"} 1.0' in exposition
        assert 'whyfailed_slack_retries_total{reason="http_timeout"} 1.0' in exposition
        assert 'whyfailed_diagnoses_total{diagnosis="mailbox-full",surface="slack"}' in exposition
        assert 'whyfailed_replies_sent_total{surface="slack",via="chat.postMessage"} 1.0' in exposition
        assert "whyfailed_lookup_seconds_count 1.0" in exposition
        assert "@" not in exposition and "C0OPS" not in exposition and "U0ANNA" not in exposition
    finally:
        process.kill()
        api.close()


@pytest.mark.slow
def test_metrics_can_ask_for_a_bearer_token(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN)
    process, port = _web(tmp_path, api, WHYFAILED_METRICS_TOKEN="s3cret-scrape")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=WAIT)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret-scrape"})
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            assert b"whyfailed_build_info" in answer.read()
    finally:
        process.kill()
        api.close()


# --- worker ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_with_nothing_configured_says_what_to_set(tmp_path):
    process = ServeProcess(["worker"], clean_env(WHYFAILED_DB=str(tmp_path / "w.db")), tmp_path)
    assert process.wait() == 2
    err = process.stderr()
    assert "SLACK_APP_TOKEN" in err and "DISCORD_TOKEN" in err and "Traceback" not in err


@pytest.mark.slow
def test_worker_says_which_token_is_malformed(tmp_path):
    env = clean_env(WHYFAILED_DB=str(tmp_path / "w.db"), SLACK_APP_TOKEN=APP_TOKEN, DISCORD_TOKEN="not-a-token")
    process = ServeProcess(["worker"], env, tmp_path)
    assert process.wait() == 2
    err = process.stderr()
    assert "SLACK_BOT_TOKEN is not set" in err and "DISCORD_TOKEN does not look like" in err


@pytest.mark.slow
def test_worker_runs_socket_mode_and_stops_cleanly_on_sigterm(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN, APP_TOKEN)
    held = api.hold("chat.postMessage")
    event = message_event(slackify(LOG.read_text()), "1700003000.000100")
    envelope = events_envelope(api, event, "0f1e2d3c-worker", "Ev0WORKER")
    ws = FakeSocketModeServer([envelope])
    api.ws_url = ws.url
    env = clean_env(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        WHYFAILED_SLACK_API_URL=api.api_url,
        WHYFAILED_DB=str(tmp_path / "w.db"),
    )
    process = ServeProcess(["worker"], env, tmp_path)
    try:
        ws.wait_ack(envelope["envelope_id"])
        api.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage (held)"])
        process.terminate()
        process.wait_event("stopping")
        held.set()  # the answer in hand completes after SIGTERM
        assert process.wait() == 0, process.stderr()
        [post] = api.made("chat.postMessage")
        assert post.args["thread_ts"] == "1700003000.000100"
        stopped = process.wait_event("stopped")
        assert stopped["clean"] is True and stopped["surfaces"] == "slack"
    finally:
        held.set()
        process.kill()
        ws.close()
        api.close()


# --- ingest ----------------------------------------------------------------------------------


def _postfix_lines(count: int) -> list[str]:
    """Distinct, complete Postfix stories, four lines each."""
    lines = []
    for n in range(count // 4):
        qid = f"{0xA0000 + n:X}AB"
        lines += [
            f"Nov 27 08:{n // 60 % 60:02d}:{n % 60:02d} mx1 postfix/qmgr[980]: {qid}: from=<anna@example.com>, "
            "size=2210, nrcpt=1 (queue active)",
            f"Nov 27 08:{n // 60 % 60:02d}:{n % 60:02d} mx1 postfix/smtp[1500]: {qid}: to=<user{n}@slow.example.net>,"
            " relay=mx.slow.example.net[198.51.100.80]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=5.2.2, status=bounced "
            f"(host mx.slow.example.net[198.51.100.80] said: 552 5.2.2 <user{n}@slow.example.net>: Mailbox full "
            "(in reply to RCPT TO command))",
            f"Nov 27 08:{n // 60 % 60:02d}:{n % 60:02d} mx1 postfix/bounce[1600]: {qid}: sender non-delivery "
            "notification: 1B2C3D4E5F",
            f"Nov 27 08:{n // 60 % 60:02d}:{n % 60:02d} mx1 postfix/qmgr[980]: {qid}: removed",
        ]
    return lines


def _position(db) -> tuple[int, int] | None:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("select lines, offset from positions").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return tuple(row) if row else None


def _wait_position(db, lines: int, process: ServeProcess) -> None:
    deadline = time.monotonic() + WAIT * 4
    while (_position(db) or (0,))[0] < lines:
        assert time.monotonic() < deadline and process.process.poll() is None, process.stderr()
        time.sleep(0.05)


@pytest.mark.slow
def test_ingest_stops_on_sigterm_after_the_chunk_in_hand_and_resumes_at_the_next_line(tmp_path):
    log, db = tmp_path / "mail.log", tmp_path / "w.db"
    lines = _postfix_lines(8000)
    log.write_text("\n".join(lines[:6000]) + "\n")
    env = clean_env(
        WHYFAILED_DB=str(db),
        WHYFAILED_SOURCES=json.dumps({"mx1": {"kind": "file", "path": str(log)}}),
    )
    first = ServeProcess(["ingest", "--chunk-lines", "100", "--interval", "0.1"], env, tmp_path)
    try:
        _wait_position(db, 100, first)  # SIGTERM mid-file: the first chunk is in, most are not
        first.terminate()
        assert first.wait() == 0, first.stderr()
    finally:
        first.kill()
    stopped_at, _ = _position(db)
    assert stopped_at % 100 == 0 and 0 < stopped_at <= 6000  # whole chunks only
    first_lines = first.wait_event("source stopped")["lines"]
    assert first_lines == stopped_at
    assert first.wait_event("stopped")["clean"] is True

    with log.open("a") as handle:  # the log grew while ingest was down
        handle.write("\n".join(lines[6000:]) + "\n")
    second = ServeProcess(["ingest", "--chunk-lines", "100", "--interval", "0.1"], env, tmp_path)
    try:
        _wait_position(db, 8000, second)
        second.terminate()
        assert second.wait() == 0, second.stderr()
    finally:
        second.kill()
    # every line indexed exactly once across the two runs
    assert first_lines + second.wait_event("source stopped")["lines"] == 8000
    fresh = tmp_path / "fresh.db"
    ingest_paths(Store(fresh), [str(log)], "mx1")
    assert Store(db).counts() == Store(fresh).counts()


@pytest.mark.slow
def test_ingest_without_sources_says_how_to_configure_them(tmp_path):
    process = ServeProcess(["ingest"], clean_env(WHYFAILED_DB=str(tmp_path / "w.db")), tmp_path)
    assert process.wait() == 2
    assert "WHYFAILED_SOURCES" in process.stderr() and "Traceback" not in process.stderr()


@pytest.mark.slow
def test_one_worker_runs_slack_socket_mode_and_discord_side_by_side(tmp_path):
    import asyncio
    import threading

    from .discord_wire import HELP, TOKEN, FakeDiscord, message

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    fake = asyncio.run_coroutine_threadsafe(FakeDiscord().start(), loop).result(WAIT)
    fake.dispatch_after_ready.append(("MESSAGE_CREATE", message(LOG.read_text())))
    api = FakeSlackAPI(BOT_TOKEN, APP_TOKEN)
    envelope = events_envelope(api, message_event(slackify(LOG.read_text()), "1.1"), "both-1", "Ev0B")
    ws = FakeSocketModeServer([envelope])
    api.ws_url = ws.url
    env = clean_env(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        WHYFAILED_SLACK_API_URL=api.api_url,
        DISCORD_TOKEN=TOKEN,
        WHYFAILED_DISCORD_CHANNELS=str(HELP),
        WHYFAILED_DISCORD_API_URL=fake.api,
        WHYFAILED_DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{fake.port}/gateway",
        WHYFAILED_DB=str(tmp_path / "w.db"),
    )
    process = ServeProcess(["worker"], env, tmp_path)
    try:
        [post] = api.wait_calls("chat.postMessage")
        assert post.args["thread_ts"] == "1.1"
        discord_replies = asyncio.run_coroutine_threadsafe(
            fake.wait_for(lambda: [c for c in fake.posted("/messages") if not c.path.endswith("/threads")]), loop
        ).result(WAIT * 2)
        assert discord_replies
        process.terminate()
        assert process.wait() == 0, process.stderr()
        stopped = process.wait_event("stopped")
        assert stopped["surfaces"] == "slack,discord" and stopped["clean"] is True
    finally:
        process.kill()
        ws.close()
        api.close()
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)


@pytest.mark.slow
def test_ingest_metrics_count_lines_per_source_and_the_lag(tmp_path):
    log, db, port = tmp_path / "mail.log", tmp_path / "w.db", free_port()
    log.write_text("\n".join(_postfix_lines(400)) + "\n")
    env = clean_env(
        WHYFAILED_DB=str(db),
        WHYFAILED_SOURCES=json.dumps({"mx1": {"kind": "file", "path": str(log)}}),
        WHYFAILED_METRICS_PORT=str(port),
    )
    process = ServeProcess(["ingest", "--chunk-lines", "100", "--interval", "0.1"], env, tmp_path)
    try:
        _wait_position(db, 400, process)
        deadline, exposition = time.monotonic() + WAIT, ""
        while 'whyfailed_ingest_lines_total{source="mx1"} 400.0' not in exposition:
            assert time.monotonic() < deadline, exposition
            exposition = process.wait_http(f"http://127.0.0.1:{port}/metrics")[1].decode()
        assert 'whyfailed_source_lag_bytes{source="mx1"} 0.0' in exposition
        assert 'whyfailed_ingest_deliveries_total{source="mx1"} 100.0' in exposition
        process.terminate()
        assert process.wait() == 0
    finally:
        process.kill()
