"""`why --log` searched by the system's grep finds the lines bot.sources.scan finds, numbered
the same, whatever the bytes and line ends of the file; its early guess of the queue ids only
decides when the lines arrive; and the command tells the same stories with grep or without."""

from __future__ import annotations

import gzip
import shutil

import pytest

from bot import early
from bot.sources import grep
from bot.sources.grep import GrepScan, scan_for, start_early
from bot.sources.scan import grep_lines

from .conftest import FIXTURES

pytestmark = pytest.mark.skipif(shutil.which("grep") is None, reason="no grep on this system")

ADDRESS = "ops1234@slow.example.net"
LINES = [
    b"Nov 29 04:21:13 mail postfix/smtp[1]: ABCDE12345: to=<Ops1234@Slow.Example.NET>, status=deferred",
    b"Nov 29 04:21:14 mail postfix/qmgr[1]: ABCDE12345: removed\r",  # a CR kept, as scan keeps it
    b"",
    b"ops1234@slow.example.net twice: OPS1234@SLOW.EXAMPLE.NET",
    b"Nov 29 04:21:15 mail postfix/smtp[1]: FFABCDE12345: to=<else@where.example>",  # holds the id
    b"bytes that are not UTF-8 \xff\xfe and a NUL \x00 next to ops1234@slow.example.net",
    b"no match 1234@ here, nor ops1234@slow.example.ne",
    b"Nov 29 04:21:16 mail postfix/smtpd[2]: NOQUEUE: reject: RCPT to=<ops1234@slow.example.net>",
    "caf\u00e9 ops1234@slow.example.net in UTF-8".encode(),
    b"Nov 29 04:21:17 mail postfix/cleanup[3]: 99FF00AA11: to=<ops1234@slow.example.net> last line",
]


def _log(tmp_path, ending: bytes = b"\n", separator: bytes = b"\n"):
    path = tmp_path / "mail.log"
    path.write_bytes(separator.join(LINES) + ending)
    return path


