"""Every format we read: detection, grammar and correlation, on fixtures we wrote.

Each case lists, per recipient, (status, SMTP stage, reply code): what the fixture's lines say.
"""

from __future__ import annotations

import pytest

from bot.correlate import correlate_events
from bot.parse import parse_text

from .conftest import fixture_text

CASES = {
    "exim/mainlog-mixed.log": {
        "bob@example.org": ("delivered", None, 250),
        "ghost@example.org": ("bounced", "rcpt", 550),
        "slow@example.net": ("deferred", "connect", None),
        "nobody@nonexistent.example": ("bounced", None, None),
        "anna@example.com": ("deferred", "rcpt", None),  # greylisted after an RBL reject: the later line wins
        "zed@example.org": ("bounced", "end-of-data", 552),
    },
    "sendmail/mixed.log": {
        "bob@example.org": ("delivered", None, None),
        "ghost@example.org": ("bounced", None, None),
        "ops@slow.example.net": ("deferred", "connect", None),
        "friend@elsewhere.example": ("rejected", "rcpt", 550),
    },
    "opensmtpd/smtpd.log": {
        "nosuch@example.com": ("rejected", "rcpt", 550),
        "bob@example.org": ("bounced", None, 550),
        "carol@example.net": ("delivered", None, 250),
    },
    "qmail/current": {
        "jane@example.org": ("bounced", "rcpt", 550),
        "ok.person@example.net": ("delivered", None, 250),
    },
    "hmailserver/hmailserver_2026-11-28.log": {
        "full.box@example.net": ("bounced", "rcpt", 552),
        "staff@example.com": ("rejected", "rcpt", 554),
    },
    "mdaemon/MDaemon-SMTP-in.log": {"gone@example.com": ("rejected", "rcpt", 550)},
    "haraka/haraka.log": {
        "ghost@example.com": ("rejected", "rcpt", None),
        "@example.org": ("delivered", None, None),
    },
    "exchange/MSGTRK2026112810-1.LOG": {
        "buyer@partner.example": ("delivered", None, 250),
        "ghost@partner.example": ("bounced", None, 550),
    },
    "framing/collectors.log": {
        "bob@example.org": ("bounced", "rcpt", 550),
        "carol@example.net": ("delivered", None, 250),
        "dave@example.com": ("deferred", "connect", None),
        "erin@example.com": ("bounced", "rcpt", 552),
        "frank@example.com": ("delivered", None, 250),
    },
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_format_fixture_reads_every_recipient(name):
    result = parse_text(fixture_text(name))
    assert result.unparsed == [], f"{name}: lines not understood: {result.unparsed}"
    stories = {}
    for delivery in correlate_events(result.events):
        stories[delivery.recipient] = (delivery.status, delivery.final.stage, delivery.final.reply_code)
    expected = CASES[name]
    # the Exim fixture names anna@example.com twice (two incoming rejects); the story keeps both lines
    assert {k: v for k, v in stories.items() if k in expected} == expected
    assert set(stories) >= set(expected)


def test_sender_and_message_id_are_linked_by_queue_id():
    result = parse_text(fixture_text("sendmail/mixed.log"))
    story = next(d for d in correlate_events(result.events) if d.recipient == "ghost@example.org")
    assert story.sender == "anna@example.com"
    assert story.message_id == "20261128101502.4ASAF2xQ004101@mx1.example.com"


def test_opensmtpd_retry_in_a_new_session_stays_one_story():
    result = parse_text(fixture_text("opensmtpd/smtpd.log"))
    story = next(d for d in correlate_events(result.events) if d.recipient == "carol@example.net")
    assert [a.status for a in story.attempts] == ["deferred", "delivered"]


def test_journald_json_carries_host_program_and_time():
    result = parse_text(fixture_text("framing/collectors.log"))
    first = result.events[0]
    assert (first.host, first.program, first.pid, first.format) == ("mx1", "postfix/smtp", 2211, "postfix")
    assert first.timestamp is not None and first.timestamp.year == 2025


def test_exchange_header_is_understood_not_listed():
    result = parse_text(fixture_text("exchange/MSGTRK2026112810-1.LOG"))
    assert result.unparsed == [] and result.formats == ["exchange"]


def test_qmail_report_text_is_decoded():
    result = parse_text(fixture_text("qmail/current"))
    story = next(d for d in correlate_events(result.events) if d.recipient == "jane@example.org")
    assert "does not like recipient" in story.final.text and "_" not in story.final.text


@pytest.mark.parametrize(
    "name", ["captured/postfix-3.7.11.log", "captured/exim-4.96-main.log", "captured/exim-4.96-reject.log"]
)
def test_real_mta_logs_parse_completely_and_every_outcome_carries_its_facts(name):
    result = parse_text(fixture_text(name))
    assert result.unparsed == []
    outcomes = [e for e in result.events if e.kind in ("status", "reject", "expired")]
    assert outcomes
    for event in outcomes:
        assert event.status, event.raw
        assert event.recipient or event.kind == "expired", event.raw
        assert event.reply_code or event.enhanced_status or event.text, event.raw
