"""Checked now (bot/checks): the parsers on their own, then every check against a real
unbound resolver that this module starts on 127.0.0.1, serving the zones in
tests/fixtures/checks/zones. Nothing is sent anywhere but 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from bot.checks import COULD_NOT_CHECK, OK, PROBLEM, SKIPPED, WARNING
from bot.checks.auth import check_dmarc, check_spf, organizational_domain, parse_dmarc, parse_spf
from bot.checks.dkim import check_dkim, dkim_selectors, rsa_key_bits
from bot.checks.dns import DnsClient, ResolverError, parse_resolver, resolver_address
from bot.checks.dnsbl import (
    POLICY_NOTE,
    PUBLIC_RESOLVERS,
    check_dnsbl,
    configured_zones,
    query_name,
    refuses_public_resolvers,
)
from bot.checks.domain import check_domain
from bot.checks.reverse import check_reverse
from bot.checks.run import CheckSettings, check_report, checks_for, sending_ip
from bot.checks.tls import check_tls
from bot.model import Attempt, Delivery, Diagnosis
from bot.render.json import report_to_dict
from bot.render.markdown import render_markdown
from bot.render.text import render_text
from bot.report import diagnose_text
from tests.conftest import FIXTURES
from tests.unbound_server import free_port

KEY_2048 = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvw43soZQ4d2xp1kgzTpNTl6MNBEgnsPFm3eydPKD1SRBU8G/BgLqdeHC2EZzpFi6y"
    "TgGRKVBwXrGxfuf1Q5ZDNQlVaLCgqwnZu4RmN6JFYGbLLBgtU+P7+6byKWTaWXspIvKchfjaZgVAUrAHd+Wfe61oUxSy9sqT7NcQfHHmAmpc"
    "N/ma1wz6MWuxHqIm5ByszvLTvAivty1okYhyHEUA8wHqrCSRQJ7Ipb4od6rc3ZTRhSh0pmMYbT+11nrBkDu+sPfjQfkJ8a/bwbRnaFqaLOEt"
    "LsLxJqBCHGD1tFCTkxHB3bfZgu7M7joB4y/MWcpWrye4Bxc1nxpz5+DwUfXnQIDAQAB"
)


# --- without a server ---------------------------------------------------------------------


def test_resolver_addresses_parse_with_and_without_port():
    assert parse_resolver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("::1") == ("::1", 53)
    assert parse_resolver("[::1]:5353") == ("::1", 5353)
    for bad in ("resolver.example", "127.0.0.1:0", "127.0.0.1:http", "[::1]x"):
        with pytest.raises(ResolverError):
            parse_resolver(bad)


def test_resolver_comes_from_the_parameter_then_the_environment(monkeypatch):
    monkeypatch.setenv("WHYFAILED_RESOLVER", "127.0.0.9:5300")
    assert resolver_address(None) == ("127.0.0.9", 5300)
    assert resolver_address("127.0.0.1:53") == ("127.0.0.1", 53)


def test_spf_syntax_errors_name_the_term():
    terms, errors = parse_spf("v=spf1 ip4:192.0.2.300 incldue:spf.example.org a:bad..name mx/24 -all")
    assert [t.name for t in terms] == ["mx", "all"]
    assert any("192.0.2.300" in e for e in errors)
    assert any("unknown mechanism 'incldue:spf.example.org'" in e for e in errors)
    assert any("a:bad..name" in e for e in errors)
    assert parse_spf("v=spf1 ip6:2001:db8::/32 include:_spf.example.org redirect=_spf.example.net")[1] == []
    assert parse_spf("v=spf2 -all")[1] == ["the record does not start with 'v=spf1'"]
    assert parse_spf("v=spf1 ip4:2001:db8::1 all:x")[1] != []


def test_dmarc_tags_and_policy_errors():
    tags, errors = parse_dmarc("v=DMARC1; p=reject; rua=mailto:d@example.org; pct=50")
    assert tags["p"] == "reject" and tags["pct"] == "50" and errors == []
    assert "'p=' is missing" in parse_dmarc("v=DMARC1; rua=mailto:d@example.org")[1]
    assert any("must start" in e for e in parse_dmarc("p=none; v=DMARC1")[1])
    assert organizational_domain("mail.eu.example.org") == "example.org"
    assert organizational_domain("news.shop.co.uk") == "shop.co.uk"


def test_dkim_selectors_come_from_signature_and_results_tags():
    texts = [
        "dkim=fail (signature did not verify) header.d=example.org header.s=sel1",
        "DKIM-Signature: v=1; a=rsa-sha256; d=mail.example.net; s=2024a; c=relaxed/relaxed",
        "status=bounced (delays=0.1/0 dsn=5.7.1 ... s=)",  # 'status=' and 'delays=' are not s=
    ]
    assert dkim_selectors(texts, "fallback.example") == [("sel1", "example.org"), ("2024a", "mail.example.net")]
    assert dkim_selectors(["policy s=google"], "example.com") == [("google", "example.com")]


def test_rsa_key_size_is_read_from_the_der_key():
    import base64

    assert rsa_key_bits(base64.b64decode(KEY_2048)) == 2048
    assert rsa_key_bits(b"\x30\x03\x02\x01") is None


def test_dnsbl_query_names_reverse_the_address(monkeypatch):
    assert query_name("192.0.2.11", "dnsbl.example") == "11.2.0.192.dnsbl.example."
    assert query_name("2001:db8::1", "bl.example").startswith("1.0.0.0.") and query_name(
        "2001:db8::1", "bl.example"
    ).endswith(".8.b.d.0.1.0.0.2.bl.example.")
    monkeypatch.delenv("WHYFAILED_DNSBL_ZONES", raising=False)
    assert configured_zones(None) == ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org")
    monkeypatch.setenv("WHYFAILED_DNSBL_ZONES", "bl.example, dnsbl.example")
    assert configured_zones(None) == ("bl.example", "dnsbl.example")
    assert configured_zones(["Bl.Example."]) == ("bl.example",)


def _delivery(diagnosis: str, text: str, direction: str = "out", **fields) -> Delivery:
    attempt = Attempt(status="bounced", text=text, remote_ip=fields.pop("remote_ip", None))
    found = Diagnosis(diagnosis, "t", "permanent", "sender", 0.9, "s")
    return Delivery(
        recipient=fields.pop("recipient", "bob@mx-ok.example"),
        direction=direction,
        attempts=[attempt],
        diagnosis=found,
        **fields,
    )


def test_sending_ip_is_the_one_the_receiver_names_not_the_receiver():
    out = _delivery("blocked-reputation", "554 Client host [192.0.2.11] blocked using x", remote_ip="198.51.100.25")
    assert sending_ip(out) == "192.0.2.11"
    server_only = _delivery("blocked-reputation", "554 blocked", remote_ip="198.51.100.25")
    assert sending_ip(server_only) is None
    received = _delivery("reverse-dns-missing", "450 cannot find your hostname", direction="in", remote_ip="192.0.2.12")
    assert sending_ip(received) == "192.0.2.12"
    private = _delivery("blocked-reputation", "554 Client host [10.1.2.3] blocked")
    assert sending_ip(private) is None


def test_which_checks_apply_to_which_diagnosis():
    settings = CheckSettings()
    kinds = lambda d: [getattr(t, "check", None) for t in checks_for(d, settings)]  # noqa: E731
    assert kinds(_delivery("dns-mx-failure", "x")) == ["dns"]
    assert kinds(_delivery("dns-lookup-failed", "x")) == ["dns"]
    assert kinds(_delivery("blocked-reputation", "[192.0.2.11] blocked")) == ["reverse", "dnsbl"]
    assert kinds(_delivery("auth-spf-dkim-dmarc", "x", sender="a@sender-good.example")) == ["spf", "dmarc"]
    assert kinds(_delivery("unknown-user", "x")) == []
    tls_plan = checks_for(_delivery("tls-failure", "x"), settings)
    assert tls_plan[0].status == SKIPPED and "--check-tls" in tls_plan[0].summary
    assert checks_for(_delivery("tls-failure", "x"), CheckSettings(tls=True))[0].check == "tls"
    no_ip = checks_for(_delivery("reverse-dns-missing", "550 no PTR"), settings)
    assert [r.status for r in no_ip] == [COULD_NOT_CHECK, COULD_NOT_CHECK]


# --- a real resolver on loopback ------------------------------------------------------------


@pytest.fixture
def client(resolver) -> DnsClient:
    return DnsClient(parse_resolver(resolver), timeout=1.0)


@pytest.fixture
def closed_resolver() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.mark.slow
def test_domain_with_mx_is_routable_now(client):
    result = check_domain(client, "mx-ok.example")
    assert result.status == OK
    assert [h["host"] for h in result.data["mx"]] == ["mx1.mx-ok.example", "mx2.mx-ok.example"]
    assert "MX 10 mx1.mx-ok.example -> 127.0.0.1" in result.facts
    assert "MX 20 mx2.mx-ok.example -> ::1" in result.facts
    assert result.resolver == client.label and result.elapsed_ms is not None


@pytest.mark.slow
def test_null_mx_nxdomain_dangling_and_implicit_mx(client):
    parked = check_domain(client, "parked.example")
    assert parked.status == PROBLEM and parked.data["null_mx"] and "RFC 7505" in parked.summary
    missing = check_domain(client, "no-such-domain.example")
    assert missing.status == PROBLEM and missing.data == {"mx": "nxdomain"} and "NXDOMAIN" in missing.summary
    dangling = check_domain(client, "dangling.example")
    assert dangling.status == PROBLEM and "none of its MX hosts has an address" in dangling.summary
    implicit = check_domain(client, "implicit.example")
    assert implicit.status == WARNING and implicit.data["addresses"] == ["127.0.0.1"]


@pytest.mark.slow
def test_null_mx_mixed_with_other_mx_is_a_problem(client):
    mixed = check_domain(client, "mixed.example")
    assert mixed.status == PROBLEM and mixed.data["null_mx"] and "mixes a null MX" in mixed.summary
    assert mixed.facts == ("MX 0 .", "MX 10 mx1.mx-ok.example.")


@pytest.mark.slow
def test_servfail_and_timeout_are_told_apart(client):
    servfail = check_domain(client, "servfail.test")
    assert servfail.status == PROBLEM and servfail.data == {"mx": "servfail"} and "SERVFAIL" in servfail.summary
    started = time.monotonic()
    timeout = check_domain(client, "timeout.example")
    assert time.monotonic() - started < 5
    assert timeout.status == PROBLEM and timeout.data == {"mx": "timeout"}
    assert "though the resolver works" in timeout.summary


@pytest.mark.slow
def test_closed_resolver_port_is_could_not_check_at_once(closed_resolver):
    client = DnsClient(parse_resolver(closed_resolver), timeout=1.0)
    started = time.monotonic()
    result = check_domain(client, "mx-ok.example")
    assert time.monotonic() - started < 2
    assert result.status == COULD_NOT_CHECK
    assert "nothing answers DNS" in result.summary and closed_resolver in result.summary


@pytest.mark.slow
def test_a_resolver_without_upstream_is_could_not_check_for_every_dns_check(offline_resolver):
    # The resolver answers (localhost. A), but every lookup of a remote domain times out or
    # SERVFAILs: that is a fact about the resolver, not about the domains.
    client = DnsClient(parse_resolver(offline_resolver), timeout=1.0)
    results = [
        check_domain(client, "mx-ok.example"),
        check_reverse(client, "192.0.2.10"),
        check_spf(client, "sender-good.example"),
        check_dmarc(client, "sender-good.example"),
        check_dkim(client, "sel1", "sender-good.example"),
        check_dnsbl(client, "192.0.2.11", ["dnsbl.example"]),
    ]
    assert [r.check for r in results] == ["dns", "reverse", "spf", "dmarc", "dkim", "dnsbl"]
    for result in results:
        assert result.status == COULD_NOT_CHECK, result.summary
        assert "cannot reach the Internet" in result.summary and "'. NS'" in result.summary
        assert result.resolver == offline_resolver


@pytest.mark.slow
def test_the_upstream_canary_is_configurable(offline_resolver, resolver):
    # A canary the offline resolver answers itself (RFC 6761 localhost) proves nothing, so
    # the domain's timeout is then blamed on the domain: the canary decides.
    fooled = DnsClient(parse_resolver(offline_resolver), timeout=1.0, canary="localhost A")
    assert check_domain(fooled, "mx-ok.example").status == PROBLEM
    # On the working resolver a canary that fails makes even a SERVFAIL "could not check".
    strict = DnsClient(parse_resolver(resolver), timeout=1.0, canary="canary.timeout.example TXT")
    result = check_domain(strict, "servfail.test")
    assert result.status == COULD_NOT_CHECK and "'canary.timeout.example TXT'" in result.summary
    with pytest.raises(ResolverError):
        DnsClient(parse_resolver(resolver), canary="example. NOTATYPE")


@pytest.mark.slow
def test_cli_check_through_a_resolver_without_upstream(run_cli, offline_resolver):
    done = run_cli("diagnose", "tests/fixtures/checks/auth.log", "--check", "--resolver", offline_resolver,
                   "--format", "json", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    checks = [c for d in json.loads(done.stdout)["deliveries"] for c in d["checks"]]
    assert {c["check"] for c in checks} == {"spf", "dmarc", "dkim"}
    assert all(c["status"] == "could-not-check" and "cannot reach the Internet" in c["summary"] for c in checks)


@pytest.mark.slow
def test_reverse_dns_confirmed_unconfirmed_and_missing(client):
    good = check_reverse(client, "192.0.2.10")
    assert good.status == OK and good.data == {
        "ptr": ["mail.sender-good.example"],
        "ptr_status": "ok",
        "confirmed": True,
    }
    unconfirmed = check_reverse(client, "192.0.2.11")
    assert unconfirmed.status == PROBLEM and not unconfirmed.data["confirmed"]
    assert "PTR 192.0.2.11 -> dynamic-11.isp.example -> 192.0.2.99" in unconfirmed.facts
    missing = check_reverse(client, "192.0.2.12")
    assert missing.status == PROBLEM and missing.data["ptr_status"] == "nxdomain"


@pytest.mark.slow
def test_reverse_dns_of_a_dynamic_pool_and_over_ipv6(client):
    pool = check_reverse(client, "192.0.2.13")
    assert pool.status == WARNING and pool.data["confirmed"] and "dynamic or residential pool" in pool.summary
    six = check_reverse(client, "2001:db8::25")
    assert six.status == OK and six.data["ptr"] == ["mail6.sender-good.example"]
    assert "PTR 2001:db8::25 -> mail6.sender-good.example -> 2001:db8::25" in six.facts
    assert check_reverse(client, "2001:db8::26").status == PROBLEM  # no PTR


@pytest.mark.slow
def test_reverse_dns_whose_forward_lookup_times_out(client):
    result = check_reverse(client, "192.0.2.14")
    assert result.status == PROBLEM and result.data["forward_status"] == "timeout"
    assert "looking that name up fails now (no answer in time)" in result.summary


@pytest.mark.slow
def test_dnsbl_listed_not_listed_and_refused(client):
    zones = ["dnsbl.example", "refusing-bl.example"]
    listed = check_dnsbl(client, "192.0.2.11", zones)
    assert listed.status == PROBLEM
    row = listed.data["zones"][0]
    assert row["listed"] and row["codes"] == ["127.0.0.2"] and "Listed for testing" in row["reason"]
    assert listed.data["zones"][1]["listed"] is None and "public or open resolver" in listed.data["zones"][1]["error"]
    clean = check_dnsbl(client, "192.0.2.12", zones)
    assert clean.status == OK and "Could not check refusing-bl.example" in clean.summary
    assert check_dnsbl(client, "192.0.2.12", ["refusing-bl.example"]).status == COULD_NOT_CHECK
    assert check_dnsbl(client, "127.0.0.2", ["dnsbl.example"]).status == PROBLEM


@pytest.mark.slow
def test_dnsbl_answers_outside_127_are_a_rewriting_resolver_not_a_listing(client):
    result = check_dnsbl(client, "192.0.2.12", ["hijacked-bl.example"])
    assert result.status == COULD_NOT_CHECK
    (row,) = result.data["zones"]
    assert row["listed"] is None and row["codes"] == ["198.51.100.80"]
    assert "the resolver rewrote the answer" in row["error"] and "NXDOMAIN hijacking" in row["error"]
    both = check_dnsbl(client, "192.0.2.11", ["hijacked-bl.example", "dnsbl.example"])
    assert both.status == PROBLEM and [r["listed"] for r in both.data["zones"]] == [None, True]


@pytest.mark.slow
def test_dnsbl_refusing_zone_carries_the_usage_policy_note(client):
    result = check_dnsbl(client, "192.0.2.12", ["refusing-bl.example"])
    assert result.status == COULD_NOT_CHECK and POLICY_NOTE in result.facts


@pytest.mark.slow
def test_spamhaus_is_not_asked_through_a_public_resolver(client):
    # Through 8.8.8.8 and the like, Spamhaus answers nothing useful, so its zones are not
    # asked at all; the others still are. (The address decides when public is not given.)
    result = check_dnsbl(client, "192.0.2.11", ["zen.spamhaus.org", "dnsbl.example"], public=True)
    spamhaus, other = result.data["zones"]
    assert spamhaus["listed"] is None and "public resolver" in spamhaus["error"] and spamhaus["codes"] == []
    assert other["listed"] is True and result.status == PROBLEM
    assert POLICY_NOTE in result.facts and any("Spamhaus does not answer" in f for f in result.facts)
    assert check_dnsbl(client, "192.0.2.12", ["zen.spamhaus.org"], public=True).status == COULD_NOT_CHECK
    assert "8.8.8.8" in PUBLIC_RESOLVERS and "127.0.0.1" not in PUBLIC_RESOLVERS
    assert refuses_public_resolvers("zen.spamhaus.org") and not refuses_public_resolvers("bl.spamcop.net")


@pytest.mark.slow
def test_cli_dnsbl_zones_option(run_cli, resolver):
    done = run_cli("diagnose", "tests/fixtures/checks/reputation.log", "--check", "--resolver", resolver,
                   "--dnsbl-zones", "dnsbl.example, hijacked-bl.example", "--format", "json", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [c for d in json.loads(done.stdout)["deliveries"] for c in d["checks"] if c["check"] == "dnsbl"]
    assert [[z["zone"] for z in c["data"]["zones"]] for c in rows] == [["dnsbl.example", "hijacked-bl.example"]] * 3


@pytest.mark.slow
def test_spf_good_broken_too_many_lookups_twice_and_missing(client):
    good = check_spf(client, "sender-good.example")
    assert good.status == OK and good.data["lookups"] == 2 and good.data["all"] == "-all"
    broken = check_spf(client, "sender-broken.example")
    assert broken.status == PROBLEM and len(broken.data["syntax_errors"]) == 2
    many = check_spf(client, "sender-many.example")
    assert many.status == PROBLEM and many.data["lookups"] == 11 and "11 DNS lookups" in many.summary
    twice = check_spf(client, "sender-twice.example")
    assert twice.status == PROBLEM and "2 SPF records" in twice.summary
    none = check_spf(client, "mx-ok.example")
    assert none.status == PROBLEM and "has no SPF record" in none.summary


@pytest.mark.slow
def test_spf_plus_all_include_without_spf_and_include_timeout(client):
    open_ = check_spf(client, "sender-open.example")
    assert open_.status == WARNING and open_.data["all"] == "+all" and "'+all'" in open_.summary
    noinclude = check_spf(client, "sender-noinclude.example")
    assert noinclude.status == PROBLEM
    assert noinclude.data["problems"] == [
        "include:mx-ok.example has no SPF record: receivers get a permanent error (permerror)"
    ]
    slow = check_spf(client, "sender-slow.example")
    assert slow.status == PROBLEM and "temperror" in slow.data["problems"][0]
    assert slow.data["problems"][0].startswith(
        "include:spf.timeout.example cannot be looked up now (no answer in time)"
    )


@pytest.mark.slow
def test_dmarc_reject_none_and_missing(client):
    reject = check_dmarc(client, "sender-good.example")
    assert reject.status == OK and reject.data["policy"] == "reject" and "REJECT" in reject.summary
    assert check_dmarc(client, "sender-many.example").data["policy"] == "none"
    missing = check_dmarc(client, "mx-ok.example")
    assert missing.status == WARNING and missing.data["policy"] is None and "no DMARC record" in missing.summary


@pytest.mark.slow
def test_dmarc_bad_policy_two_records_and_the_organisational_domain(client):
    broken = check_dmarc(client, "sender-broken.example")
    assert broken.status == PROBLEM and "'p=maybe' is not none, quarantine or reject" in broken.summary
    twice = check_dmarc(client, "sender-twice.example")
    assert twice.status == PROBLEM and "2 DMARC records" in twice.summary
    assert sorted(twice.data["records"]) == ["v=DMARC1; p=none", "v=DMARC1; p=reject"]
    sub = check_dmarc(client, "news.sender-good.example")
    assert sub.status == OK and sub.data["policy"] == "reject"
    assert sub.data["record_name"] == "_dmarc.sender-good.example"
    assert sub.facts[0].startswith("TXT _dmarc.news.sender-good.example: the name does not exist")


@pytest.mark.slow
def test_dkim_key_published_revoked_and_missing(client):
    good = check_dkim(client, "sel1", "sender-good.example")
    assert good.status == OK and good.data["bits"] == 2048  # two TXT strings, joined
    revoked = check_dkim(client, "old", "sender-good.example")
    assert revoked.status == PROBLEM and "revoked" in revoked.summary
    missing = check_dkim(client, "nope", "sender-good.example")
    assert missing.status == PROBLEM and "no DKIM key" in missing.summary


@pytest.mark.slow
def test_dkim_short_key_and_invalid_base64(client):
    short = check_dkim(client, "short", "sender-good.example")
    assert short.status == PROBLEM and short.data["bits"] == 512 and "RFC 8301" in short.summary
    bad = check_dkim(client, "bad64", "sender-good.example")
    assert bad.status == PROBLEM and "not valid base64" in bad.summary


# --- TLS against a STARTTLS server on loopback ----------------------------------------------


def _certificate(folder: Path, days: int, name: str = "mx1.mx-ok.example", expired: bool = False) -> tuple[Path, Path]:
    """A self-signed certificate for NAME valid for DAYS from now (or that expired DAYS ago)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=days + 30), now - timedelta(days=days)) if expired else (now, now)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))
        .not_valid_after(end + timedelta(days=0 if expired else days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    stem = f"{name}-{days}{'-expired' if expired else ''}"
    cert, key_file = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key_file


class StartTlsServer:
    """A minimal SMTP server on 127.0.0.1: greeting, EHLO, STARTTLS, then the TLS handshake."""

    def __init__(self, cert: Path | None, key: Path | None, starttls: bool = True, stall: bool = False):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.context = None
        if cert:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(cert, key)
        self.starttls = starttls
        self.stall = stall  # say 220 to STARTTLS, then never answer the TLS handshake
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self._session(conn)
                except (OSError, ssl.SSLError):
                    pass

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 mx1.mx-ok.example ESMTP test\r\n")
        reader.readline()
        ehlo = [b"250-mx1.mx-ok.example", b"250-PIPELINING"] + ([b"250-STARTTLS"] if self.starttls else [])
        conn.sendall(b"\r\n".join(ehlo + [b"250 8BITMIME"]) + b"\r\n")
        if reader.readline().strip().upper() == b"STARTTLS" and self.starttls:
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
            reader.close()
            if self.stall:
                self.stop.wait(timeout=10)
                return
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1024)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def tls_server(tmp_path):
    servers = []

    def start(days: int | None = 30, starttls: bool = True, stall: bool = False, **cert_args):
        cert, key = _certificate(tmp_path, days, **cert_args) if days else (None, None)
        server = StartTlsServer(cert, key, starttls, stall)
        servers.append(server)
        return server, cert

    yield start
    for server in servers:
        server.close()


@pytest.mark.slow
def test_tls_valid_certificate(client, tls_server):
    server, cert = tls_server(days=30)
    result = check_tls(client, "mx-ok.example", port=server.port, timeout=3, cafile=str(cert))
    assert result.status == OK, result.summary
    assert result.target == f"mx1.mx-ok.example:{server.port}"
    assert result.data["names"] == ["mx1.mx-ok.example"] and result.data["days_left"] >= 28


@pytest.mark.slow
def test_tls_untrusted_and_soon_expiring_certificates(client, tls_server):
    server, _ = tls_server(days=30)
    untrusted = check_tls(client, "mx-ok.example", port=server.port, timeout=3)
    assert untrusted.status == PROBLEM and "self-signed" in untrusted.summary
    soon, cert = tls_server(days=5)
    expiring = check_tls(client, "mx-ok.example", port=soon.port, timeout=3, cafile=str(cert))
    assert expiring.status == WARNING and "expires in" in expiring.summary


@pytest.mark.slow
def test_tls_not_offered_and_nothing_listening(client, tls_server):
    plain, _ = tls_server(days=None, starttls=False)
    result = check_tls(client, "mx-ok.example", port=plain.port, timeout=3)
    assert result.status == PROBLEM and result.data == {"starttls": False}
    closed = check_tls(client, "mx-ok.example", port=free_port(), timeout=3)
    assert closed.status == COULD_NOT_CHECK and "cannot connect" in closed.summary


@pytest.mark.slow
def test_tls_certificate_for_another_name_and_expired(client, tls_server):
    other, cert = tls_server(days=30, name="mail.elsewhere.example")
    mismatch = check_tls(client, "mx-ok.example", port=other.port, timeout=3, cafile=str(cert))
    assert mismatch.status == PROBLEM and "Hostname mismatch" in mismatch.summary
    assert "certificate names: mail.elsewhere.example" in mismatch.facts
    old, cert = tls_server(days=3, expired=True)
    expired = check_tls(client, "mx-ok.example", port=old.port, timeout=3, cafile=str(cert))
    assert expired.status == PROBLEM and "certificate has expired" in expired.summary
    assert any(f.startswith("expires: ") for f in expired.facts)


@pytest.mark.slow
def test_tls_handshake_timeout_is_could_not_check(client, tls_server):
    stalled, cert = tls_server(days=30, stall=True)
    result = check_tls(client, "mx-ok.example", port=stalled.port, timeout=1, cafile=str(cert))
    assert result.status == COULD_NOT_CHECK
    assert "accepted STARTTLS, but the TLS handshake did not finish within 1 s" in result.summary


# --- the whole run, and the command line ------------------------------------------------------


@pytest.mark.slow
def test_checks_run_concurrently_within_their_timeouts(resolver):
    from bot.checks.run import Task, run_tasks

    # Four names under the dropped zone: each check waits one full DNS timeout (2 s), so one
    # after the other they would take 8 s or more; side by side, about 2 s.
    slow = [Task("dns", f"{n}.timeout.example") for n in ("a", "b", "c", "d")]
    started = time.monotonic()
    done = run_tasks([*slow, Task("dns", "mx-ok.example")], CheckSettings(resolver=resolver, timeout=2.0))
    elapsed = time.monotonic() - started
    assert elapsed < 1.6 * 2.0, f"{elapsed:.1f} s: the checks did not run side by side"
    assert [done[t][0].data for t in slow] == [{"mx": "timeout"}] * 4
    assert done[Task("dns", "mx-ok.example")][0].status == OK


@pytest.mark.slow
def test_every_delivery_of_a_report_gets_its_check(resolver):
    report = diagnose_text((FIXTURES / "checks" / "dns.log").read_text(), "dns.log")
    check_report(report, CheckSettings(resolver=resolver, timeout=1.5))
    found = {d.recipient: d.checks[0] for d in report.deliveries}
    assert found["info@parked.example"].data["null_mx"]
    assert found["ops@mx-ok.example"].status == OK
    assert found["ops@servfail.test"].data == {"mx": "servfail"}
    assert found["ops@timeout.example"].data == {"mx": "timeout"}
    assert found["sales@dangling.example"].status == PROBLEM


def test_check_settings_from_a_settings_object():
    from types import SimpleNamespace

    from bot.settings import Settings

    assert CheckSettings.from_settings(Settings()) == CheckSettings()  # no check fields there yet
    given = SimpleNamespace(resolver="127.0.0.1:5353", dns_canary="example.org A",
                            dnsbl_zones="bl.example, Dnsbl.Example.", check_tls=True, check_timeout=None)  # fmt: skip
    settings = CheckSettings.from_settings(given, total_timeout=5.0)
    assert settings.resolver == "127.0.0.1:5353" and settings.canary == "example.org A" and settings.tls
    assert settings.dnsbl_zones == ("bl.example", "dnsbl.example") and settings.total_timeout == 5.0
    assert settings.check_timeout == CheckSettings().check_timeout
    assert CheckSettings.from_settings(None, resolver="::1") == CheckSettings(resolver="::1")


@pytest.mark.slow
def test_check_report_from_several_worker_threads_at_once(resolver):
    # As a chat adapter calls it: from its own worker threads, several reports at a time.
    logs = ["dns.log", "reputation.log", "auth.log"]
    reports = [diagnose_text((FIXTURES / "checks" / name).read_text(), name) for name in logs]
    settings = CheckSettings.from_settings(None, resolver=resolver, timeout=1.0, dnsbl_zones=("dnsbl.example",))
    errors = []

    def work(report):
        try:
            check_report(report, settings)
        except Exception as error:  # pragma: no cover - the assertion below shows it
            errors.append(error)

    threads = [threading.Thread(target=work, args=(r,)) for r in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    for report in reports:
        assert all(d.checks for d in report.deliveries if d.diagnosis and d.diagnosis.id != "delivered")
    dns_found = {d.recipient: d.checks[0].data for d in reports[0].deliveries}
    assert dns_found["ops@timeout.example"] == {"mx": "timeout"}
    assert reports[1].deliveries[1].checks[1].data["zones"][0]["listed"] is True


@pytest.mark.slow
def test_a_slow_check_is_cut_off_at_its_own_timeout(resolver):
    report = diagnose_text((FIXTURES / "checks" / "dns.log").read_text(), "dns.log")
    started = time.monotonic()
    check_report(report, CheckSettings(resolver=resolver, timeout=3.0, check_timeout=0.5))
    assert time.monotonic() - started < 2.5
    late = next(d for d in report.deliveries if d.recipient == "ops@timeout.example").checks[0]
    assert late.status == COULD_NOT_CHECK and "no result within 0.5 s" in late.summary


@pytest.mark.slow
def test_renderers_show_checked_now(resolver):
    report = diagnose_text((FIXTURES / "checks" / "reputation.log").read_text(), "reputation.log")
    check_report(report, CheckSettings(resolver=resolver, dnsbl_zones=("dnsbl.example",)))
    text = render_text(report, width=200)
    assert "Checked now:" in text and "✗ blocklists 192.0.2.11: 192.0.2.11 is listed now on dnsbl.example" in text
    markdown = render_markdown(report)
    assert "**Checked now**" in markdown and "**reverse DNS** `192.0.2.12` (problem)" in markdown
    rows = report_to_dict(report)["deliveries"]
    assert [[c["check"] for c in d["checks"]] for d in rows] == [["reverse", "dnsbl"]] * 3


@pytest.mark.slow
def test_cli_check_confirms_a_missing_domain(run_cli, resolver):
    done = run_cli("diagnose", "tests/fixtures/postfix/mx-not-found.log", "--check", "--resolver", resolver,
                   "--format", "json", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    delivery = json.loads(done.stdout)["deliveries"][0]
    assert delivery["diagnosis"]["id"] == "dns-mx-failure"
    (check,) = delivery["checks"]
    assert check["check"] == "dns" and check["target"] == "no-such-domain.example"
    assert check["status"] == "problem" and check["data"] == {"mx": "nxdomain"}
    assert check["resolver"] == resolver and "NXDOMAIN" in check["summary"]


@pytest.mark.slow
def test_cli_why_check_confirms_a_missing_domain(run_cli, resolver):
    done = run_cli("why", "info@no-such-domain.example", "--log", "tests/fixtures/postfix/mx-not-found.log",
                   "--check", "--resolver", resolver, "--format", "json", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (check,) = json.loads(done.stdout)["deliveries"][0]["checks"]
    assert check["check"] == "dns" and check["status"] == "problem" and check["data"] == {"mx": "nxdomain"}
    plain = run_cli("why", "info@no-such-domain.example", "--log", "tests/fixtures/postfix/mx-not-found.log",
                    "--format", "json")  # fmt: skip
    assert "checks" not in json.loads(plain.stdout)["deliveries"][0]
    bad = run_cli("why", "a@b.example", "--log", "x.log", "--check", "--resolver", "dns.example")
    assert bad.returncode == 2 and b"not an IP address" in bad.stderr


@pytest.mark.slow
def test_cli_check_with_closed_resolver_says_could_not_check(run_cli, closed_resolver):
    done = run_cli("diagnose", "tests/fixtures/postfix/mx-not-found.log", "--check", "--resolver", closed_resolver,
                   "--format", "json", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (check,) = json.loads(done.stdout)["deliveries"][0]["checks"]
    assert check["status"] == "could-not-check" and check["summary"].startswith("Could not check:")


@pytest.mark.slow
def test_cli_check_tls_end_to_end(run_cli, resolver, tls_server):
    server, cert = tls_server(days=30)
    args = ("diagnose", "tests/fixtures/checks/tls.log", "--check", "--check-tls", "--resolver", resolver,
            "--smtp-port", str(server.port), "--format", "json")  # fmt: skip
    trusted = run_cli(*args, env={"SSL_CERT_FILE": str(cert)}, timeout=60)  # the test CA, as the system's
    assert trusted.returncode == 0, trusted.stderr
    (check,) = json.loads(trusted.stdout)["deliveries"][0]["checks"]
    assert check["check"] == "tls" and check["status"] == "ok", check["summary"]
    assert check["target"] == f"mx1.mx-ok.example:{server.port}" and check["data"]["names"] == ["mx1.mx-ok.example"]
    untrusted = run_cli(*args, env={"SSL_CERT_FILE": os.devnull}, timeout=60)
    (check,) = json.loads(untrusted.stdout)["deliveries"][0]["checks"]
    assert check["status"] == "problem" and "does not verify" in check["summary"]


@pytest.mark.slow
def test_cli_text_and_markdown_sections(run_cli, resolver, monkeypatch):
    monkeypatch.setenv("WHYFAILED_DNSBL_ZONES", "dnsbl.example")
    text = run_cli("diagnose", "tests/fixtures/checks/auth.log", "--check", "--resolver", resolver, timeout=60)
    markdown = run_cli("diagnose", "tests/fixtures/checks/tls.log", "--check", "--resolver", resolver,
                       "--format", "markdown", timeout=60)  # fmt: skip
    out = text.stdout.decode()
    assert text.returncode == 0 and "Checked now:" in out
    assert "✓ DKIM sel1._domainkey.sender-good.example" in out
    assert "✗ SPF sender-many.example" in out and "✗ SPF sender-broken.example" in out
    assert "only with --check-tls" in markdown.stdout.decode()


def test_cli_without_check_has_no_checks_key_and_rejects_a_bad_resolver(run_cli):
    plain = run_cli("diagnose", "tests/fixtures/postfix/mx-not-found.log", "--format", "json")
    assert "checks" not in json.loads(plain.stdout)["deliveries"][0]
    bad = run_cli("diagnose", "tests/fixtures/postfix/mx-not-found.log", "--check", "--resolver", "dns.example")
    assert bad.returncode == 2 and b"not an IP address" in bad.stderr


def test_a_check_that_crashes_or_has_no_resolver_is_could_not_check(tmp_path, monkeypatch, resolver):
    from bot.checks import run

    # a check the runner has no code for raises inside the worker: reported, never raised
    odd = run.Task("no-such-check", "x.example")
    (result,) = run.run_tasks([odd], CheckSettings(resolver=resolver))[odd]
    assert result.status == COULD_NOT_CHECK and "the check failed (KeyError" in result.summary
    # no --resolver, no $WHYFAILED_RESOLVER and a resolv.conf without a nameserver
    monkeypatch.delenv("WHYFAILED_RESOLVER", raising=False)
    empty = tmp_path / "resolv.conf"
    empty.write_text("search example.org\n")
    task = run.Task("dns", "x.example")
    (result,) = run.run_tasks([task], CheckSettings(resolv_conf=str(empty)))[task]
    assert result.status == COULD_NOT_CHECK and "no DNS resolver is configured" in result.summary
    assert str(empty) in result.summary


def test_offering_check_now_does_not_import_dnspython():
    # the renderers ask bot.checks which diagnoses a check could confirm; only running one loads dnspython
    import subprocess
    import sys

    code = "import sys, bot.render.slack, bot.render.discord; print('dns' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
