"""The conversation core every surface shares, and the console chat driven as a person would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import termios
import time

from bot.conversation import Context, Conversation, redact
from bot.ingest import ingest_paths
from bot.kbsearch import search_articles
from bot.settings import Settings
from bot.store import Store

from .conftest import CLEAR, FIXTURES, REPO, RETITLE, hostile_log

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
    stdin = b"/help\nhello\n\n" + paste + b"\n/kb greylisting\n/whyfailed ops@slow.example.net\n/quit\n"
    done = run_cli("chat", "--log", str(LOG), stdin=stdin)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    for command in ("/whyfailed ADDRESS", "/kb QUERY", "/help", "/quit", "Ctrl-D"):
        assert command in out, command
    assert "does not look like a mail log" in out
    assert "unknown_user@example.com" in out and "unknown-user" in out
    assert "greylisting" in out.lower()
    assert "ops@slow.example.net" in out and "mailbox-full" in out


class Terminal:
    """`whyfailed chat` on a real pseudo-terminal, typed at the way a person would."""

    def __init__(self, *args: str, echo: bool = True):
        self.main, secondary = pty.openpty()
        if not echo:  # the screen then holds only what whyfailed wrote, not the terminal's echo of the paste
            attrs = termios.tcgetattr(secondary)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(secondary, termios.TCSANOW, attrs)
        env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "chat", "--log", str(LOG), *args],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            cwd=REPO,
            env=env,
        )
        os.close(secondary)
        self.screen = b""

    def type(self, data: bytes) -> None:
        for line in data.splitlines(keepends=True):  # a line at a time: a terminal's line buffer is 4 KiB
            os.write(self.main, line)

    def read_until(self, marker: bytes, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while marker not in self.screen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.main], [], [], 0.2)
            if ready:
                try:
                    self.screen += os.read(self.main, 65536)
                except OSError:  # the other side closed: whyfailed has exited
                    break
        assert marker in self.screen, self.screen[-2000:]

    def close(self) -> int:
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            os.close(self.main)


def test_console_chat_interactive_in_a_real_terminal():
    terminal = Terminal()
    try:
        terminal.read_until(b"whyfailed>")
        terminal.type(b"/whyfailed ops@slow.example.net\n")
        terminal.read_until(b"mailbox-full")
        terminal.type(b"/quit\n")
    finally:
        code = terminal.close()
    assert code == 0


def test_a_paste_ended_by_an_empty_line_is_diagnosed_in_a_real_terminal():
    terminal = Terminal()
    try:
        terminal.read_until(b"whyfailed>")
        terminal.type(LOG.read_bytes() + b"\n")
        terminal.read_until(b"mailbox-full")
        terminal.read_until(b"whyfailed>")  # and it asks for the next one
        terminal.type(b"/quit\n")
    finally:
        code = terminal.close()
    assert code == 0


def test_ctrl_d_after_a_paste_diagnoses_it_and_ends_the_session():
    terminal = Terminal()
    try:
        terminal.read_until(b"whyfailed>")
        terminal.type(LOG.read_bytes())
        os.write(terminal.main, b"\x04")  # Ctrl-D at the start of a line: end of input
        terminal.read_until(b"mailbox-full")
    finally:
        code = terminal.close()
    assert code == 0
    assert b"Traceback" not in terminal.screen


def test_console_chat_shows_control_sequences_from_a_log_without_obeying_them():
    terminal = Terminal(echo=False)
    try:
        terminal.read_until(b"whyfailed>")
        terminal.type(hostile_log() + b"\n")
        terminal.read_until(b"mailbox-full")
        terminal.type(b"/quit\n")
    finally:
        code = terminal.close()
    assert code == 0
    # rich colours the screen with its own escapes; none of the log's may be among them
    assert CLEAR not in terminal.screen and RETITLE[:-1] not in terminal.screen and b"\x07" not in terminal.screen
    assert "\u009b".encode() not in terminal.screen
    assert b"\\x1b[2J" in terminal.screen and b"owned\\x07" in terminal.screen


def test_console_chat_from_a_pipe_shows_control_sequences_without_obeying_them(run_cli):
    done = run_cli("chat", stdin=hostile_log() + b"\n/whyfailed kb 5.2.2\n")
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in out and b"\x07" not in out and b"\r" not in out and "\u009b".encode() not in out
    assert b"mailbox-full" in out and b"\\x1b[2J" in out


def test_a_paste_longer_than_max_paste_bytes_is_cut_with_a_notice_and_the_session_goes_on(run_cli):
    # 1.5 MB and no empty line until the end: read, at most max_paste_bytes of it kept, the rest dropped
    filler = b"Nov 27 08:00:01 mx1 postfix/qmgr[980]: 7A1B2C3D4E: from=<anna@example.com>, size=2210, nrcpt=2\n"
    paste = LOG.read_bytes() + filler * (1_500_000 // len(filler))
    done = run_cli("chat", stdin=paste + b"\n/kb greylisting\n")
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    assert "that paste is longer than 1000 kB; only its first 1000 kB were read" in out
    assert "mailbox-full" in out  # what was kept is diagnosed
    assert "greylisting" in out.lower()  # and the next message is read as usual
    # one line with no newline at all: bounded too, and nothing to diagnose in it
    done = run_cli("chat", stdin=b"x" * 3_000_000, env={"WHYFAILED_MAX_PASTE_BYTES": "100000"})
    assert done.returncode == 0, done.stderr
    assert b"only its first 100 kB were read" in done.stdout


def test_kb_search_from_several_threads():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(lambda q: search_articles(q)[0].id, ["greylisting", "5.7.26", "mailbox full"] * 4))
    assert found[:3] == ["greylisted", "auth-spf-dkim-dmarc", "mailbox-full"]


# --- Checked now ------------------------------------------------------------------------------

MX_NOT_FOUND = FIXTURES / "postfix" / "mx-not-found.log"


def test_check_now_confirms_a_missing_domain_and_is_audited(tmp_path, resolver):
    conversation, rows = _conversation(tmp_path, resolver=resolver, allowed_channels=["C-ops"])
    answer = conversation.on_message(MX_NOT_FOUND.read_text(), SLACK)
    assert answer.report.deliveries[0].diagnosis.id == "dns-mx-failure"
    checked = conversation.check_reply(answer, SLACK)
    (check,) = checked.report.deliveries[0].checks
    assert check.check == "dns" and check.target == "no-such-domain.example" and check.data == {"mx": "nxdomain"}
    assert answer.report.deliveries[0].checks is None  # the remembered answer stays as it was
    assert rows == [("U1", "check (a pasted log's answer)", "answered: 1 checks")]


def test_check_now_is_refused_where_whyfailed_address_is_and_audited(tmp_path):
    conversation, rows = _conversation(tmp_path, resolver="127.0.0.1:9")  # nothing is sent: refused first
    answer = conversation.on_message(MX_NOT_FOUND.read_text(), SLACK)
    refused = conversation.check_reply(answer, SLACK)
    assert refused.kind == "refusal" and "not enabled for you here" in refused.text and refused.report is None
    assert rows == [("U1", "check (a pasted log's answer)", "refused")]


def test_check_now_is_one_at_a_time_and_limited_per_minute():
    from bot.checklimit import CheckLimiter

    now = [1000.0]
    limiter = CheckLimiter(2, clock=lambda: now[0])
    assert limiter.acquire("slack:U1") is None
    assert "still running" in limiter.acquire("slack:U1")
    assert limiter.acquire("slack:U2") is None  # someone else is not held up
    limiter.release("slack:U1")
    assert limiter.acquire("slack:U1") is None
    limiter.release("slack:U1")
    now[0] += 10
    assert "try again in 50 s" in limiter.acquire("slack:U1")
    now[0] += 50
    assert limiter.acquire("slack:U1") is None


def test_whyfailed_address_check_checks_and_says_so_in_the_audit(tmp_path, resolver):
    conversation, rows = _conversation(tmp_path, resolver=resolver, allowed_channels=["C-ops"], check_rate=1)
    conversation.settings.logs = [str(MX_NOT_FOUND)]
    conversation.settings.db = str(tmp_path / "none.db")  # no index: scan the log
    reply = conversation.on_command("info@no-such-domain.example --check", SLACK)
    (check,) = reply.report.deliveries[0].checks
    assert check.status == "problem" and "NXDOMAIN" in check.summary
    again = conversation.on_command("check info@no-such-domain.example", SLACK)  # the same, as a word
    assert again.report.deliveries[0].checks is None and "as many as I run for one person" in again.report.notes[-1]
    assert [o for _, _, o in rows] == ["answered: 1 stories, checked", "answered: 1 stories, check rate-limited"]


def test_check_without_an_address_is_a_usage_notice(tmp_path):
    conversation, rows = _conversation(tmp_path, allowed_channels=["C-ops"])
    for asked in ("check", "--check"):
        reply = conversation.on_command(asked, SLACK)
        assert reply.kind == "notice" and "say which address" in reply.text
    assert [o for _, _, o in rows] == ["bad request", "bad request"]


def test_console_check_reruns_the_last_answer_with_checks(run_cli, resolver):
    stdin = b"/check\n" + MX_NOT_FOUND.read_bytes() + b"\n/check\n/quit\n"
    done = run_cli("chat", "--resolver", resolver, stdin=stdin, env={"WHYFAILED_DB": "/nonexistent/none.db"})
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    first, rest = out.split("dns-mx-failure", 1)
    assert "Nothing to check" in first
    assert "Checked now:" in rest and "✗ DNS no-such-domain.example" in rest and "NXDOMAIN" in rest
