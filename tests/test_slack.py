"""The Slack surface with real parts: the bolt app served over HTTP on 127.0.0.1, signed requests
shaped as Slack sends them, and a local Slack Web API (tests/slack_fakes.py) that records calls."""

from __future__ import annotations

import json
import os
import re
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
from bot.render.slack import (
    FULL_ATTACHED,
    FULL_IN_DM,
    FULL_WITH_REQUESTER,
    render_evidence,
    render_notice,
    render_report,
)
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
    events_envelope,
    message_event,
    mrkdwn_objects,
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


def test_a_huge_checked_report_with_hostile_dns_text_stays_within_limits_and_escaped():
    from bot.checks import PROBLEM, CheckResult

    report = diagnose_text(_many_recipients(60), "paste")
    txt = "v=spf1 <!channel> @here <@U123> & " + "x" * 400  # a TXT record is anyone's text
    for delivery in report.deliveries:
        delivery.checks = [CheckResult("spf", "slow.example.net", PROBLEM, txt, facts=(txt,) * 20)] * 8
    message = render_report(report, "tok")
    assert check_blocks(message.blocks) == [] and message.truncated
    assert all(o.get("verbatim") is True for o in mrkdwn_objects(message.blocks))
    shown = "\n".join(texts(message.blocks))
    assert "*Checked now:*" in shown and "&lt;!channel&gt;" in shown and "<!channel>" not in shown
    assert "check_now" not in json.dumps(message.blocks)  # checked already


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


def test_cut_notes_promise_a_file_only_where_the_adapter_puts_one():
    notice = render_notice("a long notice " * 300)
    assert check_blocks(notice.blocks) == [] and "too long for one message" in texts(notice.blocks)[0]
    assert "attached" not in json.dumps(notice.blocks) + notice.text
    report = diagnose_text(_many_recipients(60), "paste")
    for whole in (FULL_ATTACHED, FULL_IN_DM, FULL_WITH_REQUESTER):
        shown = "\n".join(texts(render_report(report, "t", whole=whole).blocks))
        assert f"Showing 23 of 60 recipients. {whole}" in shown


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


def _start(tmp_path, work: ThreadPoolExecutor | None = None, **settings) -> tuple[Harness, callable]:
    api = FakeSlackAPI(BOT_TOKEN, APP_TOKEN)
    db = tmp_path / "whyfailed.db"
    ingest_paths(Store(db), [str(LOG)])
    config = Settings(**{"db": str(db), "allowed_channels": ["C0OPS"], **settings})
    executor = ThreadPoolExecutor(max_workers=4)
    slack = SlackSettings.load(bot_token=BOT_TOKEN, signing_secret=SECRET, api_url=api.api_url)
    app = create_app(config, slack=slack, listener_executor=executor, work_executor=work)
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


def test_our_signer_is_slacks_algorithm():
    body, stamp = '{"type": "event_callback"}', str(int(time.time()))
    assert signature(SECRET, stamp, body) == SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)


