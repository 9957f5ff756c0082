"""Real Postfix and Exim deliver to the scripted servers; whyfailed must explain every recipient.

Each MTA runs once per session (Postfix about 15 s, Exim about 20 s). The tests skip only when
the MTA is not installed (scripts/install-test-servers.sh installs both; CI runs that script).
"""

from __future__ import annotations

import re

import pytest

from bot.report import diagnose_text
from tests.mta.checks import check_recipient, check_sender, unexpected_recipients
from tests.mta.scenarios import EXPECTED, RELAY_DENIED_DOMAIN, SENDER, SENDER_EXPECT

pytestmark = pytest.mark.slow

MTAS = ("postfix", "exim")
# What shows, in each MTA's own words, that the greylisted message was deferred, then delivered.
GREYLISTED = {
    "postfix": (r"to=<grey@remote\.test>.*Greylisted", r"to=<grey@remote\.test>.*status=sent"),
    "exim": (r" == grey@remote\.test .*Greylisted", r" => grey@remote\.test "),
}


@pytest.fixture(scope="module", params=MTAS)
def mta(request):
    return request.param


@pytest.fixture(scope="module")
def capture(request, mta):
    return request.getfixturevalue(f"{mta}_capture")


@pytest.fixture(scope="module")
def report(capture, mta):
    # Exim writes each rejection to both of its logs; the main log alone tells every story.
    return diagnose_text(capture.main_log, input_name=f"{mta} main log")


def test_rig_ran_cleanly(capture, mta):
    assert not capture.problems, "\n".join(capture.problems) + "\n" + capture.main_log[-6000:]
    assert capture.version
    if mta == "postfix":
        assert "status=sent" in capture.main_log
    else:
        assert "lost privilege" not in capture.main_log, "the rig config is not in /etc/exim4/trusted_configs"
        assert "rejected RCPT" in capture.reject_log


def test_greylisted_message_was_retried_and_accepted(capture, mta):
    deferred, delivered = GREYLISTED[mta]
    assert re.search(deferred, capture.main_log)
    assert re.search(delivered, capture.main_log)


_REPORTS: dict = {}  # one diagnosis per MTA, shared by its recipients


@pytest.mark.parametrize(("which", "recipient"), [(m, r) for m in MTAS for r in sorted(EXPECTED[m])], ids=lambda v: v)
def test_recipient_diagnosis(request, which, recipient):
    capture = request.getfixturevalue(f"{which}_capture")
    if recipient in capture.skipped:
        pytest.skip(f"not sent: {capture.skipped[recipient]}")
    if which not in _REPORTS:
        _REPORTS[which] = diagnose_text(capture.main_log, input_name=f"{which} main log")
    problem = check_recipient(_REPORTS[which], recipient, EXPECTED[which][recipient])
    assert problem is None, problem


def test_exim_reject_log_alone(exim_capture):
    rejected = diagnose_text(exim_capture.reject_log, input_name="exim rejectlog")
    recipient = f"someone@{RELAY_DENIED_DOMAIN}"
    problem = check_recipient(rejected, recipient, EXPECTED["exim"][recipient])
    assert problem is None, problem


def test_bounce_notices_to_sender(report):
    problem = check_sender(report, SENDER, SENDER_EXPECT)
    assert problem is None, problem


def test_no_unexpected_recipients(report, mta):
    assert unexpected_recipients(report, set(EXPECTED[mta]) | {SENDER}) == []


def test_every_line_understood(report):
    assert [f"{u.line}: {u.text}" for u in report.unparsed] == []
