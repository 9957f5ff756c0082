"""What the Postfix and the Exim rigs share: the message they submit, what a run captured,
sending the scenario's messages, and waiting on the MTA's log.

Each rig keeps only what is its own MTA's: its configuration, how it starts and stops, and
which log line tells that a recipient reached its final status.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from tests.mta.remote_server import LOOPBACK, World
from tests.mta.scenarios import CLIENT_HELO, DNS_DOMAINS, DOMAINS, MESSAGES, SENDER


@dataclass
class Sent:
    recipients: tuple[str, ...]
    queue_id: str | None  # None: refused at RCPT (NOQUEUE)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class Capture:
    mta: str
    version: str
    main_log: str
    reject_log: str = ""
    sent: list[Sent] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # recipient -> why it was not sent
    problems: list[str] = field(default_factory=list)  # what went wrong in the rig itself
    transcript: str = ""
    timings: dict[str, float] = field(default_factory=dict)


class MTA(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


Pending = list[tuple[Sent, str, str]]  # (message, recipient, the final status awaited)


def compose(recipients: tuple[str, ...], n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"whyfailed rig message {n}"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="client.rig.test")
    msg.set_content(f"Test message {n} from the whyfailed rig to {', '.join(recipients)}.\n")
    return msg


def submit(port: int, recipients: tuple[str, ...], n: int) -> Sent:
    """Hand one message to the MTA over SMTP; returns its queue id (from the 250 reply)."""
    msg = compose(recipients, n)
    with smtplib.SMTP(LOOPBACK, port, local_hostname=CLIENT_HELO, timeout=30) as client:
        client.ehlo()
        code, reply = client.mail(SENDER)
        assert code == 250, (code, reply)
        refused = {}
        for rcpt in recipients:
            code, reply = client.rcpt(rcpt)
            if code >= 400:
                refused[rcpt] = (code, reply.decode(errors="replace"))
        if len(refused) == len(recipients):
            client.rset()
            return Sent(recipients, None, refused)
        code, reply = client.data(msg.as_bytes())
        assert code == 250, (code, reply)
        text = reply.decode(errors="replace")
        match = re.search(r"queued as (\S+)", text) or re.search(r"id=(\S+)", text)
        return Sent(recipients, match.group(1) if match else None, refused)


def submit_scenario(port: int, world: World, capture: Capture, expected_status: dict[str, str]) -> Pending:
    """Submit every scenario message; returns what to wait for. DNS scenarios need the private
    resolver: without it their recipients are left out (and said so), never faked."""
    pending: Pending = []
    for n, recipients in enumerate(MESSAGES, 1):
        keep = []
        for rcpt in recipients:
            if rcpt.rpartition("@")[2] in DNS_DOMAINS and not world.dns_ok:
                capture.skipped[rcpt] = world.dns_problem
            else:
                keep.append(rcpt)
        if not keep:
            continue
        sent = submit(port, tuple(keep), n)
        capture.sent.append(sent)
        pending += [(sent, rcpt, expected_status[rcpt]) for rcpt in keep]
    return pending


def wait_for(
    read_log: Callable[[], str],
    done: Callable[[str, Sent, str, str], bool],
    pending: Pending,
    limit: float,
    nudge: Callable[[], None] | None = None,
    nudge_every: float = 3.0,
) -> Pending:
    """Poll the log until every pending recipient is done or `limit` seconds pass; returns
    what is still pending. `nudge` (a queue flush) runs every `nudge_every` seconds."""
    deadline = time.monotonic() + limit
    last_nudge = time.monotonic()
    while pending and time.monotonic() < deadline:
        log = read_log()
        pending = [item for item in pending if not done(log, *item)]
        if not pending:
            break
        if nudge is not None and time.monotonic() - last_nudge > nudge_every:
            nudge()
            last_nudge = time.monotonic()
        time.sleep(0.5)
    return pending


def run_rig(
    capture: Capture,
    folder: Path,
    make_mta: Callable[[World], MTA],
    drive: Callable[[World, MTA, Capture], None],
    collect: Callable[[World, MTA, Capture], None],
) -> Capture:
    """Start the scripted servers and the MTA, `drive` the scenario, then stop both and
    `collect` the logs into the capture, however the run ended. An MTA that cannot start is a
    problem on record, not an exception: the tests then show what went wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    world = World(folder / "world", DOMAINS).start()
    instance = make_mta(world)
    started = time.monotonic()
    try:
        try:
            instance.start()
        except RuntimeError as error:
            capture.problems.append(str(error))
            return capture
        drive(world, instance, capture)
        capture.timings["total"] = time.monotonic() - started
    finally:
        instance.stop()
        world.stop()
        collect(world, instance, capture)
    return capture


def run_by_hand(mta: str, run: Callable[[Path, dict[str, str]], Capture]) -> None:
    """`python -m tests.mta.<mta>_rig [--keep DIR]`: run the scenario once and print the logs."""
    import argparse
    import tempfile

    from tests.mta.scenarios import EXPECTED

    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", help="folder to run in (kept)")
    args = parser.parse_args()
    base = Path(args.keep or tempfile.mkdtemp(prefix=f"whyfailed-{mta}-"))
    result = run(base, {r: e.status for r, e in EXPECTED[mta].items()})
    print(result.main_log)
    if result.reject_log:
        print("--- reject log\n" + result.reject_log)
    print(result.timings, result.skipped, result.problems)
