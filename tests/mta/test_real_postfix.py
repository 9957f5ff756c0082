"""A real Postfix delivers to the scripted servers; whyfailed must explain every recipient.

Runs Postfix once per session (about 15 s). Skips only when Postfix is not installed
(scripts/install-test-servers.sh installs it; CI runs that script).
"""

from __future__ import annotations

import pytest

from bot.report import diagnose_text
from tests.mta.checks import check_recipient, check_sender, unexpected_recipients
from tests.mta.scenarios import EXPECTED, SENDER, SENDER_EXPECT

pytestmark = pytest.mark.slow

TABLE = EXPECTED["postfix"]


@pytest.fixture(scope="module")
def report(postfix_capture):
    return diagnose_text(postfix_capture.main_log, input_name="postfix maillog")


def test_rig_ran_cleanly(postfix_capture):
    assert not postfix_capture.problems, "\n".join(postfix_capture.problems) + "\n" + postfix_capture.main_log[-6000:]
    assert postfix_capture.version
    assert "status=sent" in postfix_capture.main_log


def test_greylisted_message_was_retried_and_accepted(postfix_capture):
    log = postfix_capture.main_log
    assert "to=<grey@remote.test>" in log and "Greylisted" in log
    assert any("to=<grey@remote.test>" in line and "status=sent" in line for line in log.splitlines())


@pytest.mark.parametrize("recipient", sorted(TABLE))
def test_recipient_diagnosis(postfix_capture, report, recipient):
    if recipient in postfix_capture.skipped:
        pytest.skip(f"not sent: {postfix_capture.skipped[recipient]}")
    problem = check_recipient(report, recipient, TABLE[recipient])
    assert problem is None, problem


def test_bounce_notices_to_sender(report):
    problem = check_sender(report, SENDER, SENDER_EXPECT)
    assert problem is None, problem


def test_no_unexpected_recipients(report):
    assert unexpected_recipients(report, set(TABLE) | {SENDER}) == []


def test_every_line_understood(report):
    assert [f"{u.line}: {u.text}" for u in report.unparsed] == []
