"""A throwaway Exim daemon on 127.0.0.1 that delivers to the scripted servers.

The exim4 binary is Debian's, unpacked by scripts/install-test-servers.sh into
/opt/whyfailed-exim (Debian's exim4 and postfix packages conflict, so it is not installed).
It runs as root with its own configuration file (-C), spool and log folder, listening on a
loopback port (-bdf -oX), inside a mount namespace whose /etc/resolv.conf names only
127.0.0.1 (the fake resolver). manualroute routers send each test domain to its scripted
server; the retry rules are short so that greylisting resolves and expire.test times out.

Run it by hand:  .venv/bin/python -m tests.mta.exim_rig [--keep DIR]
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import time
from pathlib import Path

from tests.mta.remote_server import LOOPBACK, World, free_port
from tests.mta.rig import Capture, Sent, run_by_hand, run_rig, submit_scenario, wait_for
from tests.mta.scenarios import DOMAINS, EXPIRE_DOMAIN, SENDER

EXIM_ROOT = Path(os.environ.get("WHYFAILED_EXIM_ROOT", "/opt/whyfailed-exim"))
EXIM = EXIM_ROOT / "usr" / "sbin" / "exim4"
EXIM_USER = "Debian-exim"  # compiled into Debian's binary; the install script creates it
# The install script lists this path in the binary's TRUSTED_CONFIG_LIST
# (/etc/exim4/trusted_configs): with it, `exim -C` keeps root's privileges. Any other path
# still works, but every re-exec then logs "exim user lost privilege for using -C option".
TRUSTED_CONF = EXIM_ROOT / "rig" / "exim.conf"
TRUSTED_LIST = Path("/etc/exim4/trusted_configs")


def trusted_conf_available() -> bool:
    try:
        listed = TRUSTED_LIST.read_text().split()
    except OSError:
        return False
    return str(TRUSTED_CONF) in listed and TRUSTED_CONF.parent.is_dir()


def exim_problem() -> str | None:
    """Why the Exim rig cannot run here, or None."""
    if not EXIM.exists():
        return f"exim not installed: run scripts/install-test-servers.sh ({EXIM} missing)"
    if os.geteuid() != 0:
        return "the exim rig runs a throwaway Exim as root; run the tests as root (CI does)"
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        return f"user {EXIM_USER} missing: run scripts/install-test-servers.sh"
    try:
        result = subprocess.run([str(EXIM), "-C", "/dev/null", "-bV"], capture_output=True, text=True, timeout=30)
    except OSError as error:
        return f"{EXIM} does not run: {error}"
    if "Exim version" not in result.stdout:
        return f"{EXIM} does not run: {result.stderr.strip()[:300]}"
    return None


def exim_version() -> str:
    out = subprocess.run([str(EXIM), "-C", "/dev/null", "-bV"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"Exim version (\S+)", out)
    return match.group(1) if match else "unknown"


TRANSPORT_FOR_KIND = {
    "plain": "smtp_require_tls",  # the server offers no STARTTLS, we insist on TLS
    "require-starttls": "smtp_no_tls",  # the server insists on STARTTLS, we never use TLS
    "badcert": "smtp_verify_tls",  # the server's certificate is self-signed, we verify it
}


# The smtp transports differ only in their TLS policy; the rest keeps each test quick.
TRANSPORT_OPTIONS = {
    "remote_smtp": ["data_timeout = 20s"],
    "smtp_require_tls": ["hosts_require_tls = *"],
    "smtp_no_tls": ["hosts_avoid_tls = *"],
    "smtp_verify_tls": ["hosts_require_tls = *", "tls_verify_hosts = *", "tls_verify_certificates = system"],
}


def _transports() -> str:
    common = ["driver = smtp", "allow_localhost", "multi_domain = false", "connection_max_messages = 1"]
    common += ["connect_timeout = 3s", "command_timeout = 5s"]
    return "\n".join(
        f"{name}:\n" + "".join(f"  {option}\n" for option in common + extra)
        for name, extra in TRANSPORT_OPTIONS.items()
    )


def exim_conf(folder: Path, port: int, relay_domains: list[str]) -> str:
    routes, transports = folder / "routes", folder / "transports"
    return f"""\
# whyfailed test rig: a throwaway Exim that relays to scripted servers on 127.0.0.1.
primary_hostname = mail.rig.test
qualify_domain = rig.test
exim_path = {EXIM}
spool_directory = {folder / "spool"}
log_file_path = {folder / "log"}/%slog
pid_file_path = {folder / "exim.pid"}
daemon_smtp_ports = {port}
local_interfaces = {LOOPBACK}
disable_ipv6 = true
keep_environment =
never_users = root
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
delay_warning =
ignore_bounce_errors_after = 2d
timeout_frozen_after = 7d
queue_run_max = 5

domainlist relay_to_domains = {" : ".join(relay_domains)}

acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  accept  domains = +relay_to_domains
  deny    message = relay not permitted

begin routers

rig_routes:
  driver = manualroute
  domains = lsearch;{routes}
  route_data = ${{lookup{{$domain}}lsearch{{{routes}}}}}
  transport = ${{lookup{{$domain}}lsearch{{{transports}}}{{$value}}{{remote_smtp}}}}
  self = send
  no_more

dnslookup:
  driver = dnslookup
  transport = remote_smtp
  no_more

begin transports

