"""Which checks confirm which diagnosis, and running them: concurrently, each with a short
timeout, the whole run bounded, and "could not check" said plainly when they cannot run.

    dns-mx-failure, dns-lookup-failed       -> dns (the recipient domain)
    reverse-dns-missing, blocked-reputation -> reverse + dnsbl (the sending IP)
    client-reverse-dns-missing, client-blocklisted -> the same, for the client we refused
    auth-spf-dkim-dmarc, client-auth-spf-dkim-dmarc -> spf + dmarc (+ dkim when the log names a selector)
    tls-failure                              -> tls, only when asked (it connects to the MX)
"""

from __future__ import annotations

import ipaddress
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.checks import CHECKS_FOR, SKIPPED, CheckResult, auth, checkable, could_not_check, dkim, dnsbl, reverse, tls
from bot.checks.dns import DnsClient, ResolverError, resolver_address
from bot.checks.domain import check_domain
from bot.model import Delivery, Report

__all__ = ["CHECKS_FOR", "CheckSettings", "Task", "check_report", "checkable", "checks_for", "run_tasks"]
MAX_WORKERS = 8
MAX_TASKS = 60  # distinct checks for one report; a huge log gets the first ones

_IPV4 = re.compile(r"(?<![\d.])((?:\d{1,3}\.){3}\d{1,3})(?![\d.])")
_IPV6 = re.compile(r"(?:\[|\bIPv6:)([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})\]?")
_DOMAIN_IN_TEXT = re.compile(
    r"(?:name=|lookup of |DNS domain |Domain |email from |sending domain |domain of )"
    r"([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)",
)
_NOT_PUBLIC = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


@dataclass(frozen=True, slots=True)
class CheckSettings:
    resolver: str | None = None  # IP[:PORT]; None: $WHYFAILED_RESOLVER, else resolv_conf's first nameserver
    resolv_conf: str = "/etc/resolv.conf"  # containers and tests may point elsewhere
    timeout: float = 2.0  # one DNS query
    check_timeout: float = 8.0  # one check, all its queries
    total_timeout: float = 20.0  # every check of a report
    dnsbl_zones: tuple[str, ...] | None = None  # None: $WHYFAILED_DNSBL_ZONES, else the defaults
    public_resolver: bool | None = None  # the resolver is (or forwards to) 8.8.8.8 and the like; None: by its address
    tls: bool = False  # connect to MX hosts (tls-failure): only when asked
    smtp_port: int = 25  # the MX's SMTP port; only tests use another (diagnose --smtp-port, hidden)
    tls_timeout: float = 4.0
    cafile: str | None = None  # trust these CAs instead of the system's (tests)
    canary: str | None = None  # 'NAME [TYPE]' that needs upstream recursion; None: $WHYFAILED_DNS_CANARY, else '. NS'

    @classmethod
    def from_settings(cls, settings: object | None = None, **overrides) -> CheckSettings:
        """CheckSettings from a settings object such as bot.settings.Settings: it reads the
        attributes resolver, dns_canary, dnsbl_zones (a list or 'a,b'), check_tls and
        check_timeout where the object has them (so WHYFAILED_RESOLVER and friends work through
        .env too); what it lacks keeps the default. OVERRIDES win over both."""
        names = {"resolver": "resolver", "dns_canary": "canary", "check_tls": "tls", "check_timeout": "check_timeout"}
        found = {ours: getattr(settings, theirs) for theirs, ours in names.items() if hasattr(settings, theirs)}
        zones = getattr(settings, "dnsbl_zones", None)
        if isinstance(zones, str):
            zones = zones.split(",")
        if zones:
            found["dnsbl_zones"] = tuple(z.strip().strip(".").lower() for z in zones if z.strip()) or None
        found = {key: value for key, value in found.items() if value is not None}
        return cls(**{**found, **overrides})


@dataclass(frozen=True, slots=True)
class Task:
    check: str  # dns | reverse | dnsbl | spf | dmarc | dkim | tls
    target: str
    extra: str | None = None  # the DKIM domain; the MX host for tls


