"""Write a synthetic Postfix mail.log.

`generate_mix` (the default) writes what a busy MX and submission relay logs, interleaved in
time the way the daemons write it: smtpd connect/disconnect, TLS setup, `client=` (some with
SASL), cleanup `message-id=`, qmgr `from=`, smtp/lmtp/local/virtual `status=sent|deferred|
bounced` (greylisting, timeouts, unknown users, full mailboxes, blocklists, no MX), retries of
deferred mail minutes later, expiries, bounce notifications and the bounce's own delivery,
`removed`, NOQUEUE rejects, scanners that lose the connection after AUTH, SASL failures,
`hostname ... does not resolve` warnings, anvil and scache statistics, and other programs
(dovecot, opendkim) that share mail.log. About one line in seven is a delivery status.

`generate` writes the old uniform five-line messages (one status line per five lines): the
tests count on that shape.

    python benchmarks/generate_postfix_log.py --lines 1000000 --out /tmp/postfix-1M.log
"""

from __future__ import annotations

import argparse
import heapq
import random
from datetime import datetime, timedelta

OUTCOMES = [
    (70, "sent", "2.0.0", "250 2.0.0 Ok: queued as {qid2}"),
    (
        8,
        "deferred",
        "4.2.0",
        "host {mx}[{ip}] said: 450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, "
        "see https://postgrey.example.net/ (in reply to RCPT TO command)",
    ),
    (
        6,
        "bounced",
        "5.1.1",
        "host {mx}[{ip}] said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown "
        "in virtual mailbox table (in reply to RCPT TO command)",
    ),
    (5, "deferred", "4.4.1", "connect to {mx}[{ip}]:25: Connection timed out"),
    (4, "bounced", "5.2.2", "host {mx}[{ip}] said: 552 5.2.2 <{rcpt}>: Mailbox full (in reply to RCPT TO command)"),
    (
        4,
        "bounced",
        "5.7.1",
        "host {mx}[{ip}] said: 554 5.7.1 Service unavailable; Client host [192.0.2.10] "
        "blocked using zen.spamhaus.org (in reply to RCPT TO command)",
    ),
    (
        3,
        "bounced",
        "5.4.4",
        "Host or domain name not found. Name service error for name={domain} type=MX: Host not found",
    ),
]
WEIGHTS = [w for w, *_ in OUTCOMES]


def queue_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(10))


def _stamp(clock: datetime) -> str:
    return f"{clock:%b} {clock.day:2d} {clock:%H:%M:%S}"


def generate(lines: int, seed: int = 7):
    """Uniform messages of five lines (client, message-id, from, status, removed)."""
    rng = random.Random(seed)
    clock = datetime(2026, 11, 1, 0, 0, 0)
    written = 0
    while written < lines:
        clock += timedelta(seconds=rng.randint(0, 3))
        stamp = _stamp(clock)
        qid = queue_id(rng)
        user = f"user{rng.randint(1, 50000)}"
        domain = f"dest{rng.randint(1, 2000)}.example"
        rcpt = f"{user}@{domain}"
        sender = f"sender{rng.randint(1, 500)}@example.com"
        mx, ip = f"mx.{domain}", f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        weight, status, dsn, text = rng.choices(OUTCOMES, weights=WEIGHTS)[0]
        detail = text.format(qid2=queue_id(rng), mx=mx, ip=ip, rcpt=rcpt, domain=domain)
        relay = "none" if dsn in ("4.4.1", "5.4.4") else f"{mx}[{ip}]:25"
        yield f"{stamp} mx1 postfix/smtpd[{rng.randint(100, 9999)}]: {qid}: client=relay.example.com[192.0.2.5]"
        pid, size, serial = rng.randint(100, 9999), rng.randint(800, 90000), rng.randint(1, 10**9)
        yield f"{stamp} mx1 postfix/cleanup[{pid}]: {qid}: message-id=<{qid}.{serial}@example.com>"
        yield f"{stamp} mx1 postfix/qmgr[980]: {qid}: from=<{sender}>, size={size}, nrcpt=1 (queue active)"
        yield (
            f"{stamp} mx1 postfix/smtp[{rng.randint(100, 9999)}]: {qid}: to=<{rcpt}>, relay={relay}, "
            f"delay={rng.uniform(0.1, 9):.2f}, delays=0.01/0/0.5/0.3, dsn={dsn}, status={status} ({detail})"
        )
        yield f"{stamp} mx1 postfix/qmgr[980]: {qid}: removed"
        written += 5


