"""`whyfailed ingest` draws its progress bar when a person watches stderr (a terminal), and
otherwise (cron, a pipe, a log collector) draws nothing and does not import rich at all."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from .conftest import FIXTURES, REPO, imported_probe

LOG = FIXTURES / "postfix" / "deferred-then-bounced.log"


def _ingest(tmp_path, stderr) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", imported_probe("rich"), "ingest", str(LOG), "--db", str(tmp_path / "index.db")],
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        timeout=120,
    )


def test_without_a_terminal_nothing_is_drawn_and_rich_is_not_imported(tmp_path):
    done = _ingest(tmp_path, subprocess.PIPE)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    out = done.stdout.decode()
    assert "Indexed 10 new lines" in out and out.rstrip().endswith("rich imported: False")


def test_on_a_terminal_the_progress_bar_is_drawn(tmp_path):
    terminal, other_end = pty.openpty()
    try:
        done = _ingest(tmp_path, other_end)
        os.close(other_end)
        drawn = b""
        while True:
            try:
                data = os.read(terminal, 65536)
            except OSError:  # EIO: the other end is closed and all was read
                break
            if not data:
                break
            drawn += data
    finally:
        os.close(terminal)
    assert done.returncode == 0
    assert b"Indexing" in drawn
    out = done.stdout.decode()
    assert "Indexed 10 new lines" in out and out.rstrip().endswith("rich imported: True")
