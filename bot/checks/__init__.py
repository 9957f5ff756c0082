"""Checked now: live DNS, reverse-DNS, SPF/DKIM/DMARC, blocklist and TLS checks that
confirm (or contradict) a diagnosis made from a log.

A log tells what happened then; these checks tell what is true now. Each check is a small
function that takes a `DnsClient` (bot/checks/dns.py) and a target and returns one or more
`CheckResult`s; bot/checks/run.py decides which checks apply to which diagnosis and runs
them concurrently, each with a short timeout. A check that cannot reach its resolver or
server says so ("could not check"), never guesses.

This package imports dnspython only when a check runs, so `whyfailed diagnose` without
`--check` does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What a check found, from the point of view of the person reading the report.
OK = "ok"  # the thing is fine now (the failure may have been temporary, or since fixed)
PROBLEM = "problem"  # the check confirms a problem that explains the failure
WARNING = "warning"  # not the cause by itself, but worth fixing
COULD_NOT_CHECK = "could-not-check"  # no answer: resolver or network unavailable, or not enough to go on
SKIPPED = "skipped"  # not run: it needs an explicit flag (tls: --check-tls)
STATUSES = (OK, PROBLEM, WARNING, COULD_NOT_CHECK, SKIPPED)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One thing checked now, about one target (a domain, an IP address, a host)."""

    check: str  # dns | reverse | dnsbl | spf | dmarc | dkim | tls
    target: str  # what was checked: example.org, 192.0.2.10, sel1._domainkey.example.org
    status: str  # one of STATUSES
    summary: str  # one sentence for a person
    facts: tuple[str, ...] = ()  # what was seen, one line each: "MX 10 mx1.example.org -> 192.0.2.25"
    data: dict = field(default_factory=dict)  # the same facts for programs (records, codes, counts)
    resolver: str | None = None  # the DNS resolver asked, as ip:port
    elapsed_ms: int | None = None

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "target": self.target,
            "status": self.status,
            "summary": self.summary,
            "facts": list(self.facts),
            "data": self.data,
            "resolver": self.resolver,
            "elapsed_ms": self.elapsed_ms,
        }


# Which checks confirm which diagnosis (bot/checks/run.py plans and runs them). Here, not in
# run.py, so renderers can offer "Check now" without importing dnspython.
CHECKS_FOR: dict[str, tuple[str, ...]] = {
    "dns-mx-failure": ("dns",),
    "dns-lookup-failed": ("dns",),
    "reverse-dns-missing": ("reverse", "dnsbl"),
    "blocked-reputation": ("reverse", "dnsbl"),
    "client-reverse-dns-missing": ("reverse", "dnsbl"),
    "client-blocklisted": ("reverse", "dnsbl"),
    "auth-spf-dkim-dmarc": ("auth",),
    "client-auth-spf-dkim-dmarc": ("auth",),
    "tls-failure": ("tls",),
}


def checkable(delivery) -> bool:
    """A live check could confirm DELIVERY's diagnosis, and none has run yet: where chat
    surfaces offer "Check now"."""
    return delivery.checks is None and delivery.diagnosis is not None and delivery.diagnosis.id in CHECKS_FOR


def could_not_check(check: str, target: str, why: str, resolver: str | None = None, **data) -> CheckResult:
    return CheckResult(check, target, COULD_NOT_CHECK, f"Could not check: {why}", data=data, resolver=resolver)


__all__ = [
    "CHECKS_FOR",
    "checkable",
    "CheckResult",
    "could_not_check",
    "OK",
    "PROBLEM",
    "WARNING",
    "COULD_NOT_CHECK",
    "SKIPPED",
    "STATUSES",
]
