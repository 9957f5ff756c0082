"""Scripted "remote" mail servers on 127.0.0.1 for the MTA rig.

* ScriptedServer: an aiosmtpd server that answers per recipient local part, the way real
  receiving servers word their replies (modelled on Postfix, postgrey and Dovecot).
  Modes: "scripted" (the per-local-part behaviour below), "require-starttls" (offers
  STARTTLS and refuses MAIL FROM without it), "tls" (offers STARTTLS with a self-signed
  certificate, then accepts everything).
* HangServer: accepts TCP connections and never sends a greeting (timeouts).
* closed_port(): a loopback port with nobody listening (connection refused).
* FakeResolver: a tiny DNS server on 127.0.0.1:53 answering NXDOMAIN or SERVFAIL, so the
  MTAs' real resolver code fails for real without any traffic leaving the machine (the MTAs
  run in a mount namespace whose /etc/resolv.conf names 127.0.0.1).

Local parts of the "scripted" mode (first matching prefix wins):
  ok*        250 at RCPT and at end of DATA
  nouser*    550 5.1.1 at RCPT (user unknown)
  fulltemp*  452 4.2.2 at RCPT (mailbox full, temporary)
  full*      552 5.2.2 at RCPT (mailbox full)
  grey*      450 4.7.1 at RCPT the first time (greylisted), 250 on retry
  blocked*   554 5.7.1 at RCPT (client blocked using zen.spamhaus.org)
  big*       250 at RCPT, 552 5.3.4 at end of DATA (message too large)
  anything else: accepted like ok*
"""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A loopback port with no listener: connecting to it is refused."""
    return free_port()


def make_self_signed_cert(folder: Path, common_name: str) -> tuple[Path, Path]:
    """A throwaway self-signed certificate (openssl CLI), for servers that offer STARTTLS."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{common_name}.crt", folder / f"{common_name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


# --- Replies (wording modelled on real servers) ------------------------------------------


def reply_for_rcpt(local: str, address: str, client_ip: str) -> str | None:
    """The RCPT reply for a scripted local part, or None to accept."""
    if local.startswith("nouser"):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
    if local.startswith("fulltemp"):
        return f"452 4.2.2 <{address}>: Recipient address rejected: Mailbox full, quota exceeded, try again later"
    if local.startswith("full"):
        return f"552 5.2.2 <{address}>: Recipient address rejected: Mailbox full, quota exceeded"
    if local.startswith("blocked"):
        return (
            f"554 5.7.1 Service unavailable; Client host [{client_ip}] blocked using zen.spamhaus.org; "
            f"https://www.spamhaus.org/query/ip/{client_ip}"
        )
    return None


GREYLIST_REPLY = (
    "450 4.7.1 <{address}>: Recipient address rejected: Greylisted, "
    "see http://postgrey.schweikert.ch/help/{domain}.html"
)
TOO_BIG_REPLY = "552 5.3.4 Message size exceeds fixed limit"
STARTTLS_REQUIRED_REPLY = "530 5.7.0 Must issue a STARTTLS command first"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool


@dataclass
class ScriptedHandler:
    mode: str = "scripted"
    greylist_seen: set[tuple[str, str]] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)  # what we answered, for debugging
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _note(self, text: str) -> None:
        with self.lock:
            self.transcript.append(f"{time.strftime('%H:%M:%S')} {text}")

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if self.mode == "require-starttls" and not session.ssl:
            self._note(f"MAIL FROM:<{address}> -> {STARTTLS_REQUIRED_REPLY}")
            return STARTTLS_REQUIRED_REPLY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        local, _, domain = address.rpartition("@")
        local = local.lower()
        client_ip = session.peer[0] if session.peer else LOOPBACK
        reply = None
        if self.mode == "scripted":
            reply = reply_for_rcpt(local, address, client_ip)
            if reply is None and local.startswith("grey"):
                key = (envelope.mail_from or "", address.lower())
                with self.lock:
                    first = key not in self.greylist_seen
                    self.greylist_seen.add(key)
                if first:
                    reply = GREYLIST_REPLY.format(address=address, domain=domain)
        if reply:
            self._note(f"RCPT TO:<{address}> -> {reply}")
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        self._note(f"RCPT TO:<{address}> -> 250")
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.mode == "scripted" and any(r.rpartition("@")[0].lower().startswith("big") for r in envelope.rcpt_tos):
            self._note(f"end of DATA for {envelope.rcpt_tos} -> {TOO_BIG_REPLY}")
            return TOO_BIG_REPLY
        queue_id = secrets.token_hex(5).upper()
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content or b""), bool(session.ssl))
            )
        self._note(f"end of DATA for {envelope.rcpt_tos} -> 250 queued as {queue_id}")
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def delivered_to(self) -> list[str]:
        with self.lock:
            return [rcpt for item in self.received for rcpt in item.rcpt_tos]


