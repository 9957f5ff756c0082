from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def run_cli():
    """Run `whyfailed` as a real process, the way a person or a script would."""

    def run(
        *args: str, stdin: bytes | None = None, timeout: float = 120, env: dict | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONUTF8": "1", "COLUMNS": "120", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd=cwd or REPO,
            env=env,
        )

    return run
