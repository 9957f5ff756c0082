"""The seed scenarios, end to end: a fixture we wrote -> a diagnosis per recipient."""

from __future__ import annotations

from bot.report import diagnose_text

from .conftest import fixture_text


def _by_recipient(name: str) -> dict:
    report = diagnose_text(fixture_text(name), name)
    return {d.recipient: d for d in report.deliveries}


def test_session_unknown_user_among_several_recipients():
    found = _by_recipient("session/incoming-unknown-user.log")
    assert set(found) == {"anna@example.com", "unknown_user@example.com", "marc@example.com"}
    failed = found["unknown_user@example.com"]
    assert (failed.status, failed.final.stage, failed.final.reply_code) == ("rejected", "rcpt", 550)
    assert failed.diagnosis.id == "unknown-user"
    assert failed.diagnosis.confidence >= 0.75
    assert any("550 5.1.1 unknown_user@example.com" in e.text for e in failed.evidence())
    for ok in ("anna@example.com", "marc@example.com"):
        assert found[ok].status == "delivered" and found[ok].diagnosis.id == "delivered"


def test_session_greylisting_then_delivered_is_a_resolved_transient():
    found = _by_recipient("session/incoming-greylisting-then-accepted.log")
    story = found["sales@example.com"]
    assert [a.status for a in story.attempts] == ["deferred", "delivered"]
    assert story.diagnosis.id == "delivered"
    assert [r.id for r in story.diagnosis.related] == ["greylisted"]
    assert "temporary" in story.diagnosis.summary.lower()


def test_session_greylisting_without_retry_is_greylisted():
    story = _by_recipient("session/outgoing-greylisting-deferred.log")["carl@partner.example"]
    assert story.status == "deferred" and story.direction == "out"
    assert story.diagnosis.id == "greylisted"


def test_session_mx_resolution_failure():
    report = diagnose_text(fixture_text("session/outgoing-mx-failure.log"))
    assert len(report.deliveries) == 1
    story = report.deliveries[0]
    assert story.recipient == "@no-such-domain.example" and story.final.stage == "dns"
    assert story.diagnosis.id == "dns-mx-failure"


def test_session_outgoing_partial_failure_per_recipient():
    found = _by_recipient("session/outgoing-partial-failure.log")
    assert found["j.smith@yahoo.com"].diagnosis.id == "delivered"
    assert found["old.account@yahoo.com"].status == "bounced"
    assert found["old.account@yahoo.com"].diagnosis.id == "unknown-user"
    assert found["mary.k@yahoo.com"].status == "deferred"
    assert found["mary.k@yahoo.com"].diagnosis.id == "mailbox-full"


def test_postfix_deferral_then_bounce_keeps_the_whole_story():
    found = _by_recipient("postfix/deferred-then-bounced.log")
    story = found["ops@slow.example.net"]
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]
    assert story.sender == "anna@example.com"
    assert story.message_id == "20261127080001.7A1B2C3D4E@mx1.example.com"
    assert story.diagnosis.id == "mailbox-full"
    assert {r.id for r in story.diagnosis.related} >= {"host-unreachable"}
    # the client's "connect to ... timed out" line explains the first deferral
    # (its own line, not only the status line that quotes it)
    assert any(": connect to mx.slow.example.net" in e.text for e in story.attempts[0].evidence)
    assert found["carl@partner.example"].diagnosis.id == "delivered"


def test_postfix_greylisted_then_sent():
    story = _by_recipient("postfix/greylisted-then-sent.log")["buyer@partner.example"]
    assert [a.status for a in story.attempts] == ["deferred", "delivered"]
    assert story.diagnosis.id == "delivered"
    assert [r.id for r in story.diagnosis.related] == ["greylisted"]


def test_postfix_expiry_names_the_cause():
    story = _by_recipient("postfix/expired.log")["accounts@closed.example"]
    assert story.status == "expired"
    assert story.diagnosis.id == "expired-in-queue"
    assert story.diagnosis.related[0].id == "host-unreachable"


