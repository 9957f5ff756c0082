"""The recipient-domain check: can mail be routed to the domain now? MX, null MX
(RFC 7505), the MX hosts' addresses, or the implicit MX (RFC 5321 section 5.1)."""

from __future__ import annotations

import dns.name

from bot.checks import OK, PROBLEM, WARNING, CheckResult, could_not_check
from bot.checks.dns import DnsClient, Lookup, describe, timed, unreachable, upstream_down

MAX_MX_HOSTS = 5  # the MX hosts whose addresses we look up


@timed
def check_domain(client: DnsClient, domain: str) -> CheckResult:
    """Can mail be routed to DOMAIN now? MX, null MX, the MX hosts' addresses, or the
    implicit MX (the domain's own address) when there is no MX."""
    domain = domain.strip().rstrip(".").lower()
    if down := unreachable(client, "dns", domain):
        return down
    mx = client.query(domain, "MX")
    if mx.status == "nxdomain":
        return CheckResult(
            "dns",
            domain,
            PROBLEM,
            f"{domain} does not exist in DNS now (NXDOMAIN): no mail can be delivered to it. "
            "Check the address for a typo; if the domain is new or was renewed, its DNS may not be published yet.",
            facts=(f"MX {domain}: {describe(mx)}",),
            data={"mx": "nxdomain"},
        )
    if mx.status in ("servfail", "timeout", "refused", "deadline", "error"):
        return _lookup_failed(client, domain, mx)
    if mx.status == "ok":
        return _with_mx(client, domain, mx)
    return _without_mx(client, domain)


def _lookup_failed(client: DnsClient, domain: str, mx: Lookup) -> CheckResult:
    if mx.status == "refused":
        return could_not_check("dns", domain, f"the resolver {client.label} refused the query", mx="refused")
    if offline := upstream_down(client, "dns", domain, mx):
        return offline
    if mx.status in ("error", "deadline"):
        return could_not_check("dns", domain, mx.detail or describe(mx), mx=mx.status)
    if mx.status == "timeout":
        summary = (
            f"The MX lookup for {domain} got no answer within {client.timeout:g} s, though the resolver works: "
            "the domain's nameservers are not answering (or are very slow). Senders will retry; "
            "if it lasts, the domain's owner must fix their DNS."
        )
    else:
        summary = (
            f"The MX lookup for {domain} fails now with SERVFAIL: the domain's nameservers are broken, "
            "unreachable or fail DNSSEC validation. Senders will retry; if it lasts, the domain's owner must fix it."
        )
    return CheckResult("dns", domain, PROBLEM, summary, facts=(f"MX {domain}: {describe(mx)}",), data={"mx": mx.status})


def _with_mx(client: DnsClient, domain: str, mx: Lookup) -> CheckResult:
    records = sorted(mx.records, key=lambda r: (r.preference, r.exchange.to_text()))
    if any(r.exchange == dns.name.root for r in records):
        null_only = len(records) == 1 and records[0].preference == 0
        summary = (
            f"{domain} publishes a null MX (RFC 7505): it says it accepts no email at all. "
            "The address is wrong, or the domain's owner does not receive mail there."
            if null_only
            else f"{domain} mixes a null MX ('.') with other MX records, which RFC 7505 forbids: "
            "some senders will refuse to deliver. The domain's owner must remove one or the other."
        )
        return CheckResult(
            "dns",
            domain,
            PROBLEM,
            summary,
            facts=tuple(f"MX {r.preference} {r.exchange.to_text()}" for r in records),
            data={"mx": [r.to_text() for r in records], "null_mx": True},
        )
    hosts = [r.exchange.to_text().rstrip(".") for r in records[:MAX_MX_HOSTS]]
    lookups = client.query_many((h, t) for h in hosts for t in ("A", "AAAA"))
    facts, reachable, data_hosts = [], 0, []
    for i, (record, host) in enumerate(zip(records, hosts, strict=False)):
        a, aaaa = lookups[2 * i], lookups[2 * i + 1]
        addresses = a.texts() + aaaa.texts()
        reachable += bool(addresses)
        shown = ", ".join(addresses) if addresses else f"no address ({describe(a)})"
        facts.append(f"MX {record.preference} {host} -> {shown}")
        data_hosts.append({"preference": record.preference, "host": host, "addresses": addresses, "a": a.status})
    if len(records) > MAX_MX_HOSTS:
        facts.append(f"... and {len(records) - MAX_MX_HOSTS} more MX records (not looked up)")
    data = {"mx": data_hosts}
    if reachable:
        return CheckResult(
            "dns",
            domain,
            OK,
            f"{domain} has MX records now, and {reachable} of {len(hosts)} MX hosts have an address: "
            "mail can be routed. The failure in the log was temporary or has since been fixed; "
            "a deferred message will go on its next retry.",
            facts=tuple(facts),
            data=data,
        )
    status = PROBLEM if all(lk.answered for lk in lookups) else WARNING
    return CheckResult(
        "dns",
        domain,
        status,
        f"{domain} has MX records, but none of its MX hosts has an address now: mail cannot be delivered. "
        "The domain's owner must fix the MX host names or their A/AAAA records.",
        facts=tuple(facts),
        data=data,
    )


def _without_mx(client: DnsClient, domain: str) -> CheckResult:
    a, aaaa = client.query_many([(domain, "A"), (domain, "AAAA")])
    addresses = a.texts() + aaaa.texts()
    facts = (f"MX {domain}: none", f"A/AAAA {domain}: {', '.join(addresses) or describe(a)}")
    if addresses:
        return CheckResult(
            "dns",
            domain,
            WARNING,
            f"{domain} has no MX record, only an address ({', '.join(addresses)}): senders fall back to it "
            "(RFC 5321 section 5.1), but many refuse or the host may not run a mail server. "
            "The domain's owner should publish an MX record.",
            facts=facts,
            data={"mx": [], "addresses": addresses},
        )
    return CheckResult(
        "dns",
        domain,
        PROBLEM,
        f"{domain} exists but has no MX record and no address: no mail can be delivered to it.",
        facts=facts,
        data={"mx": [], "addresses": []},
    )
