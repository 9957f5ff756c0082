"""DNS blocklist (DNSBL) lookups of a sending IP.

Usage policies of the default zones (read them before relying on the answers):

- zen.spamhaus.org: free only for low-volume, non-commercial use. Spamhaus does not answer
  queries that come through large public resolvers (Google 8.8.8.8, Cloudflare 1.1.1.1,
  Quad9, OpenDNS...) or that exceed its limits: it returns 127.255.255.254 / .255 instead
  of a listing, which we report as "could not check". Use your own recursive resolver
  (unbound, for example) or Spamhaus's Data Query Service.
- bl.spamcop.net: free to query; lists IPs reported by SpamCop users, and entries expire
  on their own within a day or two of the last report.
- b.barracudacentral.org: free, but only for resolvers whose IP address is registered at
  barracudacentral.org; unregistered resolvers get no answer or a refusal.

The zones are configurable: the `zones` parameter, or $WHYFAILED_DNSBL_ZONES
(comma-separated).
"""

from __future__ import annotations

import ipaddress
import os

import dns.reversename

from bot.checks import COULD_NOT_CHECK, OK, PROBLEM, CheckResult, could_not_check
from bot.checks.dns import DnsClient, timed, unreachable

DEFAULT_ZONES = ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org")

POLICY_NOTE = (
    "Blocklist answers depend on their usage policies: Spamhaus refuses queries through large public "
    "resolvers (8.8.8.8, 1.1.1.1, ...) and heavy users; Barracuda answers only registered resolvers."
)

# Well-known public resolvers, through which Spamhaus does not answer.
PUBLIC_RESOLVERS = frozenset(
    {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222", "208.67.220.220"}
)

# Spamhaus ZEN return codes (https://docs.spamhaus.com/: "Return codes").
_ZEN = {
    "127.0.0.2": "SBL: a known spam source or spam operation",
    "127.0.0.3": "SBL CSS: a snowshoe or low-reputation spam source",
    "127.0.0.4": "XBL: an infected or hijacked machine (exploits, botnet)",
    "127.0.0.5": "XBL: an infected or hijacked machine",
    "127.0.0.6": "XBL: an infected or hijacked machine",
    "127.0.0.7": "XBL: an infected or hijacked machine",
    "127.0.0.9": "SBL DROP: a hijacked or criminal netblock",
    "127.0.0.10": "PBL: an end-user address that should not send mail directly (listed by the ISP)",
    "127.0.0.11": "PBL: an end-user address that should not send mail directly (listed by Spamhaus)",
}
# Answers in 127.255.255.0/24 are error codes (Spamhaus), not listings.
_REFUSALS = {
    "127.255.255.252": "the zone name was mistyped",
    "127.255.255.254": "the query came through a public or open resolver, which the list does not answer",
    "127.255.255.255": "too many queries: the list's free-use limit was exceeded",
}


def configured_zones(zones: list[str] | tuple[str, ...] | None = None) -> tuple[str, ...]:
    if zones:
        return tuple(z.strip().strip(".").lower() for z in zones if z.strip())
    env = os.environ.get("WHYFAILED_DNSBL_ZONES", "")
    from_env = tuple(z.strip().strip(".").lower() for z in env.split(",") if z.strip())
    return from_env or DEFAULT_ZONES


def query_name(ip: str, zone: str) -> str:
    """192.0.2.11 in bl.example -> 11.2.0.192.bl.example (nibbles for IPv6)."""
    reverse = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
    return reverse.rsplit(".", 2)[0] + "." + zone + "."


@timed
def check_dnsbl(client: DnsClient, ip: str, zones: list[str] | tuple[str, ...] | None = None) -> CheckResult:
    """Is IP listed, now, on each DNSBL zone?"""
    try:
        ip = ipaddress.ip_address(ip).compressed
    except ValueError:
        return could_not_check("dnsbl", ip, f"'{ip}' is not an IP address")
    zones = configured_zones(zones)
    if down := unreachable(client, "dnsbl", ip):
        return down
    names = [query_name(ip, zone) for zone in zones]
    answers = client.query_many((name, "A") for name in names)
    listed, clean, unknown, facts, rows = [], [], [], [], []
    for zone, name, answer in zip(zones, names, answers, strict=True):
        codes = answer.texts()
        refusal = next((_REFUSALS.get(c, "an error code") for c in codes if c.startswith("127.255.255.")), None)
        if answer.status == "nxdomain":
            clean.append(zone)
            row = {"zone": zone, "listed": False}
            facts.append(f"{zone}: not listed")
        elif answer.status == "ok" and not refusal:
            listed.append(zone)
            reason = _listing_reason(client, name, zone, codes)
            row = {"zone": zone, "listed": True, "codes": codes, "reason": reason}
            facts.append(f"{zone}: LISTED ({', '.join(codes)}){': ' + reason if reason else ''}")
        else:
            why = refusal or _why_unknown(answer.status, client)
            unknown.append(zone)
            row = {"zone": zone, "listed": None, "error": why, "codes": codes}
            facts.append(f"{zone}: could not check ({why})")
        rows.append(row)
    if note := public_resolver_note(client, zones):
        facts.append(note)
    if unknown:
        facts.append(POLICY_NOTE)
    data = {"zones": rows}
    if listed:
        return CheckResult(
            "dnsbl",
            ip,
            PROBLEM,
            f"{ip} is listed now on {', '.join(listed)}: receivers using that list refuse its mail. "
            "Find and fix the cause (an infected machine, an open relay, a compromised account, bulk mail "
            "without consent), then request removal on the list's own site.",
            facts=tuple(facts),
            data=data,
        )
    if not clean:
        return CheckResult(
            "dnsbl", ip, COULD_NOT_CHECK, "Could not check: no blocklist answered.", facts=tuple(facts), data=data
        )
    summary = f"{ip} is not listed now on {', '.join(clean)}."
    if unknown:
        summary += f" Could not check {', '.join(unknown)}."
    summary += " If a receiver named a list, the listing has expired or been removed: retry."
    return CheckResult("dnsbl", ip, OK, summary, facts=tuple(facts), data=data)


def _listing_reason(client: DnsClient, name: str, zone: str, codes: list[str]) -> str:
    if zone.endswith("spamhaus.org"):
        known = [_ZEN[c] for c in codes if c in _ZEN]
        if known:
            return "; ".join(known)
    txt = client.query(name, "TXT")
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in txt.records] if txt.status == "ok" else []
    return "; ".join(texts)[:300]


def _why_unknown(status: str, client: DnsClient) -> str:
    if status == "timeout":
        return f"no answer within {client.timeout:g} s"
    if status == "refused":
        return "the resolver refused the query"
    if status == "servfail":
        return "the list's nameservers failed (SERVFAIL); it may need a registered resolver"
    if status == "nodata":
        return "an empty answer"
    return status


def public_resolver_note(client: DnsClient, zones: tuple[str, ...]) -> str | None:
    if client.host in PUBLIC_RESOLVERS and any(z.endswith("spamhaus.org") for z in zones):
        return f"{client.host} is a public resolver: Spamhaus does not answer queries made through it."
    return None