{_transports()}
begin retry

{EXPIRE_DOMAIN}  *  F,4s,1s
*                *  F,1h,2s

begin rewrite
"""


class EximInstance:
    def __init__(self, folder: Path, world: World):
        self.folder = folder
        self.world = world
        self.conf = TRUSTED_CONF if trusted_conf_available() else folder / "exim.conf"
        self._lock = None
        self.logdir = folder / "log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> None:
        for sub in ("spool", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        for path in (self.folder, *self.folder.parents):
            if path == Path(path.anchor) or path.stat().st_mode & 0o005 == 0o005:
                break
            path.chmod(path.stat().st_mode | 0o755)
        for sub in ("spool", "log"):
            shutil.chown(self.folder / sub, user=EXIM_USER, group=EXIM_USER)
            (self.folder / sub).chmod(0o750)
        routes, transports = [], []
        for domain, kind in DOMAINS.items():
            if domain not in self.world.ports:
                continue  # routed by DNS
            routes.append(f"{domain}: {LOOPBACK}::{self.world.ports[domain]}\n")
            if kind in TRANSPORT_FOR_KIND:
                transports.append(f"{domain}: {TRANSPORT_FOR_KIND[kind]}\n")
        (self.folder / "routes").write_text("".join(routes))
        (self.folder / "transports").write_text("".join(transports))
        if self.conf == TRUSTED_CONF:  # one rig at a time uses the fixed path
            self._lock = open(TRUSTED_CONF.parent / "lock", "w")
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.conf.write_text(exim_conf(self.folder, self.port, list(DOMAINS)))
        self.conf.chmod(0o644)
        shutil.copy(self.conf, self.folder / "exim.conf.used")

    def exim(self, *args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        command = self.world.wrap([str(EXIM), "-C", str(self.conf), *args])
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)

    def start(self) -> None:
        self.write_config()
        checked = self.exim("-bV")
        if checked.returncode != 0:
            raise RuntimeError(f"exim rejects the rig configuration: {checked.stdout}{checked.stderr}")
        command = self.world.wrap([str(EXIM), "-C", str(self.conf), "-bdf", "-q5s", "-oX", str(self.port)])
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=open(self.folder / "daemon.out", "wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exim daemon exited: {(self.folder / 'daemon.out').read_text(errors='replace')}"
                                   f"{self.reject_log()}{self.panic_log()}")  # fmt: skip
            with contextlib.suppress(OSError), smtplib.SMTP(LOOPBACK, self.port, timeout=5) as probe:
                probe.noop()
                return
            time.sleep(0.3)
        raise RuntimeError("exim did not start listening within 30s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        # Queue runners and deliveries the daemon forked outlive it: let them finish before the
        # scripted servers go away, or their last attempts would log the servers' shutdown.
        deadline = time.monotonic() + 30
        while self._our_processes() and time.monotonic() < deadline:
            time.sleep(0.3)
        for pid in self._our_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _our_processes(self) -> list[int]:
        """Exim processes running with this instance's configuration file."""
        pids = []
        needle = str(self.conf).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in argv and any(arg.endswith(b"exim4") for arg in argv[:1]):
                pids.append(int(entry.name))
        return pids

    def _read(self, name: str) -> str:
        path = self.logdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def main_log(self) -> str:
        return self._read("mainlog")

    def reject_log(self) -> str:
        return self._read("rejectlog")

    def panic_log(self) -> str:
        return self._read("paniclog")


def _done(log: str, sent: Sent, rcpt: str, want: str) -> bool:
    r = re.escape(rcpt)
    if sent.queue_id is None:
        return re.search(rf"rejected RCPT <{r}>", log) is not None
    qid = re.escape(sent.queue_id)
    pattern = {
        "delivered": rf"{qid} [=-]> {r} ",
        "bounced": rf"{qid} \*\* {r}[ :]",
        "deferred": rf"{qid} == {r}[ :]",
        "expired": rf"{qid} \*\* {r}\b.*retry timeout exceeded",
    }[want]
    return re.search(pattern, log) is not None


def run_exim(folder: Path, expected_status: dict[str, str]) -> Capture:
    """Run the whole scenario against a fresh Exim daemon; returns the captured logs."""

    def drive(world: World, instance: EximInstance, capture: Capture) -> None:
        pending = submit_scenario(instance.port, world, capture, expected_status)
        left = wait_for(lambda: instance.main_log() + instance.reject_log(), _done, pending, limit=120)
        if left:
            capture.problems.append(f"no final status within 120s for {[r for _, r, _ in left]}")
        # Let the bounce notices to the sender go out (bounded).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log = instance.main_log()
            bounces = re.findall(r"(\S+) <= <> R=", log)
            if all(re.search(rf"{re.escape(b)} => {re.escape(SENDER)} ", log) for b in bounces):
                break
            time.sleep(0.5)

    def collect(world: World, instance: EximInstance, capture: Capture) -> None:
        capture.main_log = instance.main_log()
        capture.reject_log = instance.reject_log()
        capture.transcript = world.transcript() + "\n" + instance.panic_log()

    make = lambda world: EximInstance(folder / "exim", world)  # noqa: E731
    return run_rig(Capture("exim", exim_version(), ""), folder, make, drive, collect)


if __name__ == "__main__":  # pragma: no cover - python -m tests.mta.exim_rig
    run_by_hand("exim", run_exim)