class _Controller(Controller):
    def __init__(self, handler, port: int, server_name: str, tls_context: ssl.SSLContext | None):
        super().__init__(handler, hostname=LOOPBACK, port=port, ready_timeout=10)
        self._server_name = server_name
        self._tls_context = tls_context

    def factory(self):
        return SMTP(
            self.handler,
            hostname=self._server_name,
            ident="ESMTP",
            tls_context=self._tls_context,
            require_starttls=False,  # the handler words the refusal itself
            data_size_limit=10 * 1024 * 1024,
            timeout=30,
        )


class ScriptedServer:
    """One scripted SMTP server on 127.0.0.1 and a random free port."""

    def __init__(
        self, mode: str = "scripted", server_name: str = "mx.remote.test", cert: tuple[Path, Path] | None = None
    ):
        self.mode = mode
        self.server_name = server_name
        self.handler = ScriptedHandler(mode=mode)
        context = None
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        if mode in ("require-starttls", "tls") and context is None:
            raise ValueError(f"mode {mode!r} needs a certificate")
        self.port = free_port()
        self._controller = _Controller(self.handler, self.port, server_name, context)

    def start(self) -> ScriptedServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._controller.stop()


class HangServer:
    """Accepts TCP connections on 127.0.0.1 and never says a word (no 220 greeting)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self.connections = 0
        self._thread = threading.Thread(target=self._run, name="hang-server", daemon=True)

    def start(self) -> HangServer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._sock, *self._clients], [], [], 0.2)
            for sock in readable:
                if sock is self._sock:
                    client, _ = self._sock.accept()
                    self._clients.append(client)
                    self.connections += 1
                else:  # the client gave up (or sent something): read and drop, close on EOF
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        self._clients.remove(sock)
                        sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in [*self._clients, self._sock]:
            with contextlib.suppress(OSError):
                sock.close()


class FakeResolver:
    """A minimal UDP DNS server: NXDOMAIN under some zones, SERVFAIL under others, REFUSED else.

    Only the header and question are parsed; answers carry no records. That is all an MTA's
    resolver needs to report "domain does not exist" or "try again".
    """

    def __init__(self, nxdomain: tuple[str, ...], servfail: tuple[str, ...], address: str = LOOPBACK, port: int = 53):
        self.nxdomain = tuple(z.lower().rstrip(".") for z in nxdomain)
        self.servfail = tuple(z.lower().rstrip(".") for z in servfail)
        self.address = address
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address, port))
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((address, port))
        self._tcp.listen(8)
        self.queries: list[tuple[str, int, int]] = []  # (name, qtype, rcode)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-resolver", daemon=True)

    def start(self) -> FakeResolver:
        self._thread.start()
        return self

    @staticmethod
    def _in_zone(name: str, zones: tuple[str, ...]) -> bool:
        return any(name == zone or name.endswith("." + zone) for zone in zones)

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", query[:6])
        labels, pos = [], 12
        while pos < len(query):
            length = query[pos]
            pos += 1
            if length == 0:
                break
            labels.append(query[pos : pos + length].decode("ascii", "replace"))
            pos += length
        question_end = pos + 4
        qtype = struct.unpack("!H", query[pos : pos + 2])[0] if pos + 2 <= len(query) else 0
        name = ".".join(labels).lower()
        if self._in_zone(name, self.nxdomain):
            rcode = 3
        elif self._in_zone(name, self.servfail):
            rcode = 2
        else:
            rcode = 5
        self.queries.append((name, qtype, rcode))
        rd = flags & 0x0100
        out_flags = 0x8000 | rd | 0x0080 | rcode  # QR, RD copied, RA, RCODE
        if rcode == 3:
            out_flags |= 0x0400  # AA: we are authoritative for the test zones
        header = struct.pack("!HHHHHH", qid, out_flags, min(qdcount, 1), 0, 0, 0)
        return header + query[12:question_end]

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._sock, self._tcp], [], [], 0.2)
            for sock in readable:
                if sock is self._sock:
                    try:
                        query, peer = self._sock.recvfrom(4096)
                    except OSError:
                        continue
                    reply = self.answer(query)
                    if reply:
                        self._sock.sendto(reply, peer)
                else:
                    self._serve_tcp()

    def _serve_tcp(self) -> None:
        try:
            conn, _ = self._tcp.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                size = struct.unpack("!H", conn.recv(2))[0]
                query = b""
                while len(query) < size:
                    chunk = conn.recv(size - len(query))
                    if not chunk:
                        return
                    query += chunk
                reply = self.answer(query)
                if reply:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except (OSError, struct.error):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in (self._sock, self._tcp):
            with contextlib.suppress(OSError):
                sock.close()


# --- The whole scripted world for one MTA run ------------------------------------------------


def namespace_works(resolv_conf: Path) -> bool:
    """Whether `unshare -m` plus a bind mount over /etc/resolv.conf works here (root, Linux)."""
    try:
        script = 'mount --bind "$0" /etc/resolv.conf && cat /etc/resolv.conf'
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, str(resolv_conf)], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout == resolv_conf.read_text()


def in_resolver_namespace(cmd: list[str], resolv_conf: Path) -> list[str]:
    """Wrap a command so that it (and every child) sees our resolv.conf, naming only 127.0.0.1."""
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && shift && exec "$@"',
            str(resolv_conf), "--", *cmd]  # fmt: skip


class World:
    """The scripted servers (one per test domain), the hang server, closed ports, the resolver."""

    def __init__(self, folder: Path, domains: dict[str, str]):
        self.folder = folder
        self.domains = dict(domains)
        self.ports: dict[str, int] = {}
        self.servers: dict[str, ScriptedServer] = {}
        self.hang: HangServer | None = None
        self.resolver: FakeResolver | None = None
        self.resolv_conf = folder / "resolv.conf"
        self.dns_ok = False
        self.dns_problem = ""

    def start(self) -> World:
        self.folder.mkdir(parents=True, exist_ok=True)
        cert = None
        for domain, kind in self.domains.items():
            if kind in ("scripted", "plain"):
                server = ScriptedServer("scripted", f"mx.{domain}")
            elif kind == "require-starttls":
                cert = cert or make_self_signed_cert(self.folder / "certs", "mx.tls-peer.test")
                server = ScriptedServer("require-starttls", f"mx.{domain}", cert)
            elif kind == "badcert":
                cert = cert or make_self_signed_cert(self.folder / "certs", "mx.tls-peer.test")
                server = ScriptedServer("tls", f"mx.{domain}", cert)
            elif kind == "hang":
                if self.hang is None:
                    self.hang = HangServer().start()
                self.ports[domain] = self.hang.port
                continue
            elif kind == "closed":
                self.ports[domain] = closed_port()
                continue
            else:  # nxdomain / servfail: routed by DNS
                continue
            self.servers[domain] = server.start()
            self.ports[domain] = server.port
        # The MTAs resolve through 127.0.0.1 only (inside their own mount namespace).
        self.resolv_conf.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        nx = tuple(d for d, k in self.domains.items() if k == "nxdomain")
        sf = tuple(d for d, k in self.domains.items() if k == "servfail")
        if not namespace_works(self.resolv_conf):
            self.dns_problem = "cannot give the MTA its own /etc/resolv.conf (unshare -m / mount --bind failed)"
        else:
            try:
                self.resolver = FakeResolver(nx, sf).start()
                self.dns_ok = True
            except OSError as error:
                self.dns_problem = f"cannot listen on 127.0.0.1:53 for the fake resolver: {error}"
        return self

    def wrap(self, cmd: list[str]) -> list[str]:
        """The command to start an MTA with; inside the resolver namespace when we have one."""
        return in_resolver_namespace(cmd, self.resolv_conf) if self.dns_ok else cmd

    def transcript(self) -> str:
        lines = []
        for domain, server in self.servers.items():
            lines += [f"[{domain}] {line}" for line in server.handler.transcript]
        if self.resolver:
            lines += [f"[dns] {name} type={qtype} rcode={rcode}" for name, qtype, rcode in self.resolver.queries]
        return "\n".join(lines)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.hang:
            self.hang.stop()
        if self.resolver:
            self.resolver.stop()
