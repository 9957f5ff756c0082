"""The Slack surface with real parts: the bolt app served over HTTP on 127.0.0.1, signed requests
shaped as Slack sends them, and a local Slack Web API (tests/slack_fakes.py) that records calls."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.adapters.slack import APOLOGY, create_app, unslack
from bot.adapters.slack_serve import make_http_server, socket_mode_handler
from bot.adapters.slack_settings import SlackSettings
from bot.ingest import ingest_paths
from bot.render.slack import render_evidence, render_report
from bot.report import diagnose_text
from bot.settings import Settings
from bot.store import Store

from .conftest import FIXTURES, REPO
from .slack_fakes import (
    WAIT,
    FakeSlackAPI,
    FakeSocketModeServer,
    SlackSender,
    block_action,
    check_blocks,
    message_event,
    signature,
    slackify,
    texts,
)

LOG = FIXTURES / "postfix" / "deferred-then-bounced.log"
BOT_TOKEN = "xoxb-1000000001-2000000002-fakefakefakefakefake"
APP_TOKEN = "xapp-1-A0001-3000000003-fakefakefake"
SECRET = "8f742231b10e8888abcd99edabcd00d1"


def _many_recipients(count: int) -> str:
    head = (
        "Nov 27 08:00:01 mx1 postfix/qmgr[980]: 7A1B2C3D4E: from=<anna@example.com>, size=2210, nrcpt=1 (queue active)"
    )
    line = (
        "Nov 27 09:10:02 mx1 postfix/smtp[1500]: 7A1B2C3D4E: to=<user{i}@slow.example.net>, "
        "relay=mx.slow.example.net[198.51.100.80]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=5.1.1, status=bounced "
        "(host mx.slow.example.net[198.51.100.80] said: 550 5.1.1 <user{i}@slow.example.net>: User unknown "
        "(in reply to RCPT TO command))"
    )
    return "\n".join([head] + [line.format(i=i) for i in range(count)])


# --- pure parts: no servers --------------------------------------------------------------------


def test_unslack_undoes_what_slack_does_to_a_paste():
    assert unslack("to=&lt;<mailto:ops@slow.example.net|ops@slow.example.net>&gt;") == "to=<ops@slow.example.net>"
    assert unslack("relay=<http://mx.slow.example.net|mx.slow.example.net>[198.51.100.80]:25") == (
        "relay=mx.slow.example.net[198.51.100.80]:25"
    )
    assert unslack("see <https://example.org/x?a=1&amp;b=2>") == "see https://example.org/x?a=1&b=2"
    assert unslack("```Nov 27 a\nNov 27 b```") == "Nov 27 a\nNov 27 b"
    assert unslack("```\nline\n```") == "line"
    assert unslack("a &amp;lt; typed literally") == "a &lt; typed literally"  # &amp; is decoded last
    assert unslack("<@UBOT> hello <@U123> <!here> <#C1|ops>", bot_user_id="UBOT") == "hello @U123 @here #ops"


def test_a_pasted_log_survives_slacks_rewriting_unchanged():
    original = LOG.read_text()
    assert unslack(slackify(original)) == original.strip("\n")


def test_a_huge_report_stays_within_block_kit_limits_and_offers_the_full_report():
    report = diagnose_text(_many_recipients(60), "paste")
    assert len(report.deliveries) == 60
    message = render_report(report, "tok", share=True)
    assert check_blocks(message.blocks) == []
    assert message.truncated and "user59@slow.example.net" in message.full_report
    assert any("Showing 23 of 60 recipients" in t for t in texts(message.blocks))
    assert len(message.text) <= 3000


def test_evidence_of_a_long_story_is_cut_to_fit():
    report = diagnose_text(
        _many_recipients(1)
        + "\n"
        + "\n".join(
            f"Nov 27 09:1{i % 10}:02 mx1 postfix/smtp[1500]: 7A1B2C3D4E: to=<user0@slow.example.net>, relay=none, "
            f"delay=1, dsn=4.4.1, status=deferred (connect to mx.slow.example.net[198.51.100.80]:25: {'x' * 150})"
            for i in range(80)
        ),
        "paste",
    )
    message = render_evidence(report.deliveries[0])
    assert check_blocks(message.blocks) == []
    assert message.truncated and any("Not every evidence line fits" in t for t in texts(message.blocks))


# --- the real app over HTTP ------------------------------------------------------------------------


@dataclass
class Harness:
    api: FakeSlackAPI
    slack: SlackSender
    settings: Settings
    executor: ThreadPoolExecutor

    def drain(self) -> None:
        """Wait for every listener the app started (they run after the ack), so an absence is real."""
        self.executor.shutdown(wait=True)


def _start(tmp_path, **settings) -> tuple[Harness, callable]:
    api = FakeSlackAPI(BOT_TOKEN, APP_TOKEN)
    db = tmp_path / "whyfailed.db"
    ingest_paths(Store(db), [str(LOG)])
    config = Settings(**{"db": str(db), "allowed_channels": ["C0OPS"], **settings})
    executor = ThreadPoolExecutor(max_workers=4)
    slack = SlackSettings.load(bot_token=BOT_TOKEN, signing_secret=SECRET, api_url=api.api_url)
    app = create_app(config, slack=slack, listener_executor=executor)
    server = make_http_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/slack/events"

    def stop() -> None:
        server.shutdown()
        server.server_close()
        executor.shutdown(wait=True, cancel_futures=True)
        api.close()

    return Harness(api, SlackSender(url, SECRET, api), config, executor), stop


@pytest.fixture
def harness(tmp_path):
    running, stop = _start(tmp_path)
    yield running
    stop()


def _blocks(call) -> list[dict]:
    blocks = call.args.get("blocks")
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def _all_text(call) -> str:
    return json.dumps(call.args, ensure_ascii=False)


def _button(blocks: list[dict], action_id: str) -> str:
    return next(
        e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id
    )


@pytest.mark.slow
def test_requests_without_a_valid_fresh_signature_are_refused(harness):
    body = harness.slack.event_body(message_event(slackify(LOG.read_text()), "1700000001.000100"))
    status, _ = harness.slack.post(body, "application/json", secret="0" * 32)
    assert status == 401
    status, _ = harness.slack.post(body, "application/json", timestamp=int(time.time()) - 600)
    assert status == 401
    # our signer is Slack's algorithm, as slack_sdk computes it
    stamp = str(int(time.time()))
    assert signature(SECRET, stamp, body) == SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)
    harness.drain()
    assert not harness.api.made("chat.postMessage")


@pytest.mark.slow
def test_url_verification_answers_the_challenge(harness):
    body = json.dumps(
        {
            "token": "legacy",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    status, answer = harness.slack.post(body, "application/json")
    assert status == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in answer


@pytest.mark.slow
def test_a_pasted_log_is_answered_in_its_thread_with_valid_blocks(harness):
    ts = "1700000100.000200"
    status, _ = harness.slack.event(message_event(slackify(LOG.read_text()), ts))
    assert status == 200
    [post] = harness.api.wait_calls("chat.postMessage")
    assert post.args["thread_ts"] == ts and post.args["channel"] == "C0OPS"
    blocks = _blocks(post)
    assert check_blocks(blocks) == []
    shown = "\n".join(texts(blocks))
    assert "*✗ ops@slow.example.net* — bounced" in shown and "`mailbox-full`" in shown
    assert "*SMTP step:* RCPT TO" in shown and "Next steps" in shown
    assert "mailto:" not in shown and "http://mx" not in shown  # Slack's links were undone
    assert _button(blocks, "show_evidence") and _button(blocks, "feedback_helpful").startswith("mailbox-full|")


@pytest.mark.slow
def test_chatter_edits_and_bot_messages_get_no_reply(harness):
    send = harness.slack.event
    send(message_event("hi all, is the printer fixed? <@U0BOB> &lt;3", "1700000200.000100"))
    send(message_event(slackify(LOG.read_text()), "1700000201.000100", bot_id="B0OTHER", subtype="bot_message"))
    send(message_event(slackify(LOG.read_text()), "1700000202.000100", subtype="message_changed"))
    harness.drain()
    assert not harness.api.made("chat.postMessage")


@pytest.mark.slow
def test_pings_inside_a_pasted_log_come_back_escaped(harness):
    line = (
        "Nov 27 12:40:02 mx1 postfix/smtp[1612]: 7A1B2C3D4E: to=<ops@slow.example.net>, "
        "relay=mx.slow.example.net[198.51.100.80]:25, delay=1, delays=0/0/0.5/0.4, dsn=5.7.1, status=bounced "
        "(host mx.slow.example.net[198.51.100.80] said: 550 5.7.1 <!channel> <!everyone> <@U123> & friends "
        "blocked (in reply to RCPT TO command))"
    )
    # typed as text, so Slack escaped the brackets; <!here> is a real mention Slack made of "@here"
    text = slackify(line) + "\n<!here> why?"
    harness.slack.event(message_event(text, "1700000300.000100"))
    [post] = harness.api.wait_calls("chat.postMessage")
    sent = _all_text(post)
    for ping in ("<!channel>", "<!everyone>", "<@U123>", "<!here>"):
        assert ping not in sent
    assert "&lt;!channel&gt; &lt;!everyone&gt; &lt;@U123&gt; &amp; friends" in sent
    assert check_blocks(_blocks(post)) == []


@pytest.mark.slow
def test_a_shared_log_file_is_downloaded_with_the_bot_token(harness):
    harness.api.add_file("F0LOG", "mail.log", LOG.read_bytes())
    event = message_event(
        "can someone look at this?",
        "1700000400.000100",
        subtype="file_share",
        files=[{"id": "F0LOG", "file_access": "check_file_info"}],
    )
    harness.slack.event(event)
    [post] = harness.api.wait_calls("chat.postMessage")
    assert post.args["thread_ts"] == "1700000400.000100"
    assert "mailbox-full" in _all_text(post)
    assert harness.api.made("files.info")[0].args["file"] == "F0LOG"
    [download] = harness.api.made("download")
    assert download.headers["Authorization"] == f"Bearer {BOT_TOKEN}"


@pytest.mark.slow
def test_slash_help_is_acked_at_once_and_answered_ephemerally(harness):
    started = time.monotonic()
    status, body = harness.slack.command("help", name="help")
    assert status == 200 and body == "" and time.monotonic() - started < 3
    [answer] = harness.api.wait_calls("response")
    assert answer.path.endswith("/help") and answer.args["response_type"] == "ephemeral"
    assert "/whyfailed kb QUERY" in _all_text(answer) and check_blocks(_blocks(answer)) == []


@pytest.mark.slow
def test_slash_kb_finds_the_article_for_a_code(harness):
    harness.slack.command("kb 5.7.1")
    [answer] = harness.api.wait_calls("response")
    assert answer.args["response_type"] == "ephemeral" and check_blocks(_blocks(answer)) == []
    assert _blocks(answer)[0]["type"] == "header"


@pytest.mark.slow
def test_slash_address_in_an_allowed_channel_answers_and_can_be_shared(harness):
    harness.slack.command("<mailto:ops@slow.example.net|ops@slow.example.net> --since 3650d", channel="C0OPS")
    [answer] = harness.api.wait_calls("response")
    assert answer.args["response_type"] == "ephemeral"
    blocks = _blocks(answer)
    assert check_blocks(blocks) == [] and "mailbox-full" in _all_text(answer)
    share = _button(blocks, "share_in_channel")
    harness.slack.interactive(block_action("share_in_channel", share, "1700000500.000100", harness.api, ephemeral=True))
    shared = harness.api.wait_calls("response", 2)[1]
    assert shared.args["response_type"] == "in_channel" and "mailbox-full" in _all_text(shared)
    assert "Shared by <@U0ANNA>" in _all_text(shared)
    rows = [{k: r[k] for k in ("user", "channel", "outcome")} for r in Store(harness.settings.db).audit_rows()]
    assert rows == [{"user": "U0ANNA", "channel": "C0OPS", "outcome": "answered: 1 stories"}]


@pytest.mark.slow
def test_slash_address_elsewhere_is_politely_refused_and_audited(harness):
    harness.slack.command("ops@slow.example.net", user="U0EVE", channel="C0RANDOM")
    [answer] = harness.api.wait_calls("response")
    assert answer.args["response_type"] == "ephemeral"
    assert "not enabled for you here" in _all_text(answer) and "mailbox" not in _all_text(answer)
    rows = [{k: r[k] for k in ("user", "channel", "query", "outcome")} for r in Store(harness.settings.db).audit_rows()]
    assert rows == [{"user": "U0EVE", "channel": "C0RANDOM", "query": "ops@slow.example.net", "outcome": "refused"}]


@pytest.mark.slow
def test_show_evidence_gives_the_log_lines_and_a_ladder_to_the_clicker(harness):
    ts = "1700000600.000100"
    harness.slack.event(message_event(slackify(LOG.read_text()), ts))
    [post] = harness.api.wait_calls("chat.postMessage")
    value = _button(_blocks(post), "show_evidence")
    harness.slack.interactive(block_action("show_evidence", value, "1700000600.000900", harness.api, thread_ts=ts))
    [shown] = harness.api.wait_calls("chat.postEphemeral")
    assert shown.args["user"] == "U0ANNA" and shown.args["thread_ts"] == ts
    blocks = _blocks(shown)
    assert check_blocks(blocks) == []
    evidence, ladder = texts(blocks)[0], texts(blocks)[-2]
    line = LOG.read_text().splitlines()[7]  # the final bounce, as pasted, escaped
    assert line.replace("<", "&lt;").replace(">", "&gt;") in evidence
    assert "RCPT TO:&lt;ops@slow.example.net&gt;" in ladder and "✗ failed at RCPT TO" in ladder
    assert "client: mx1" in ladder and "server: mx.slow.example.net" in ladder


@pytest.mark.slow
def test_helpful_and_not_helpful_are_stored_as_feedback(harness):
    ts = "1700000700.000100"
    harness.slack.event(message_event(slackify(LOG.read_text()), ts))
    [post] = harness.api.wait_calls("chat.postMessage")
    harness.slack.interactive(
        block_action(
            "feedback_helpful",
            _button(_blocks(post), "feedback_helpful"),
            "1700000700.000900",
            harness.api,
            thread_ts=ts,
        )
    )
    harness.slack.interactive(
        block_action(
            "feedback_not_helpful", "unknown|x:0", "1700000700.000900", harness.api, user="U0BOB", thread_ts=ts
        )
    )
    harness.api.wait_calls("chat.postEphemeral", 2)
    rows = sorted(
        ({k: r[k] for k in ("user", "diagnosis", "helpful")} for r in Store(harness.settings.db).feedback_rows()),
        key=lambda r: r["user"],
    )
    assert rows == [
        {"user": "U0ANNA", "diagnosis": "mailbox-full", "helpful": 1},
        {"user": "U0BOB", "diagnosis": "unknown", "helpful": 0},
    ]


@pytest.mark.slow
def test_slack_retries_never_produce_a_second_reply(harness):
    body = harness.slack.event_body(message_event(slackify(LOG.read_text()), "1700000800.000100"), "Ev0RETRY")
    assert harness.slack.post(body, "application/json")[0] == 200
    harness.api.wait_calls("chat.postMessage")
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert harness.slack.post(body, "application/json", headers=retry)[0] == 200
    # a first copy we never saw, resent because our answer was slow: the first copy is being handled
    other = harness.slack.event_body(message_event(slackify(LOG.read_text()), "1700000801.000100"), "Ev0SLOW")
    assert harness.slack.post(other, "application/json", headers=retry)[0] == 200
    harness.drain()
    assert len(harness.api.made("chat.postMessage")) == 1


@pytest.mark.slow
def test_a_retry_of_an_event_that_never_arrived_is_answered_once(harness):
    body = harness.slack.event_body(message_event(slackify(LOG.read_text()), "1700000850.000100"), "Ev0LOST")
    failed = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "connection_failed"}
    assert harness.slack.post(body, "application/json", headers=failed)[0] == 200
    assert harness.slack.post(body, "application/json", headers={**failed, "X-Slack-Retry-Num": "2"})[0] == 200
    harness.drain()
    assert len(harness.api.made("chat.postMessage")) == 1


@pytest.mark.slow
def test_http_429_is_retried_after_retry_after(harness):
    harness.api.rate_limit_next("chat.postMessage", retry_after=1)
    harness.slack.event(message_event(slackify(LOG.read_text()), "1700000900.000100"))
    [post] = harness.api.wait_calls("chat.postMessage")
    [limited] = [c for c in harness.api.calls if c.status == 429]
    assert post.at - limited.at >= 1.0 and post.args["thread_ts"] == "1700000900.000100"


@pytest.mark.slow
def test_the_message_shortcut_diagnoses_any_message(harness):
    payload = {
        "type": "message_action",
        "callback_id": "diagnose_delivery_problem",
        "trigger_id": "1.2.3",
        "token": "legacy-verification-token",
        "action_ts": str(time.time()),
        "team": {"id": "T0001", "domain": "fake"},
        "user": {"id": "U0ANNA", "name": "anna"},
        "channel": {"id": "C0OPS", "name": "ops"},
        "response_url": harness.api.response_url("shortcut"),
        "message": {"type": "message", "user": "U0BOB", "ts": "1700001000.000100", "text": slackify(LOG.read_text())},
    }
    status, _ = harness.slack.interactive(payload)
    assert status == 200
    [post] = harness.api.wait_calls("chat.postMessage")
    assert post.args["thread_ts"] == "1700001000.000100" and "mailbox-full" in _all_text(post)


@pytest.mark.slow
def test_a_mention_is_answered_once_though_slack_sends_it_twice(harness):
    ts = "1700001100.000100"
    text = "<@UBOT> " + slackify(LOG.read_text())
    harness.slack.event(message_event(text, ts))
    harness.slack.event({**message_event(text, ts), "type": "app_mention"})
    harness.slack.event({**message_event("<@UBOT> are you there?", "1700001101.000100"), "type": "app_mention"})
    harness.drain()
    posts = harness.api.made("chat.postMessage")
    assert sorted(p.args["thread_ts"] for p in posts) == [ts, "1700001101.000100"]
    hint = next(p for p in posts if p.args["thread_ts"] == "1700001101.000100")
    assert "does not look like a mail log" in hint.args["text"]


@pytest.mark.slow
def test_a_report_too_big_for_one_message_comes_with_the_full_report_file(harness):
    ts = "1700001200.000100"
    harness.slack.event(message_event(slackify(_many_recipients(40)), ts))
    [post] = harness.api.wait_calls("chat.postMessage")
    assert check_blocks(_blocks(post)) == [] and "Showing 23 of 40 recipients" in _all_text(post)
    [done] = harness.api.wait_calls("files.completeUploadExternal")
    assert done.args["thread_ts"] == ts and done.args["channel_id"] == "C0OPS"
    assert harness.api.made("upload") and harness.api.made("files.getUploadURLExternal")


@pytest.mark.slow
def test_an_error_is_logged_and_apologised_for_never_shown(tmp_path):
    # a real failure: the audit database path is a directory, so writing the audit row fails
    running, stop = _start(tmp_path, db=str(tmp_path))
    try:
        running.slack.command("ops@slow.example.net", channel="C0RANDOM")
        [answer] = running.api.wait_calls("response")
        assert APOLOGY in _all_text(answer) and "Traceback" not in _all_text(answer)
    finally:
        stop()


# --- Socket Mode ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_socket_mode_connects_acks_and_dispatches(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN, APP_TOKEN)
    event = message_event(slackify(LOG.read_text()), "1700002000.000100")
    envelope = {
        "envelope_id": "57d6a792-4d35-4d0b-b6aa-3361493e1caf",
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": json.loads(SlackSender("", "", api).event_body(event, "Ev0SOCKET")),
    }
    ws = FakeSocketModeServer([envelope])
    api.ws_url = ws.url
    slack = SlackSettings.load(bot_token=BOT_TOKEN, app_token=APP_TOKEN, mode="socket", api_url=api.api_url)
    handler = socket_mode_handler(create_app(Settings(db=str(tmp_path / "w.db")), slack=slack), slack)
    try:
        handler.connect()
        assert ws.wait_ack(envelope["envelope_id"]) == {"envelope_id": envelope["envelope_id"]}
        [post] = api.wait_calls("chat.postMessage")
        assert post.args["thread_ts"] == "1700002000.000100" and "mailbox-full" in _all_text(post)
        assert api.made("apps.connections.open")[0].args.get("token", APP_TOKEN) == APP_TOKEN
    finally:
        handler.close()
        ws.close()
        api.close()


# --- `whyfailed serve slack` as a process ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WHYFAILED_")) and k != "PORT"}
    return {**env, "PYTHONUTF8": "1", **extra}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": "xoxp-123-user-token", "SLACK_SIGNING_SECRET": SECRET}, "does not look like a bot token"),
        ({"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_SIGNING_SECRET is not set"),
        ({"SLACK_BOT_TOKEN": BOT_TOKEN, "WHYFAILED_SLACK_MODE": "socket"}, "SLACK_APP_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET, "PORT": "eighty"}, "PORT"),
        ({"WHYFAILED_SLACK_MODE": "carrier-pigeon"}, "WHYFAILED_SLACK_MODE"),
    ],
)
def test_serve_slack_explains_missing_or_malformed_settings(env, expected, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "slack"],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        env=_clean_env(PYTHONPATH=str(REPO), **env),
    )
    assert done.returncode == 2
    assert expected in done.stderr.decode() and "Traceback" not in done.stderr.decode()


@pytest.mark.slow
def test_serve_slack_http_has_healthz_and_verifies_signatures(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN)
    port = _free_port()
    env = _clean_env(
        PYTHONPATH=str(REPO),
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        PORT=str(port),
        WHYFAILED_SLACK_API_URL=api.api_url,
        WHYFAILED_DB=str(tmp_path / "w.db"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "slack", "--mode", "http", "--host", "127.0.0.1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, health = time.monotonic() + WAIT, None
        while health is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    health = (answer.status, answer.read())
            except OSError:
                time.sleep(0.1)
        assert health == (200, b"ok\n"), process.stderr.read1().decode() if process.poll() is not None else ""
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET, api)
        challenge = json.dumps({"token": "t", "challenge": "c-123", "type": "url_verification"})
        assert sender.post(challenge, "application/json")[0] == 200
        assert sender.post(challenge, "application/json", secret="f" * 32)[0] == 401
    finally:
        process.terminate()
        process.wait(WAIT)
        api.close()
    assert process.returncode == 0


def test_feedback_table_is_plain_sqlite(tmp_path):
    from bot.adapters.slack import save_feedback

    save_feedback(
        str(tmp_path / "f.db"),
        user="U1",
        channel="C1",
        diagnosis="greylisted",
        helpful=True,
        message_ts="1.2",
        reference="t:0",
    )
    with sqlite3.connect(tmp_path / "f.db") as db:
        assert db.execute("select surface, diagnosis, helpful from feedback").fetchall() == [("slack", "greylisted", 1)]


@pytest.mark.slow
def test_a_member_of_an_allowed_user_group_may_query_anywhere(tmp_path):
    running, stop = _start(tmp_path, allowed_channels=[], allowed_users=["S0MAILOPS"])
    try:
        running.api.usergroups = [{"id": "S0MAILOPS", "handle": "mail-ops", "users": ["U0EVE"]}]
        running.slack.command("ops@slow.example.net", user="U0EVE", channel="C0RANDOM", name="eve")
        running.slack.command("ops@slow.example.net", user="U0BOB", channel="C0RANDOM", name="bob")
        answers = {c.path.rsplit("/", 1)[1]: _all_text(c) for c in running.api.wait_calls("response", 2)}
        assert "mailbox-full" in answers["eve"] and "not enabled for you here" in answers["bob"]
        assert len(running.api.made("usergroups.list")) == 1  # cached between queries
    finally:
        stop()


def test_the_manifest_matches_what_the_app_listens_for():
    import yaml

    from bot.adapters.slack import COMMAND, SHORTCUT

    manifest = yaml.safe_load((REPO / "slack" / "manifest.yml").read_text())
    features, settings = manifest["features"], manifest["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert [(s["callback_id"], s["type"]) for s in features["shortcuts"]] == [(SHORTCUT, "message")]
    assert {"app_mention", "message.channels", "message.groups", "message.im"} <= set(
        settings["event_subscriptions"]["bot_events"]
    )
    assert settings["interactivity"]["is_enabled"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "channels:history", "files:read", "app_mentions:read"} <= scopes


@pytest.mark.slow
def test_serve_slack_socket_mode_connects_from_the_command_line(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN, APP_TOKEN)
    event = message_event(slackify(LOG.read_text()), "1700003000.000100")
    envelope = {
        "envelope_id": "0f1e2d3c-cli",
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": json.loads(SlackSender("", "", api).event_body(event, "Ev0CLI")),
    }
    ws = FakeSocketModeServer([envelope])
    api.ws_url = ws.url
    env = _clean_env(
        PYTHONPATH=str(REPO),
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        WHYFAILED_SLACK_MODE="socket",
        WHYFAILED_SLACK_API_URL=api.api_url,
        WHYFAILED_DB=str(tmp_path / "w.db"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "slack"], cwd=tmp_path, env=env, stderr=subprocess.PIPE
    )
    try:
        ws.wait_ack(envelope["envelope_id"])
        [post] = api.wait_calls("chat.postMessage")
        assert post.args["thread_ts"] == "1700003000.000100"
    finally:
        process.terminate()
        process.wait(WAIT)
        ws.close()
        api.close()
