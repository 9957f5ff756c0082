"""Fixtures that run real MTAs (once per session) against the scripted servers on loopback."""

from __future__ import annotations

import os

import pytest

from tests.mta.capture import run
from tests.mta.exim_rig import exim_problem
from tests.mta.postfix_rig import postfix_problem
from tests.mta.rig import Capture


def _run(mta: str, problem: str | None) -> Capture:
    if problem:
        pytest.skip(problem)
    keep = bool(os.environ.get("WHYFAILED_KEEP_RIG"))  # keep configs, spool and logs for debugging
    capture, folder = run(mta, keep=keep)
    if keep:
        print(f"\n{mta} rig folder kept: {folder}")
    return capture


@pytest.fixture(scope="session")
def postfix_capture() -> Capture:
    """A real Postfix run: its maillog and what was sent (skips if Postfix is not installed)."""
    return _run("postfix", postfix_problem())


@pytest.fixture(scope="session")
def exim_capture() -> Capture:
    """A real Exim run: its main and reject logs (skips if Exim is not unpacked)."""
    return _run("exim", exim_problem())