FORM = "application/x-www-form-urlencoded"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["event", "slash command", "interactive"])
@pytest.mark.parametrize("forged", ["bad signature", "stale timestamp"])
def test_requests_without_a_valid_fresh_signature_are_refused(harness, kind, forged):
    sender = harness.slack
    body, content_type, answered = {
        "event": (
            sender.event_body(message_event(slackify(LOG.read_text()), "1.1")),
            "application/json",
            "chat.postMessage",
        ),
        "slash command": (sender.command_body("help"), FORM, "response"),
        "interactive": (
            sender.interactive_body(block_action("feedback_helpful", "mailbox-full|x:0", "1.2", harness.api)),
            FORM,
            "chat.postEphemeral",
        ),
    }[kind]
    wrong = {"secret": "0" * 32} if forged == "bad signature" else {"timestamp": int(time.time()) - 600}
    assert sender.post(body, content_type, **wrong)[0] == 401
    # the same body, rightly signed, is taken: the refusal was the signature's alone
    assert sender.post(body, content_type)[0] == 200
    harness.drain()
    assert len(harness.api.made(answered)) == 1


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
def test_mentions_in_a_pasted_sender_and_reply_are_verbatim_and_escaped_everywhere(harness):
    lines = [
        "Nov 27 08:00:01 mx1 postfix/qmgr[980]: 7A1B2C3D4E: from=<@channel.<!everyone>@example.com>, size=2210, "
        "nrcpt=1 (queue active)",
        "Nov 27 12:40:02 mx1 postfix/smtp[1612]: 7A1B2C3D4E: to=<ops@slow.example.net>, "
        "relay=mx.slow.example.net[198.51.100.80]:25, delay=1, delays=0/0/0.5/0.4, dsn=5.7.1, status=bounced "
        "(host mx.slow.example.net[198.51.100.80] said: 550 5.7.1 @channel <!everyone> <@U123> @here blocked "
        "(in reply to RCPT TO command))",
    ]
    ts = "1700000350.000100"
    harness.slack.event(message_event(slackify("\n".join(lines)), ts))
    [post] = harness.api.wait_calls("chat.postMessage")
    harness.slack.interactive(
        block_action("show_evidence", _button(_blocks(post), "show_evidence"), ts, harness.api, thread_ts=ts)
    )
    [evidence] = harness.api.wait_calls("chat.postEphemeral")
    shown = "\n".join(texts(_blocks(post)))
    assert "*From:* @channel.&lt;!everyone&gt;@example.com" in shown
    assert "@channel &lt;!everyone&gt; &lt;@U123&gt; @here blocked" in shown
    assert "@channel &lt;!everyone&gt; &lt;@U123&gt; @here blocked" in "\n".join(texts(_blocks(evidence)))
    for call in (post, evidence):
        objects = mrkdwn_objects(_blocks(call))
        assert objects and all(item.get("verbatim") is True for item in objects)
        for item in objects:  # a bare @channel is left to verbatim; anything in <...> must be escaped
            assert "<!" not in item["text"] and "<@" not in item["text"], item["text"]
        assert "<!" not in call.args["text"] and "<@" not in call.args["text"]


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
@pytest.mark.parametrize(
    ("text", "expected"),
    [("help", "/whyfailed kb QUERY"), ("ops@slow.example.net --since 3650d", "mailbox-full")],
)
def test_slash_commands_are_acked_while_their_answer_is_still_held(harness, text, expected):
    # the fake holds the response_url post: an ack sent only after the answer could not arrive now
    harness.api.hold("response")
    status, body = harness.slack.command(text, name="held")
    assert status == 200 and body == ""
    harness.api.wait_for(lambda calls: harness.api.holding)  # the answer is on its way, and still held
    assert not harness.api.made("response")
    harness.api.release("response")
    [answer] = harness.api.wait_calls("response")
    assert answer.path.endswith("/held") and answer.args["response_type"] == "ephemeral"
    assert expected in _all_text(answer) and check_blocks(_blocks(answer)) == []


@pytest.mark.slow
def test_http_429_on_response_url_waits_retry_after_and_answers_once(harness):
    harness.api.rate_limit_next("response", retry_after=1)
    harness.slack.command("help", name="limited")
    [answer] = harness.api.wait_calls("response")
    [limited] = [c for c in harness.api.calls if c.status == 429]
    assert limited.method == "response" and answer.at - limited.at >= 1.0  # both stamped on arrival, here
    harness.drain()
    assert len(harness.api.made("response")) == 1 and "/whyfailed kb QUERY" in _all_text(answer)


def _file_share(ts: str, *files: dict, text: str = "can someone look at this?") -> dict:
    return message_event(text, ts, subtype="file_share", files=list(files))


@pytest.fixture
def elsewhere():
    """A second server, not Slack's: addressed as localhost, a host the bot must not trust."""
    api = FakeSlackAPI(BOT_TOKEN)
    yield api, f"http://localhost:{api.server.server_port}"
    api.close()


@pytest.mark.slow
def test_a_file_with_its_url_private_inline_is_downloaded_without_files_info(harness):
    file = harness.api.add_file("F0INLINE", "mail.log", LOG.read_bytes())
    harness.slack.event(_file_share("1700000410.000100", file))
    [post] = harness.api.wait_calls("chat.postMessage")
    assert "mailbox-full" in _all_text(post)
    [download] = harness.api.made("download")
    assert download.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert not harness.api.made("files.info")