@pytest.mark.parametrize("ending", [b"\n", b""], ids=["final-newline", "no-final-newline"])
@pytest.mark.parametrize("separator", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_grep_finds_and_numbers_the_lines_scan_finds(tmp_path, ending, separator):
    path = _log(tmp_path, ending, separator)
    scan = GrepScan(path, ADDRESS, 1000)
    first = scan.first()
    assert first == grep_lines(path, [ADDRESS.encode()], ignore_case=True)
    assert [n for n, _ in first] == [1, 4, 6, 8, 9, 10]
    ids = {"ABCDE12345", "99FF00AA11"}
    assert scan.second(ids) == grep_lines(path, [i.encode() for i in sorted(ids)])
    scan.close()


def test_the_guessed_ids_are_used_only_for_the_lines_of_the_real_ids(tmp_path):
    path = _log(tmp_path)
    # ABCDE12345 and 99FF00AA11 are guessed from the address's lines; the search for both finds
    # lines 1, 2, 5 and 10, and only the real id's lines (with the longer id that holds it) are kept
    scan = GrepScan(path, ADDRESS, 1000)
    assert [n for n, _ in scan.second({"ABCDE12345"})] == [1, 2, 5]
    # an id that was not guessed (no Postfix queue id in the lines) is searched for anew
    scan = GrepScan(path, ADDRESS, 1000)
    assert [n for n, _ in scan.second({"04:21:1"})] == [1, 2, 5, 8, 10]


def test_a_search_stopped_at_its_limit_is_not_trusted_for_the_real_ids(tmp_path):
    # both ids are guessed; the search for them stops at five lines, all but one of the other
    # id's, so the real id's second line (7) is searched for again
    path = tmp_path / "mail.log"
    lines = [f"x postfix/smtp[1]: {i}: to=<{ADDRESS}>" for i in ("AAAAAA1111", "BBBBBB2222")]
    path.write_text("\n".join([*lines, *["AAAAAA1111 more"] * 4, "BBBBBB2222 removed"]) + "\n")
    scan = GrepScan(path, ADDRESS, 5)
    assert [n for n, _ in scan.first()] == [1, 2]
    assert [n for n, _ in scan.second({"BBBBBB2222"})] == [2, 7]
    assert [n for n, _ in GrepScan(path, ADDRESS, 5).second({"AAAAAA1111"})] == [1, 3, 4, 5, 6]


def test_when_grep_cannot_read_the_file_the_caller_is_told(tmp_path):
    scan = GrepScan(tmp_path, ADDRESS, 1000)  # a directory: grep fails, and first() says so
    assert scan.first() is None
    assert scan.second({"ABCDE12345"}) is None


def test_a_scan_started_early_is_the_one_the_command_takes(tmp_path):
    path = _log(tmp_path)
    start_early(path, ADDRESS, 1000)
    early = grep._EARLY[(path, ADDRESS, 1000)]
    assert scan_for(path, ADDRESS, 1000) is early
    assert scan_for(path, ADDRESS, 1000) is not early  # taken once; a second ask starts anew
    assert early.first() == grep_lines(path, [ADDRESS.encode()], ignore_case=True)


@pytest.mark.parametrize(
    ("argv", "started"),
    [
        (["why", "Ops1234@Slow.Example.NET", "--log", "{log}"], True),
        (["why", "--format", "json", "--log", "{log}", "--limit", "5", "--check", "<ops1234@slow.example.net>"], True),
        (["why", ADDRESS, "--log={log}"], False),  # click reads it; this does not try
        (["why", ADDRESS, "--log", "{log}", "--help"], False),
        (["why", ADDRESS, "--log", "{log}*"], False),  # a glob: expanded by the command
        (["why", ADDRESS, "other", "--log", "{log}"], False),
        (["why", "not an address", "--log", "{log}"], False),
        (["diagnose", "{log}"], False),
        (["why", ADDRESS, "--log"], False),
    ],
)
def test_start_early_reads_only_what_it_understands(tmp_path, argv, started):
    path = _log(tmp_path)
    grep._stop_early()
    early.start([a.replace("{log}", str(path)) for a in argv])
    assert early.started() == started
    grep.adopt_early()
    assert not early.started()
    assert bool(grep._EARLY) == started
    # keyed by the target as `why` reads it (lookup_target keeps its case: the command does the same)
    assert {(key[0], key[1].lower(), key[2]) for key in grep._EARLY} <= {(path, ADDRESS, 200_000)}
    grep._stop_early()


def _why(run_cli, address, log, fmt, env=None):
    done = run_cli("why", address, "--log", str(log), "--format", fmt, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("log", "address"),
    [
        ("postfix/deferred-then-bounced.log", "OPS@slow.example.net"),
        ("postfix/incoming-rejects.log", "@example.com"),
        ("postfix/greylisted-then-sent.log", "Buyer@partner.example"),
        ("postfix/expired.log", "@closed.example"),
        ("exim/mainlog-mixed.log", "@example.org"),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_why_tells_the_same_stories_with_grep_and_without(run_cli, tmp_path, log, address, fmt):
    path = FIXTURES / log
    crlf = tmp_path / "crlf.log"
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    packed = tmp_path / "packed.log.gz"  # always read by bot.sources.scan
    packed.write_bytes(gzip.compress(path.read_bytes()))
    for each in (path, crlf):
        with_grep = _why(run_cli, address, each, fmt)
        without = _why(run_cli, address, each, fmt, env={"WHYFAILED_GREP": "off"})
        assert with_grep == without
    assert b"No deliveries" not in _why(run_cli, address, path, "text")
    packed_story = _why(run_cli, address, packed, fmt).replace(bytes(packed), bytes(path))
    assert packed_story == _why(run_cli, address, path, fmt)


def test_more_ids_than_a_command_line_holds_are_searched_for(tmp_path):
    # a busy domain's ids: more bytes of them than the system lets a command line have (2 MB on Linux)
    ids = {f"{n:012X}" for n in range(200_000)}
    path = _log(tmp_path)
    path.write_bytes(path.read_bytes() + b"x: 00000002A3FF: and 0000000F4240 (not an id of ours)\n")
    found = GrepScan(path, ADDRESS, 1000).second(ids)
    assert found == [(11, "x: 00000002A3FF: and 0000000F4240 (not an id of ours)")]


def test_rotated_and_repeated_logs_tell_the_same_stories_with_grep_and_without(run_cli, tmp_path):
    # mail.log.2.gz (scan module), mail.log.1 and mail.log (grep, started early), mail.log twice
    lines = (FIXTURES / "postfix" / "deferred-then-bounced.log").read_bytes().splitlines(keepends=True)
    (tmp_path / "mail.log.2.gz").write_bytes(gzip.compress(b"".join(lines[:3])))
    (tmp_path / "mail.log.1").write_bytes(b"".join(lines[3:6]))
    (tmp_path / "mail.log").write_bytes(b"".join(lines[6:]))
    log = str(tmp_path / "mail.log")
    for address in ("ops@slow.example.net", "@slow.example.net"):
        args = ("why", address, "--log", log, "--log", log, "--format", "json")
        with_grep, without = run_cli(*args), run_cli(*args, env={"WHYFAILED_GREP": "off"})
        assert with_grep.returncode == without.returncode == 0, with_grep.stderr
        assert with_grep.stdout == without.stdout
        assert with_grep.stdout.count(b'"recipient": "ops@slow.example.net"') >= 2  # each file's part, twice


def test_start_early_knows_every_option_of_the_why_command():
    # an option it did not know would only stop the early start; one read wrongly could too
    from bot.cli import why

    options = {o for p in why.params for o in p.opts if o.startswith("-")}
    flags = {o for p in why.params if getattr(p, "is_flag", False) for o in p.opts}
    assert flags == early.FLAGS
    assert options - flags == early.VALUE_OPTIONS


def test_will_read_tells_whether_the_second_pass_waits_for_grep(tmp_path):
    import time

    scan = GrepScan(_log(tmp_path), ADDRESS, 1000)
    assert scan.will_read({"04:21:1"})  # not a guessed id: second() starts a search of its own
    deadline = time.monotonic() + 30
    while scan.will_read({"ABCDE12345"}):  # the guessed search, until it has read the file
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert [n for n, _ in scan.second({"ABCDE12345"})] == [1, 2, 5]  # its lines, as before
    scan.close()


def test_reading_tells_whether_first_waits_for_grep(tmp_path, monkeypatch):
    scan = GrepScan(_log(tmp_path), ADDRESS, 1000)
    scan.first()
    assert not scan.reading()  # answered: nothing left to wait for
    scan.close()
    monkeypatch.setattr(early, "_grep", None)  # WHYFAILED_GREP=off: no search at all
    assert not GrepScan(_log(tmp_path), ADDRESS, 1000).reading()
