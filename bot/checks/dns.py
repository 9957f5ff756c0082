"""The DNS client every check shares (the recipient-domain check is in bot/checks/domain.py).

`DnsClient` asks one recursive resolver (ours to choose: `--resolver IP[:PORT]`,
`$WHYFAILED_RESOLVER`, else the first nameserver in /etc/resolv.conf) and tells apart the
answers that matter for mail: records, no records of that type (NODATA), the name does not
exist (NXDOMAIN), the domain's DNS is broken (SERVFAIL), the resolver refused us (REFUSED),
and no answer in time. It never raises for a DNS outcome.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from bot.checks import CheckResult, could_not_check

DEFAULT_TIMEOUT = 2.0  # seconds for one DNS query
# A name only recursion through the Internet answers: asked when a lookup times out or
# SERVFAILs, to tell "that domain's DNS is broken" from "this resolver has no upstream".
# A resolver that lost its upstream recently may still have '. NS' cached (for days):
# a site can name a better canary with $WHYFAILED_DNS_CANARY ('NAME' or 'NAME TYPE').
DEFAULT_CANARY = ". NS"


class ResolverError(ValueError):
    """The resolver address is not usable (not an IP address, bad port)."""


def parse_resolver(text: str) -> tuple[str, int]:
    """'192.0.2.53', '192.0.2.53:5353', '::1', '[::1]:5353' -> (ip, port)."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ResolverError(f"'{text}' is not IP[:PORT]")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ResolverError(f"'{text}' is not an IP address (give the resolver as IP[:PORT])") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ResolverError(f"'{whole}': the port must be a number from 1 to 65535")
    return int(text)


def system_resolver(resolv_conf: str = "/etc/resolv.conf") -> tuple[str, int] | None:
    """The first nameserver of resolv.conf, or None when there is none."""
    try:
        servers = dns.resolver.Resolver(filename=resolv_conf, configure=True).nameservers
    except (dns.resolver.NoResolverConfiguration, OSError):
        return None
    for server in servers:
        try:
            return parse_resolver(str(server))
        except ResolverError:
            continue
    return None


def resolver_address(resolver: str | None = None, resolv_conf: str = "/etc/resolv.conf") -> tuple[str, int] | None:
    """The resolver to ask: the parameter, else $WHYFAILED_RESOLVER, else the system's."""
    chosen = resolver or os.environ.get("WHYFAILED_RESOLVER")
    if chosen:
        return parse_resolver(chosen)
    return system_resolver(resolv_conf)


@dataclass(slots=True)
class Lookup:
    """The outcome of one query, with the records of the wanted type (after any CNAMEs)."""

    name: str
    rdtype: str
    status: str  # ok | nodata | nxdomain | servfail | refused | timeout | deadline | error
    records: list = field(default_factory=list)
    detail: str = ""

    @property
    def answered(self) -> bool:
        """The DNS gave a definite answer (records, none of that type, or no such name)."""
        return self.status in ("ok", "nodata", "nxdomain")

    def texts(self) -> list[str]:
        return [record.to_text() for record in self.records]


_OUTCOME_WORDS = {
    "nodata": "no records of that type",
    "nxdomain": "the name does not exist (NXDOMAIN)",
    "servfail": "the resolver could not get an answer from the domain's nameservers (SERVFAIL)",
    "refused": "the resolver refused the query (REFUSED)",
    "timeout": "no answer in time",
    "deadline": "not asked: the check ran out of time",
}


def describe(lookup: Lookup) -> str:
    if lookup.status == "ok":
        return ", ".join(lookup.texts())
    if lookup.status == "error":
        return f"error: {lookup.detail}"
    return _OUTCOME_WORDS[lookup.status]