@pytest.mark.slow
def test_an_image_is_not_downloaded_and_gets_no_reply(harness):
    harness.api.add_file("F0PNG", "screenshot.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", "png")
    harness.slack.event(_file_share("1700000420.000100", {"id": "F0PNG", "file_access": "check_file_info"}))
    harness.drain()
    assert harness.api.made("files.info") and not harness.api.made("download")
    assert not harness.api.made("chat.postMessage")


@pytest.mark.slow
def test_a_text_file_holding_nul_bytes_gets_no_reply(harness):
    harness.api.add_file("F0NUL", "mail.log", LOG.read_bytes().replace(b"\n", b"\n\x00", 1))
    harness.slack.event(_file_share("1700000430.000100", {"id": "F0NUL", "file_access": "check_file_info"}))
    harness.drain()
    assert len(harness.api.made("download")) == 1 and not harness.api.made("chat.postMessage")


@pytest.mark.slow
def test_an_oversize_file_is_read_up_to_the_limit_and_says_so(tmp_path):
    running, stop = _start(tmp_path, max_paste_bytes=4000)
    try:
        filler = "".join(f"Nov 27 13:00:{i % 60:02d} mx1 postfix/anvil[77]: statistics: idle\n" for i in range(400))
        running.api.add_file("F0BIG", "mail.log", (LOG.read_text() + filler).encode())
        running.slack.event(_file_share("1700000440.000100", {"id": "F0BIG", "file_access": "check_file_info"}))
        [post] = running.api.wait_calls("chat.postMessage")
        assert "Only the first 4 kB were read." in _all_text(post) and "mailbox-full" in _all_text(post)
    finally:
        stop()


@pytest.mark.slow
def test_a_file_on_a_foreign_host_is_not_fetched_with_the_bot_token(harness, elsewhere):
    foreign, base = elsewhere
    file = {**harness.api.add_file("F0EVIL", "mail.log", LOG.read_bytes())}
    file["url_private"] = file["url_private_download"] = f"{base}/files-pri/T0001-F0EVIL/mail.log"
    harness.slack.event(_file_share("1700000450.000100", file))
    [post] = harness.api.wait_calls("chat.postMessage")
    assert "I could not download mail.log: the file is not hosted by Slack." in _all_text(post)
    harness.drain()
    assert foreign.calls == [] and not harness.api.made("download")  # no request at all, so none with the token


@pytest.mark.slow
def test_a_redirect_from_the_file_host_is_refused(harness, elsewhere):
    foreign, base = elsewhere
    harness.api.add_file("F0MOVED", "mail.log", LOG.read_bytes())
    harness.api.redirect_file("F0MOVED", f"{base}/files-pri/T0001-F0MOVED/mail.log")
    harness.slack.event(_file_share("1700000460.000100", {"id": "F0MOVED", "file_access": "check_file_info"}))
    [post] = harness.api.wait_calls("chat.postMessage")
    assert "I could not download mail.log: the download was redirected (HTTP 302)" in _all_text(post)
    [redirected] = [c for c in harness.api.calls if c.method == "download"]
    assert redirected.status == 302 and foreign.calls == []  # the token never followed the redirect


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
    assert "Shared by <@U0ANNA>" in _all_text(shared)  # our own mention: explicit, so verbatim keeps it
    assert all(item.get("verbatim") is True for item in mrkdwn_objects(_blocks(shared)))
    rows = [{k: r[k] for k in ("user", "channel", "outcome")} for r in Store(harness.settings.db).audit_rows()]
    assert rows == [{"user": "U0ANNA", "channel": "C0OPS", "outcome": "answered: 1 stories"}]


@pytest.mark.slow
def test_slash_domain_answers_with_the_domains_failures_timeline_and_diagnosis(harness):
    harness.slack.command("@slow.example.net --since 3650d", name="domain")
    [answer] = harness.api.wait_calls("response")
    blocks = _blocks(answer)
    assert answer.args["response_type"] == "ephemeral" and check_blocks(blocks) == []
    shown = "\n".join(texts(blocks))
    assert "*✗ ops@slow.example.net* — bounced" in shown
    assert "*Diagnosis:* " in shown and "(`mailbox-full`, confidence" in shown
    timeline = shown.split("*Timeline:*\n", 1)[1].split("\n*", 1)[0].splitlines()
    assert [line.split(" ", 4)[3] for line in timeline] == ["deferred", "deferred:", "bounced:"]
    assert "552 5.2.2 &lt;ops@slow.example.net&gt;: Mailbox full, quota exceeded" in timeline[-1]
    assert "carl@partner.example" not in shown  # another domain, and delivered