def test_postfix_mx_not_found():
    story = _by_recipient("postfix/mx-not-found.log")["info@no-such-domain.example"]
    assert story.final.stage == "dns" and story.diagnosis.id == "dns-mx-failure"


def test_postfix_incoming_rejects():
    found = _by_recipient("postfix/incoming-rejects.log")
    # our postscreen refused a listed client: about the client, not our reputation
    assert found["anna@example.com"].direction == "in"
    assert found["anna@example.com"].diagnosis.id == "client-blocklisted"
    assert found["jdoe@example.com"].diagnosis.id == "unknown-user"
    assert found["jdoe@example.com"].sender == "carl@partner.example"


def test_transcript_rcpt_rejection_and_size_limit():
    found = _by_recipient("transcript/rcpt-and-size.txt")
    assert found["nobody@example.org"].diagnosis.id == "unknown-user"
    assert found["bob@example.org"].final.stage == "end-of-data"
    assert found["bob@example.org"].diagnosis.id == "message-too-large"


def test_transcript_pipelined_replies_pair_with_their_commands():
    found = _by_recipient("transcript/arrows-pipelining.txt")
    assert found["first@example.net"].status == "delivered"
    assert found["second@example.net"].status == "deferred"
    assert found["second@example.net"].final.stage == "rcpt"


def test_rfc3464_bounce():
    story = _by_recipient("bounce/postfix-dsn-unknown-user.eml")["bob@example.org"]
    assert (story.status, story.final.enhanced_status, story.final.stage) == ("bounced", "5.1.1", "rcpt")
    assert story.sender == "alice@example.com" and story.message_id == "abc123@example.com"
    assert story.diagnosis.id == "unknown-user"


def test_gmail_bounce_without_dsn():
    story = _by_recipient("bounce/gmail-address-not-found.txt")["bob.typo@example.org"]
    assert story.final.reply_code == 550 and story.diagnosis.id == "unknown-user"


def test_outlook_ndr_gives_each_recipient_its_own_diagnosis():
    found = _by_recipient("bounce/outlook-ndr-multi.txt")
    assert set(found) == {"former.employee@example.org", "team-list@example.org"}
    assert found["former.employee@example.org"].final.enhanced_status == "5.1.10"
    assert found["former.employee@example.org"].diagnosis.id == "unknown-user"
    assert found["team-list@example.org"].diagnosis.id == "mailbox-full"


def test_yahoo_qmail_and_exim_bounces():
    assert _by_recipient("bounce/yahoo.txt")["old.account@yahoo.com"].diagnosis.id == "unknown-user"
    assert _by_recipient("bounce/qmail.txt")["jane@example.org"].diagnosis.id == "unknown-user"
    exim = _by_recipient("bounce/exim-mixed.txt")
    assert exim["ghost@example.org"].diagnosis.id == "unknown-user"
    assert exim["big.files@example.org"].final.stage == "end-of-data"
    assert exim["big.files@example.org"].diagnosis.id == "message-too-large"


def test_mixed_paste_with_wrapped_lines_and_three_timestamp_forms():
    report = diagnose_text(fixture_text("mixed/wrapped-mixed-timestamps.txt"))
    found = {d.recipient: d for d in report.deliveries}
    assert found["bob@example.org"].diagnosis.id == "unknown-user"
    assert found["carol@example.net"].diagnosis.id == "delivered"
    assert found["dave@example.com"].diagnosis.id == "blocked-reputation"
    assert [u.line for u in report.unparsed] == [1, 9]
    assert set(report.formats) == {"postfix", "syslog"}


def test_feedback_loop_report_is_a_spam_complaint():
    story = _by_recipient("bounce/arf-complaint.eml")["reader@isp.example.net"]
    assert story.status == "delivered" and story.sender == "news@example.com"
    assert story.diagnosis.id == "spam-complaint"


def test_out_of_office_is_an_auto_reply_not_a_failure():
    story = _by_recipient("bounce/auto-reply.eml")["carl@partner.example"]
    assert story.status == "delivered" and story.diagnosis.id == "auto-reply"


