"""A throwaway Postfix instance on 127.0.0.1 that delivers to the scripted servers.

Own config, queue and data folders under a temporary folder; logs to DIR/maillog through
postlogd (Postfix's MAILLOG_README); started as root with `postfix -c DIR start-fg` inside a
mount namespace whose /etc/resolv.conf names only 127.0.0.1 (the fake resolver). Nothing of
the system's Postfix is touched or started.

Run it by hand:  .venv/bin/python -m tests.mta.postfix_rig [--write tests/fixtures/captured]
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import time
from pathlib import Path

from tests.mta.remote_server import LOOPBACK, World, free_port
from tests.mta.rig import Capture, Sent, run_by_hand, run_rig, submit_scenario, wait_for
from tests.mta.scenarios import DOMAINS, EXPIRE_DOMAIN, SENDER

BINARIES = ("postfix", "postconf", "postqueue", "postsuper")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    return None


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if which(name) is None]


def postfix_problem() -> str | None:
    """Why the Postfix rig cannot run here, or None."""
    missing = missing_binaries()
    if missing:
        return f"postfix not installed: run scripts/install-test-servers.sh ({', '.join(missing)} missing)"
    if os.geteuid() != 0:
        return "the postfix rig runs a throwaway Postfix as root; run the tests as root (CI does)"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "postfix user or postdrop group missing: run scripts/install-test-servers.sh"
    return None


def postfix_version() -> str:
    return subprocess.run(
        [which("postconf") or "postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def main_cf(folder: Path, relay_domains: list[str]) -> str:
    settings = {
        "compatibility_level": "3.6",
        "config_directory": folder / "etc",
        "queue_directory": folder / "spool",
        "data_directory": folder / "data",
        "maillog_file": folder / "maillog",
        "maillog_file_prefixes": folder,
        "syslog_name": "postfix",
        "myhostname": "mail.rig.test",
        "mydomain": "rig.test",
        "myorigin": "$myhostname",
        "mydestination": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "inet_interfaces": LOOPBACK,
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "relay_domains": " ".join(relay_domains),
        "smtpd_relay_restrictions": "reject_unauth_destination",
        "smtpd_banner": "$myhostname ESMTP",
        "biff": "no",
        "transport_maps": f"texthash:{folder / 'etc' / 'transport'}",
        "smtp_tls_security_level": "may",
        "smtp_tls_policy_maps": f"texthash:{folder / 'etc' / 'tls_policy'}",
        "smtp_tls_loglevel": "1",
        "smtp_connect_timeout": "3s",
        "smtp_helo_timeout": "5s",
        "smtp_mail_timeout": "10s",
        "smtp_rcpt_timeout": "10s",
        "smtp_data_done_timeout": "20s",
        "smtp_dns_support_level": "enabled",
        "queue_run_delay": "2s",
        "minimal_backoff_time": "2s",
        "maximal_backoff_time": "4s",
        "maximal_queue_lifetime": "1h",
        "bounce_queue_lifetime": "1h",
        "delay_warning_time": "0h",
        "smtpd_client_connection_rate_limit": "0",
        "default_destination_concurrency_limit": "4",
    }
    return "".join(f"{key} = {value}\n" for key, value in settings.items())


class PostfixInstance:
    def __init__(self, folder: Path, world: World):
        self.folder = folder
        self.world = world
        self.etc = folder / "etc"
        self.maillog = folder / "maillog"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    # -- setup --------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("etc", "spool", "data"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        # Postfix's daemons run as the postfix user: they must reach these folders.
        for path in (self.folder, *self.folder.parents):
            if path == Path(path.anchor) or path.stat().st_mode & 0o005 == 0o005:
                break
            path.chmod(path.stat().st_mode | 0o755)
        shutil.chown(self.folder / "data", user="postfix")
        relay = [d for d in DOMAINS]
        (self.etc / "main.cf").write_text(main_cf(self.folder, relay))
        (self.etc / "master.cf").write_text(MASTER_CF.format(listen=f"{LOOPBACK}:{self.port}"))
        transport, policy = [], []
        for domain, kind in DOMAINS.items():
            if domain not in self.world.ports:
                continue  # routed by DNS
            nexthop = f"[{LOOPBACK}]:{self.world.ports[domain]}"
            transport.append(f"{domain}\tsmtp:{nexthop}\n")
            level = {"plain": "encrypt", "require-starttls": "none", "badcert": "secure"}.get(kind)
            if level:
                policy.append(f"{nexthop}\t{level}\n")
        (self.etc / "transport").write_text("".join(transport))
        (self.etc / "tls_policy").write_text("".join(policy))
        self.maillog.touch()

    def cmd(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        name, rest = args[0], args[1:]
        command = [which(name) or name, "-c", str(self.etc), *rest]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)

    def start(self) -> None:
        self.write_config()
        check = self.cmd("postfix", "check", check=False)
        if check.returncode != 0:
            raise RuntimeError(f"postfix check failed: {check.stderr}")
        command = self.world.wrap([which("postfix") or "postfix", "-c", str(self.etc), "start-fg"])
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=open(self.folder / "start-fg.out", "wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postfix exited: {(self.folder / 'start-fg.out').read_text(errors='replace')}")
            with contextlib.suppress(OSError), smtplib.SMTP(LOOPBACK, self.port, timeout=5) as probe:
                probe.noop()
                return
            time.sleep(0.3)
        raise RuntimeError("postfix did not start listening within 30s")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.cmd("postfix", "stop", check=False, timeout=30)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    # -- driving ------------------------------------------------------------------------
    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def flush(self) -> None:
        self.cmd("postqueue", "-f", check=False, timeout=30)

    def hold(self, queue_id: str) -> None:
        self.cmd("postsuper", "-h", queue_id, check=False, timeout=30)


def _done(log: str, sent: Sent, rcpt: str, want: str) -> bool:
    if sent.queue_id is None:
        return re.search(rf"NOQUEUE: reject: RCPT from .*<{re.escape(rcpt)}>", log) is not None
    qid = re.escape(sent.queue_id)
    if want == "expired":
        return re.search(rf"{qid}: from=<[^>]*>, status=expired", log) is not None
    word = {"delivered": "sent", "bounced": "bounced", "deferred": "deferred"}[want]
    return re.search(rf"{qid}: to=<{re.escape(rcpt)}>.*status={word}\b", log) is not None


def run_postfix(folder: Path, expected_status: dict[str, str]) -> Capture:
    """Run the whole scenario against a fresh Postfix; returns the captured maillog."""

    def drive(world: World, instance: PostfixInstance, capture: Capture) -> None:
        started = time.monotonic()
        pending = [
            # The expiring message first has to be deferred; it expires in phase 2.
            (sent, rcpt, "deferred" if want == "expired" else want)
            for sent, rcpt, want in submit_scenario(instance.port, world, capture, expected_status)
        ]
        instance.flush()
        left = wait_for(instance.log, _done, pending, limit=90, nudge=instance.flush)
        capture.timings["phase1"] = time.monotonic() - started
        if left:
            capture.problems.append(f"no final status within 90s for {[r for _, r, _ in left]}")
        _expire(instance, capture, pending)
        # Let the bounce notices (DSNs to the sender) go out before stopping.
        _wait_quiet(instance, limit=30)

    def collect(world: World, instance: PostfixInstance, capture: Capture) -> None:
        capture.main_log = instance.log()
        capture.transcript = world.transcript()

    make = lambda world: PostfixInstance(folder / "postfix", world)  # noqa: E731
    return run_rig(Capture("postfix", postfix_version(), ""), folder, make, drive, collect)


def _expire(instance: PostfixInstance, capture: Capture, pending) -> None:
    """Phase 2: let the message to the expire domain run out of queue lifetime. The other
    deferred messages are put on hold first, so only that one expires."""
    expiring = [s for s in capture.sent if any(r.endswith("@" + EXPIRE_DOMAIN) for r in s.recipients)]
    if not expiring:
        return
    keep = {s.queue_id for s in expiring}
    for sent, _rcpt, want in pending:
        if want == "deferred" and sent.queue_id and sent.queue_id not in keep:
            instance.hold(sent.queue_id)
    instance.cmd("postconf", "-e", "maximal_queue_lifetime=0", "bounce_queue_lifetime=0")
    instance.cmd("postfix", "reload", check=False)
    time.sleep(1)
    instance.flush()
    phase2 = [(s, r, "expired") for s in expiring for r in s.recipients]
    if wait_for(instance.log, _done, phase2, limit=60, nudge=instance.flush):
        capture.problems.append(f"the {EXPIRE_DOMAIN} message did not expire within 60s")


def _wait_quiet(instance: PostfixInstance, limit: float) -> None:
    """Wait until every DSN to the sender has a status line (bounded)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        log = instance.log()
        notices = re.findall(r"(\w+): sender non-delivery notification: (\w+)", log)
        if all(re.search(rf"{dsn}: to=<{re.escape(SENDER)}>.*status=sent", log) for _, dsn in notices):
            return
        instance.flush()
        time.sleep(1)


if __name__ == "__main__":  # pragma: no cover - python -m tests.mta.postfix_rig
    run_by_hand("postfix", run_postfix)
