"""STARTTLS on a domain's MX: connect to port 25, EHLO, STARTTLS, and check the
certificate (trusted, names the MX host, not expired). Only when asked (`--check-tls`):
it opens an SMTP connection to someone else's server."""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime

from bot.checks import OK, PROBLEM, WARNING, CheckResult, could_not_check
from bot.checks.dns import DnsClient, timed, unreachable

EHLO_NAME = "whyfailed.invalid"
EXPIRY_WARNING_DAYS = 14


class _SmtpError(Exception):
    pass


@timed
def check_tls(
    client: DnsClient,
    domain: str,
    port: int = 25,
    timeout: float = 5.0,
    cafile: str | None = None,
    host: str | None = None,
) -> CheckResult:
    """STARTTLS on DOMAIN's best MX (or on HOST when given, e.g. the server in the log)."""
    domain = domain.strip().rstrip(".").lower()
    if down := unreachable(client, "tls", host or domain):
        return down
    host, address, why = _mx_address(client, domain, host)
    if address is None:
        return could_not_check("tls", host or domain, why)
    target = f"{host}:{port}"
    try:
        banner, details = _session(address, port, host, timeout, ssl.create_default_context(cafile=cafile))
    except _BeforeTls as error:
        return _no_starttls(target, address, error.__cause__)
    except ssl.SSLCertVerificationError as error:
        facts = [f"{host} [{address}]:{port} offers STARTTLS"] + _unverified_details(address, port, host, timeout)
        return CheckResult(
            "tls",
            target,
            PROBLEM,
            f"{host} offers STARTTLS, but its certificate does not verify now: {error.verify_message}. "
            "Senders that require TLS (or MTA-STS/DANE) will not deliver; the server's admin must install a valid "
            "certificate for this name.",
            facts=tuple(facts),
            data={"starttls": True, "verified": False, "error": error.verify_message},
        )
    except TimeoutError:  # after STARTTLS: a slow or filtered path says nothing about the server's TLS
        return could_not_check(
            "tls",
            target,
            f"{host} accepted STARTTLS, but the TLS handshake did not finish within {timeout:g} s",
            starttls=True,
        )
    except OSError as error:  # ssl.SSLError included: the handshake itself failed
        return CheckResult(
            "tls",
            target,
            PROBLEM,
            f"{host} offers STARTTLS, but the TLS handshake fails now ({error}): senders that require TLS will "
            "not deliver. The server's admin must fix its TLS settings (protocols, ciphers, certificate).",
            facts=(f"{host} [{address}]:{port} offers STARTTLS",),
            data={"starttls": True, "verified": False, "error": str(error)},
        )
    return _judge_certificate(target, host, [f"{host} [{address}]:{port}: {banner}"], details)


class _BeforeTls(Exception):
    """The connection, greeting, EHLO or STARTTLS command failed (the cause is chained)."""


