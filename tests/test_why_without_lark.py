"""`why --log` on a log whose lines all take the token paths (bot/parse/grammars.py token_path)
never imports Lark: the paths' regexes are derived from the grammar once, kept in the data
cache, and read from there by later runs. Whether that cache is empty, filled or damaged,
the answer is the same and the command succeeds. Each run is a fresh interpreter.

(With grep, an address with queue ids may load the Postfix parser on purpose while grep
reads the file for the messages' lines (bot/why.py _postfix_parser_meanwhile): so Lark's
absence is checked without grep there, and with grep for rejects, which have no queue id.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import FIXTURES, REPO

# NOQUEUE rejects, queue records, qmgr's "removed" and replies: every line takes a token path
LOG = FIXTURES / "postfix" / "token-path-lines.log"
ADDRESS = "nobody@example.com"
NO_GREP = {"WHYFAILED_GREP": "off"}


def _why(cache, address: str = ADDRESS, **env) -> tuple[dict, set[str]]:
    """The JSON report of `why ADDRESS --log LOG` and the modules the process had imported."""
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['whyfailed', 'why', {address!r}, '--log', {str(LOG)!r}, '--format', 'json']\n"
        "try:\n"
        "    runpy.run_module('bot', run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    assert not end.code, end.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    environment = {**os.environ, "WHYFAILED_CACHE_DIR": str(cache), **env}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO, env=environment
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # a damaged cache is rebuilt quietly
    at = done.stdout.rindex("\n[")
    return json.loads(done.stdout[:at]), set(json.loads(done.stdout[at:]))


def _stories(report: dict) -> list[tuple]:
    return [
        (d["recipient"], d["status"], d["diagnosis"]["id"], [a["lines"] for a in d["attempts"]])
        for d in report["deliveries"]
    ]


def test_the_story_is_told_from_the_token_paths_alone(tmp_path):
    report, loaded = _why(tmp_path / "cache")  # cold: the regexes are derived (and Lark loaded)
    assert _stories(report) == [
        ("friend@dest.example", "bounced", "spam-content-rejected", [[7]]),
        ("nobody@example.com", "rejected", "relay-denied", [[3]]),
        ("Nobody@example.com", "rejected", "unknown-user", [[1]]),
    ]
    assert {"regexes-postfix", "regexes-reply"} <= {p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache").iterdir()}
    warm, loaded = _why(tmp_path / "cache", **NO_GREP)
    assert warm == report
    assert "lark" not in loaded and "lark_cython" not in loaded
    assert "bot.sources.scan" in loaded


def test_a_whole_message_is_read_without_lark(tmp_path):
    # its status line and qmgr's "removed", found by the message's queue id
    _why(tmp_path / "cache", "other@dest.example", **NO_GREP)
    report, loaded = _why(tmp_path / "cache", "other@dest.example", **NO_GREP)
    assert _stories(report) == [("other@dest.example", "delivered", "delivered", [[8]])]
    assert report["deliveries"][0]["queue_id"] == "7F00112233"
    assert "lark" not in loaded and "lark_cython" not in loaded


def test_rejects_are_read_without_lark_through_grep(tmp_path):
    _why(tmp_path / "cache", "ghost@example.com")
    report, loaded = _why(tmp_path / "cache", "ghost@example.com")
    assert [(d["status"], d["reply_code"], [a["lines"] for a in d["attempts"]]) for d in report["deliveries"]] == [
        ("rejected", 450, [[10]]),
        ("rejected", 550, [[9]]),
    ]
    assert "lark" not in loaded and "lark_cython" not in loaded
    assert "subprocess" not in loaded  # grep is started with os.posix_spawn (bot/early.py)
    # nor what this answer never uses: gzip (plain files), signal's enums, the live checks,
    # tempfile (the data cache is read, not written)
    assert not {"gzip", "signal", "bot.checks", "tempfile"} & loaded
    assert "bot.sources.scan" not in loaded  # grep answered
    assert _why(tmp_path / "cache", "ghost@example.com", **NO_GREP)[0] == report


def _flip_a_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


DAMAGE = {
    "garbage": lambda data: b"not a cache file",
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "one byte changed": _flip_a_byte,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_gives_the_same_answer(tmp_path, damage):
    cache = tmp_path / "cache"
    expected, _ = _why(cache)
    for entry in cache.iterdir():  # every file: the regexes, the knowledge, Lark's own tables
        entry.write_bytes(DAMAGE[damage](entry.read_bytes()))
    report, _ = _why(cache)
    assert report == expected
    again, loaded = _why(cache, **NO_GREP)  # and the damaged files were replaced
    assert again == expected
    assert "lark" not in loaded


def test_a_line_off_the_token_paths_still_loads_the_parser(tmp_path):
    # the message's "removed" line takes the parser: Lark is imported, when it is needed
    log = FIXTURES / "postfix" / "deferred-then-bounced.log"
    code = (
        "import sys; from bot.why import why_from_logs; "
        f"r = why_from_logs([{str(log)!r}], 'ops@slow.example.net', None); "
        "print(len(r.deliveries), 'lark' in sys.modules)"
    )
    environment = {**os.environ, "WHYFAILED_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=environment)
    assert done.stdout.split() == ["1", "True"], done.stderr


def test_the_regexes_read_from_the_cache_are_the_ones_the_grammar_gives():
    # whatever the cache holds (this run's, or an earlier one's), it is what deriving gives now
    from bot.parse import postfix, reply, syslog

    assert postfix._token_path_regexes() == postfix._derive_token_path_regexes()
    assert reply._plain_reply_path().pattern == reply._derive_reply_regexes()["plain_reply"]
    assert reply._reply_regexes() == reply._derive_reply_regexes()
    assert syslog._bsd_header_regex().pattern == syslog._derive_bsd_header()["bsd_header"]
