"""The DKIM key record of a selector named in the log (s=, d=, or Authentication-Results'
header.s= / header.d=): published, not revoked, readable, strong enough (RFC 6376
section 3.6.1, RFC 8301)."""

from __future__ import annotations

import base64
import binascii
import re

from bot.checks import OK, PROBLEM, WARNING, CheckResult
from bot.checks.auth import lookup_trouble, txt_strings
from bot.checks.dns import DnsClient, describe, timed, unreachable

_SELECTOR = re.compile(r"(?<![A-Za-z0-9._-])(?:header\.)?s=([A-Za-z0-9][A-Za-z0-9._-]{0,62})")
_SIGNING_DOMAIN = re.compile(r"(?<![A-Za-z0-9._-])(?:header\.)?d=([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


def dkim_selectors(texts: list[str], default_domain: str | None) -> list[tuple[str, str]]:
    """(selector, domain) pairs named in log or bounce text: 's=sel1; d=example.org', or
    Authentication-Results' 'header.s=sel1 header.d=example.org'."""
    found: dict[tuple[str, str], None] = {}
    for text in texts:
        selectors = _SELECTOR.findall(text)
        domains = _SIGNING_DOMAIN.findall(text)
        for i, selector in enumerate(selectors):
            domain = (domains[i] if i < len(domains) else domains[-1] if domains else default_domain) or ""
            if domain:
                found[(selector.strip(".").lower(), domain.rstrip(".").lower())] = None
    return list(found)[:3]


def rsa_key_bits(der: bytes) -> int | None:
    """The modulus size of an RSA key in SubjectPublicKeyInfo or PKCS#1 form, else None."""
    try:
        _, start, _ = _der(der, 0)  # SEQUENCE
        tag, inner, end = _der(der, start)
        if tag == 0x30:  # AlgorithmIdentifier: this is SubjectPublicKeyInfo
            tag, bits_start, _ = _der(der, end)  # BIT STRING
            if tag != 0x03:
                return None
            _, start, _ = _der(der, bits_start + 1)  # RSAPublicKey SEQUENCE
            tag, inner, end = _der(der, start)
        if tag != 0x02:  # INTEGER: the modulus
            return None
        return int.from_bytes(der[inner:end], "big").bit_length()
    except IndexError:
        return None


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    tag, length = data[pos], data[pos + 1]
    start = pos + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    if start + length > len(data):
        raise IndexError("truncated")
    return tag, start, start + length


@timed
def check_dkim(client: DnsClient, selector: str, domain: str) -> CheckResult:
    """The DKIM key record SELECTOR._domainkey.DOMAIN: present, not revoked, strong enough."""
    name = f"{selector}._domainkey.{domain.rstrip('.').lower()}"
    if down := unreachable(client, "dkim", name):
        return down
    found = client.query(name, "TXT")
    if not found.answered:
        return lookup_trouble(client, "dkim", name, found, "DKIM key")
    texts = [t for t in txt_strings(found) if "p=" in t]
    if not texts:
        return CheckResult(
            "dkim",
            name,
            PROBLEM,
            f"There is no DKIM key at {name} now ({describe(found)}): every signature made "
            f"with selector '{selector}' fails. Publish the key, or sign with a selector that has one.",
            facts=(f"TXT {name}: {describe(found)}",),
            data={"key": None},
        )
    return _judge_dkim(name, texts[0])


def _judge_dkim(name: str, record: str) -> CheckResult:
    tags = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in record.split(";") if "=" in p)}
    key_type, key = tags.get("k", "rsa").lower(), re.sub(r"\s+", "", tags.get("p", ""))
    facts = [f"DKIM key: {record[:120]}{'…' if len(record) > 120 else ''}"]
    data = {"key_type": key_type, "testing": "y" in tags.get("t", "").split(":"), "tags": sorted(tags)}
    if tags.get("v", "DKIM1") != "DKIM1":
        return CheckResult(
            "dkim",
            name,
            PROBLEM,
            f"The DKIM record at {name} has v={tags['v']}, not DKIM1: receivers ignore it.",
            facts=tuple(facts),
            data=data,
        )
    if not key:
        return CheckResult(
            "dkim",
            name,
            PROBLEM,
            f"The DKIM key at {name} is revoked (empty p=): signatures "
            "with this selector fail. Sign with a current selector.",
            facts=tuple(facts),
            data=data,
        )
    try:
        der = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return CheckResult(
            "dkim",
            name,
            PROBLEM,
            f"The DKIM key at {name} is not valid base64: receivers cannot verify signatures with it.",
            facts=tuple(facts),
            data=data,
        )
    bits = rsa_key_bits(der) if key_type == "rsa" else (256 if key_type == "ed25519" and len(der) == 32 else None)
    data["bits"] = bits
    facts.append(f"key: {key_type}, {bits or '?'} bits" + (" (testing mode, t=y)" if data["testing"] else ""))
    if bits is None:
        return CheckResult(
            "dkim",
            name,
            PROBLEM,
            f"The DKIM key at {name} cannot be read as a {key_type} key: receivers cannot verify signatures with it.",
            facts=tuple(facts),
            data=data,
        )
    if key_type == "rsa" and bits < 1024:
        return CheckResult(
            "dkim",
            name,
            PROBLEM,
            f"The DKIM key at {name} has {bits} bits: receivers ignore "
            "RSA keys under 1024 bits (RFC 8301). Publish a 2048-bit key.",
            facts=tuple(facts),
            data=data,
        )
    if key_type == "rsa" and bits < 2048:
        return CheckResult(
            "dkim",
            name,
            WARNING,
            f"The DKIM key at {name} is valid but only {bits} bits: 2048 is recommended.",
            facts=tuple(facts),
            data=data,
        )
    return CheckResult(
        "dkim",
        name,
        OK,
        f"The DKIM key at {name} is published and valid ({key_type}, {bits} bits). "
        "If DKIM failed, the message was changed in transit or signed with another key.",
        facts=tuple(facts),
        data=data,
    )