# --- the realistic mix ------------------------------------------------------------------

HOST = "mx1"
TLS = (
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits)"
)
# Outbound failures: (weight, status, dsn, text, retried later?)
OUT_FAILURES = [
    (
        30,
        "deferred",
        "4.2.0",
        "host {mx}[{ip}] said: 450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, "
        "see https://postgrey.example.net/ (in reply to RCPT TO command)",
    ),
    (12, "deferred", "4.4.1", "connect to {mx}[{ip}]:25: Connection timed out"),
    (
        20,
        "bounced",
        "5.1.1",
        "host {mx}[{ip}] said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown "
        "in virtual mailbox table (in reply to RCPT TO command)",
    ),
    (10, "bounced", "5.2.2", "host {mx}[{ip}] said: 552 5.2.2 <{rcpt}>: Mailbox full (in reply to RCPT TO command)"),
    (
        10,
        "bounced",
        "5.7.1",
        "host {mx}[{ip}] said: 554 5.7.1 Service unavailable; Client host [203.0.113.10] "
        "blocked using zen.spamhaus.org (in reply to RCPT TO command)",
    ),
    (
        8,
        "bounced",
        "5.4.4",
        "Host or domain name not found. Name service error for name={domain} type=MX: Host not found",
    ),
    (
        6,
        "deferred",
        "4.7.0",
        "host {mx}[{ip}] said: 421 4.7.0 Try again later, closing connection. (in reply to end of DATA command)",
    ),
    (
        4,
        "bounced",
        "5.7.26",
        "host {mx}[{ip}] said: 550 5.7.26 This mail is unauthenticated, which poses a security risk to the "
        "sender and Gmail users, and has been blocked. (in reply to end of DATA command)",
    ),
]
NOQUEUE_REJECTS = [
    "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org",
    "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see https://postgrey.example.net/",
    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
    "554 5.7.1 <{rcpt}>: Relay access denied",
    "450 4.7.1 Client host rejected: cannot find your hostname, [{ip}]",
]


