"""What the rig sends and what should come of it, written from what the scripted servers do.

This table is the source of truth for tests/mta (with tests/fixtures/captured/expected.json,
written from it by `python -m tests.mta.capture`); it never comes from whyfailed's output,
so a parser or rule regression makes the tests fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SENDER = "rig-sender@sender.test"  # bounces (DSNs) go back here, to a scripted server that accepts
CLIENT_HELO = "client.rig.test"

# How each test domain is served. Kinds: scripted (per-local-part replies), plain (scripted
# replies but no STARTTLS offered; the MTA is told to require TLS for it), require-starttls
# (offers STARTTLS, refuses MAIL FROM without it; the MTA is told not to use TLS), badcert
# (offers STARTTLS with a self-signed certificate; the MTA is told to verify it), hang (TCP
# accepted, no greeting), closed (connection refused), nxdomain / servfail (no transport
# route: the MTA asks DNS, the fake resolver answers NXDOMAIN / SERVFAIL).
DOMAINS: dict[str, str] = {
    "remote.test": "scripted",
    "sender.test": "scripted",
    "tls.test": "plain",
    "starttls.test": "require-starttls",
    "badcert.test": "badcert",
    "hang.test": "hang",
    "refused.test": "closed",
    "expire.test": "closed",
    "no-such-domain.test": "nxdomain",
    "dns-broken.test": "servfail",
}
RELAY_DENIED_DOMAIN = "elsewhere.example"  # not ours to relay to: the MTA itself refuses it
DNS_DOMAINS = tuple(d for d, kind in DOMAINS.items() if kind in ("nxdomain", "servfail"))
EXPIRE_DOMAIN = "expire.test"

# One message per inner tuple; the MTA receives them over SMTP from 127.0.0.1.
MESSAGES: tuple[tuple[str, ...], ...] = (
    ("ok@remote.test",),
    ("nouser@remote.test",),
    ("full@remote.test",),
    ("fulltemp@remote.test",),
    ("grey@remote.test",),
    ("blocked@remote.test",),
    ("big@remote.test",),
    ("ok-multi@remote.test", "nouser-multi@remote.test"),
    ("ok@tls.test",),
    ("ok@starttls.test",),
    ("ok@badcert.test",),
    ("ok@hang.test",),
    ("ok@refused.test",),
    ("ok@expire.test",),
    ("someone@no-such-domain.test",),
    ("someone@dns-broken.test",),
    (f"someone@{RELAY_DENIED_DOMAIN}",),
)


@dataclass(frozen=True)
class Expect:
    status: str
    diagnosis: str
    stage: str | None = None  # asserted only where the scripted server fixes it
    reply_code: int | None = None
    enhanced_status: str | None = None
    related: tuple[str, ...] = ()  # ids that diagnosis.related must contain

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        if self.related:
            data["related"] = list(self.related)
        return data


_COMMON: dict[str, Expect] = {
    "ok@remote.test": Expect("delivered", "delivered"),
    "nouser@remote.test": Expect("bounced", "unknown-user", "rcpt", 550, "5.1.1"),
    "full@remote.test": Expect("bounced", "mailbox-full", "rcpt", 552, "5.2.2"),
    "fulltemp@remote.test": Expect("deferred", "mailbox-full", "rcpt", 452, "4.2.2"),
    "grey@remote.test": Expect("delivered", "delivered", related=("greylisted",)),
    "blocked@remote.test": Expect("bounced", "blocked-reputation", "rcpt", 554, "5.7.1"),
    "big@remote.test": Expect("bounced", "message-too-large", "end-of-data", 552, "5.3.4"),
    "ok-multi@remote.test": Expect("delivered", "delivered"),
    "nouser-multi@remote.test": Expect("bounced", "unknown-user", "rcpt", 550, "5.1.1"),
    "ok@tls.test": Expect("deferred", "tls-failure"),
    "ok@starttls.test": Expect("bounced", "tls-failure", "mail", 530, "5.7.0"),
    "ok@badcert.test": Expect("deferred", "tls-failure"),
    "ok@hang.test": Expect("deferred", "host-unreachable", "connect"),
    "ok@refused.test": Expect("deferred", "host-unreachable", "connect"),
    "ok@expire.test": Expect("expired", "expired-in-queue", related=("host-unreachable",)),
    "someone@no-such-domain.test": Expect("bounced", "dns-mx-failure"),
    "someone@dns-broken.test": Expect("deferred", "dns-lookup-failed"),
}

EXPECTED: dict[str, dict[str, Expect]] = {
    # Postfix's smtpd refuses relaying with 554 5.7.1 "Relay access denied" (NOQUEUE: reject).
    "postfix": {**_COMMON, f"someone@{RELAY_DENIED_DOMAIN}": Expect("rejected", "relay-denied", "rcpt", 554, "5.7.1")},
    # Exim's RCPT ACL refuses relaying ("rejected RCPT ...: relay not permitted"); its log line
    # carries no reply code (Exim sends 550), so none is asserted.
    "exim": {**_COMMON, f"someone@{RELAY_DENIED_DOMAIN}": Expect("rejected", "relay-denied", "rcpt")},
}

# Every delivery to the sender is a bounce notice (DSN) that the scripted server accepts.
SENDER_EXPECT = Expect("delivered", "delivered")


def expected_json() -> dict:
    return {
        "_about": (
            "Per captured log: recipient -> what must be diagnosed. Written by hand from what the "
            "scripted servers in tests/mta/remote_server.py answer (tests/mta/scenarios.py), never "
            "from whyfailed's output. The sender's entry applies to every bounce notice sent to it. "
            "For Exim the recipients are read from the main log; the reject log alone must give "
            "the relay rejection."
        ),
        **{
            mta: {"sender": SENDER, "recipients": {rcpt: exp.to_json() for rcpt, exp in table.items()},
                  "sender_deliveries": SENDER_EXPECT.to_json()}
            for mta, table in EXPECTED.items()
        },
    }  # fmt: skip
