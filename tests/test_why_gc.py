"""`whyfailed why` runs with the cyclic garbage collector off (bot/__main__.py). That is only
free if its work makes no reference cycles, which would otherwise stay in memory until the
process ends: held here for `why --log` on the fixtures and a realistic generated log, by
address, @domain and queue id. Rendering for people makes none either; the JSON encoder with
an indent makes a few (its nested functions refer to each other), the same few for any report."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from bot.render.json import render_json
from bot.render.text import render_text
from bot.why import why_from_logs

from .conftest import FIXTURES, REPO, write_mix_log


def _busy_log(tmp_path: Path) -> Path:
    return write_mix_log(tmp_path / "mail.log", 6000, seed=21)


def _cyclic_garbage_of_why(logs: list[Path], target: str, render=render_text) -> int:
    def answer() -> None:
        render(why_from_logs([str(p) for p in logs], target, None))

    answer()  # the parsers, the knowledge base and the caches are loaded once, outside the count
    gc.collect()
    gc.disable()
    try:
        answer()
        return gc.collect()  # what only the collector could have freed
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "log, target",
    [
        ("postfix/deferred-then-bounced.log", "ops@slow.example.net"),
        ("postfix/deferred-then-bounced.log", "7A1B2C3D4E"),
        ("postfix/incoming-rejects.log", "jdoe@example.com"),
        ("postfix/incoming-rejects.log", "@example.com"),
        ("postfix/mx-not-found.log", "@example.com"),
    ],
)
def test_why_from_a_fixture_makes_no_reference_cycles(log, target):
    assert _cyclic_garbage_of_why([FIXTURES / log], target) == 0


def test_why_from_a_busy_log_makes_no_reference_cycles(tmp_path):
    log = _busy_log(tmp_path)
    text = log.read_text()
    rejected = text.split("NOQUEUE: reject: RCPT from ", 1)[1].split(" to=<", 1)[1].split(">", 1)[0]
    delivered = text.split("status=sent", 1)[0].rsplit(" to=<", 1)[1].split(">", 1)[0]
    for target in (rejected, delivered, "@" + delivered.split("@")[1], "nobody@absent.example"):
        assert _cyclic_garbage_of_why([log], target) == 0, target


def test_the_json_encoders_few_cycles_do_not_grow_with_the_answer(tmp_path):
    small = _cyclic_garbage_of_why([FIXTURES / "postfix/deferred-then-bounced.log"], "7A1B2C3D4E", render_json)
    log = _busy_log(tmp_path)
    domain = "@" + log.read_text().split("status=bounced", 1)[0].rsplit(" to=<", 1)[1].split("@")[1].split(">")[0]
    assert len(why_from_logs([str(log)], domain, None).deliveries) >= 5
    assert _cyclic_garbage_of_why([log], domain, render_json) == small


_RUN = """
import gc, sys
from bot.__main__ import run
try:
    run()
except SystemExit:
    pass
print("collector", "on" if gc.isenabled() else "off", file=sys.stderr)
"""


@pytest.mark.parametrize("command, state", [("why", "off"), ("kb", "on")])
def test_only_why_runs_with_the_collector_off(tmp_path, command, state):
    args = ["why", "ops@slow.example.net", "--log", str(FIXTURES / "postfix/deferred-then-bounced.log")]
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *(args if command == "why" else ["kb", "5.1.1"])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert f"collector {state}" in done.stderr, done.stderr
    assert "ops@slow.example.net" in done.stdout if command == "why" else "5.1.1" in done.stdout
