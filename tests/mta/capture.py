"""Re-capture the golden logs in tests/fixtures/captured/ from real Postfix and Exim runs.

    .venv/bin/python -m tests.mta.capture            # both MTAs
    .venv/bin/python -m tests.mta.capture postfix    # one

Writes postfix-<version>.log, exim-<version>-main.log (+ -reject.log) and expected.json
(from tests/mta/scenarios.py, never from whyfailed's output). Needs root and
scripts/install-test-servers.sh. The tests never write here; only this command does.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.mta.exim_rig import exim_problem, run_exim
from tests.mta.postfix_rig import postfix_problem, run_postfix
from tests.mta.rig import Capture
from tests.mta.scenarios import EXPECTED, expected_json

CAPTURED = Path(__file__).resolve().parent.parent / "fixtures" / "captured"


def rig_folder(name: str) -> Path:
    """A fresh folder the MTAs' unprivileged users can reach (pytest's tmp folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=f"whyfailed-{name}-"))
    folder.chmod(0o755)
    return folder


RIG_LOCK = Path(tempfile.gettempdir()) / "whyfailed-mta-rig.lock"


@contextlib.contextmanager
def one_rig_at_a_time(timeout: float = 600):
    """Machine-wide lock: two rigs at once would fight over 127.0.0.1:53 and Exim's config path."""
    with open(RIG_LOCK, "w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another MTA rig held {RIG_LOCK} for {timeout:.0f}s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run(mta: str, keep: bool = False) -> tuple[Capture, Path]:
    """Run one MTA's scenario in a fresh folder (removed unless keep)."""
    folder = rig_folder(mta)
    try:
        statuses = {rcpt: exp.status for rcpt, exp in EXPECTED[mta].items()}
        with one_rig_at_a_time():
            return (run_postfix if mta == "postfix" else run_exim)(folder, statuses), folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def write(capture: Capture, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if capture.mta == "postfix":
        path = out / f"postfix-{capture.version}.log"
        path.write_text(capture.main_log)
        written.append(path)
    else:
        path = out / f"exim-{capture.version}-main.log"
        path.write_text(capture.main_log)
        written.append(path)
        if capture.reject_log:
            path = out / f"exim-{capture.version}-reject.log"
            path.write_text(capture.reject_log)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mta", nargs="*", help="postfix and/or exim (default: both)")
    parser.add_argument("--out", type=Path, default=CAPTURED)
    args = parser.parse_args(argv)
    for mta in args.mta:
        if mta not in ("postfix", "exim"):
            parser.error(f"unknown MTA {mta!r}: postfix or exim")
    status = 0
    for mta in args.mta or ["postfix", "exim"]:
        problem = postfix_problem() if mta == "postfix" else exim_problem()
        if problem:
            print(f"{mta}: skipped: {problem}", file=sys.stderr)
            status = 1
            continue
        capture, _ = run(mta)
        if capture.problems or capture.skipped:
            print(f"{mta}: not written: {capture.problems} {capture.skipped}", file=sys.stderr)
            status = 1
            continue
        for path in write(capture, args.out):
            print(f"{mta} {capture.version}: wrote {path} ({capture.timings})")
    (args.out / "expected.json").write_text(json.dumps(expected_json(), indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