class DnsClient:
    """Queries one recursive resolver; answers are cached for the client's life (one run)."""

    def __init__(self, server: tuple[str, int], timeout: float = DEFAULT_TIMEOUT, canary: str | None = None):
        self.host, self.port = server
        self.timeout = timeout
        self.canary = parse_canary(canary or os.environ.get("WHYFAILED_DNS_CANARY") or DEFAULT_CANARY)
        self._cache: dict[tuple[str, str], Lookup] = {}
        self._lock = threading.Lock()
        self._alive: tuple[bool, str] | None = None
        self._upstream_lock = threading.Lock()  # held through the one canary query; others wait for it
        self._upstream: tuple[bool, str] | None = None
        self._local = threading.local()  # per thread: the deadline of the check it runs

    def set_deadline(self, deadline: float | None) -> None:
        """After DEADLINE (time.monotonic()), this thread's queries time out without being sent."""
        self._local.deadline = deadline

    def _remaining(self) -> float | None:
        deadline = getattr(self._local, "deadline", None)
        return None if deadline is None else deadline - time.monotonic()

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def query(self, name: str, rdtype: str) -> Lookup:
        key = (name.lower().rstrip("."), rdtype)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        remaining = self._remaining()
        if remaining is not None and remaining <= 0.05:
            return Lookup(name, rdtype, "deadline")  # not cached
        timeout = self.timeout if remaining is None else min(self.timeout, remaining)
        lookup = self._query(name, rdtype, timeout)
        if lookup.status == "timeout" and timeout < self.timeout:  # a cut-short wait proves nothing
            return Lookup(name, rdtype, "deadline")
        with self._lock:
            self._cache[key] = lookup
        return lookup

    def query_many(self, pairs: Iterable[tuple[str, str]]) -> list[Lookup]:
        """Several queries at once; each has its own timeout, so this takes about one."""
        pairs = list(pairs)
        if len(pairs) <= 1:
            return [self.query(n, t) for n, t in pairs]
        deadline = getattr(self._local, "deadline", None)

        def one(pair: tuple[str, str]) -> Lookup:
            self.set_deadline(deadline)
            return self.query(*pair)

        with ThreadPoolExecutor(max_workers=min(8, len(pairs))) as pool:
            return list(pool.map(one, pairs))

    def _query(self, name: str, rdtype: str, timeout: float) -> Lookup:
        try:
            request = dns.message.make_query(name, rdtype)
        except (dns.exception.DNSException, UnicodeError, ValueError) as error:
            return Lookup(name, rdtype, "error", detail=f"not a valid DNS name ({error})")
        try:
            response, _tcp = dns.query.udp_with_fallback(request, self.host, timeout=timeout, port=self.port)
        except dns.exception.Timeout:
            return Lookup(name, rdtype, "timeout")
        except (OSError, dns.exception.DNSException, EOFError) as error:
            return Lookup(name, rdtype, "error", detail=str(error) or type(error).__name__)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return Lookup(name, rdtype, "nxdomain")
        if rcode == dns.rcode.SERVFAIL:
            return Lookup(name, rdtype, "servfail")
        if rcode == dns.rcode.REFUSED:
            return Lookup(name, rdtype, "refused")
        if rcode != dns.rcode.NOERROR:
            return Lookup(name, rdtype, "error", detail=f"rcode {dns.rcode.to_text(rcode)}")
        try:
            chain = response.resolve_chaining()
        except dns.exception.DNSException as error:
            return Lookup(name, rdtype, "error", detail=str(error))
        if chain.answer is None:
            return Lookup(name, rdtype, "nodata")
        return Lookup(name, rdtype, "ok", records=list(chain.answer))

    def alive(self) -> tuple[bool, str]:
        """Does anything answer DNS at the resolver's address? Asked once per client.

        Any answer at all to 'localhost. A' (every resolver answers it at once, RFC 6761)
        shows the resolver works, so a timeout for another name is a fact about that name.
        """
        with self._lock:
            if self._alive is None:
                self._alive = self._probe()
            return self._alive

    def _probe(self) -> tuple[bool, str]:
        wire = dns.message.make_query("localhost.", "A").to_wire()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect((self.host, self.port))  # connected: a closed port fails at once
                sock.send(wire)
                sock.recv(4096)
        except TimeoutError:
            return False, f"the resolver {self.label} did not answer within {self.timeout:g} s"
        except ConnectionRefusedError:
            return False, f"nothing answers DNS at {self.label} (connection refused)"
        except OSError as error:
            return False, f"cannot reach the resolver {self.label} ({error.strerror or error})"
        return True, ""

    def upstream(self) -> tuple[bool, str]:
        """Can the resolver recurse to the Internet? Asked once per client, only when a lookup
        timed out or SERVFAILed: a resolver answers 'localhost.' itself, but a timeout for a
        domain means something only if the canary (which needs upstream recursion) is answered."""
        with self._upstream_lock:
            if self._upstream is None:
                name, rdtype = self.canary
                found = self._query(name, rdtype, self.timeout)
                if found.status in ("ok", "nodata", "nxdomain"):
                    self._upstream = (True, "")
                else:
                    self._upstream = (
                        False,
                        f"the resolver {self.label} answers, but cannot reach the Internet: "
                        f"'{name} {rdtype}' (a name it must ask upstream) got {describe(found)}. "
                        "Check its forwarders or network, or give --resolver another one",
                    )
            return self._upstream


def parse_canary(text: str) -> tuple[str, str]:
    """'. NS', 'example.org', 'example.org TXT' -> (name, type); the type defaults to A."""
    parts = text.split()
    if not parts or len(parts) > 2:
        raise ResolverError(f"'{text}' is not a DNS canary (give 'NAME' or 'NAME TYPE')")
    rdtype = parts[1].upper() if len(parts) == 2 else "A"
    try:
        dns.rdatatype.from_text(rdtype)
    except dns.rdatatype.UnknownRdatatype:
        raise ResolverError(f"'{text}': '{parts[1]}' is not a DNS record type") from None
    return parts[0], rdtype


def upstream_down(client: DnsClient, check: str, target: str, lookup: Lookup) -> CheckResult | None:
    """After a timeout or SERVFAIL: 'could not check' when the resolver cannot reach the
    Internet at all (the failure says nothing about TARGET); None when it can."""
    if lookup.status not in ("timeout", "servfail"):
        return None
    ok, why = client.upstream()
    return None if ok else could_not_check(check, target, why, resolver=client.label, lookup=lookup.status)


def unreachable(client: DnsClient, check: str, target: str) -> CheckResult | None:
    """'Could not check' when the resolver itself is down; None when it works."""
    ok, why = client.alive()
    return None if ok else could_not_check(check, target, why, resolver=client.label)


def timed(check):
    """Decorator: fill in elapsed_ms and resolver on the CheckResult(s) a check returns."""

    def run(client: DnsClient, *args, **kwargs):
        started = time.monotonic()
        result = check(client, *args, **kwargs)
        elapsed = int((time.monotonic() - started) * 1000)
        results = result if isinstance(result, list) else [result]
        stamped = [_stamp(r, client.label, elapsed) for r in results]
        return stamped if isinstance(result, list) else stamped[0]

    run.__name__ = check.__name__
    run.__doc__ = check.__doc__
    return run


def _stamp(result: CheckResult, resolver: str, elapsed: int) -> CheckResult:
    return replace(result, resolver=result.resolver or resolver, elapsed_ms=elapsed)