class _Mix:
    """One generator's state: the clock, a heap of lines due later, and counters."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.clock = datetime(2026, 11, 1, 0, 0, 0)
        self.due: list[tuple[float, int, str]] = []
        self.serial = 0

    def at(self, seconds_later: float, program: str, pid: int, message: str) -> None:
        when = self.clock + timedelta(seconds=seconds_later)
        self.serial += 1
        heapq.heappush(self.due, (when.timestamp(), self.serial, f"{_stamp(when)} {HOST} {program}[{pid}]: {message}"))

    def pid(self) -> int:
        return self.rng.randint(1000, 65000)

    def ip(self, net: str = "198.51") -> str:
        return f"{net}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"

    def qid(self) -> str:
        return queue_id(self.rng)

    # --- scenarios ---------------------------------------------------------------------

    def _smtpd_session(self, client: str, sasl: str, t: float) -> tuple[str, int, float]:
        """connect, TLS, client=, cleanup (qmgr and disconnect are the caller's): (queue id, pid, time)."""
        rng, pid, qid = self.rng, self.pid(), self.qid()
        self.at(t, "postfix/smtpd", pid, f"connect from {client}")
        if rng.random() < 0.7:
            self.at(t + 0.1, "postfix/smtpd", pid, f"Anonymous TLS connection established from {client}: {TLS}")
        self.at(t + 0.3, "postfix/smtpd", pid, f"{qid}: client={client}{sasl}")
        serial = rng.randint(1, 10**12)
        self.at(t + 0.4, "postfix/cleanup", self.pid(), f"{qid}: message-id=<{serial}.{qid}@mail.example.com>")
        if rng.random() < 0.5:
            self.at(t + 0.45, "opendkim", 712, f"{qid}: DKIM-Signature field added (s=mail, d=example.com)")
        return qid, pid, t + 0.5

    def _qmgr_from(self, qid: str, sender: str, recipients: int, t: float, size: int) -> None:
        self.at(t, "postfix/qmgr", 980, f"{qid}: from=<{sender}>, size={size}, nrcpt={recipients} (queue active)")

    def _status(self, agent: str, qid: str, rcpt: str, relay: str, dsn: str, status: str, text: str, t: float):
        delay = self.rng.uniform(0.1, 9)
        self.at(
            t,
            f"postfix/{agent}",
            self.pid(),
            f"{qid}: to=<{rcpt}>, relay={relay}, delay={delay:.2f}, delays=0.05/0.01/0.3/0.2, dsn={dsn}, "
            f"status={status} ({text})",
        )

    def inbound(self) -> None:
        """Mail from the internet to a local mailbox (lmtp to dovecot, or local/virtual)."""
        rng = self.rng
        client = f"mail-{rng.randint(1, 999)}.sender{rng.randint(1, 3000)}.example[{self.ip('203.0')}]"
        qid, pid, t = self._smtpd_session(client, "", 0)
        rcpt = f"staff{rng.randint(1, 400)}@example.com"
        self._qmgr_from(qid, f"news{rng.randint(1, 9000)}@sender{rng.randint(1, 3000)}.example", 1, t, 4200)
        self.at(
            t + 0.1,
            "postfix/smtpd",
            pid,
            f"disconnect from {client} ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7",
        )
        agent = rng.choices(["lmtp", "local", "virtual"], weights=[6, 2, 2])[0]
        relay = {"lmtp": "mail.example.com[private/dovecot-lmtp]", "local": "local", "virtual": "virtual"}[agent]
        if rng.random() < 0.03:
            text = (
                "Mailbox full" if agent != "lmtp" else "host mail.example.com[private/dovecot-lmtp] said: 552 5.2.2 <"
            )
            text = f"{text}{rcpt}> Quota exceeded (mailbox for user is full) (in reply to end of DATA command)"
            self._status(agent, qid, rcpt, relay, "5.2.2", "bounced", text, t + 0.6)
            self._bounce(qid, "news@sender.example", t + 0.7)
        else:
            text = {
                "lmtp": f"250 2.0.0 <{rcpt}> 8GkYBqD0aGXjBQAA Saved",
                "local": "delivered to mailbox",
                "virtual": "delivered to maildir",
            }[agent]
            self._status(agent, qid, rcpt, relay, "2.0.0", "sent", text, t + 0.6)
        self.at(t + 0.8, "postfix/qmgr", 980, f"{qid}: removed")
        if agent == "lmtp" and rng.random() < 0.5:
            self.at(
                t + 0.7,
                "dovecot",
                2201,
                f"lmtp({rcpt.split('@')[0]})<{rng.randint(1, 99999)}>: "
                f"msgid=<{qid}@sender.example>: saved mail to INBOX",
            )

    def outbound(self) -> None:
        """Mail our users submit (SASL), relayed to remote MXs: mostly sent, some failures,
        deferrals retried later (then sent, bounced, or expired)."""
        rng = self.rng
        user = f"user{rng.randint(1, 5000)}"
        client = f"client-{rng.randint(1, 200)}.dsl.example.net[{self.ip('192.0')}]"
        nrcpt = rng.choices([1, 2, 3], weights=[80, 15, 5])[0]
        qid, pid, t = self._smtpd_session(client, f", sasl_method=PLAIN, sasl_username={user}", 0)
        sender = f"{user}@example.com"
        self._qmgr_from(qid, sender, nrcpt, t, rng.randint(800, 900000))
        self.at(
            t + 0.1,
            "postfix/smtpd",
            pid,
            f"disconnect from {client} ehlo=2 starttls=1 auth=1 mail=1 rcpt={nrcpt} data=1 quit=1 commands={6 + nrcpt}",
        )
        bounced, last = False, t + 1
        for n in range(nrcpt):
            domain = f"dest{rng.randint(1, 5000)}.example"
            rcpt = f"{rng.choice(['info', 'sales', 'j.doe', 'x'])}{rng.randint(1, 20000)}@{domain}"
            mx, ip = f"mx{rng.randint(1, 3)}.{domain}", self.ip()
            when = t + 0.5 + n * 0.2
            if rng.random() < 0.82:
                self.at(
                    when - 0.1,
                    "postfix/smtp",
                    self.pid(),
                    f"Trusted TLS connection established to {mx}[{ip}]:25: {TLS}",
                )
                self._status(
                    "smtp", qid, rcpt, f"{mx}[{ip}]:25", "2.0.0", "sent", f"250 2.0.0 Ok: queued as {self.qid()}", when
                )
                continue
            _, status, dsn, text = rng.choices(OUT_FAILURES, weights=[w for w, *_ in OUT_FAILURES])[0]
            text = text.format(mx=mx, ip=ip, rcpt=rcpt, domain=domain)
            relay = "none" if dsn in ("4.4.1", "5.4.4") else f"{mx}[{ip}]:25"
            if dsn == "4.4.1":
                self.at(when - 0.05, "postfix/smtp", 4000 + n, f"connect to {mx}[{ip}]:25: Connection timed out")
            self._status("smtp", qid, rcpt, relay, dsn, status, text, when)
            if status == "bounced":
                bounced = True
            else:
                failed, retried = self._retry(qid, sender, rcpt, mx, ip, relay, dsn, text, when)
                bounced, last = bounced or failed, max(last, retried)
        if bounced:
            self._bounce(qid, sender, last + 0.5)
        self.at(last + 1, "postfix/qmgr", 980, f"{qid}: removed")

    def _retry(self, qid, sender, rcpt, mx, ip, relay, dsn, text, when) -> tuple[bool, float]:
        """Deferred mail is tried again later: usually it goes through, sometimes it expires."""
        rng = self.rng
        later = when + rng.randint(300, 1800)
        self._qmgr_from(qid, sender, 1, later - 0.5, 2000)
        fate = rng.random()
        if fate < 0.85:
            self._status(
                "smtp", qid, rcpt, f"{mx}[{ip}]:25", "2.0.0", "sent", f"250 2.0.0 Ok: queued as {self.qid()}", later
            )
            return False, later
        if fate < 0.95:
            self._status("smtp", qid, rcpt, relay, dsn, "deferred", text, later)
            self.at(later + 1, "postfix/qmgr", 980, f"{qid}: from=<{sender}>, status=expired, returned to sender")
            return True, later + 1
        self._status(
            "smtp",
            qid,
            rcpt,
            relay,
            "5.1.1",
            "bounced",
            f"host {mx}[{ip}] said: 550 5.1.1 <{rcpt}>: User unknown (in reply to RCPT TO command)",
            later,
        )
        return True, later

    def _bounce(self, qid: str, sender: str, t: float) -> None:
        """The bounce daemon's notification and the delivery of the bounce itself."""
        new = self.qid()
        self.at(t, "postfix/cleanup", self.pid(), f"{new}: message-id=<20261101000000.{new}@mx1.example.com>")
        self.at(t + 0.01, "postfix/qmgr", 980, f"{new}: from=<>, size=3120, nrcpt=1 (queue active)")
        self.at(t + 0.02, "postfix/bounce", self.pid(), f"{qid}: sender non-delivery notification: {new}")
        if sender.endswith("@example.com"):
            self._status("local", new, sender, "local", "2.0.0", "sent", "delivered to mailbox", t + 0.1)
        else:
            mx, ip = "mx.sender.example", self.ip()
            self._status("smtp", new, sender, f"{mx}[{ip}]:25", "2.0.0", "sent", "250 2.0.0 Ok", t + 0.1)
        self.at(t + 0.2, "postfix/qmgr", 980, f"{new}: removed")

    def rejected(self) -> None:
        """A client refused at RCPT (NOQUEUE): blocklisted, greylisted, unknown user, relaying."""
        rng = self.rng
        ip = self.ip("203.0")
        client = f"{rng.choice(['unknown', f'host{rng.randint(1, 999)}.isp.example'])}[{ip}]"
        pid = self.pid()
        rcpt = f"{rng.choice(['staff', 'admin', 'nobody'])}{rng.randint(1, 900)}@example.com"
        text = rng.choice(NOQUEUE_REJECTS).format(ip=ip, rcpt=rcpt)
        self.at(0, "postfix/smtpd", pid, f"connect from {client}")
        if client.startswith("unknown") and rng.random() < 0.5:
            self.at(
                0.05,
                "postfix/smtpd",
                pid,
                f"warning: hostname host-{ip.replace('.', '-')}.isp.example "
                f"does not resolve to address {ip}: Name or service not known",
            )
        self.at(
            0.2,
            "postfix/smtpd",
            pid,
            f"NOQUEUE: reject: RCPT from {client}: {text}; "
            f"from=<spam{rng.randint(1, 999)}@bulk.example> to=<{rcpt}> proto=ESMTP helo=<{client.split('[')[0]}>",
        )
        self.at(0.3, "postfix/smtpd", pid, f"disconnect from {client} ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4")

    def scanner(self) -> None:
        """Bots: connect, fail SASL or drop the connection, disconnect."""
        rng = self.rng
        ip = self.ip("45.0")
        client = f"unknown[{ip}]"
        pid = self.pid()
        self.at(0, "postfix/smtpd", pid, f"connect from {client}")
        if rng.random() < 0.5:
            self.at(1, "postfix/smtpd", pid, f"warning: {client}: SASL LOGIN authentication failed: UGFzc3dvcmQ6")
            self.at(1.1, "postfix/smtpd", pid, f"lost connection after AUTH from {client}")
        else:
            self.at(
                1,
                "postfix/smtpd",
                pid,
                f"lost connection after {rng.choice(['CONNECT', 'EHLO', 'STARTTLS'])} from {client}",
            )
        self.at(1.2, "postfix/smtpd", pid, f"disconnect from {client} ehlo=1 auth=0/1 commands=1/2")

    def background(self) -> None:
        """Other programs and daemon statistics that share mail.log."""
        rng = self.rng
        pick = rng.random()
        if pick < 0.55:
            user = f"user{rng.randint(1, 5000)}"
            self.at(
                0,
                "dovecot",
                2201,
                f"imap-login: Login: user=<{user}@example.com>, method=PLAIN, "
                f"rip={self.ip('192.0')}, lip=203.0.113.10, mpid={self.pid()}, TLS, session=<{self.qid()}>",
            )
        elif pick < 0.8:
            self.at(
                0,
                "dovecot",
                2201,
                f"imap(user{rng.randint(1, 5000)}@example.com)<{self.pid()}><x>: "
                "Disconnected: Logged out in=120 out=4410 deleted=0 expunged=0 trashed=0 hdr_count=0",
            )
        elif pick < 0.93:
            ip = self.ip("45.0")
            self.at(
                0,
                "postfix/anvil",
                1201,
                f"statistics: max connection rate 3/60s for (smtp:{ip}) at {_stamp(self.clock)}",
            )
            self.at(
                0, "postfix/anvil", 1201, f"statistics: max connection count 1 for (smtp:{ip}) at {_stamp(self.clock)}"
            )
        else:
            self.at(0, "postfix/scache", 1301, f"statistics: start interval {_stamp(self.clock)}")
            self.at(0, "postfix/scache", 1301, "statistics: domain lookup hits=4 miss=9 success=30%")

    SCENARIOS = ("outbound", "inbound", "rejected", "scanner", "background")
    WEIGHTS = (40, 25, 10, 10, 15)

    def lines(self, count: int):
        written = 0
        while written < count:
            self.clock += timedelta(seconds=self.rng.random() * 0.8)
            getattr(self, self.rng.choices(self.SCENARIOS, weights=self.WEIGHTS)[0])()
            now = self.clock.timestamp()
            while self.due and self.due[0][0] <= now and written < count:
                yield heapq.heappop(self.due)[2]
                written += 1
        # the lines due later than the last scenario are left out: the log simply ends there


def generate_mix(lines: int, seed: int = 7):
    """A realistic interleaved mail.log of exactly `lines` lines (see the module docstring)."""
    return _Mix(seed).lines(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--simple", action="store_true", help="the uniform five-line messages the tests use")
    args = parser.parse_args()
    lines = generate(args.lines, args.seed) if args.simple else generate_mix(args.lines, args.seed)
    with open(args.out, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    print(f"wrote {args.lines} lines to {args.out}")


if __name__ == "__main__":
    main()