@pytest.mark.slow
def test_every_slash_command_is_audited_with_who_what_outcome_and_when(harness):
    asked = [
        ("help", "U0ANNA", "help", "help"),
        ("kb", "U0BOB", "kb 5.7.1", "answered: kb"),
        ("nokb", "U0BOB", "kb zzzqqq", "answered: kb, no match"),
        ("bare", "U0BOB", "kb", "bad request"),
        ("why", "U0ANNA", "ops@slow.example.net --since 3650d", "answered: 1 stories"),
    ]
    started = time.time()
    for name, user, text, _ in asked:  # one at a time, so the rows come in this order
        harness.slack.command(text, user=user, channel="C0OPS", name=name)
        harness.api.wait_for(lambda calls, name=name: [c for c in calls if c.path.endswith("/" + name)])
    ended = time.time()
    rows = Store(harness.settings.db).audit_rows()  # in time order
    assert [(r["surface"], r["user"], r["channel"], r["query"], r["outcome"]) for r in rows] == [
        ("slack", user, "C0OPS", text, outcome) for _, user, text, outcome in asked
    ]
    assert all(started <= r["time"] <= ended for r in rows)


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
def test_evidence_of_a_shared_answer_is_only_for_the_requester_and_those_who_may_query(tmp_path):
    running, stop = _start(tmp_path, allowed_channels=[], allowed_users=["U0ANNA", "U0BOB"])
    try:
        running.slack.command("ops@slow.example.net --since 3650d", channel="C0RANDOM", name="ask")
        [answer] = running.api.wait_calls("response")
        share = _button(_blocks(answer), "share_in_channel")
        running.slack.interactive(
            block_action("share_in_channel", share, "1700000650.000100", running.api, "C0RANDOM", ephemeral=True)
        )
        shared = running.api.wait_calls("response", 2)[1]
        assert shared.args["response_type"] == "in_channel"
        evidence = _button(_blocks(shared), "show_evidence")
        for user in ("U0EVE", "U0ANNA", "U0BOB"):  # everyone in C0RANDOM sees the shared message
            running.slack.interactive(
                block_action("show_evidence", evidence, "1700000651.000100", running.api, "C0RANDOM", user=user)
            )
        shown = {c.args["user"]: _all_text(c) for c in running.api.wait_calls("chat.postEphemeral", 3)}
        assert "not enabled for you here" in shown["U0EVE"]
        assert "postfix/smtp" not in shown["U0EVE"] and "Evidence for" not in shown["U0EVE"]
        for allowed in ("U0ANNA", "U0BOB"):  # the requester; someone allowed to query
            assert "postfix/smtp[1612]" in shown[allowed] and "not enabled" not in shown[allowed]
    finally:
        stop()


@pytest.mark.slow
def test_read_the_article_shows_it_to_the_clicker_alone(harness):
    from bot.knowledge import load_articles

    ts = "1700000610.000100"
    harness.slack.event(message_event(slackify(LOG.read_text()), ts))
    [post] = harness.api.wait_calls("chat.postMessage")
    value = _button(_blocks(post), "show_article")
    assert value == "mailbox-full"
    harness.slack.interactive(block_action("show_article", value, "1700000610.000900", harness.api, thread_ts=ts))
    [shown] = harness.api.wait_calls("chat.postEphemeral")
    assert shown.args["user"] == "U0ANNA" and shown.args["thread_ts"] == ts
    blocks = _blocks(shown)
    assert check_blocks(blocks) == [] and blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == load_articles()["mailbox-full"].title
    assert "*What happened*" in texts(blocks)[0] and "`whyfailed kb mailbox-full`" in texts(blocks)[-1]
    harness.drain()
    assert len(harness.api.made("chat.postMessage")) == 1  # nothing more in the channel