def test_inbound_dnsbl_reject_is_about_the_client_in_every_format():
    stories = [
        _by_recipient("postfix/incoming-rejects.log")["anna@example.com"],
        _by_recipient("exim/rejectlog-inbound.log")["anna@example.com"],
        _by_recipient("session/incoming-dnsbl-reject.log")["anna@example.com"],
        _by_recipient("hmailserver/hmailserver_2026-11-28.log")["staff@example.com"],
    ]
    for story in stories:
        assert (story.direction, story.status, story.diagnosis.id) == ("in", "rejected", "client-blocklisted")
        assert story.diagnosis.who_acts == "sender"
        assert story.diagnosis.summary.startswith(f"Our server refused mail from {story.final.remote_ip}")


def test_inbound_reverse_dns_and_relay_rejects_in_exim_reject_log():
    found = _by_recipient("exim/rejectlog-inbound.log")
    assert found["bert@example.com"].diagnosis.id == "client-reverse-dns-missing"
    relay = found["friend@elsewhere.example"].diagnosis
    assert relay.id == "relay-denied"
    # the same article, worded for our server refusing (summary_in), not for a server refusing us
    assert relay.summary.startswith("Our server refused to relay for client.example.net: elsewhere.example is not")


def test_an_outbound_relay_refusal_keeps_the_outbound_wording():
    line = (
        "Nov 28 15:05:12 mx1 postfix/smtp[2780]: 0A1B2C3D4E: to=<walt@example.net>, "
        "relay=smarthost.example.com[192.0.2.30]:25, delay=0.7, delays=0.1/0.01/0.3/0.3, dsn=5.7.1, status=bounced "
        "(host smarthost.example.com[192.0.2.30] said: 554 5.7.1 <walt@example.net>: Relay access denied "
        "(in reply to RCPT TO command))"
    )
    (walt,) = diagnose_text(line).deliveries
    assert walt.diagnosis.id == "relay-denied"
    assert walt.diagnosis.summary.startswith("smarthost.example.com does not accept mail for example.net from us")


def test_inbound_unknown_user_says_our_server_has_no_such_mailbox():
    story = _by_recipient("postfix/incoming-rejects.log")["jdoe@example.com"]
    assert story.diagnosis.summary == (
        "Our server has no mailbox called jdoe@example.com, so it refused the message from mail.partner.example."
    )


def test_outbound_dnsbl_bounce_is_still_our_reputation():
    line = (
        "Nov 28 14:55:03 mx1 postfix/smtp[2710]: 5D6E7F8A9B: to=<yara@example.org>, "
        "relay=mx.example.org[192.0.2.25]:25, delay=0.9, delays=0.1/0.01/0.4/0.4, dsn=5.7.1, status=bounced "
        "(host mx.example.org[192.0.2.25] said: 554 5.7.1 Service unavailable; Client host [192.0.2.10] "
        "blocked using zen.spamhaus.org (in reply to RCPT TO command))"
    )
    (story,) = diagnose_text(line).deliveries
    assert (story.direction, story.status, story.diagnosis.id) == ("out", "bounced", "blocked-reputation")
    assert story.diagnosis.summary.startswith("mx.example.org refused mail from our server")


def test_an_inbound_clients_provider_is_not_the_vendor_of_our_reply():
    # Our own check_recipient_access REJECT for a client at Microsoft: Microsoft's own wording
    # rules (Exchange Online's "Access denied" = no such recipient) must not read our reply.
    line = (
        "Nov 28 09:01:02 mx1 postfix/smtpd[760]: NOQUEUE: reject: RCPT from "
        "mail-db8eur05on2100.outbound.protection.outlook.com[198.51.100.120]: 554 5.7.1 <board@example.com>: "
        "Recipient address rejected: Access denied; from=<partner@example.net> to=<board@example.com> "
        "proto=ESMTP helo=<EUR05-DB8-obe.outbound.protection.outlook.com>"
    )
    (story,) = diagnose_text(line).deliveries
    assert story.direction == "in"
    assert story.diagnosis.id != "unknown-user"
