"""The conversation core every surface shares, and the console chat driven as a person would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from bot.conversation import Context, Conversation, redact
from bot.ingest import ingest_paths
from bot.kbsearch import search_articles
from bot.settings import Settings
from bot.store import Store

from .conftest import FIXTURES, REPO

SLACK = Context(surface="slack", user="U1", channel="C-ops")
LOG = FIXTURES / "postfix" / "deferred-then-bounced.log"


def _conversation(tmp_path, **settings) -> tuple[Conversation, list]:
    db = tmp_path / "i.db"
    ingest_paths(Store(db), [str(LOG)])
    rows: list = []
    return Conversation(Settings(db=str(db), **settings), audit=lambda c, q, o: rows.append((c.user, q, o))), rows


def test_a_pasted_log_gets_a_report_and_chatter_gets_silence(tmp_path):
    conversation, _ = _conversation(tmp_path)
    reply = conversation.on_message(LOG.read_text(), SLACK)
    assert reply.kind == "report"
    assert {d.diagnosis.id for d in reply.report.deliveries} == {"mailbox-full", "delivered"}
    assert conversation.on_message("hi all, is the printer fixed?", SLACK) is None
    assert conversation.on_message("", SLACK) is None


def test_whyfailed_address_needs_an_allowed_channel_or_user_and_is_audited(tmp_path):
    conversation, audit = _conversation(tmp_path, allowed_channels=["C-ops"])
    refused = conversation.on_command("ops@slow.example.net", Context("slack", "U2", "C-random"))
    assert refused.kind == "refusal" and refused.ephemeral
    answered = conversation.on_command("OPS@slow.example.net --since 3650d", SLACK)
    assert answered.kind == "report" and answered.ephemeral
    assert answered.report.deliveries[0].status == "bounced"
    assert [(user, outcome.split(":")[0]) for user, _, outcome in audit] == [("U2", "refused"), ("U1", "answered")]


def test_bad_commands_get_help_not_errors(tmp_path):
    conversation, _ = _conversation(tmp_path, allowed_channels=["C-ops"])
    assert conversation.on_command("", SLACK).kind == "help"
    assert conversation.on_command("not-an-address", SLACK).kind == "notice"
    bad_since = conversation.on_command("a@b.example --since soon", SLACK)
    assert bad_since.kind == "notice" and "not a duration" in bad_since.text
    assert conversation.on_command("kb", SLACK).kind == "notice"


def test_kb_search_finds_articles_by_words_ids_and_codes():
    assert search_articles("greylisting")[0].id == "greylisted"
    assert search_articles("5.7.26")[0].id == "auth-spf-dkim-dmarc"
    assert search_articles("unknown-user")[0].id == "unknown-user"
    # user text never reaches FTS5 query syntax: quotes and operators are words, not syntax errors
    assert isinstance(search_articles('") OR 1=1 -- NEAR(*'), list)


def test_redaction_hides_local_parts_in_channel_replies(tmp_path):
    conversation, _ = _conversation(tmp_path, redact_local_parts=True, allowed_channels=["C-ops"])
    reply = conversation.on_message(LOG.read_text(), SLACK)
    texts = [d.recipient for d in reply.report.deliveries] + [
        e.text for d in reply.report.deliveries for e in d.evidence()
    ]
    assert all("ops@" not in t and "anna@" not in t for t in texts)
    assert redact("write to j.smith@example.org now") == "write to j***@example.org now"
    assert redact("uid=1000 from=<anna> to=<>") == "uid=1000 from=<a***> to=<>"  # Postfix's local sender


def test_oversized_paste_is_cut_with_a_note(tmp_path):
    conversation, _ = _conversation(tmp_path, max_paste_bytes=2000)
    reply = conversation.on_message(LOG.read_text() * 20, SLACK)
    assert reply.kind == "report" and any("Only the first" in n for n in reply.report.notes)


def test_console_chat_from_a_pipe(run_cli):
    paste = (FIXTURES / "session" / "incoming-unknown-user.log").read_bytes()
    stdin = b"hello\n\n" + paste + b"\n/kb greylisting\n/whyfailed ops@slow.example.net\n/quit\n"
    done = run_cli("chat", "--log", str(LOG), stdin=stdin)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    assert "does not look like a mail log" in out
    assert "unknown_user@example.com" in out and "unknown-user" in out
    assert "greylisting" in out.lower()
    assert "ops@slow.example.net" in out and "mailbox-full" in out


def test_console_chat_interactive_in_a_real_terminal():
    main, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "--log", str(LOG)],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        cwd=REPO,
        env=env,
    )
    os.close(secondary)
    screen = b""

    def read_until(marker: bytes, seconds: float = 30) -> None:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while marker not in screen and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    screen += os.read(main, 65536)
                except OSError:
                    break
        assert marker in screen, screen[-2000:]

    try:
        read_until(b"whyfailed>")
        os.write(main, b"/whyfailed ops@slow.example.net\n")
        read_until(b"mailbox-full")
        os.write(main, b"/quit\n")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    assert process.returncode == 0


def test_kb_search_from_several_threads():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(lambda q: search_articles(q)[0].id, ["greylisting", "5.7.26", "mailbox full"] * 4))
    assert found[:3] == ["greylisted", "auth-spf-dkim-dmarc", "mailbox-full"]
