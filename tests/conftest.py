from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


# What an attacker's SMTP server can put in its reply, and so in our logs: clear the screen (CSI)
# and retitle the terminal (OSC, ended by BEL)
CLEAR, RETITLE = b"\x1b[2J", b"\x1b]0;owned\x07"


def hostile_log() -> bytes:
    """deferred-then-bounced.log with terminal control sequences in the remote server's reply,
    and a line of them that no grammar reads (so it is listed as not understood)."""
    data = (FIXTURES / "postfix" / "deferred-then-bounced.log").read_bytes()
    data = data.replace(b"Mailbox full, quota exceeded", b"Mailbox full" + CLEAR + b" quota " + RETITLE + b" exceeded")
    return data + b"mystery line " + RETITLE + "\u009b31m\r".encode() + b"\n"  # C1 CSI, a lone CR


def imported_probe(module: str, to: str = "sys.stdout") -> str:
    """Code for `python -c CODE ARGS...`: run `whyfailed ARGS...` (bot.__main__.run), then print
    on TO (a stream's name) whether MODULE was imported on the way: "MODULE imported: True"."""
    return (
        "import sys\nfrom bot.__main__ import run\nsys.argv = ['whyfailed', *sys.argv[1:]]\ntry:\n run()\n"
        f"finally:\n print('{module} imported:', {module!r} in sys.modules, file={to})"
    )


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


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL cluster for the session (see tests/pg_server.py); tests that
    need it skip only when the PostgreSQL binaries are not installed."""
    from .pg_server import PgServer, binaries_missing

    reason = binaries_missing()
    if reason:
        pytest.skip(reason)
    server = PgServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's cluster."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path) -> str:
    """Where a test's index lives: run once with an SQLite file, once with a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "i.db")
    return request.getfixturevalue("pg_url")


# --- a real DNS resolver ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def resolver(tmp_path_factory):
    """'127.0.0.1:PORT' of a running unbound serving tests/fixtures/checks/zones (tests/unbound_server.py):
    one for the session, shared by the checks' own tests and the chat surfaces that run checks."""
    from .unbound_server import UNBOUND_CONF, start_unbound

    yield from start_unbound(tmp_path_factory, UNBOUND_CONF)


@pytest.fixture(scope="session")
def offline_resolver(tmp_path_factory):
    """'127.0.0.1:PORT' of a running unbound that cannot reach any upstream."""
    from .unbound_server import OFFLINE_CONF, start_unbound

    yield from start_unbound(tmp_path_factory, OFFLINE_CONF)


def write_mix_log(path: Path, lines: int, seed: int) -> Path:
    """A generated Postfix log of LINES lines at PATH (benchmarks/generate_postfix_log.py's mix)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    from generate_postfix_log import generate_mix

    path.write_text("\n".join(generate_mix(lines, seed=seed)) + "\n")
    return path


def index_tables(db) -> dict:
    """The stories, attempts and message facts of the SQLite index at DB, each table's rows sorted."""
    import sqlite3

    with sqlite3.connect(db) as connection:
        return {t: sorted(connection.execute(f"select * from {t}")) for t in ("deliveries", "attempts", "messages")}


def wait_for_indexed_offset(db, past: int, process, timeout: float = 120) -> int:
    """Poll the index at DB until a saved position lies beyond byte PAST of its log, while
    PROCESS (an ingest) runs; returns that offset, or 0 if the process ended or time ran out."""
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db, timeout=1) as connection:
                row = connection.execute("select offset from positions").fetchone()
        except sqlite3.Error:
            continue
        if row and row[0] > past:
            return row[0]
    return 0