@pytest.mark.slow
def test_an_unfenced_plain_text_paste_is_answered(harness):
    ts = "1700000620.000100"
    harness.slack.event(message_event(slackify(LOG.read_text(), fenced=False), ts))
    [post] = harness.api.wait_calls("chat.postMessage")
    shown = "\n".join(texts(_blocks(post)))
    assert post.args["thread_ts"] == ts and check_blocks(_blocks(post)) == []
    assert "*✗ ops@slow.example.net* — bounced" in shown and "`mailbox-full`" in shown
    assert "mailto:" not in shown and "http://mx" not in shown


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
def test_a_timeout_retry_that_overtakes_the_first_copy_does_not_silence_it(harness):
    # under load the first copy can wait in the listen queue past Slack's 3 s while the resend gets in
    body = harness.slack.event_body(message_event(slackify(LOG.read_text()), "1700000820.000100"), "Ev0OVERTAKEN")
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert harness.slack.post(body, "application/json", headers=retry)[0] == 200
    assert harness.slack.post(body, "application/json")[0] == 200
    harness.drain()
    [post] = harness.api.made("chat.postMessage")
    assert post.args["thread_ts"] == "1700000820.000100"


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


def _shortcut(api: FakeSlackAPI, ts: str) -> dict:
    """The message shortcut's payload, as Slack sends it for a message holding LOG."""
    return {
        "type": "message_action",
        "callback_id": "diagnose_delivery_problem",
        "trigger_id": "1.2.3",
        "token": "legacy-verification-token",
        "action_ts": str(time.time()),
        "team": {"id": "T0001", "domain": "fake"},
        "user": {"id": "U0ANNA", "name": "anna"},
        "channel": {"id": "C0OPS", "name": "ops"},
        "response_url": api.response_url("shortcut"),
        "message": {"type": "message", "user": "U0BOB", "ts": ts, "text": slackify(LOG.read_text())},
    }


@pytest.mark.slow
def test_the_message_shortcut_diagnoses_any_message(harness):
    status, _ = harness.slack.interactive(_shortcut(harness.api, "1700001000.000100"))
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
def test_a_private_answer_too_big_for_one_message_sends_the_full_report_to_a_dm(tmp_path):
    running, stop = _start(tmp_path, max_results=100)
    many = tmp_path / "many.log"
    many.write_text(_many_recipients(40) + "\n")
    ingest_paths(Store(running.settings.db), [str(many)])
    try:
        running.slack.command("@slow.example.net --since 3650d", name="big")
        [answer] = running.api.wait_calls("response")
        assert answer.args["response_type"] == "ephemeral" and check_blocks(_blocks(answer)) == []
        assert f"Showing 23 of 41 recipients. {FULL_IN_DM}" in _all_text(answer)
        [opened] = running.api.wait_calls("conversations.open")
        assert opened.args["users"] == "U0ANNA"
        [done] = running.api.wait_calls("files.completeUploadExternal")
        assert done.args["channel_id"] == "D0001"  # the DM, never the channel the command came from
        assert opened.at <= running.api.made("files.getUploadURLExternal")[0].at  # the DM first, then the upload
        [report] = [upload.decode() for upload in running.api.uploads]
        for i in range(40):
            assert f"user{i}@slow.example.net: bounced" in report  # every recipient, as in the log
        assert "ops@slow.example.net" in report and "&lt;" not in report  # a Markdown file: no Slack escaping
        # shared, it says where the whole report is, and attaches nothing in the channel
        share = _button(_blocks(answer), "share_in_channel")
        running.slack.interactive(block_action("share_in_channel", share, "1.2", running.api, ephemeral=True))
        shared = running.api.wait_calls("response", 2)[1]
        assert FULL_WITH_REQUESTER in _all_text(shared) and "attached" not in _all_text(shared)
        running.drain()
        assert len(running.api.uploads) == 1
    finally:
        stop()


