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
from dataclasses import replace

import dns.reversename

from bot.checks import COULD_NOT_CHECK, OK, PROBLEM, CheckResult, could_not_check
from bot.checks.dns import DnsClient, Lookup, timed, unreachable, upstream_down

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
_LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")  # where every DNSBL answer lies (RFC 5782 section 2.3)
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
def check_dnsbl(
    client: DnsClient,
    ip: str,
    zones: list[str] | tuple[str, ...] | None = None,
    public: bool | None = None,
) -> CheckResult:
    """Is IP listed, now, on each DNSBL zone? PUBLIC: the resolver is (or forwards to) a
    large public resolver; None: judged from its address (PUBLIC_RESOLVERS)."""
    try:
        ip = ipaddress.ip_address(ip).compressed
    except ValueError:
        return could_not_check("dnsbl", ip, f"'{ip}' is not an IP address")
    zones = configured_zones(zones)
    if down := unreachable(client, "dnsbl", ip):
        return down
    public = client.host in PUBLIC_RESOLVERS if public is None else public
    # Zones that refuse public resolvers are not asked through one: their NXDOMAIN (or
    # error code) there would be read as "not listed".
    asked = [z for z in zones if not (public and refuses_public_resolvers(z))]
    answers = dict(zip(asked, client.query_many((query_name(ip, z), "A") for z in asked), strict=True))
    listed, clean, unknown, facts, rows = [], [], [], [], []
    for zone in zones:
        if zone not in answers:
            why = f"not asked: {client.host} is a public resolver, and this list does not answer through one"
            state, codes = None, []
        else:
            state, codes, why = classify(answers[zone], client)
        row = {"zone": zone, "listed": state, "codes": codes}
        if state:
            listed.append(zone)
            row["reason"] = reason = _listing_reason(client, query_name(ip, zone), zone, codes)
            facts.append(f"{zone}: LISTED ({', '.join(codes)}){': ' + reason if reason else ''}")
        elif state is False:
            clean.append(zone)
            facts.append(f"{zone}: not listed")
        else:
            unknown.append(zone)
            row["error"] = why
            facts.append(f"{zone}: could not check ({why})")
        rows.append(row)
    if public and any(refuses_public_resolvers(z) for z in zones):
        facts.append(f"{client.host} is a public resolver: Spamhaus does not answer queries made through it.")
    if unknown:
        facts.append(POLICY_NOTE)
    failed = next((a for a in answers.values() if a.status in ("timeout", "servfail")), None)
    if failed and not listed and not clean and (offline := upstream_down(client, "dnsbl", ip, failed)):
        return replace(offline, facts=tuple(facts), data={**offline.data, "zones": rows})
    return _verdict(ip, listed, clean, unknown, facts, {"zones": rows})


def classify(answer: Lookup, client: DnsClient) -> tuple[bool | None, list[str], str]:
    """(listed: True / False / None for unknown, the A answers, why unknown), RFC 5782:
    NXDOMAIN is 'not listed'; A records in 127.0.0.0/8 are a listing; 127.255.255.0/24 are
    the list's error codes; any other address is not from a DNSBL at all."""
    codes = answer.texts()
    if answer.status == "nxdomain":
        return False, codes, ""
    if answer.status != "ok":
        return None, codes, _why_unknown(answer.status, client)
    foreign = [c for c in codes if ipaddress.ip_address(c) not in _LOOPBACK_NET]
    if foreign:
        return (
            None,
            codes,
            (
                f"the resolver rewrote the answer: {', '.join(foreign)} is not a blocklist code (127.0.0.0/8); "
                "it probably redirects names that do not exist (NXDOMAIN hijacking): use another resolver"
            ),
        )
    if refusal := next((_REFUSALS.get(c, "an error code") for c in codes if c.startswith("127.255.255.")), None):
        return None, codes, refusal
    return True, codes, ""


def refuses_public_resolvers(zone: str) -> bool:
    return zone == "spamhaus.org" or zone.endswith((".spamhaus.org", ".spamhaus.net"))


def _verdict(ip: str, listed: list, clean: list, unknown: list, facts: list, data: dict) -> CheckResult:
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
