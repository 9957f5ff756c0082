"""Reverse DNS of a sending IP: its PTR name, and whether that name resolves back to the
IP (forward-confirmed reverse DNS, "FCrDNS"), which Gmail, Microsoft and most receivers
require of a mail server."""

from __future__ import annotations

import ipaddress
import re

import dns.reversename

from bot.checks import OK, PROBLEM, WARNING, CheckResult, could_not_check
from bot.checks.dns import DnsClient, describe, timed, unreachable, upstream_down

MAX_PTR_NAMES = 3
# Names that look like an ISP's pool of dynamic or residential addresses.
_GENERIC = re.compile(r"(?:^|[.-])(?:dyn|dynamic|dhcp|pool|dsl|adsl|cable|ppp|dialup|client|customer|broadband)")


@timed
def check_reverse(client: DnsClient, ip: str) -> CheckResult:
    """PTR of IP, then A/AAAA of each PTR name: does one of them point back to IP?"""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return could_not_check("reverse", ip, f"'{ip}' is not an IP address")
    ip = address.compressed
    if down := unreachable(client, "reverse", ip):
        return down
    reverse_name = dns.reversename.from_address(ip).to_text()
    ptr = client.query(reverse_name, "PTR")
    if ptr.status in ("nxdomain", "nodata"):
        return _no_ptr(
            ip,
            reverse_name,
            ptr,
            f"{ip} has no reverse DNS (PTR) record now: receivers that require one will keep refusing it. "
            "Ask whoever owns the address (the hosting provider or ISP) to set a PTR to the server's host name.",
        )
    if ptr.status != "ok":
        if offline := upstream_down(client, "reverse", ip, ptr):
            return offline
        if ptr.status == "timeout" or ptr.status == "servfail":
            return _no_ptr(
                ip,
                reverse_name,
                ptr,
                f"The reverse DNS of {ip} does not work now ({describe(ptr)}): to a receiver this is the same "
                "as having no PTR. The address owner's reverse zone must be fixed.",
            )
        return could_not_check("reverse", ip, describe(ptr), ptr_status=ptr.status)
    names = [r.target.to_text().rstrip(".") for r in ptr.records][:MAX_PTR_NAMES]
    return _forward_confirmed(client, ip, names, "AAAA" if address.version == 6 else "A")


def _forward_confirmed(client: DnsClient, ip: str, names: list[str], rdtype: str) -> CheckResult:
    """Does one of the PTR NAMES resolve back to IP?"""
    forward = client.query_many((name, rdtype) for name in names)
    facts, confirmed = [], []
    for name, lookup in zip(names, forward, strict=True):
        addresses = [ipaddress.ip_address(t).compressed for t in lookup.texts()]
        if ip in addresses:
            confirmed.append(name)
        facts.append(f"PTR {ip} -> {name} -> {', '.join(addresses) or describe(lookup)}")
    data = {"ptr": names, "ptr_status": "ok", "confirmed": bool(confirmed)}
    failed = [lookup for lookup in forward if not lookup.answered]
    if not confirmed and failed:
        # The way back could not be looked up: not the same as a name that points elsewhere.
        if offline := upstream_down(client, "reverse", ip, failed[0]):
            return offline
        if failed[0].status not in ("timeout", "servfail"):
            return could_not_check("reverse", ip, describe(failed[0]), ptr=names)
        return CheckResult(
            "reverse",
            ip,
            PROBLEM,
            f"{ip} has a PTR name ({', '.join(names)}), but looking that name up fails now "
            f"({describe(failed[0])}), so receivers cannot confirm it and treat the reverse DNS as missing. "
            "The DNS of the PTR name's domain must be fixed.",
            facts=tuple(facts),
            data={**data, "forward_status": failed[0].status},
        )
    if not confirmed:
        return CheckResult(
            "reverse",
            ip,
            PROBLEM,
            f"{ip} has a PTR name ({', '.join(names)}), but that name does not resolve back to {ip}: "
            "the reverse DNS is not forward-confirmed, and receivers treat it as missing. "
            f"Add an {rdtype} record for the name pointing to {ip}, or change the PTR to a name that has one.",
            facts=tuple(facts),
            data=data,
        )
    if _GENERIC.search(confirmed[0].lower()):
        return CheckResult(
            "reverse",
            ip,
            WARNING,
            f"{ip} has forward-confirmed reverse DNS ({confirmed[0]}), but the name looks like an ISP's dynamic "
            "or residential pool, which many receivers distrust. Set a PTR naming the mail server itself.",
            facts=tuple(facts),
            data=data,
        )
    return CheckResult(
        "reverse",
        ip,
        OK,
        f"{ip} has forward-confirmed reverse DNS now ({confirmed[0]}). If the log's refusal was about reverse "
        "DNS, it has been fixed since, or the receiver caches old results: retry.",
        facts=tuple(facts),
        data=data,
    )


def _no_ptr(ip: str, reverse_name: str, ptr, summary: str) -> CheckResult:
    """A problem: no PTR a receiver could use (none published, or the reverse zone is broken)."""
    return CheckResult(
        "reverse",
        ip,
        PROBLEM,
        summary,
        facts=(f"PTR {reverse_name}: {describe(ptr)}",),
        data={"ptr": [], "ptr_status": ptr.status, "confirmed": False},
    )