def checks_for(delivery: Delivery, settings: CheckSettings) -> list[Task | CheckResult]:
    """The checks that apply to DELIVERY's diagnosis, or a 'could not check' when the log
    lacks what a check needs (the domain, the sending IP)."""
    if delivery.diagnosis is None or delivery.diagnosis.id not in CHECKS_FOR:
        return []
    planned: list[Task | CheckResult] = []
    for kind in CHECKS_FOR[delivery.diagnosis.id]:
        planned += _plan(kind, delivery, settings)
    return planned


def _plan(kind: str, delivery: Delivery, settings: CheckSettings) -> list[Task | CheckResult]:
    if kind in ("reverse", "dnsbl"):
        ip = sending_ip(delivery)
        if ip is None:
            return [could_not_check(kind, "(sending IP)", "the log does not show the sending IP address")]
        return [Task(kind, ip)]
    if kind == "auth":
        domain = sender_domain(delivery)
        if domain is None:
            return [could_not_check("spf", "(sender domain)", "the log does not show the sender's domain")]
        texts = [e.text for e in delivery.evidence()] + [a.text or "" for a in delivery.attempts]
        keys = [Task("dkim", selector, signing) for selector, signing in dkim.dkim_selectors(texts, domain)]
        return [Task("spf", domain), Task("dmarc", domain), *keys]
    domain = recipient_domain(delivery)
    if domain is None:
        return [could_not_check(kind, "(recipient domain)", "the log does not show the recipient's domain")]
    if kind == "tls":
        if not settings.tls:
            return [
                CheckResult(
                    "tls",
                    domain,
                    SKIPPED,
                    "Not checked: connecting to the receiving server's port 25 happens only with --check-tls.",
                )
            ]
        final = delivery.final
        host = final.remote_host if final and final.remote_host and final.remote_host != "none" else None
        return [Task("tls", domain, host)]
    return [Task(kind, domain)]


def recipient_domain(delivery: Delivery) -> str | None:
    if delivery.recipient and "@" in delivery.recipient:
        domain = delivery.recipient.rsplit("@", 1)[1].strip("<>. ").lower()
        if domain:
            return domain
    return _domain_in_text(delivery)


def sender_domain(delivery: Delivery) -> str | None:
    if delivery.sender and "@" in delivery.sender:
        domain = delivery.sender.rsplit("@", 1)[1].strip("<>. ").lower()
        if domain:
            return domain
    return _domain_in_text(delivery)


def _domain_in_text(delivery: Delivery) -> str | None:
    for attempt in reversed(delivery.attempts):
        if m := _DOMAIN_IN_TEXT.search(attempt.text or ""):
            return m.group(1).rstrip(".").lower()
    return None


def sending_ip(delivery: Delivery) -> str | None:
    """The IP whose reputation is in question: the one the receiver's reply names (our
    server's, for outgoing mail), else, for mail we received, the client's."""
    final = delivery.final
    server_ips = {a.remote_ip for a in delivery.attempts if a.remote_ip} if delivery.direction != "in" else set()
    for attempt in [final, *reversed(delivery.attempts)] if final else []:
        text = attempt.text or ""
        for candidate in _IPV4.findall(text) + _IPV6.findall(text):
            ip = _public_ip(candidate)
            if ip and ip not in server_ips:
                return ip
    if delivery.direction == "in" and final and final.remote_ip:
        return _public_ip(final.remote_ip)
    return None


def _public_ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast:
        return None
    if any(ip.version == net.version and ip in net for net in _NOT_PUBLIC):
        return None
    return ip.compressed


# --- running ------------------------------------------------------------------------------


def check_report(report: Report, settings: CheckSettings | None = None) -> Report:
    """Run the checks that apply to each delivery of REPORT; store them in `delivery.checks`
    (an empty list when none applies). Returns REPORT.

    The entry point for every surface: safe to call from a worker thread, and from several at
    once (each call has its own resolver client and threads; nothing global is touched). It
    blocks for at most about settings.total_timeout, and reports a failed or slow check as
    'could not check' instead of raising."""
    settings = settings or CheckSettings()
    plans = [checks_for(d, settings) for d in report.deliveries]
    tasks = list(dict.fromkeys(t for plan in plans for t in plan if isinstance(t, Task)))
    done = run_tasks(tasks, settings) if tasks else {}
    for delivery, plan in zip(report.deliveries, plans, strict=True):
        results: list[CheckResult] = []
        for item in plan:
            results += done[item] if isinstance(item, Task) else [item]
        delivery.checks = results
    return report