@pytest.mark.slow
def test_redaction_reaches_every_message_the_adapter_sends(tmp_path):
    running, stop = _start(tmp_path, redact_local_parts=True)
    try:
        ts, big = "1700001250.000100", "1700001251.000100"
        running.slack.event(message_event(slackify(LOG.read_text()), ts))
        [post] = running.api.wait_calls("chat.postMessage")
        value = _button(_blocks(post), "show_evidence")
        running.slack.interactive(block_action("show_evidence", value, "1700001250.000900", running.api, thread_ts=ts))
        [evidence] = running.api.wait_calls("chat.postEphemeral")
        running.slack.event(message_event(slackify(_many_recipients(40)), big))
        running.api.wait_calls("files.completeUploadExternal")
        [upload] = running.api.uploads
        sent = {
            "reply": _all_text(post),
            "evidence": _all_text(evidence),
            "big reply": _all_text(running.api.made("chat.postMessage")[1]),
            "file": upload.decode(),
        }
        # every local part the logs name: in addresses, and alone (Postfix's pickup line: from=<anna>)
        local_parts = set(re.findall(r"(?:from|to)=<([\w.+-]+)[@>]", LOG.read_text() + _many_recipients(40)))
        assert {"anna", "ops", "carl", "user0", "user39"} <= local_parts
        for where, text in sent.items():
            for local in local_parts:
                assert not re.search(rf"\b{re.escape(local)}\b", text), (where, local)
        assert "o***@slow.example.net" in sent["reply"] and "o***@slow.example.net" in sent["evidence"]
        assert "u***@slow.example.net" in sent["file"] and "a***@example.com" in sent["file"]
    finally:
        stop()


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


@pytest.mark.slow
def test_with_a_work_pool_listeners_ack_at_once_and_errors_are_still_apologised_for(tmp_path):
    # the web process's set-up: bolt's pool only acks, the work runs in a pool of ours
    work = ThreadPoolExecutor(max_workers=2)
    running, stop = _start(tmp_path, work=work, db=str(tmp_path))
    try:
        assert running.slack.command("ops@slow.example.net", channel="C0RANDOM")[0] == 200
        [answer] = running.api.wait_calls("response")
        assert APOLOGY in _all_text(answer)
        assert running.slack.event(message_event(slackify(LOG.read_text()), "1700000900.000100"))[0] == 200
        [post] = running.api.wait_calls("chat.postMessage")
        assert post.args["thread_ts"] == "1700000900.000100"
    finally:
        stop()
        work.shutdown(wait=True)


# --- Socket Mode ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_socket_mode_connects_acks_and_dispatches_events_commands_and_clicks(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN, APP_TOKEN)
    sender = SlackSender("", "", api)
    event = message_event(slackify(LOG.read_text()), "1700002000.000100")
    envelopes = [  # the three kinds of envelope Slack sends an app like ours, shaped as Slack shapes them
        events_envelope(api, event, "57d6a792-4d35-4d0b-b6aa-3361493e1caf", "Ev0SOCKET"),
        {
            "envelope_id": "a1c3e5f7-slash",
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": sender.command_form("kb 5.7.1", name="socket-kb"),
        },
        {
            "envelope_id": "b2d4f6a8-interactive",
            "type": "interactive",
            "accepts_response_payload": False,
            "payload": _shortcut(api, "1700002001.000100"),
        },
    ]
    ws = FakeSocketModeServer(envelopes)
    api.ws_url = ws.url
    slack = SlackSettings.load(bot_token=BOT_TOKEN, app_token=APP_TOKEN, mode="socket", api_url=api.api_url)
    handler = socket_mode_handler(create_app(Settings(db=str(tmp_path / "w.db")), slack=slack), slack)
    try:
        handler.connect()
        for envelope in envelopes:  # an empty ack: the envelope id and nothing else
            assert ws.wait_ack(envelope["envelope_id"]) == {"envelope_id": envelope["envelope_id"]}
        posts = {p.args["thread_ts"]: _all_text(p) for p in api.wait_calls("chat.postMessage", 2)}
        assert set(posts) == {"1700002000.000100", "1700002001.000100"}  # the event, the shortcut's message
        assert all("mailbox-full" in text for text in posts.values())
        [answer] = api.wait_calls("response")
        assert answer.path.endswith("/socket-kb") and _blocks(answer)[0]["type"] == "header"
        [connect] = api.made("apps.connections.open")
        assert connect.headers["Authorization"] == f"Bearer {APP_TOKEN}"  # the app-level token, not the bot's
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
    envelope = events_envelope(api, event, "0f1e2d3c-cli", "Ev0CLI")
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


# --- Check now ---------------------------------------------------------------------------------

MX_NOT_FOUND = FIXTURES / "postfix" / "mx-not-found.log"


