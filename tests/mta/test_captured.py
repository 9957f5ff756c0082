"""Golden logs captured from real Postfix and Exim runs (tests/fixtures/captured/).

No server is started: whyfailed reads each captured log and must say, per recipient, what
expected.json says; that file is written from what the scripted servers do
(tests/mta/scenarios.py), never from whyfailed's output. Re-capture with
`.venv/bin/python -m tests.mta.capture` (root; after scripts/install-test-servers.sh).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from bot.report import diagnose_text
from tests.mta.checks import check_recipient, check_sender, unexpected_recipients
from tests.mta.scenarios import EXPECTED, Expect, expected_json

CAPTURED = Path(__file__).resolve().parent.parent / "fixtures" / "captured"
EXPECTED_JSON = json.loads((CAPTURED / "expected.json").read_text())


def _captures() -> list[tuple[str, str]]:
    """(mta, file name) for every captured main log."""
    found = [("postfix", p.name) for p in sorted(CAPTURED.glob("postfix-*.log"))]
    found += [("exim", p.name) for p in sorted(CAPTURED.glob("exim-*-main.log"))]
    return found


CAPTURES = _captures()
REJECT_LOGS = sorted(p.name for p in CAPTURED.glob("exim-*-reject.log"))


@cache
def _report(name: str):
    return diagnose_text((CAPTURED / name).read_text(), input_name=name)


def _expect(data: dict) -> Expect:
    return Expect(
        status=data["status"],
        diagnosis=data["diagnosis"],
        stage=data.get("stage"),
        reply_code=data.get("reply_code"),
        enhanced_status=data.get("enhanced_status"),
        related=tuple(data.get("related", ())),
    )


def _cases():
    for mta, name in CAPTURES:
        for recipient, data in EXPECTED_JSON[mta]["recipients"].items():
            yield pytest.param(mta, name, recipient, data, id=f"{name}:{recipient}")


def test_both_mtas_captured():
    assert {mta for mta, _ in CAPTURES} == {"postfix", "exim"}
    assert REJECT_LOGS


def test_expected_json_matches_the_scenarios():
    """expected.json is the scenario table written out; edit scenarios.py and re-capture."""
    assert EXPECTED_JSON == json.loads(json.dumps(expected_json()))
    assert set(EXPECTED_JSON["postfix"]["recipients"]) == set(EXPECTED["postfix"])


@pytest.mark.parametrize(("mta", "name", "recipient", "data"), list(_cases()))
def test_captured_recipient(mta, name, recipient, data):
    problem = check_recipient(_report(name), recipient, _expect(data))
    assert problem is None, problem


@pytest.mark.parametrize(
    ("mta", "name"),
    [pytest.param(m, n, id=n) for m, n in CAPTURES],
)
def test_captured_sender_and_nothing_else(mta, name):
    report = _report(name)
    sender = EXPECTED_JSON[mta]["sender"]
    problem = check_sender(report, sender, _expect(EXPECTED_JSON[mta]["sender_deliveries"]))
    assert problem is None, problem
    assert unexpected_recipients(report, set(EXPECTED_JSON[mta]["recipients"]) | {sender}) == []


@pytest.mark.parametrize("name", REJECT_LOGS)
def test_captured_exim_reject_log(name):
    recipients = EXPECTED_JSON["exim"]["recipients"]
    rejected = [r for r, data in recipients.items() if data["status"] == "rejected"]
    report = _report(name)
    for recipient in rejected:
        problem = check_recipient(report, recipient, _expect(recipients[recipient]))
        assert problem is None, problem