def run_tasks(tasks: list[Task], settings: CheckSettings) -> dict[Task, list[CheckResult]]:
    """MAX_WORKERS daemon threads work through the tasks; a task that runs longer than
    check_timeout, or is not done by total_timeout, is reported as not checked. At most
    MAX_TASKS distinct checks run for one report."""
    client, why = _client(settings)
    if client is None:
        return {t: [could_not_check(t.check, t.target, why)] for t in tasks}
    results: dict[Task, list[CheckResult]] = {
        t: [could_not_check(t.check, t.target, f"more than {MAX_TASKS} checks were needed; these were not run")]
        for t in tasks[MAX_TASKS:]
    }
    tasks = tasks[:MAX_TASKS]
    started: dict[Task, float] = {}
    done = threading.Condition()
    todo = queue.SimpleQueue()
    for task in tasks:
        todo.put(task)

    def work() -> None:
        while True:
            try:
                task = todo.get_nowait()
            except queue.Empty:
                return
            with done:
                if task in results:  # given up on while it waited
                    continue
                started[task] = time.monotonic()
            found = _run_one(task, client, settings, started[task])
            with done:
                results.setdefault(task, found)
                done.notify_all()

    for n in range(min(MAX_WORKERS, len(tasks))):
        threading.Thread(target=work, name=f"whyfailed-check-{n}", daemon=True).start()
    _wait(tasks, results, started, done, settings, client.label)
    return results


def _run_one(task: Task, client: DnsClient, settings: CheckSettings, started: float) -> list[CheckResult]:
    client.set_deadline(started + settings.check_timeout)
    try:
        found = _execute(task, client, settings)
    except Exception as error:  # a bug in a check must not sink the report
        return [could_not_check(task.check, task.target, f"the check failed ({type(error).__name__}: {error})")]
    if time.monotonic() - started > settings.check_timeout:
        return _too_slow(task, settings.check_timeout, client.label)
    return found if isinstance(found, list) else [found]


def _wait(tasks, results, started, done, settings: CheckSettings, resolver: str) -> None:
    deadline = time.monotonic() + settings.total_timeout
    with done:
        while len(results) < len(tasks):
            now = time.monotonic()
            for task in tasks:
                if task not in results and (now >= deadline or now - started.get(task, now) > settings.check_timeout):
                    limit = settings.total_timeout if now >= deadline else settings.check_timeout
                    results[task] = _too_slow(task, limit, resolver)
            if len(results) < len(tasks):
                done.wait(timeout=max(0.01, min(0.1, deadline - now)))


def _too_slow(task: Task, limit: float, resolver: str) -> list[CheckResult]:
    return [could_not_check(task.check, task.target, f"no result within {limit:g} s", resolver=resolver)]


def _client(settings: CheckSettings) -> tuple[DnsClient | None, str]:
    try:
        server = resolver_address(settings.resolver, settings.resolv_conf)
        if server is None:
            why = f"no DNS resolver is configured here (no nameserver in {settings.resolv_conf}): give --resolver IP"
            return None, why
        return DnsClient(server, timeout=settings.timeout, canary=settings.canary), ""
    except ResolverError as error:
        return None, f"bad resolver setting: {error}"


def _execute(task: Task, client: DnsClient, settings: CheckSettings) -> CheckResult | list[CheckResult]:
    runners: dict[str, Callable[[], CheckResult | list[CheckResult]]] = {
        "dns": lambda: check_domain(client, task.target),
        "reverse": lambda: reverse.check_reverse(client, task.target),
        "dnsbl": lambda: dnsbl.check_dnsbl(client, task.target, settings.dnsbl_zones, settings.public_resolver),
        "spf": lambda: auth.check_spf(client, task.target),
        "dmarc": lambda: auth.check_dmarc(client, task.target),
        "dkim": lambda: dkim.check_dkim(client, task.target, task.extra),
        "tls": lambda: tls.check_tls(
            client,
            task.target,
            port=settings.smtp_port,
            timeout=settings.tls_timeout,
            cafile=settings.cafile,
            host=task.extra,
        ),
    }
    return runners[task.check]()
