"""Line grammars: each format's lines become the one Event model."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.parse import parse_text
from bot.parse.postfix import parse_postfix_message
from bot.parse.reply import parse_reply
from bot.parse.syslog import parse_syslog_header


def test_rfc3164_header_splits_host_program_pid_and_message():
    header, message = parse_syslog_header("Nov 28 10:15:02 mx1 postfix/smtp[2211]: 4B7C21A0F3: removed")
    assert header["host"] == "mx1"
    assert header["program"] == "postfix/smtp"
    assert header["pid"] == 2211
    assert (header["timestamp"].month, header["timestamp"].day, header["timestamp"].hour) == (11, 28, 10)
    assert message == "4B7C21A0F3: removed"


def test_iso8601_and_rfc5424_headers_carry_full_timestamps():
    iso, _ = parse_syslog_header("2026-11-28T10:15:02.481203+01:00 mx1 postfix/qmgr[980]: ABCDE12345: removed")
    assert iso["timestamp"] == datetime.fromisoformat("2026-11-28T10:15:02.481203+01:00")
    rfc5424, message = parse_syslog_header("<22>1 2026-11-28T10:16:40.002Z mx1 postfix/smtp 2230 - - X: y")
    assert rfc5424["program"] == "postfix/smtp" and rfc5424["pid"] == 2230
    assert rfc5424["timestamp"].year == 2026 and message == "X: y"


def test_postfix_status_line_gives_recipient_relay_codes_and_stage():
    fields = parse_postfix_message(
        "4B7C21A0F3: to=<bob@example.org>, orig_to=<bob>, relay=mx.example.org[192.0.2.25]:25, delay=1.4, "
        "delays=0.1/0.01/0.6/0.7, dsn=5.1.1, status=bounced (host mx.example.org[192.0.2.25] said: 550 5.1.1 "
        "<bob@example.org>: Recipient address rejected: User unknown (in reply to RCPT TO command))"
    )
    assert fields["kind"] == "status" and fields["session"] == "4B7C21A0F3"
    assert fields["recipient"] == "bob@example.org" and fields["orig_recipient"] == "bob"
    assert (fields["remote_host"], fields["remote_ip"]) == ("mx.example.org", "192.0.2.25")
    assert (fields["reply_code"], fields["enhanced_status"], fields["stage"]) == (550, "5.1.1", "rcpt")
    assert fields["status"] == "bounced" and fields["delay"] == 1.4
    assert fields["text"].startswith("550 5.1.1 <bob@example.org>: Recipient address rejected")


def test_postfix_long_queue_ids_and_expiry_lines():
    fields = parse_postfix_message("4Rb7Kp2VxLz9q: from=<billing@example.com>, status=expired, returned to sender")
    assert fields["kind"] == "expired" and fields["session"] == "4Rb7Kp2VxLz9q"


def test_postfix_noqueue_reject_keeps_the_reply_whole_even_with_semicolons():
    fields = parse_postfix_message(
        "NOQUEUE: reject: RCPT from [203.0.113.77]:51514: 550 5.7.1 Service unavailable; client [203.0.113.77] "
        "blocked using zen.spamhaus.org; from=<promo@bulk.example>, to=<anna@example.com>, proto=ESMTP, helo=<x>"
    )
    assert fields["status"] == "rejected" and fields["stage"] == "rcpt"
    assert fields["text"].endswith("blocked using zen.spamhaus.org")
    assert (fields["sender"], fields["recipient"], fields["remote_ip"]) == (
        "promo@bulk.example",
        "anna@example.com",
        "203.0.113.77",
    )


def test_postfix_header_check_reject():
    fields = parse_postfix_message(
        "3C4D5E6F70: reject: header Subject: You won from mail.bulk.example[203.0.113.77]; from=<a@bulk.example> "
        "to=<anna@example.com> proto=ESMTP helo=<bulk.example>: 5.7.1 Message content rejected"
    )
    assert fields["kind"] == "reject" and fields["recipient"] == "anna@example.com"
    assert fields["stage"] == "end-of-data" and "content rejected" in fields["text"]


def test_unknown_postfix_message_is_kept_as_info_not_dropped():
    result = parse_text("Nov 28 10:00:00 mx1 postfix/anvil[77]: statistics: max connection rate 1/60s")
    assert [e.kind for e in result.events] == ["info"]
    assert result.unparsed == []


def test_reply_text_forms():
    said = parse_reply("host mx.example.org[192.0.2.25] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command)")
    assert (said.code, said.enhanced, said.stage, said.remote_host) == (452, "4.2.2", "rcpt", "mx.example.org")
    diag = parse_reply("smtp; 550 5.1.1 <bob@example.org>... User unknown")
    assert (diag.code, diag.enhanced) == (550, "5.1.1")
    outlook = parse_reply("Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found'")
    assert (outlook.code, outlook.enhanced) == (550, "5.1.10")
    assert "RESOLVER.ADR.RecipientNotFound" in outlook.text
    bare = parse_reply("connect to mx.example.org[192.0.2.25]:25: Connection refused")
    assert bare.code is None and bare.stage == "connect"


def test_session_lines_decide_who_spoke_from_the_payload():
    result = parse_text(
        "192.0.2.7 [00000A1C] 10:15:03 <<< RCPT TO:<x@example.org>\n"
        "192.0.2.7 [00000A1C] 10:15:03 >>> 550 5.1.1 x@example.org User unknown; rejecting\n"
        "192.0.2.8 [00000B20] 10:16:00 >>> RCPT TO:<y@example.net>\n"
        "192.0.2.8 [00000B20] 10:16:00 <<< 250 2.1.5 Ok\n"
    )
    roles = [(e.role, e.direction) for e in result.events]
    assert roles == [("client", "in"), ("server", "in"), ("client", "out"), ("server", "out")]
    assert result.events[1].enhanced_status == "5.1.1"


def test_rfc2822_dates_in_session_logs():
    result = parse_text("127.0.0.1 [00000A1C] Thu, 22 Apr 2004 22:01:42 +0200 <<< MAIL From:<a@example.com>")
    event = result.events[0]
    assert event.timestamp.year == 2004 and event.sender == "a@example.com"


def test_transcript_multiline_reply_continuations_are_marked():
    result = parse_text("S: 250-mx.example.org\nS: 250-PIPELINING\nS: 250 SIZE 1000\n")
    assert [e.kind for e in result.events] == ["reply-continued", "reply-continued", "reply"]


def test_wrapped_line_is_joined_back():
    result = parse_text(
        "Nov 28 10:15:02 mx1 postfix/smtp[2211]: 4B7C21A0F3: to=<bob@example.org>, relay=none, delay=1, "
        "delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to mx.example.org[192.0.2.25]:25:\n"
        "Connection timed out)\n"
    )
    assert len(result.events) == 1 and result.unparsed == []
    assert result.events[0].kind == "status"
    assert result.events[0].text.endswith("Connection timed out")


def test_prose_around_a_paste_is_listed_as_unparsed_with_line_numbers():
    result = parse_text(
        "can you look at this?\n```\nNov 28 10:00:00 mx1 postfix/qmgr[9]: ABCDE12345: removed\n```\nthanks"
    )
    assert [(u.line, u.text) for u in result.unparsed] == [(1, "can you look at this?"), (5, "thanks")]
    assert result.events[0].line == 3


def test_postfix_kv_splitters_are_the_grammars_terminals():
    from bot.parse.postfix import KV_PATTERN, PAREN_PATTERN, RETURNED_PATTERN
    from bot.resources import grammar_dir

    grammar = (grammar_dir() / "postfix.lark").read_text()
    assert f"KV: /{KV_PATTERN}/" in grammar
    assert f"PAREN_TEXT: /{PAREN_PATTERN}/" in grammar
    assert f"RETURNED: /{RETURNED_PATTERN}/" in grammar
    assert "KV_RECORD: KV_LIST (/ +/ PAREN_TEXT)? RETURNED?" in grammar  # the composition the splitter repeats


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("3F2A1B4C5D: from=<a@b.example>, size=1, nrcpt=1 (queue active)", {"kind": "queued", "text": "queue active"}),
        (
            "3F2A1B4C5D: from=<a@b.example>, status=expired, returned to sender",
            {"kind": "expired", "status": "expired"},
        ),
        ("3F2A1B4C5D: to=<a@b.example>, status=sent  (250 2.0.0 Ok (x))", {"kind": "status", "reply_code": 250}),
        ("3F2A1B4C5D: to=<a@b.example>, status=sent (250 ok), returned to sender", {"kind": "expired"}),
    ],
)
def test_a_postfix_record_token_is_split_into_its_parts(message, expected):
    fields = parse_postfix_message(message)
    assert fields is not None and fields["session"] == "3F2A1B4C5D"
    assert {key: fields.get(key) for key in expected} == expected


@pytest.mark.parametrize(
    "message", ["3F2A1B4C5D: to=<a@b.example>, status=sent garbage", "3F2A1B4C5D: to=<a@b.example>, status=sent (open"]
)
def test_a_postfix_record_with_more_after_it_does_not_parse(message):
    assert parse_postfix_message(message) is None


def test_every_grammar_builds_lalr_clean():
    from lark import Transformer

    from bot.parse.grammars import parser
    from bot.resources import grammar_dir

    names = [p.stem for p in grammar_dir().glob("*.lark") if p.stem != "common"]
    assert len(names) >= 12
    for name in names:
        assert parser(name, Transformer) is not None


def test_iso_stamped_syslog_line_is_not_mistaken_for_exim():
    result = parse_text("2026-11-28 10:15:02 mx1 postfix/qmgr[980]: ABCDE12345: removed")
    assert (result.events[0].format, result.events[0].kind) == ("postfix", "removed")
    exim = parse_text("2026-11-28 10:15:02 Start queue run: pid=14595")
    assert (exim.events[0].format, exim.events[0].kind) == ("exim", "info")


def test_rfc5424_structured_data_with_spaces():
    line = (
        '<13>1 2026-11-29T04:50:00.123456+00:00 mx1 postfix/qmgr 1234 - [timeQuality tzKnown="1" '
        'isSynced="0"][origin ip="192.0.2.10"] ABCDE12345: removed'
    )
    result = parse_text(line)
    assert result.unparsed == []
    assert (result.events[0].program, result.events[0].pid, result.events[0].kind) == ("postfix/qmgr", 1234, "removed")