def _session(address: str, port: int, host: str, timeout: float, context: ssl.SSLContext) -> tuple[str, dict]:
    """Connect, go through STARTTLS and the TLS handshake: (greeting, what the handshake gave)."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as error:
        raise _BeforeTls() from error
    with sock:
        sock.settimeout(timeout)
        try:
            banner = _smtp_to_starttls(sock)
        except (OSError, _SmtpError) as error:
            raise _BeforeTls() from error
        with context.wrap_socket(sock, server_hostname=host) as tls:
            details = {"version": tls.version(), "cipher": (tls.cipher() or ("?",))[0]}
            details["cert"] = tls.getpeercert(binary_form=context.verify_mode == ssl.CERT_NONE)
            return banner, details


def _mx_address(client: DnsClient, domain: str, host: str | None) -> tuple[str | None, str | None, str]:
    if host is None:
        mx = client.query(domain, "MX")
        records = sorted(mx.records, key=lambda r: r.preference) if mx.status == "ok" else []
        hosts = [r.exchange.to_text().rstrip(".") for r in records if r.exchange.to_text() != "."]
        host = hosts[0] if hosts else (domain if mx.status == "nodata" else None)
        if host is None:
            return None, None, f"{domain} has no MX host to connect to ({mx.status})"
    for rdtype in ("A", "AAAA"):
        found = client.query(host, rdtype)
        if found.status == "ok":
            return host, found.texts()[0], ""
    return host, None, f"{host} has no address"


def _read_reply(stream) -> tuple[int, list[str]]:
    lines = []
    while True:
        line = stream.readline(4096).decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise _SmtpError(f"not an SMTP reply: {line[:80]!r}" if line else "the server closed the connection")
        lines.append(line)
        if len(line) == 3 or line[3] != "-" or len(lines) > 100:
            return int(line[:3]), lines


def _smtp_to_starttls(sock: socket.socket) -> str:
    """Greeting, EHLO, STARTTLS: returns the EHLO reply's first line once the server said 220 to STARTTLS."""
    stream = sock.makefile("rb")
    code, lines = _read_reply(stream)
    if code != 220:
        raise _SmtpError(f"greeting: {lines[-1]}")
    sock.sendall(f"EHLO {EHLO_NAME}\r\n".encode())
    code, ehlo = _read_reply(stream)
    if code != 250:
        raise _SmtpError(f"EHLO: {ehlo[-1]}")
    if not any(line[4:].strip().upper().startswith("STARTTLS") for line in ehlo):
        raise _SmtpError("the server does not offer STARTTLS")
    sock.sendall(b"STARTTLS\r\n")
    code, reply = _read_reply(stream)
    stream.close()  # the socket stays open for the TLS handshake
    if code != 220:
        raise _SmtpError(f"STARTTLS: {reply[-1]}")
    return lines[0][:120]


def _unverified_details(address: str, port: int, host: str, timeout: float) -> list[str]:
    """What the certificate says, read without verifying it (best effort, needs `cryptography`)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, details = _session(address, port, host, timeout, context)
        from cryptography import x509

        cert = x509.load_der_x509_certificate(details["cert"])
    except (OSError, _BeforeTls, ImportError, ValueError):
        return []
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = extension.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return [f"certificate names: {', '.join(names) or '(none)'}", f"expires: {cert.not_valid_after_utc:%Y-%m-%d}"]


def _no_starttls(target: str, address: str, error: Exception) -> CheckResult:
    if isinstance(error, _SmtpError) and "does not offer STARTTLS" in str(error):
        return CheckResult(
            "tls",
            target,
            PROBLEM,
            f"{target} does not offer STARTTLS now: senders that require TLS will not deliver to it. "
            "The server's admin must enable STARTTLS.",
            data={"starttls": False},
        )
    if isinstance(error, _SmtpError):
        return CheckResult(
            "tls", target, PROBLEM, f"{target} answered, but not as expected: {error}", data={"starttls": None}
        )
    if isinstance(error, TimeoutError):
        why = f"no answer from {address} within the timeout (port {target.rsplit(':', 1)[1]} may be filtered here)"
    else:
        why = f"cannot connect to {address}: {getattr(error, 'strerror', None) or error}"
    return could_not_check("tls", target, why)


def _judge_certificate(target: str, host: str, facts: list[str], details: dict) -> CheckResult:
    cert = details["cert"]
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    days = (expires - datetime.fromtimestamp(time.time(), UTC)).days
    facts = facts + [
        f"TLS: {details['version']}, {details['cipher']}",
        f"certificate names: {', '.join(names) or '(none)'}",
        f"expires: {expires:%Y-%m-%d} (in {days} days)",
    ]
    data = {"starttls": True, "verified": True, "names": names, "expires": expires.isoformat(), "days_left": days}
    data["tls_version"] = details["version"]
    if days < EXPIRY_WARNING_DAYS:
        return CheckResult(
            "tls",
            target,
            WARNING,
            f"{host} has a valid certificate, but it expires in {days} days: renew it.",
            facts=tuple(facts),
            data=data,
        )
    return CheckResult(
        "tls",
        target,
        OK,
        f"{host} offers STARTTLS with a valid certificate for its name now ({details['version']}). If TLS failed "
        "in the log, it was fixed since, or the sender's TLS settings (old protocols, its CA list) are the cause.",
        facts=tuple(facts),
        data=data,
    )
