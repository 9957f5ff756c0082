"""A real Exim delivers to the scripted servers; whyfailed must explain every recipient.

Runs Exim once per session (about 20 s). Skips only when Exim is not unpacked
(scripts/install-test-servers.sh does that; CI runs that script).
"""

from __future__ import annotations

import re

import pytest

from bot.report import diagnose_text
from tests.mta.checks import check_recipient, check_sender, unexpected_recipients
from tests.mta.scenarios import EXPECTED, RELAY_DENIED_DOMAIN, SENDER, SENDER_EXPECT

pytestmark = pytest.mark.slow

TABLE = EXPECTED["exim"]


@pytest.fixture(scope="module")
def report(exim_capture):
    # Exim writes each rejection to both logs; the main log alone tells every story.
    return diagnose_text(exim_capture.main_log, input_name="exim mainlog")


def test_rig_ran_cleanly(exim_capture):
    assert not exim_capture.problems, "\n".join(exim_capture.problems) + "\n" + exim_capture.main_log[-6000:]
    assert exim_capture.version
    assert "lost privilege" not in exim_capture.main_log, "the rig config is not in /etc/exim4/trusted_configs"
    assert "rejected RCPT" in exim_capture.reject_log


def test_greylisted_message_was_retried_and_accepted(exim_capture):
    log = exim_capture.main_log
    assert re.search(r" == grey@remote\.test .*Greylisted", log)
    assert re.search(r" => grey@remote\.test ", log)


@pytest.mark.parametrize("recipient", sorted(TABLE))
def test_recipient_diagnosis(exim_capture, report, recipient):
    if recipient in exim_capture.skipped:
        pytest.skip(f"not sent: {exim_capture.skipped[recipient]}")
    problem = check_recipient(report, recipient, TABLE[recipient])
    assert problem is None, problem


def test_reject_log_alone(exim_capture):
    rejected = diagnose_text(exim_capture.reject_log, input_name="exim rejectlog")
    recipient = f"someone@{RELAY_DENIED_DOMAIN}"
    problem = check_recipient(rejected, recipient, TABLE[recipient])
    assert problem is None, problem


def test_bounce_notices_to_sender(report):
    problem = check_sender(report, SENDER, SENDER_EXPECT)
    assert problem is None, problem


def test_no_unexpected_recipients(report):
    assert unexpected_recipients(report, set(TABLE) | {SENDER}) == []


def test_every_line_understood(report):
    assert [f"{u.line}: {u.text}" for u in report.unparsed] == []
