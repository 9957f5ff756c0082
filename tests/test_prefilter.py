"""The ingest prefilter skips only lines the index never needs: ingesting with and without it
gives the same index, line for line, on every fixture and on a realistic generated log."""

from __future__ import annotations

import sqlite3
import sys

import pytest

from bot.ingest import ingest_paths
from bot.parse import parse_line
from bot.parse.detect import sniff_line
from bot.parse.framing import unframe
from bot.parse.prefilter import needless
from bot.store import Store

from .conftest import FIXTURES, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from generate_postfix_log import generate_mix  # noqa: E402

LOGS = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix not in (".json", ".yaml", ".toml"))


def _dump(db) -> dict:
    with sqlite3.connect(db) as connection:
        return {
            table: sorted(connection.execute(f"select {columns} from {table}"))
            for table, columns in (
                ("deliveries", "*"),
                ("attempts", "*"),
                ("messages", "*"),
                ("positions", "path, inode, offset, lines"),
            )
        }


def _ingest_both(tmp_path, path) -> tuple[dict, dict]:
    dumps, stats = [], []
    for prefilter in (False, True):
        db = tmp_path / f"{prefilter}.db"
        stats.append(ingest_paths(Store(db), [str(path)], source="s", prefilter=prefilter))
        dumps.append(_dump(db))
    assert (stats[0].lines, stats[0].deliveries, stats[0].unparsed) == (
        stats[1].lines,
        stats[1].deliveries,
        stats[1].unparsed,
    )
    return dumps[0], dumps[1]


@pytest.mark.parametrize("path", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_prefilter_keeps_the_index_identical_on_every_fixture(tmp_path, path):
    without, with_prefilter = _ingest_both(tmp_path, path)
    assert with_prefilter == without


def test_prefilter_keeps_the_index_identical_on_a_realistic_log(tmp_path):
    log = tmp_path / "mail.log"
    lines = list(generate_mix(30000, seed=21))
    log.write_text("\n".join(lines) + "\n")
    assert sum(map(needless, lines)) > len(lines) // 3  # it does skip: connects, TLS, dovecot...
    without, with_prefilter = _ingest_both(tmp_path, log)
    assert without["deliveries"] and with_prefilter == without


def _lines():
    for path in LOGS:
        yield from path.read_text(encoding="utf-8", errors="replace").splitlines()
    yield from generate_mix(5000, seed=3)


def test_every_skipped_line_is_one_no_story_is_built_from():
    skipped = 0
    for line in _lines():
        if not needless(line):
            continue
        skipped += 1
        assert sniff_line(line) in ("syslog", "exim") and unframe(line)[0] is line, line
        fmt, values, _ = parse_line(line)
        no_story = values.get("session") is None and values["kind"] not in ("reject", "connect-error")
        context_only = values.get("session") is not None and values["kind"] in ("client", "removed", "notification")
        assert fmt == "syslog" or (fmt == "postfix" and (no_story or context_only)), line
    assert skipped > 1000


@pytest.mark.parametrize(
    "line",
    [
        "Nov 29 04:21:13 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 554 5.7.1 no; from=<a@b> "
        "to=<c@d> proto=ESMTP helo=<x>",
        "Nov 29 04:21:13 mail postfix/smtp[1]: connect to mx.example[192.0.2.1]:25: Connection timed out",
        "Nov 29 04:21:13 mail postfix/qmgr[1]: 797F320C256: from=<a@b>, size=1, nrcpt=1 (queue active)",
        "Nov 29 04:21:13 mail postfix-out/smtp[1]: 4bTk2w1Xz4z9Hq: to=<a@b>, status=sent (250 ok)",
        "Nov 29 04:21:13 mail sm-mta[1]: x: to=<a@b>, stat=Sent",
        "Nov 29 04:21:13 mail sendmail[1]: x: to=<a@b>, stat=Sent",
        "Nov 29 04:21:13 mail smtpd[1]: 1a2b3c4d5e6f7a8b smtp connected address=192.0.2.1",
        "Nov 29 04:21:13 mail exim[1]: 1rAbCd-000123-AB => a@b R=dnslookup",
        "Nov 29 04:21:13 mail qmail: 1234.5 delivery 1: success",
        "Nov 29 04:21:13 mail haraka[1]: [NOTICE] [x] [core] connect",
        "Nov 1 04:21:13 mail dovecot: not a syslog line to the sniffer (one space, one digit)",
        "2026-11-28T10:15:02 [00000A1C] 10:15:03 session log, not syslog",
        "<22>1 2026-11-28T10:15:02Z mail dovecot 1 - - RFC 5424 is left to the full parser",
        "> Nov 29 04:21:13 mail dovecot: quoted in a paste",
    ],
)
def test_prefilter_keeps_lines_that_may_tell_a_story(line):
    assert not needless(line)


@pytest.mark.parametrize(
    "line",
    [
        "Nov 29 04:21:13 mail postfix/smtpd[14439]: connect from localhost[127.0.0.1]",
        "Nov  9 04:21:13 mail postfix/smtpd[14439]: disconnect from localhost[127.0.0.1] ehlo=1 quit=1 commands=2",
        "2026-11-28T10:15:02.123+00:00 mail postfix/anvil[1]: statistics: max connection rate 1/60s",
        "Nov 29 04:21:13 mail dovecot: imap-login: Login: user=<a@b>",
        "Nov 29 04:21:13 mail opendkim[712]: 797F320C256: DKIM-Signature field added",
        "Nov 29 04:21:13 mail postfix/qmgr[14437]: 797F320C256: removed",
        "Nov 29 04:21:13 mail postfix/smtpd[14439]: 797F320C256: client=localhost[127.0.0.1]",
        "Nov 29 04:21:13 mail postfix/bounce[14447]: 7F05D20C258: sender non-delivery notification: 9198D20C263",
    ],
)
def test_prefilter_skips_noise(line):
    assert needless(line)
