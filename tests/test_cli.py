"""`whyfailed diagnose` as a process: formats, exit codes, and hostile input."""

from __future__ import annotations

import json

import pytest

from .conftest import CLEAR, FIXTURES, REPO, hostile_log


def test_text_output_names_recipient_step_diagnosis_and_evidence(run_cli):
    done = run_cli("diagnose", str(FIXTURES / "session/incoming-unknown-user.log"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "unknown_user@example.com" in out
    assert "RCPT TO" in out
    assert "unknown-user" in out and "confidence" in out
    assert "13 |" in out  # the evidence line, with its line number
    assert "Next steps" in out


def test_json_output_follows_the_contract(run_cli):
    done = run_cli("diagnose", "--format", "json", str(FIXTURES / "postfix/deferred-then-bounced.log"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"input", "formats", "stats", "deliveries", "unparsed"}
    assert report["stats"]["lines"] == 11 and report["stats"]["unparsed"] == 0
    story = next(d for d in report["deliveries"] if d["recipient"] == "ops@slow.example.net")
    for key in (
        "recipient",
        "sender",
        "queue_id",
        "message_id",
        "status",
        "reply_code",
        "enhanced_status",
        "smtp_stage",
        "remote_host",
        "remote_ip",
        "text",
        "attempts",
        "first_seen",
        "last_seen",
    ):
        assert key in story
    assert story["status"] == "bounced" and story["queue_id"] == "7A1B2C3D4E"
    assert len(story["attempts"]) == 3
    diagnosis = story["diagnosis"]
    assert diagnosis["id"] == "mailbox-full"
    assert set(diagnosis) >= {"id", "title", "severity", "confidence", "article", "next_steps", "evidence"}
    assert all({"line", "text"} <= set(e) for e in diagnosis["evidence"])


def _blocks(text: str) -> dict[str, str]:
    """The text report split per recipient: the heading line's first word after the icon."""
    blocks: dict[str, str] = {}
    for block in text.split("\n\n"):
        head = block.split("\n", 1)[0].split()
        if len(head) > 1 and head[0] in ("✓", "✗", "…", "?"):
            blocks[head[1]] = block
    return blocks


def test_readme_first_command_explains_an_inbound_dnsbl_reject_from_our_side(run_cli):
    done = run_cli("diagnose", "examples/postfix-mail.log", cwd=REPO)
    assert done.returncode == 0, done.stderr
    blocks = _blocks(done.stdout.decode())
    anna = blocks["anna@example.com"]
    # our postscreen refused the client 203.0.113.77: it is the client, and the listing is theirs
    assert "Client:     203.0.113.77" in anna and "Server:" not in anna
    assert "(client-blocklisted," in anna
    assert anna.splitlines()[0].endswith("rejected by our server")
    assert "Our server refused mail from 203.0.113.77" in anna
    assert "Our server's IP address" not in anna and "blocked-reputation" not in anna
    # the outbound stories still name the server that answered us
    assert "Server:     mx.slow.example.net [198.51.100.80]" in blocks["ops@slow.example.net"]
    assert "Client:" not in blocks["ops@slow.example.net"]
    assert "our server" not in blocks["ops@slow.example.net"].splitlines()[0]


def test_json_and_markdown_carry_the_direction(run_cli):
    done = run_cli("diagnose", "--format", "json", "examples/postfix-mail.log", cwd=REPO)
    stories = {d["recipient"]: d for d in json.loads(done.stdout)["deliveries"]}
    assert stories["anna@example.com"]["direction"] == "in"
    assert stories["anna@example.com"]["diagnosis"]["id"] == "client-blocklisted"
    assert stories["ops@slow.example.net"]["direction"] == "out"
    markdown = run_cli("diagnose", "-f", "markdown", "examples/postfix-mail.log", cwd=REPO).stdout.decode()
    assert "- **Client:** 203.0.113.77" in markdown
    assert "- **Server:** mx.slow.example.net [198.51.100.80]" in markdown


def test_jsonl_prints_one_object_per_input_with_its_path(run_cli):
    paths = [str(FIXTURES / "bounce/qmail.txt"), str(FIXTURES / "transcript/rcpt-and-size.txt")]
    done = run_cli("diagnose", "--format", "jsonl", *paths)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["input"] for r in rows] == paths


def test_markdown_output(run_cli):
    done = run_cli("diagnose", "-f", "markdown", str(FIXTURES / "bounce/outlook-ndr-multi.txt"))
    out = done.stdout.decode()
    assert out.startswith("# Why it failed") and "## ✗ former.employee@example.org" in out


def test_stdin_is_read_with_a_dash(run_cli):
    data = (FIXTURES / "postfix/mx-not-found.log").read_bytes()
    done = run_cli("diagnose", "-", "--format", "json", stdin=data)
    assert json.loads(done.stdout)["deliveries"][0]["diagnosis"]["id"] == "dns-mx-failure"


def test_missing_file_is_exit_2_with_a_message_and_no_traceback(run_cli):
    done = run_cli("diagnose", "/nonexistent/mail.log")
    assert done.returncode == 2
    assert b"no such file" in done.stderr and b"Traceback" not in done.stderr


def test_one_bad_input_among_good_ones_still_reports_the_good_ones(run_cli):
    done = run_cli("diagnose", "--format", "jsonl", "/nonexistent.log", str(FIXTURES / "bounce/yahoo.txt"))
    assert done.returncode == 2
    assert json.loads(done.stdout)["deliveries"][0]["recipient"] == "old.account@yahoo.com"


def test_bad_format_option_is_usage_error(run_cli):
    done = run_cli("diagnose", "--format", "xml", str(FIXTURES / "bounce/yahoo.txt"))
    assert done.returncode == 2 and b"xml" in done.stderr


def test_empty_input_says_so_and_exits_0(run_cli):
    done = run_cli("diagnose", "-", stdin=b"")
    assert done.returncode == 0
    assert b"No delivery attempts were found" in done.stdout


def test_binary_input_is_refused_clearly(run_cli, tmp_path):
    blob = tmp_path / "core.bin"
    blob.write_bytes(bytes(range(256)) * 64)
    done = run_cli("diagnose", str(blob))
    assert done.returncode == 2 and b"binary" in done.stderr and b"Traceback" not in done.stderr


def test_gzip_input_gets_a_hint(run_cli, tmp_path):
    import gzip

    packed = tmp_path / "mail.log.2.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "postfix/expired.log").read_bytes()))
    done = run_cli("diagnose", str(packed))
    assert done.returncode == 2 and b"zcat" in done.stderr


def test_invalid_utf8_is_decoded_with_a_note(run_cli):
    data = (FIXTURES / "postfix/mx-not-found.log").read_bytes().replace(b"anna", b"ann\xe9")
    done = run_cli("diagnose", "-", "--format", "json", stdin=data)
    report = json.loads(done.stdout)
    assert done.returncode == 0
    assert report["deliveries"][0]["diagnosis"]["id"] == "dns-mx-failure"
    assert any("UTF-8" in note for note in report["notes"])


def test_unknown_format_gives_a_partial_report_listing_every_line(run_cli):
    text = b"2026/11/28 10:00:00 [mystery-mta] delivery failed for x@example.org\nsome other line\n"
    done = run_cli("diagnose", "-", "--format", "json", stdin=text)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["deliveries"] == []
    assert [u["line"] for u in report["unparsed"]] == [1, 2]


@pytest.mark.slow
def test_a_one_megabyte_line_is_cut_not_fatal(run_cli):
    line = b"Nov 28 10:00:00 mx1 postfix/smtp[1]: ABCDE12345: to=<" + b"a" * 1_000_000 + b"@example.org>\n"
    done = run_cli(
        "diagnose", "-", "--format", "json", stdin=line + (FIXTURES / "postfix/mx-not-found.log").read_bytes()
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0
    assert any("longer than" in note for note in report["notes"])
    assert any(d["diagnosis"]["id"] == "dns-mx-failure" for d in report["deliveries"])


@pytest.mark.slow
def test_a_50_megabyte_file_is_read_up_to_the_limit(run_cli, tmp_path):
    big = tmp_path / "big.log"
    block = (FIXTURES / "postfix/deferred-then-bounced.log").read_bytes()
    with open(big, "wb") as handle:
        for _ in range(50 * 1024 * 1024 // len(block) + 1):
            handle.write(block)
    done = run_cli("diagnose", "--format", "json", "--max-bytes", str(2 * 1024 * 1024), str(big), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert any("Only the first 2 MB" in note for note in report["notes"])
    assert report["stats"]["unparsed"] == 0
    assert report["deliveries"]


@pytest.mark.parametrize("query", ["5.2.2", "mailbox full"])
def test_kb_searches_codes_and_words(run_cli, query):
    # neither is an article id: both go through the full-text search
    done = run_cli("kb", query, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == "mailbox-full"
    shown = run_cli("kb", query)
    assert shown.returncode == 0 and "The recipient's mailbox is full" in shown.stdout.decode()


def test_kb_lists_and_shows_articles(run_cli):
    listing = run_cli("kb")
    assert listing.returncode == 0 and b"unknown-user" in listing.stdout
    shown = run_cli("kb", "greylisted", "--format", "markdown")
    assert b"## Next steps" in shown.stdout
    missing = run_cli("kb", "no-such-article-xyz")
    assert missing.returncode == 2


def _assert_no_control_bytes(done) -> str:
    """No ESC, BEL or C1 control from the log reached the terminal; the diagnosis still did."""
    assert done.returncode == 0, done.stderr
    for stream in (done.stdout, done.stderr):
        assert b"\x1b" not in stream and b"\x07" not in stream and b"\r" not in stream, stream[-600:]
        assert "\x9b" not in stream.decode()
    out = done.stdout.decode()
    assert "mailbox-full" in out
    assert "\\x1b[2J" in out and "\\x1b]0;owned\\x07" in out  # shown, as escapes
    return out


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_terminal_control_sequences_in_a_log_are_shown_not_obeyed_by_diagnose(run_cli, fmt):
    out = _assert_no_control_bytes(run_cli("diagnose", "-", "--format", fmt, stdin=hostile_log()))
    assert "mystery line \\x1b]0;owned\\x07\\x9b31m" in out  # the line not understood, too


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_escapes_every_control_character_and_keeps_the_data(run_cli, fmt):
    done = run_cli("diagnose", "-", "--format", fmt, stdin=hostile_log())
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout and b"\x07" not in done.stdout and "\u009b".encode() not in done.stdout
    report = json.loads(done.stdout)
    assert report["unparsed"][0]["text"] == "mystery line \x1b]0;owned\x07\u009b31m"  # the same text, escaped


def test_terminal_control_sequences_in_a_log_are_shown_not_obeyed_by_why(run_cli, tmp_path):
    log = tmp_path / "mail.log"
    log.write_bytes(hostile_log())
    _assert_no_control_bytes(run_cli("why", "ops@slow.example.net", "--log", str(log)))
    assert CLEAR in log.read_bytes()  # the test log does carry them
