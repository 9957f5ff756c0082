"""What a command imports: each format's parser when a line of that format is met, and on the
`why --log` path nothing of chat, the index, the live checks or the terminal renderer. Each
test runs a fresh interpreter, where nothing is imported yet."""

from __future__ import annotations

import json
import subprocess
import sys

from bot.parse import parse_text

from .conftest import FIXTURES, REPO

# One paste of many formats, each met first somewhere in it: Exim, then Sendmail, Haraka...
PASTE_FILES = [
    "exim/mainlog-mixed.log",
    "sendmail/mixed.log",
    "haraka/haraka.log",
    "opensmtpd/smtpd.log",
    "framing/collectors.log",
    "mdaemon/MDaemon-SMTP-in.log",
    "hmailserver/hmailserver_2026-11-28.log",
    "session/incoming-dnsbl-reject.log",
    "transcript/rcpt-and-size.txt",
    "qmail/current",
    "mixed/wrapped-mixed-timestamps.txt",
    "postfix/deferred-then-bounced.log",
    "exchange/MSGTRK2026112810-1.LOG",
]
FORMAT_MODULES = [
    "bot.parse.exchange",
    "bot.parse.exim",
    "bot.parse.framing",
    "bot.parse.haraka",
    "bot.parse.hmailserver",
    "bot.parse.mdaemon",
    "bot.parse.opensmtpd",
    "bot.parse.postfix",
    "bot.parse.prefilter",
    "bot.parse.qmail",
    "bot.parse.sendmail",
    "bot.parse.session",
    "bot.parse.transcript",
]


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _paste() -> str:
    return "\n".join((FIXTURES / name).read_text(encoding="utf-8", errors="replace") for name in PASTE_FILES)


def test_importing_the_parser_loads_no_format_module():
    code = "import sys, bot.parse; print(sorted(m for m in sys.modules if m.startswith('bot.parse.')))"
    loaded = json.loads(_fresh(code).replace("'", '"'))
    assert not set(loaded) & set(FORMAT_MODULES), loaded


def test_a_format_met_first_in_a_mixed_paste_is_imported_and_parsed_as_before():
    # in this process every format module may be loaded already; in a fresh one, each is
    # imported at its first line: the events and the lines not understood are the same
    code = (
        "import sys; from bot.parse import parse_text; from tests.test_imports import _paste; "
        "result = parse_text(_paste()); print(repr((result.events, result.unparsed, result.format_stats)))"
    )
    result = parse_text(_paste())
    assert _fresh(code).strip() == repr((result.events, result.unparsed, result.format_stats))
    assert {"exim", "sendmail", "haraka", "opensmtpd", "mdaemon", "hmailserver", "postfix", "qmail", "exchange"} <= set(
        result.formats
    )


def test_a_parser_can_still_be_imported_from_bot_parse():
    code = (
        "import sys; from bot.parse import parse_exim_line, parse_postfix_message; "
        "from bot.parse.exim import parse_exim_line as exim; "
        "print(parse_exim_line is exim, 'bot.parse.qmail' in sys.modules)"
    )
    assert _fresh(code).split() == ["True", "False"]


def _why_in_a_fresh_process(*args: str) -> tuple[dict, set[str]]:
    """`whyfailed why ARGS --format json` in a new interpreter: its report, and the modules it loaded."""
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['whyfailed', 'why', *{list(args)!r}, '--format', 'json']\n"
        "try:\n"
        "    runpy.run_module('bot', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    output = _fresh(code)
    return json.loads(output[: output.rindex("\n[")]), set(json.loads(output[output.rindex("\n[") :]))


def test_why_from_a_log_imports_no_chat_index_checks_or_other_format():
    log = FIXTURES / "postfix" / "deferred-then-bounced.log"
    report, loaded = _why_in_a_fresh_process("ops@slow.example.net", "--log", str(log))
    assert report["deliveries"], report  # the story was told
    unwanted = {"rich", "pydantic", "pydantic_settings", "sqlite_utils", "sqlite3", "dns", "slack_sdk", "discord"}
    unwanted |= {"bot.store", "bot.settings", "bot.conversation", "bot.adapters", "bot.checks.run", "bot.ingest"}
    unwanted |= set(FORMAT_MODULES) - {"bot.parse.postfix"}
    unwanted |= {"bot.parse.detect"}  # every line has a plain syslog header: nothing to sniff
    assert not unwanted & loaded, unwanted & loaded


def test_why_from_an_index_named_with_db_loads_neither_the_settings_nor_plugins(tmp_path):
    # --db names the index: the settings (pydantic, a quarter of a second) have nothing to add
    from bot.ingest import ingest_paths
    from bot.store import Store

    db = tmp_path / "i.db"
    ingest_paths(Store(db), [str(FIXTURES / "postfix" / "deferred-then-bounced.log")])
    report, loaded = _why_in_a_fresh_process("ops@slow.example.net", "--db", str(db))
    assert [d["status"] for d in report["deliveries"]] == ["bounced"]
    assert "bot.store" in loaded
    assert not {"pydantic", "pydantic_settings", "bot.settings", "rich"} & loaded
    assert "importlib.metadata" not in loaded  # sqlite-utils' plugins are not looked for (store_backends)