def _check_button_of_a_paste(running: Harness, ts: str) -> str:
    running.slack.event(message_event(slackify(MX_NOT_FOUND.read_text()), ts))
    [post] = running.api.wait_calls("chat.postMessage")
    assert "dns-mx-failure" in _all_text(post) and "Checked now" not in _all_text(post)
    return _button(_blocks(post), "check_now")


@pytest.mark.slow
def test_check_now_on_a_pasted_log_answers_the_clicker_with_what_dns_says_now(tmp_path, resolver):
    work = ThreadPoolExecutor(max_workers=2)  # the web process's set-up: the checks run in our pool, after the ack
    running, stop = _start(tmp_path, work=work, resolver=resolver)
    try:
        ts = "1700003000.000100"
        value = _check_button_of_a_paste(running, ts)
        status, _ = running.slack.interactive(
            block_action("check_now", value, "1700003000.000900", running.api, thread_ts=ts)
        )
        assert status == 200
        [shown] = running.api.wait_calls("chat.postEphemeral")
        assert shown.args["user"] == "U0ANNA" and shown.args["thread_ts"] == ts
        blocks = _blocks(shown)
        assert check_blocks(blocks) == [] and all(o.get("verbatim") is True for o in mrkdwn_objects(blocks))
        checked = next(t for t in texts(blocks) if t.startswith("*Checked now:*"))
        assert "✗ *DNS* `no-such-domain.example`" in checked and "NXDOMAIN" in checked
        assert "check_now" not in json.dumps(blocks)  # checked already: no second button
        rows = [(r["user"], r["query"], r["outcome"]) for r in Store(running.settings.db).audit_rows()]
        assert rows == [("U0ANNA", "check (a pasted log's answer)", "answered: 1 checks")]
    finally:
        stop()
        work.shutdown(wait=True)


@pytest.mark.slow
def test_check_now_is_refused_to_those_who_may_not_query_and_audited(harness):
    ts = "1700003100.000100"
    value = _check_button_of_a_paste(harness, ts)
    harness.slack.interactive(
        block_action("check_now", value, "1700003100.000900", harness.api, "C0OPS", user="U0EVE", thread_ts=ts)
    )
    harness.api.wait_calls("chat.postEphemeral")  # C0OPS is allowed: Eve may; now elsewhere
    harness.slack.interactive(
        block_action("check_now", value, "1700003100.000901", harness.api, "C0RANDOM", user="U0EVE")
    )
    refused = harness.api.wait_calls("chat.postEphemeral", 2)[1]
    assert refused.args["user"] == "U0EVE" and "not enabled for you here" in _all_text(refused)
    outcomes = [(r["user"], r["channel"], r["outcome"]) for r in Store(harness.settings.db).audit_rows()]
    assert outcomes[-1] == ("U0EVE", "C0RANDOM", "refused")


@pytest.mark.slow
def test_check_now_too_often_gets_a_polite_notice(tmp_path, resolver):
    running, stop = _start(tmp_path, resolver=resolver, check_rate=1)
    try:
        ts = "1700003200.000100"
        value = _check_button_of_a_paste(running, ts)
        for n in range(2):
            running.slack.interactive(
                block_action("check_now", value, f"1700003200.00090{n}", running.api, thread_ts=ts)
            )
            running.api.wait_calls("chat.postEphemeral", n + 1)
        first, second = running.api.made("chat.postEphemeral")
        assert "Checked now" in _all_text(first)
        assert "try again in" in _all_text(second) and "Checked now" not in _all_text(second)
        outcomes = [r["outcome"] for r in Store(running.settings.db).audit_rows()]
        assert outcomes == ["answered: 1 checks", "rate-limited"]
    finally:
        stop()


@pytest.mark.slow
def test_slash_address_check_adds_checked_now(tmp_path, resolver):
    running, stop = _start(tmp_path, resolver=resolver, logs=[str(MX_NOT_FOUND)], db=str(tmp_path / "none.db"))
    try:
        running.slack.command("check info@no-such-domain.example")
        [answer] = running.api.wait_calls("response")
        blocks = _blocks(answer)
        assert check_blocks(blocks) == [] and "NXDOMAIN" in next(t for t in texts(blocks) if "Checked now" in t)
    finally:
        stop()
