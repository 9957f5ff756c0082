"""bot.early starts grep before anything else is imported: it reads the command line's address
and files as the command does (bot.why's lookup_target and _greppable, here without re and
pathlib), it imports nothing that would delay grep, and a search it started is either adopted
by the command (same lines as a search started there) or stopped at exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot import early
from bot.sources import grep
from bot.sources.scan import grep_lines
from bot.why import lookup_target

from .conftest import REPO

needs_grep = pytest.mark.skipif(shutil.which("grep") is None, reason="no grep on this system")

TARGETS = [
    "ops@slow.example.net",
    "<Ops@Slow.Example.NET>",
    "  <ops@slow.example.net>  ",
    "@example.com",
    "<@example.com>",
    "a@b@c",
    "@",
    "a b@example.com",
    "ops@exa\tmple.com",
    "<>",
    "",
    "   ",
    "<<x@y>>",
    "x@y\u00a0z",  # a no-break space is whitespace to str.isspace
    "ABCDE12345",
    "4448D29412",
    "1a2B3c-000abc-Zz",
    "2AB3cDE4f012345",
    "abcd",
    "abcde",
    "-abcde",
    "abcde-",
    "a" * 30,
    "a" * 31,
    "abc_def",
    "caf\u00e9123",
    "\u0661\u0662\u0663\u0664\u0665",  # Arabic-Indic digits: not [0-9] to re
    "ABCDE12345\n",
    "<ABCDE12345>",
    "ABC DE12345",
]


@pytest.mark.parametrize("text", TARGETS)
def test_target_is_what_lookup_target_makes_of_the_text(text):
    try:
        expected = lookup_target(text)
    except ValueError:
        expected = None
    assert early.target(text) == expected


def _path_greppable(path: Path) -> bool:
    # bot.why's test before bot.early: pathlib's suffix, is_file and size
    return path.suffix != ".gz" and path.is_file() and path.stat().st_size > 0


def test_greppable_is_the_pathlib_test(tmp_path):
    (tmp_path / "mail.log").write_text("x\n")
    (tmp_path / "empty.log").write_text("")
    (tmp_path / "mail.log.2.gz").write_bytes(b"x")
    (tmp_path / ".gz").write_text("x\n")  # a leading dot is not a suffix
    (tmp_path / "a.gz.1").write_text("x\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "mail.log")
    names = [
        "mail.log",
        "empty.log",
        "mail.log.2.gz",
        ".gz",
        "a.gz.1",
        "folder",
        "link",
        "missing",
        "mail.log/",
        "./mail.log",
    ]
    names += [f"folder/../{name}" for name in names] + [f"folder//./{name}" for name in names]
    for name in names:
        given = f"{tmp_path}/{name}"
        assert early.greppable(given) == _path_greppable(Path(given)), name


def test_which_finds_what_shutil_finds(tmp_path, monkeypatch):
    for name in ("grep", "sh", "no-such-command-whyfailed"):
        assert early._which(name) == shutil.which(name)
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    (tmp_path / "dir" / "tool").mkdir(parents=True)  # a folder of that name is not it
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "tool").write_text("not executable")
    monkeypatch.setenv("PATH", os.pathsep.join(str(tmp_path / d) for d in ("dir", "plain", "bin")))
    assert early._which("tool") == shutil.which("tool") is None
    tool.chmod(0o755)
    assert early._which("tool") == shutil.which("tool") == str(tool)


def test_bot_early_imports_nothing_that_delays_grep():
    code = "import sys; before = set(sys.modules); import bot.early; print(sorted(set(sys.modules) - before))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert set(json.loads(done.stdout.replace("'", '"'))) <= {"bot", "bot.early", "atexit"}


@needs_grep
def test_an_adopted_search_finds_what_a_search_started_later_finds(tmp_path):
    path = tmp_path / "mail.log"
    path.write_bytes(b"a\nOps@Slow.example.net x\r\nb ops@slow.example.net\n\xff ops@slow.example.net\n")
    grep._stop_early()
    early.start(["why", "<ops@slow.example.net>", "--log", str(path), "--log", f"{tmp_path}/./mail.log"])
    assert early.started()
    grep.adopt_early()  # the same file twice: one search is kept, the other stopped
    assert list(grep._EARLY) == [(path, "ops@slow.example.net", early.MAX_MATCHED_LINES)]
    scan = grep.scan_for(path, "ops@slow.example.net", early.MAX_MATCHED_LINES)
    assert not grep._EARLY
    assert scan.first() == grep_lines(path, [b"ops@slow.example.net"], ignore_case=True)
    assert [n for n, _ in scan.first()] == [2, 3, 4]
    scan.close()


@needs_grep
def test_a_search_nobody_adopts_is_stopped(tmp_path):
    path = tmp_path / "mail.log"
    path.write_text("ops@slow.example.net\n")
    early.start(["why", "ops@slow.example.net", "--log", str(path)])
    [(pid, _output)] = early._STARTED.values()
    early._stop()
    assert not early.started()
    with pytest.raises(ChildProcessError):  # reaped: no process of ours is left behind
        os.waitpid(pid, os.WNOHANG)


def test_nothing_starts_with_grep_turned_off(tmp_path, monkeypatch):
    path = tmp_path / "mail.log"
    path.write_text("ops@slow.example.net\n")
    monkeypatch.setattr(early, "_grep", None)  # as WHYFAILED_GREP=off leaves it
    early.start(["why", "ops@slow.example.net", "--log", str(path)])
    assert not early.started()
