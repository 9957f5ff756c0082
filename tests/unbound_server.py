"""A real unbound resolver on 127.0.0.1 serving tests/fixtures/checks/zones, for every test of
live checks (bot/checks) and of the chat surfaces that run them. Nothing is sent anywhere but
127.0.0.1. The fixtures that start it live in tests/conftest.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import FIXTURES

ZONES = FIXTURES / "checks" / "zones"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


# What both resolvers share: loopback only, in the foreground, no chroot, no privileges dropped.
SERVER = """\
server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{folder}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
"""

UNBOUND_CONF = (
    SERVER
    + """\
  outgoing-range: 64
  module-config: "iterator"
  # Clients on 127.0.0.1 are served; the server's own outgoing queries come from 127.0.0.3
  # and are refused, which is how servfail.test gets its SERVFAIL (a lame delegation).
  access-control: 127.0.0.0/8 allow
  access-control: 127.0.0.3/32 refuse
  outgoing-interface: 127.0.0.3
  do-not-query-localhost: no
  local-zone: "2.0.192.in-addr.arpa." nodefault
  local-zone: "8.b.d.0.1.0.0.2.ip6.arpa." nodefault
  # A name whose queries are dropped: the client sees a timeout.
  local-zone: "timeout.example." deny
  local-zone: "servfail.test." transparent
  # The upstream canary ('. NS', which needs recursion to the root) is answered here, as a
  # resolver with a working upstream would: so timeouts and SERVFAILs above stay facts about
  # those domains. The offline resolver below has no such answer.
  local-zone: "." transparent
  local-data: ". 300 IN NS ns.example."
auth-zone:
  name: "example."
  zonefile: "{zones}/example.zone"
  for-upstream: yes
  for-downstream: no
  fallback-enabled: no
auth-zone:
  name: "2.0.192.in-addr.arpa."
  zonefile: "{zones}/2.0.192.in-addr.arpa.zone"
  for-upstream: yes
  for-downstream: no
  fallback-enabled: no
auth-zone:
  name: "8.b.d.0.1.0.0.2.ip6.arpa."
  zonefile: "{zones}/8.b.d.0.1.0.0.2.ip6.arpa.zone"
  for-upstream: yes
  for-downstream: no
  fallback-enabled: no
stub-zone:
  name: "servfail.test."
  stub-addr: 127.0.0.1@{port}
# Everything else goes to a closed port on loopback: never to the Internet.
stub-zone:
  name: "."
  stub-addr: 127.0.0.1@{dead}
"""
)


# A resolver that is up but has no way to the Internet: nothing served locally, and the root
# (so every name) stubbed to a closed port on loopback.
OFFLINE_CONF = (
    SERVER
    + """\
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  local-zone: "2.0.192.in-addr.arpa." nodefault
stub-zone:
  name: "."
  stub-addr: 127.0.0.1@{dead}
"""
)


def _answers(port: int) -> bool:
    import dns.message
    import dns.query

    try:
        dns.query.udp(dns.message.make_query("localhost.", "A"), "127.0.0.1", port=port, timeout=0.3)
        return True
    except Exception:
        return False


def start_unbound(tmp_path_factory, template: str):
    """Start unbound with TEMPLATE on a free loopback port; yields '127.0.0.1:PORT'."""
    if not os.path.exists(UNBOUND):
        missing("unbound is not installed (scripts/install-test-servers.sh installs it)")
    folder = tmp_path_factory.mktemp("unbound")
    port, dead = free_port(), free_port()
    conf = folder / "unbound.conf"
    conf.write_text(template.format(port=port, dead=dead, folder=folder, zones=ZONES.resolve()))
    log = open(folder / "unbound.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"unbound did not start: {(folder / 'unbound.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def missing(why: str) -> None:
    """A server the tests need is missing: skip on a developer's machine, fail in CI, where
    a skip would pass silently (.ci/run sets CI=true and installs every server)."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run these tests")
    pytest.skip(why)
