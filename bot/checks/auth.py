"""The sender domain's authentication records: SPF (syntax, DNS-lookup count) and DMARC
(policy); the DKIM key record is in bot/checks/dkim.py.

Small parsers of our own on dnspython, rather than pyspf or checkdmarc. pyspf 2.0.14
resolves through dnspython's process-wide default resolver (/etc/resolv.conf): no
per-call resolver or port. checkdmarc 6.x does take a `resolver` object (so a port), but
by default caches answers process-wide keyed by name only (not by resolver), and brings
httpx, requests, pyleri and more. What we need is only syntax, counting and tags
(RFC 7208 sections 4.6 and 5, RFC 7489 section 6.3, RFC 6376 section 3.6.1).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from bot.checks import OK, PROBLEM, WARNING, CheckResult, could_not_check
from bot.checks.dns import DnsClient, Lookup, describe, timed, unreachable, upstream_down

MAX_LOOKUPS = 10  # RFC 7208 section 4.6.4
_FOLLOW_LIMIT = 25  # records fetched while counting, at most: a loop or a huge tree stops here
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9]*)(.*)$")
_A_MX_ARGS = re.compile(r"^(?::([^/]+))?(?:/(\d{1,2}))?(?://(\d{1,3}))?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{1,63}\.?$")
_LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists", "redirect")
# Public suffixes of two labels that are common in mail: enough to find the organisational
# domain for DMARC in the usual cases, without shipping the Public Suffix List.
_TWO_LABEL_SUFFIXES = frozenset(
    "co.uk org.uk ac.uk gov.uk com.au net.au org.au co.nz co.jp ne.jp or.jp co.za com.br com.cn "
    "com.mx com.ar com.tr co.in co.kr co.il com.sg com.hk com.tw".split()
)


# --- SPF ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpfTerm:
    qualifier: str  # + - ~ ? ('' for modifiers)
    name: str  # all include a mx ptr ip4 ip6 exists | redirect exp or another modifier
    value: str | None  # the domain-spec or network, when given
    modifier: bool = False


def txt_strings(lookup: Lookup) -> list[str]:
    """Each TXT record as one string (its character-strings joined, RFC 7208 section 3.3)."""
    if lookup.status != "ok":
        return []
    return [b"".join(r.strings).decode("utf-8", "replace") for r in lookup.records]


def spf_records(lookup: Lookup) -> list[str]:
    return [t for t in txt_strings(lookup) if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def parse_spf(record: str) -> tuple[list[SpfTerm], list[str]]:
    """The terms of an SPF record, and its syntax errors (each says which term and why)."""
    parts = record.split()
    if not parts or parts[0].lower() != "v=spf1":
        return [], ["the record does not start with 'v=spf1'"]
    terms, errors, modifiers = [], [], set()
    for part in parts[1:]:
        if m := _MODIFIER.match(part):
            name, value = m.group(1).lower(), m.group(2)
            if name in ("redirect", "exp"):
                if name in modifiers:
                    errors.append(f"'{name}=' appears more than once")
                if not _domain_spec_ok(value):
                    errors.append(f"'{part}': '{value}' is not a domain name")
            modifiers.add(name)
            terms.append(SpfTerm("", name, value, modifier=True))
            continue
        term, error = _parse_mechanism(part)
        if error:
            errors.append(error)
        elif term:
            terms.append(term)
    return terms, errors


def _parse_mechanism(part: str) -> tuple[SpfTerm | None, str | None]:
    m = _MECHANISM.match(part)
    if not m:
        return None, f"'{part}' is not an SPF mechanism"
    qualifier, name, rest = m.group(1), m.group(2).lower(), m.group(3)
    if name == "all":
        return (SpfTerm(qualifier, name, None), None) if not rest else (None, f"'{part}': 'all' takes no value")
    if name in ("include", "exists"):
        value = rest[1:] if rest.startswith(":") else ""
        if not _domain_spec_ok(value):
            return None, f"'{part}': {name} needs ':' and a domain name"
        return SpfTerm(qualifier, name, value), None
    if name in ("ip4", "ip6"):
        return _parse_network(part, qualifier, name, rest)
    if name in ("a", "mx", "ptr"):
        args = _A_MX_ARGS.match(rest)
        if not args or (name == "ptr" and (args.group(2) or args.group(3))):
            return None, f"'{part}': bad arguments to '{name}'"
        if args.group(1) and not _domain_spec_ok(args.group(1)):
            return None, f"'{part}': '{args.group(1)}' is not a domain name"
        if (args.group(2) and int(args.group(2)) > 32) or (args.group(3) and int(args.group(3)) > 128):
            return None, f"'{part}': prefix length out of range"
        return SpfTerm(qualifier, name, args.group(1)), None
    return None, f"unknown mechanism '{part}'"


def _parse_network(part: str, qualifier: str, name: str, rest: str) -> tuple[SpfTerm | None, str | None]:
    if not rest.startswith(":"):
        return None, f"'{part}': {name} needs ':' and an address"
    try:
        network = ipaddress.ip_network(rest[1:], strict=False)
    except ValueError:
        return None, f"'{part}': '{rest[1:]}' is not a valid {'IPv4' if name == 'ip4' else 'IPv6'} address or network"
    if network.version != (4 if name == "ip4" else 6):
        return None, f"'{part}': {name} holds an IPv{network.version} address"
    return SpfTerm(qualifier, name, rest[1:]), None


def _domain_spec_ok(value: str) -> bool:
    if "%" in value:  # a macro (RFC 7208 section 7): checked when a receiver expands it
        return bool(value) and " " not in value
    return bool(_DOMAIN.match(value))


@dataclass(slots=True)
class _Count:
    lookups: int = 0
    fetched: int = 0
    problems: list[str] | None = None
    includes: list[str] | None = None


def _count_lookups(client: DnsClient, terms: list[SpfTerm], count: _Count, seen: set[str]) -> None:
    for term in terms:
        if term.name not in _LOOKUP_TERMS or (term.modifier and term.name != "redirect"):
            continue
        count.lookups += 1
        if term.name not in ("include", "redirect") or not term.value:
            continue
        target = term.value.rstrip(".").lower()
        if "%" in target:
            count.includes.append(f"{term.name}:{target} (a macro: not followed)")
            continue
        if target in seen or count.fetched >= _FOLLOW_LIMIT:
            continue
        seen.add(target)
        count.fetched += 1
        found = client.query(target, "TXT")
        records = spf_records(found)
        if len(records) != 1:
            if not found.answered:
                why = f"cannot be looked up now ({describe(found)}): receivers get a temporary error (temperror)"
            else:
                why = "has no SPF record" if not records else "has several SPF records"
                why += ": receivers get a permanent error (permerror)"
            count.problems.append(f"{term.name}:{target} {why}")
            continue
        count.includes.append(f"{term.name}:{target} -> {records[0]}")
        inner, errors = parse_spf(records[0])
        count.problems.extend(f"in {target}: {e}" for e in errors)
        _count_lookups(client, inner, count, seen)


@timed
def check_spf(client: DnsClient, domain: str) -> CheckResult:
    """The SPF record of DOMAIN: present, one only, valid, within 10 DNS lookups."""
    domain = domain.strip().rstrip(".").lower()
    if down := unreachable(client, "spf", domain):
        return down
    found = client.query(domain, "TXT")
    if not found.answered:
        return lookup_trouble(client, "spf", domain, found, "SPF")
    records = spf_records(found)
    if found.status == "nxdomain" or not records:
        exists = "does not exist (NXDOMAIN)" if found.status == "nxdomain" else "has no SPF record"
        return CheckResult(
            "spf",
            domain,
            PROBLEM,
            f"{domain} {exists} now: receivers cannot tell which servers may send its mail. "
            f"Publish a TXT record at {domain} such as 'v=spf1 include:<your provider> -all'.",
            facts=(f"TXT {domain}: {describe(found)}",),
            data={"records": []},
        )
    if len(records) > 1:
        return CheckResult(
            "spf",
            domain,
            PROBLEM,
            f"{domain} has {len(records)} SPF records: SPF then fails with a permanent error for every message "
            "(RFC 7208 section 4.5). Merge them into one.",
            facts=tuple(f"SPF: {r}" for r in records),
            data={"records": records},
        )
    return _judge_spf(client, domain, records[0])


def _judge_spf(client: DnsClient, domain: str, record: str) -> CheckResult:
    terms, errors = parse_spf(record)
    count = _Count(problems=[], includes=[])
    _count_lookups(client, terms, count, {domain})
    facts = [f"SPF: {record}"] + count.includes + [f"DNS lookups: {count.lookups} (at most {MAX_LOOKUPS} allowed)"]
    data = {"records": [record], "lookups": count.lookups, "syntax_errors": errors, "problems": count.problems}
    last_all = next((t for t in reversed(terms) if t.name == "all" and not t.modifier), None)
    data["all"] = (last_all.qualifier or "+") + "all" if last_all else None
    if errors or count.problems or count.lookups > MAX_LOOKUPS:
        reasons = [f"syntax error: {e}" for e in errors] + count.problems
        if count.lookups > MAX_LOOKUPS:
            reasons.append(f"it needs {count.lookups} DNS lookups; SPF allows {MAX_LOOKUPS}")
        return CheckResult(
            "spf",
            domain,
            PROBLEM,
            f"The SPF record of {domain} does not work now ({_first(reasons)}): receivers treat that as an SPF "
            "failure (permerror) or defer (temperror). Fix the record"
            + (" and flatten or remove includes" if count.lookups > MAX_LOOKUPS else "")
            + ".",
            facts=tuple(facts + [f"error: {r}" for r in reasons]),
            data=data,
        )
    if last_all and last_all.qualifier in ("", "+"):
        return CheckResult(
            "spf",
            domain,
            WARNING,
            f"The SPF record of {domain} ends with '+all': it lets every server on the Internet send as {domain}, "
            "which receivers treat as no protection. Use '~all' or '-all'.",
            facts=tuple(facts),
            data=data,
        )
    ending = f"ends with '{data['all']}'" if last_all else "has no 'all' (other servers get a neutral result)"
    return CheckResult(
        "spf",
        domain,
        OK,
        f"The SPF record of {domain} is valid now and {ending}; {count.lookups} of {MAX_LOOKUPS} lookups. "
        "If SPF failed, the sending server is not listed in it: add that server or its provider's include.",
        facts=tuple(facts),
        data=data,
    )


def _first(reasons: list[str], shown: int = 2) -> str:
    more = f"; and {len(reasons) - shown} more" if len(reasons) > shown else ""
    return "; ".join(reasons[:shown]) + more


def lookup_trouble(client: DnsClient, check: str, name: str, found: Lookup, what: str) -> CheckResult:
    if offline := upstream_down(client, check, name, found):
        return offline
    if found.status in ("timeout", "servfail"):
        return CheckResult(
            check,
            name,
            PROBLEM,
            f"The {what} lookup for {name} fails now ({describe(found)}): receivers get a temporary error "
            "(temperror) and may defer or refuse the mail. The domain's DNS must be fixed.",
            facts=(f"TXT {name}: {describe(found)}",),
            data={"lookup": found.status},
        )
    return could_not_check(check, name, describe(found), resolver=client.label)


# --- DMARC --------------------------------------------------------------------------------


def organizational_domain(domain: str) -> str:
    labels = domain.rstrip(".").lower().split(".")
    keep = 3 if ".".join(labels[-2:]) in _TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def parse_dmarc(record: str) -> tuple[dict[str, str], list[str]]:
    tags, errors = {}, []
    parts = [p.strip() for p in record.split(";") if p.strip()]
    for i, part in enumerate(parts):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep:
            errors.append(f"'{part}' is not a tag=value pair")
            continue
        if i == 0 and (key != "v" or value.strip() != "DMARC1"):
            errors.append("the record must start with 'v=DMARC1'")
        tags[key] = value.strip()
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        errors.append("'p=' is missing" if not policy else f"'p={tags['p']}' is not none, quarantine or reject")
    if tags.get("sp", "none").lower() not in ("none", "quarantine", "reject"):
        errors.append(f"'sp={tags['sp']}' is not none, quarantine or reject")
    return tags, errors


_POLICY_WORDS = {
    "reject": "receivers are asked to REJECT mail that fails DMARC (neither SPF nor DKIM passes aligned with it)",
    "quarantine": "receivers are asked to put mail that fails DMARC in spam",
    "none": "monitoring only: receivers are asked to deliver mail that fails DMARC as usual",
}


@timed
def check_dmarc(client: DnsClient, domain: str) -> CheckResult:
    """The DMARC record of DOMAIN (or of its organisational domain): present, valid, its policy."""
    domain = domain.strip().rstrip(".").lower()
    if down := unreachable(client, "dmarc", domain):
        return down
    name, records, facts = f"_dmarc.{domain}", [], []
    for candidate in dict.fromkeys([domain, organizational_domain(domain)]):
        name = f"_dmarc.{candidate}"
        found = client.query(name, "TXT")
        if not found.answered:
            return lookup_trouble(client, "dmarc", name, found, "DMARC")
        records = [t for t in txt_strings(found) if t.replace(" ", "").lower().startswith("v=dmarc1")]
        facts.append(f"TXT {name}: {' | '.join(records) if records else describe(found)}")
        if records:
            break
    if not records:
        return CheckResult(
            "dmarc",
            domain,
            WARNING,
            f"{domain} has no DMARC record now. Gmail and Yahoo require one of bulk senders, and without it "
            f"receivers apply their own rules. Publish at least 'v=DMARC1; p=none; rua=mailto:...' at _dmarc.{domain}.",
            facts=tuple(facts),
            data={"records": [], "policy": None},
        )
    if len(records) > 1:
        return CheckResult(
            "dmarc",
            name,
            PROBLEM,
            f"{name} has {len(records)} DMARC records: receivers then ignore DMARC (RFC 7489 section 6.6.3). Keep one.",
            facts=tuple(facts),
            data={"records": records, "policy": None},
        )
    tags, errors = parse_dmarc(records[0])
    data = {"records": records, "policy": tags.get("p", "").lower() or None, "tags": tags, "record_name": name}
    if errors:
        return CheckResult(
            "dmarc",
            name,
            PROBLEM,
            f"The DMARC record at {name} is invalid ({'; '.join(errors)}): receivers ignore it.",
            facts=tuple(facts),
            data=data,
        )
    policy = data["policy"]
    pct = tags.get("pct", "100")
    summary = f"{domain} has DMARC policy p={policy}: {_POLICY_WORDS[policy]}"
    summary += f" (applied to {pct}% of it)." if pct != "100" else "."
    if policy != "none":
        summary += f" A refusal citing DMARC means the message passed neither SPF nor DKIM aligned with {domain}."
    return CheckResult("dmarc", name, OK, summary, facts=tuple(facts), data=data)
