"""`why ADDRESS --log FILE --format json` is answered without click (bot.early.quick_json, then
bot.__main__._print_json_from_logs): whatever command line the quick path takes, click reads the same
way, and the answer, its exit status and its stderr are the ones the click command gives. The
click command is reached with the same query plus `--limit 20`, the default, which the quick
path leaves to click."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import click
import pytest

from bot import early
from bot.__main__ import _as_click_ends
from bot.cli import main
from bot.why import lookup_target

from .conftest import FIXTURES, REPO, hostile_log, imported_probe

ADDRESS = "ops@slow.example.net"
LOG = str(FIXTURES / "postfix" / "deferred-then-bounced.log")
DEFAULTS = {"since": None, "db_path": None, "source": None, "limit": early.WHY_LIMIT, "check": False, "resolver": None}

# the words command lines are made of: addresses, files, the options that the quick path takes
# and the ones it leaves, values that look like options, and the forms click reads otherwise
WORDS = [
    ADDRESS,
    "<Ops@Slow.Example.NET>",
    "@example.net",
    "4448D29412",
    "a b@example.com",
    "",
    "a.log",
    "b.log",
    "--log",
    "--log",
    "--format",
    "-f",
    "json",
    "json",
    "text",
    "JSON",
    "jsonl",
    "--limit",
    "20",
    "--since",
    "2h",
    "--check",
    "--source",
    "--db",
    "--help",
    "-h",
    "--log=a.log",
    "--format=json",
    "-fjson",
    "--",
    "-",
    "-x",
    "--lo",
]


def click_reading(argv: list[str]) -> dict | None:
    """The parameters click gives `why` for ARGV (its words after `why`), None when it refuses them."""
    try:
        return main.commands["why"].make_context("why", list(argv)).params
    except (click.exceptions.ClickException, click.exceptions.Exit):
        return None


def test_the_common_command_lines_take_the_quick_path():
    for argv in (
        ["why", ADDRESS, "--log", "a.log", "--format", "json"],
        ["why", "--log", "a.log", "-f", "json", ADDRESS],
        ["why", "--format", "json", "--log", "a.log", "--log", "b.log", "<Ops@Slow.Example.NET>"],
        ["why", "4448D29412", "--log", "a.log", "-f", "json"],
    ):
        assert early.quick_json(argv) is not None, argv


def _command_line(rng: random.Random) -> list[str]:
    """`why` and its words in any order: an address or two, --log and a file or a stray word,
    a format or two, and now and then any other word, in place or on its own."""
    pieces = [[rng.choice(WORDS[:6])] for _ in range(rng.choice((0, 1, 1, 1, 2)))]
    pieces += [["--log", _mostly("a.log", rng)] for _ in range(rng.choice((0, 1, 1, 2)))]
    pieces += [[rng.choice(("--format", "-f")), _mostly("json", rng)] for _ in range(rng.choice((0, 1, 1, 1, 2)))]
    pieces += [[rng.choice(WORDS)] for _ in range(rng.choice((0, 0, 0, 1)))]
    rng.shuffle(pieces)
    words = [word for piece in pieces for word in piece]
    if words and rng.random() < 0.2:
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return ["why", *words]


def _mostly(word: str, rng: random.Random) -> str:
    return word if rng.random() < 0.7 else rng.choice(WORDS)


def test_whatever_the_quick_path_takes_click_reads_the_same():
    taken = 0
    rng = random.Random(4)
    for _ in range(20_000):
        argv = _command_line(rng)
        quick = early.quick_json(argv)
        if quick is None:
            continue
        taken += 1
        params = click_reading(argv[1:])
        assert params is not None, argv
        assert params["fmt"] == "json" and {k: params[k] for k in DEFAULTS} == DEFAULTS, argv
        assert (lookup_target(params["address"]), list(params["logs"])) == quick, argv
    assert taken > 1000  # the generator reaches the quick path often enough to mean something


def test_what_it_leaves_to_click_includes_each_other_option_and_form():
    base = ["why", ADDRESS, "--log", "a.log", "--format", "json"]
    for extra in (["--limit", "20"], ["--since", "2h"], ["--check"], ["--help"], ["--"], ["-f", "json"]):
        assert early.quick_json(base + extra) is None, extra
    for argv in (
        ["why", ADDRESS, "--log=a.log", "--format", "json"],
        ["why", ADDRESS, "--log", "a.log", "--format=json"],
        ["why", ADDRESS, "--log", "-a.log", "--format", "json"],  # click takes it as the value
        ["why", ADDRESS, "--log", "a.log", "--format", "text"],
        ["why", ADDRESS, "--log", "a.log"],
        ["why", ADDRESS, "--format", "json"],
        ["why", "a b@example.com", "--log", "a.log", "--format", "json"],
        ["--version"],
        ["diagnose", "--format", "json"],
    ):
        assert early.quick_json(argv) is None, argv


def _run(args: list[str], env: dict | None = None, probe: bool = False) -> subprocess.CompletedProcess:
    """The command as a real process; PROBE: also say on stderr whether click was imported."""
    command = ["-c", imported_probe("click", to="sys.stderr")] if probe else ["-m", "bot"]
    environment = {**os.environ, "PYTHONUTF8": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *command, *args], capture_output=True, cwd=REPO, env=environment, timeout=120
    )


@pytest.mark.parametrize(
    ("address", "log"),
    [
        (ADDRESS, "deferred-then-bounced.log"),
        ("<OPS@slow.example.net>", "deferred-then-bounced.log"),
        (ADDRESS, "hostile.log"),  # terminal control sequences in the remote reply
        ("@slow.example.net", "deferred-then-bounced.log"),
        ("nobody@nowhere.example", "deferred-then-bounced.log"),
        ("j\u00f6rg@b\u00fccher.example", "unicode.log"),
    ],
)
def test_the_answer_is_the_click_commands_byte_for_byte(tmp_path, address, log):
    plain = (FIXTURES / "postfix" / "deferred-then-bounced.log").read_bytes()
    data = {"hostile.log": hostile_log(), "unicode.log": plain.replace(ADDRESS.encode(), address.encode())}
    path = tmp_path / log
    path.write_bytes(data.get(log, plain))
    args = ["why", address, "--log", str(path), "--format", "json"]
    quick, clicked = _run(args, probe=True), _run([*args, "--limit", str(early.WHY_LIMIT)], probe=True)
    assert quick.stderr.decode() == "click imported: False\n" and clicked.stderr.decode() == "click imported: True\n"
    assert quick.returncode == clicked.returncode == 0
    assert quick.stdout == clicked.stdout and quick.stdout.startswith(b"{")
    assert b"\x1b" not in quick.stdout


def test_a_stdout_that_is_not_utf8_is_left_to_click(tmp_path):
    args = ["why", ADDRESS, "--log", LOG, "--format", "json"]
    latin = _run(args, env={"PYTHONIOENCODING": "latin-1", "PYTHONUTF8": "0"}, probe=True)
    assert latin.returncode == 0 and latin.stderr.decode() == "click imported: True\n"
    assert latin.stdout == _run(args).stdout  # the report is ASCII: the same bytes either way


@pytest.mark.parametrize("extra", [[], ["--limit", "20"]], ids=["quick", "click"])
def test_a_reader_that_went_away_ends_it_with_status_1_and_no_traceback(extra):
    # stdout's read end is closed before the answer is written: the write meets a broken pipe
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bot", "why", ADDRESS, "--log", LOG, "--format", "json", *extra],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=REPO,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.returncode == 1 and done.stderr == b""


def test_ctrl_c_ends_it_as_it_ends_a_click_command(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as clicks:
        click.command()(interrupted).main([], standalone_mode=True)
    said = capsys.readouterr()
    with pytest.raises(SystemExit) as ours:
        _as_click_ends(interrupted)
    assert ours.value.code == clicks.value.code == 1
    assert capsys.readouterr() == said and "Aborted!" in said.err
