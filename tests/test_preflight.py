"""Preflight checks (issue 4): identifier rules, DNS, CAA, self-checks.

Pure parts are table-tested; DNS cases run against real servers on loopback —
the suite's Pebble/challtestsrv, or :class:`dnsserver.TinyDns` for what
challtestsrv cannot say (NXDOMAIN, no address, dangling CNAME, critical CAA tags).
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import run
from dnsserver import BlackHole, TinyDns, closed_udp_port

import acmedryrun
from acmedryrun import directories
from acmedryrun.deadline import Deadline
from acmedryrun.errors import UsageError
from acmedryrun.preflight import (
    Identifier,
    NameFindings,
    Preflight,
    check_identifiers,
    parse_identifier,
    parse_resolver,
    selfcheck,
)
from acmedryrun.preflight import dns as preflight_dns
from acmedryrun.preflight.caa import CaaRecord, CaaSet, evaluate_caa, parse_caa_value
from acmedryrun.report import Cause, Problem, Severity, Step, StepStatus, Verdict
from acmedryrun.solvers import DNS01Callback, HTTP01Standalone
from acmedryrun.solvers._base import Challenge
from acmedryrun.testing import LocalPebble

KEY_AUTH = "tok.thumbprint-of-the-account-key"
LE = directories.by_alias("letsencrypt-staging")
GOOGLE = directories.by_alias("google-staging")


def names(problems: Sequence[Problem]) -> list[str]:
    return [p.name for p in problems]


def challenge(name: str, *, ctype: str = "http-01", token: str = "tok",  # noqa: S107
              key_authorization: str = KEY_AUTH, validation: str = "txt-value",
              identifier_type: str = "dns", wildcard: bool = False) -> Challenge:
    return Challenge(type=ctype, identifier=name, identifier_type=identifier_type,
                     wildcard=wildcard, token=token, key_authorization=key_authorization,
                     validation=validation, url="https://ca.invalid/chall/1")


class Checks:
    """The preflight blocks, called in the order a run calls them (the tests' view)."""

    def __init__(self, preflight: Preflight) -> None:
        self.preflight = preflight
        self.names = NameFindings()
        self.ctype = "http-01"

    def before_order(self, identifiers: Sequence[Identifier], *, challenge_type: str,
                     supports_wildcard: bool, supports_ip: bool) -> list[Problem]:
        self.ctype = challenge_type
        problems = self.preflight.identifiers(
            identifiers, challenge_type=challenge_type, supports_wildcard=supports_wildcard,
            supports_ip=supports_ip)
        if any(p.severity.decisive for p in problems):
            return problems
        self.names = self.preflight.check_names(identifiers, challenge_type=challenge_type)
        return problems + list(self.names.problems)

    def after_directory(self, directory: dict[str, Any]) -> list[Problem]:
        meta = directory.get("meta") or {}
        return list(self.preflight.judge_caa(self.names, meta, challenge_type=self.ctype)
                    .problems)

    def self_check(self, chs: Sequence[Challenge]) -> tuple[list[Problem], frozenset[str]]:
        result = self.preflight.self_check(chs)
        return list(result.problems), result.passed


def checks(resolver: str, *, timeout: float = 20.0, known: directories.KnownDirectory | None
           = None, caa: Sequence[str] | None = None, http_port: int = 80) -> Checks:
    return Checks(Preflight(resolver=parse_resolver(resolver), deadline=Deadline(timeout),
                            known=known, caa_identities=tuple(caa) if caa else None,
                            http_port=http_port))


def before(c: Checks, *raw: str, ctype: str = "http-01") -> list[Problem]:
    return c.before_order([parse_identifier(n) for n in raw], challenge_type=ctype,
                          supports_wildcard=ctype == "dns-01", supports_ip=ctype != "dns-01")


# ============================================================ identifier rules (pure)

LONG = ".".join(["a" * 63] * 4)  # 255 octets

IDENTIFIER_RULES: list[tuple[list[str], str, directories.KnownDirectory | None, list[str]]] = [
    (["example.com"], "http-01", None, []),
    (["example.com."], "http-01", None, ["TrailingDot"]),
    (["*.example.com"], "http-01", None, ["WildcardNeedsDns01"]),
    (["*.example.com"], "dns-01", None, []),
    (["a.*.example.com"], "dns-01", None, ["BadWildcard"]),
    (["*example.com"], "dns-01", None, ["BadWildcard"]),
    (["foo_bar.example.com"], "http-01", None, ["InvalidName"]),
    (["-a.example.com"], "http-01", None, ["InvalidName"]),
    (["a..example.com"], "http-01", None, ["InvalidName"]),
    (["a" * 64 + ".com"], "http-01", None, ["InvalidName"]),
    (["xn--zz.example.com"], "http-01", None, ["InvalidName"]),
    ([LONG], "http-01", None, ["NameTooLong"]),
    (["localhost"], "http-01", None, ["NotFullyQualified"]),
    (["*.com"], "dns-01", None, ["NotFullyQualified"]),
    (["1.2.3.4.5"], "http-01", None, ["InvalidName"]),
    (["192.0.2.1"], "dns-01", None, ["IpNeedsHttpOrTlsAlpn"]),
    (["192.0.2.1", "2001:db8::1"], "http-01", None, []),
    (["example.com", "EXAMPLE.com"], "http-01", None, ["DuplicateName"]),
    (["bücher.example", "xn--bcher-kva.example"], "http-01", None,
     ["InternalName", "DuplicateName"]),
    # Public CAs' policy: fatal for a known CA, a warning for an unknown URL (a private
    # CA may issue such names); the rest of a CA's policy only for a known CA.
    (["example.local"], "http-01", None, ["InternalName"]),
    (["intranet"], "http-01", None, ["NotFullyQualified"]),
    (["intranet"], "http-01", LE, ["NotFullyQualified"]),
    (["co.uk"], "http-01", None, ["PublicSuffix"]),
    (["example.local"], "http-01", LE, ["InternalName"]),
    (["printer.home.arpa"], "http-01", LE, ["InternalName"]),
    (["www.example.test"], "http-01", LE, ["InternalName"]),
    (["co.uk"], "http-01", LE, ["PublicSuffix"]),
    (["*.co.uk"], "dns-01", LE, ["PublicSuffix"]),
    (["example.co.uk"], "http-01", LE, []),
    (["github.io"], "http-01", LE, ["ProviderSuffix"]),
    (["me.github.io"], "http-01", LE, []),
    (["ab--cd.example.com"], "http-01", LE, ["InvalidName"]),
    (["ab--cd.example.com"], "http-01", None, []),
    ([".".join(["a"] * 10) + ".com"], "http-01", LE, ["TooManyLabels"]),
    (["10.0.0.1"], "http-01", LE, ["IpReserved"]),
    (["8.8.8.8"], "http-01", LE, []),
    (["8.8.8.8"], "http-01", GOOGLE, ["IpNotSupported"]),
    ([f"n{i}.example.com" for i in range(101)], "http-01", LE, ["TooManyNames"]),
    ([f"n{i}.example.com" for i in range(101)], "http-01", None, []),
]


@pytest.mark.parametrize(("raw", "ctype", "known", "expected"), IDENTIFIER_RULES,
                         ids=[f"{r[0][0][:24]}-{r[1]}-{r[2].alias if r[2] else 'unknown'}"
                              for r in IDENTIFIER_RULES])
def test_identifier_rules_name_each_broken_rule(
    raw: list[str], ctype: str, known: directories.KnownDirectory | None, expected: list[str]
) -> None:
    found = check_identifiers([parse_identifier(n) for n in raw], challenge_type=ctype,
                              supports_wildcard=ctype == "dns-01",
                              supports_ip=ctype != "dns-01", known=known)
    assert names(found) == expected
    public = {"NotFullyQualified", "InternalName", "PublicSuffix"}
    for p in found:
        assert (p.cause, p.step) == (Cause.CLIENT, Step.PREFLIGHT)
        assert p.detail
        assert p.hint
        warning = p.name in ("DuplicateName", "ProviderSuffix") or (
            known is None and p.name in public)
        assert p.severity is (Severity.WARNING if warning else Severity.FATAL)
        if known is None and p.name in public:
            assert "An internal CA may issue it" in p.hint


def test_unicode_names_are_sent_as_idna_2008_a_labels() -> None:
    assert parse_identifier(" Bücher.Example ") == Identifier("dns", "xn--bcher-kva.example")
    assert parse_identifier("*.straße.example").value == "*.xn--strae-oqa.example"
    assert parse_identifier("2001:DB8::1") == Identifier("ip", "2001:db8::1")


# ============================================================ parse_resolver (pure)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1", ("127.0.0.1", 53)),
    (" 127.0.0.1:5353 ", ("127.0.0.1", 5353)),
    ("[::1]:5353", ("::1", 5353)),
    ("[::1]", ("::1", 53)),
    ("::1", ("::1", 53)),
    ("2001:db8::53", ("2001:db8::53", 53)),
])
def test_parse_resolver_accepts_ip_with_optional_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize("text", [
    "", "dns.example.com", "dns.example.com:53", "127.0.0.1:0", "127.0.0.1:65536",
    "127.0.0.1:x", "127.0.0.1:", "[::1", "[::1]x", "[::1]:99999", "1.2.3.4:53:1", "1.2.3",
])
def test_parse_resolver_refuses_anything_but_ip_and_port(text: str) -> None:
    with pytest.raises(UsageError, match="--dns-resolver"):
        parse_resolver(text)


# ============================================================ CAA evaluation (pure)


def caa_set(*records: tuple[int, str, str], name: str = "example.com") -> CaaSet:
    return CaaSet(name, name, tuple(CaaRecord(f, t, v) for f, t, v in records))


CA = ["ca.example"]
CAA_TABLE: list[tuple[str, CaaSet, bool, list[str] | None, str, list[str]]] = [
    ("only iodef: no restriction", caa_set((0, "iodef", "mailto:x@example.com")),
     False, CA, "http-01", []),
    ("issue names the CA", caa_set((0, "issue", "ca.example")), False, CA, "http-01", []),
    ("issue names the CA among others",
     caa_set((0, "issue", "other.example"), (0, "issue", " ca.example ; ")), False, CA,
     "http-01", []),
    ("issue names another CA", caa_set((0, "issue", "other.example")), False, CA, "http-01",
     ["CaaForbidden"]),
    ("issue ';' authorizes nobody", caa_set((0, "issue", ";")), False, CA, "http-01",
     ["CaaForbidden"]),
    ("malformed record naming the CA is ignored",
     caa_set((0, "issue", "ca.example; accounturi")), False, CA, "http-01", ["CaaForbidden"]),
    ("validationmethods excludes the challenge",
     caa_set((0, "issue", "ca.example; validationmethods=dns-01")), False, CA, "http-01",
     ["CaaValidationMethod"]),
    ("validationmethods includes the challenge",
     caa_set((0, "issue", "ca.example; validationmethods=dns-01,http-01")), False, CA,
     "http-01", []),
    ("accounturi binds to one account",
     caa_set((0, "issue", "ca.example; accounturi=https://ca.example/acct/1")), False, CA,
     "http-01", ["CaaAccountUri"]),
    ("accounturi plus a free record",
     caa_set((0, "issue", "ca.example; accounturi=https://ca.example/acct/1"),
             (0, "issue", "ca.example")), False, CA, "http-01", []),
    ("wildcard: issuewild wins over issue",
     caa_set((0, "issue", "ca.example"), (0, "issuewild", "other.example")), True, CA,
     "dns-01", ["CaaForbidden"]),
    ("wildcard: issuewild names the CA",
     caa_set((0, "issue", "other.example"), (0, "issuewild", "ca.example")), True, CA,
     "dns-01", []),
    ("wildcard: issue applies without issuewild", caa_set((0, "issue", "other.example")),
     True, CA, "dns-01", ["CaaForbidden"]),
    ("non-wildcard ignores issuewild", caa_set((0, "issuewild", "other.example")), False, CA,
     "http-01", []),
    ("unknown critical tag forbids", caa_set((0, "issue", "ca.example"), (128, "tbs", "x")),
     False, CA, "http-01", ["CaaUnknownCriticalTag"]),
    ("flag 1 counts as critical (Boulder)", caa_set((1, "tbs", "x")), False, CA, "http-01",
     ["CaaUnknownCriticalTag"]),
    ("unknown critical tag forbids even with the identity unknown",
     caa_set((128, "tbs", "x")), False, None, "http-01", ["CaaUnknownCriticalTag"]),
    ("unknown non-critical tag is ignored", caa_set((0, "tbs", "x"), (0, "issue", "ca.example")),
     False, CA, "http-01", []),
    ("restriction with the identity unknown is a warning, not a guess",
     caa_set((0, "issue", "other.example")), False, None, "http-01", ["CaaIdentityUnknown"]),
]


@pytest.mark.parametrize("row", CAA_TABLE, ids=[row[0] for row in CAA_TABLE])
def test_caa_evaluation(
    row: tuple[str, CaaSet, bool, list[str] | None, str, list[str]]
) -> None:
    _, caa, wildcard, ids, ctype, expected = row
    ident = "*.example.com" if wildcard else "example.com"
    found = evaluate_caa(ident, caa, wildcard=wildcard, identities=ids, challenge_type=ctype)
    assert names(found) == expected
    for p in found:
        assert p.identifier == ident
        assert "CAA at example.com" in p.detail
        warning = p.name in ("CaaAccountUri", "CaaIdentityUnknown")
        assert p.severity is (Severity.WARNING if warning else Severity.FATAL)


def test_caa_forbidden_says_which_record_to_add() -> None:
    [p] = evaluate_caa("*.example.com", caa_set((0, "issuewild", ";")), wildcard=True,
                       identities=CA, challenge_type="dns-01")
    assert 'CAA 0 issuewild "ca.example"' in p.hint
    assert '0 issuewild ";"' in p.detail


@pytest.mark.parametrize(("value", "expected"), [
    ("ca.example", ("ca.example", {})),
    ("  CA.Example.  ", ("ca.example", {})),
    ("ca.example;", ("ca.example", {})),
    (";", ("", {})),
    ("ca.example; accounturi=https://ca.example/acct/1 ; validationmethods=dns-01",
     ("ca.example", {"accounturi": "https://ca.example/acct/1", "validationmethods": "dns-01"})),
    ("ca.example; key", None),
    ("ca.example; k=v v", None),
    ("ca.example; k=v;", None),
])
def test_parse_caa_value_follows_rfc_8659_section_4_2(
    value: str, expected: tuple[str, dict[str, str]] | None
) -> None:
    assert parse_caa_value(value) == expected


# ============================================================ DNS (TinyDns)

ZONE: Mapping[str, Sequence[tuple[str, str]]] = {
    "www.example.com": [("A", "127.0.0.1")],
    "v6.example.com": [("A", "127.0.0.1"), ("AAAA", "::1")],
    "txt-only.example.com": [("TXT", '"hello"')],
    "alias.example.com": [("CNAME", "www.example.com.")],
    "far.example.com": [("CNAME", "cdn.example.net.")],
    "cdn.example.net": [("A", "127.0.0.3")],
    "dangling.example.com": [("CNAME", "gone.example.com.")],
    "loop1.example.com": [("CNAME", "loop2.example.com.")],
    "loop2.example.com": [("CNAME", "loop1.example.com.")],
    "crit.example.com": [("A", "127.0.0.1"), ("CAA", '128 tbs "x"')],
    "sub.caa.example.com": [("A", "127.0.0.1")],
    "caa.example.com": [("CAA", '0 issue "ca.example"')],
    "other.example.com": [("A", "127.0.0.1"), ("CAA", '0 issue "other.example"')],
    "caa-alias.example.com": [("CNAME", "policy.example.net.")],
    "policy.example.net": [("A", "127.0.0.1"), ("CAA", '0 issue "other.example"')],
    "brokenparent.example.com": [("A", "127.0.0.1")],
    "bound.example.com": [("A", "127.0.0.1"),
                          ("CAA", '0 issue "ca.example; accounturi=https://ca.example/a/1"')],
}


@pytest.fixture(scope="module")
def tiny() -> Iterator[TinyDns]:
    with TinyDns(ZONE, servfail=["servfail.example.com"]) as server:
        yield server


@pytest.mark.parametrize(("name", "expected", "in_detail"), [
    ("www.example.com", [], ""),
    ("missing.example.com", ["DnsNxDomain"], "NXDOMAIN"),
    ("txt-only.example.com", ["DnsNoAddress"], "no A or AAAA"),
    ("dangling.example.com", ["DnsDanglingCname"], "dangling.example.com -> gone.example.com"),
    ("loop1.example.com", ["DnsCnameLoop"], "loop1.example.com -> loop2.example.com"),
    ("servfail.example.com", ["DnsServfail"], "SERVFAIL"),
    ("alias.example.com", ["DnsCname"], "alias.example.com -> www.example.com (A: 127.0.0.1)"),
    ("far.example.com", ["DnsCname"], "far.example.com -> cdn.example.net (A: 127.0.0.3)"),
    ("v6.example.com", ["Ipv6Preferred"], "AAAA ::1"),
])
def test_dns_lookups_for_http01(tiny: TinyDns, name: str, expected: list[str],
                                in_detail: str) -> None:
    """NXDOMAIN, SERVFAIL, no address, dangling or looping aliases are fatal; chains and
    AAAA are reported as info (an alias the server does not chase is followed here)."""
    found = before(checks(tiny.address), name)
    assert names(found) == expected
    for p in found:
        assert in_detail in p.detail
        assert p.identifier == name
        fatal = p.name not in ("DnsCname", "Ipv6Preferred")
        assert p.severity is (Severity.FATAL if fatal else Severity.INFO)
        if fatal:
            assert tiny.address in p.detail, "the detail names the resolver"


def test_dns01_needs_no_address_only_a_zone(tiny: TinyDns) -> None:
    c = checks(tiny.address)
    assert before(c, "txt-only.example.com", "new.example.com", ctype="dns-01") == []
    internal, p = before(checks(tiny.address), "www.not-registered.invalid", ctype="dns-01")
    assert (internal.name, internal.severity) == ("InternalName", Severity.WARNING)
    assert p.name == "DnsZoneMissing"
    assert p.severity is Severity.FATAL
    assert "the root" in p.detail


def test_dns01_wildcard_is_checked_at_its_base_name(tiny: TinyDns) -> None:
    tiny.queries.clear()
    assert before(checks(tiny.address), "*.www.example.com", ctype="dns-01") == []
    assert ("_acme-challenge.www.example.com", "TXT") in tiny.queries
    assert ("www.example.com", "CAA") in tiny.queries
    assert not any(q[0].startswith("*") for q in tiny.queries)


@pytest.mark.parametrize(("name", "caa", "expected"), [
    ("www.example.com", CA, []),
    ("crit.example.com", None, ["CaaUnknownCriticalTag"]),
    ("other.example.com", CA, ["CaaForbidden"]),
    ("other.example.com", ["other.example"], []),
    ("sub.caa.example.com", CA, []),
    ("sub.caa.example.com", ["other.example"], ["CaaForbidden"]),
    ("caa-alias.example.com", CA, ["DnsCname", "CaaForbidden"]),
    ("bound.example.com", CA, ["CaaAccountUri"]),
])
def test_caa_is_found_by_climbing_the_tree_and_following_aliases(
    tiny: TinyDns, name: str, caa: list[str] | None, expected: list[str]
) -> None:
    assert names(before(checks(tiny.address, caa=caa), name)) == expected


def test_caa_climb_stops_at_the_first_non_empty_set(tiny: TinyDns) -> None:
    tiny.queries.clear()
    before(checks(tiny.address, caa=CA), "sub.caa.example.com")
    caa_queries = [q for q, t in tiny.queries if t == "CAA"]
    assert caa_queries == ["sub.caa.example.com", "caa.example.com"]


def test_caa_of_the_known_ca_is_used_without_explicit_identities(tiny: TinyDns) -> None:
    [p] = before(checks(tiny.address, known=LE), "other.example.com")
    assert p.name == "CaaForbidden"
    assert "letsencrypt.org" in p.detail


def test_failed_caa_lookup_on_a_parent_is_fatal() -> None:
    with TinyDns(ZONE, servfail=["example.com"]) as server:
        [p] = before(checks(server.address, caa=CA), "brokenparent.example.com")
    assert p.name == "CaaLookupFailed"
    assert "SERVFAIL" in p.detail


def test_caa_without_a_known_identity_waits_for_the_directory_meta(tiny: TinyDns) -> None:
    """No identity before the directory: the records are kept, then judged against
    ``meta.caaIdentities`` without another lookup."""
    for meta, expected in [
        ({"caaIdentities": ["other.example"]}, []),
        ({"caaIdentities": ["ca.example"]}, ["CaaForbidden"]),
        ({}, ["CaaIdentityUnknown"]),
    ]:
        c = checks(tiny.address)
        assert before(c, "other.example.com") == []
        sent = len(tiny.queries)
        assert names(c.after_directory({"meta": meta})) == expected
        assert len(tiny.queries) == sent, "after_directory sends nothing"


def test_closed_resolver_port_is_one_warning_naming_it_at_once() -> None:
    resolver = f"127.0.0.1:{closed_udp_port()}"
    started = time.monotonic()
    found = before(checks(resolver), "a.example.com", "b.example.com")
    assert time.monotonic() - started < 1
    [p] = found
    assert (p.name, p.severity) == ("DnsResolverUnreachable", Severity.WARNING)
    assert resolver in p.detail
    assert "could not check DNS" in p.detail


def test_silent_resolver_is_a_warning_after_one_query_lifetime_not_a_hang() -> None:
    with BlackHole() as hole:
        started = time.monotonic()
        found = before(checks(hole.address), "a.example.com", "b.example.com")
        took = time.monotonic() - started
    assert names(found) == ["DnsResolverUnreachable"]
    assert hole.address in found[0].detail
    assert "no answer within" in found[0].detail
    assert preflight_dns.QUERY_LIFETIME - 0.5 < took < preflight_dns.QUERY_LIFETIME + 1.5


def test_dns_checks_stop_at_the_run_deadline() -> None:
    with BlackHole() as hole:
        started = time.monotonic()
        found = before(checks(hole.address, timeout=0.5), "a.example.com")
        assert time.monotonic() - started < 1.0
    assert names(found) == ["DnsResolverUnreachable"]


# ============================================================ http-01 self-check

Route = tuple[int, Mapping[str, str], bytes]


class Web:
    """A web server on 127.0.0.1 answering per path; records the Host headers it got."""

    def __init__(self, routes: Mapping[str, Route], *, tls: ssl.SSLContext | None = None,
                 address: str = "127.0.0.1") -> None:
        self.routes = dict(routes)
        self.hosts: list[str] = []
        web = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                web.hosts.append(self.headers.get("Host", ""))
                status, headers, body = web.routes.get(self.path, (404, {}, b"nope"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


PATH = "/.well-known/acme-challenge/tok"


@pytest.fixture
def web() -> Iterator[Callable[..., Web]]:
    servers: list[Web] = []

    def start(routes: Mapping[str, Route], **kwargs: Any) -> Web:
        servers.append(Web(routes, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def self_check(tiny: TinyDns, port: int, *chs: Challenge,
               timeout: float = 20.0) -> tuple[list[Problem], frozenset[str]]:
    return checks(tiny.address, http_port=port, timeout=timeout).self_check(list(chs))


def test_right_answer_passes_and_is_reported_as_passed(
    tiny: TinyDns, web: Callable[..., Web]
) -> None:
    w = web({PATH: (200, {}, KEY_AUTH.encode() + b"\r\n")})  # trailing whitespace is trimmed
    problems, passed = self_check(tiny, w.port, challenge("www.example.com"))
    assert problems == []
    assert passed == {"www.example.com"}
    assert w.hosts == [f"www.example.com:{w.port}"], "the Host header is the name"


@pytest.mark.parametrize(("routes", "expected", "in_detail"), [
    ({}, "SelfCheckNotFound", "404"),
    ({PATH: (200, {}, b"something else")}, "SelfCheckWrongContent", "something else"),
    ({PATH: (200, {}, b"x" * 200)}, "SelfCheckWrongContent", "128 bytes or longer"),
    ({PATH: (403, {}, b"")}, "SelfCheckHttpStatus", "HTTP 403"),
    ({PATH: (303, {"Location": "/elsewhere"}, b"")}, "SelfCheckBadRedirect", "303"),
    ({PATH: (302, {"Location": "/a"}, b""), "/a": (301, {"Location": PATH}, b"")},
     "SelfCheckBadRedirect", "redirect loop"),
    ({PATH: (302, {"Location": "http://www.example.com:8081/x"}, b"")},
     "SelfCheckBadRedirect", "not 8081"),
    ({PATH: (302, {"Location": "http://127.0.0.1/x"}, b"")},
     "SelfCheckBadRedirect", "IP addresses"),
    ({PATH: (302, {"Location": "ftp://www.example.com/x"}, b"")},
     "SelfCheckBadRedirect", "'ftp'"),
    ({PATH: (302, {"Location": "https://www.example.com.well-known/acme-challenge/tok"},
             b"")}, "SelfCheckBadRedirect", "a '/' is missing"),
    ({PATH: (302, {}, b"")}, "SelfCheckBadRedirect", "no Location"),
    ({PATH: (302, {"Location": "/r0"}, b""),
      **{f"/r{i}": (302, {"Location": f"/r{i + 1}"}, b"") for i in range(11)}},
     "SelfCheckBadRedirect", "more than 10 redirects"),
])
def test_self_check_failures_are_warnings_with_what_was_seen(
    tiny: TinyDns, web: Callable[..., Web], routes: Mapping[str, Route], expected: str,
    in_detail: str
) -> None:
    w = web(routes)
    problems, passed = self_check(tiny, w.port, challenge("www.example.com"))
    [p] = problems
    assert (p.name, p.severity, p.cause, p.step) == (
        expected, Severity.WARNING, Cause.CLIENT, Step.PREFLIGHT)
    assert in_detail in p.detail
    assert f"IPv4 127.0.0.1: GET http://www.example.com:{w.port}" in p.detail
    assert "hairpin NAT" in p.hint
    assert passed == frozenset()


def test_redirects_within_the_rules_are_followed_to_the_answer(
    tiny: TinyDns, web: Callable[..., Web]
) -> None:
    w = web({PATH: (301, {"Location": "/moved?x=1"}, b""),
             "/moved?x=1": (307, {"Location": "http://alias.example.com/final"}, b""),
             "/final": (200, {}, KEY_AUTH.encode())})
    problems, passed = self_check(tiny, w.port, challenge("www.example.com"))
    assert (problems, passed) == ([], frozenset({"www.example.com"}))
    assert w.hosts[-1] == f"alias.example.com:{w.port}"


@pytest.mark.parametrize("location", [
    "http://a..example.com/x",
    "http://" + "x" * 70 + ".example.com/x",
    "http://[::1/x",
    "http://www.example.com:99999/x",
])
def test_a_redirect_to_an_unusable_url_is_a_warning_not_a_crash(
    tiny: TinyDns, web: Callable[..., Web], location: str
) -> None:
    w = web({PATH: (302, {"Location": location}, b"")})
    problems, passed = self_check(tiny, w.port, challenge("www.example.com"))
    assert names(problems) == ["SelfCheckBadRedirect"]
    assert passed == frozenset()


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context whose certificate no trust store knows (the CA checks none)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("www.example.com").configure_cert(context)
    return context


def test_redirect_to_https_is_followed_without_verifying_the_certificate(
    tiny: TinyDns, web: Callable[..., Web], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secure = web({PATH: (200, {}, KEY_AUTH.encode())}, tls=_self_signed(tmp_path))
    monkeypatch.setattr(selfcheck, "HTTPS_PORT", secure.port)  # the CA's https port
    plain = web({PATH: (301, {"Location": f"https://www.example.com{PATH}"}, b"")})
    problems, passed = self_check(tiny, plain.port, challenge("www.example.com"))
    assert (problems, passed) == ([], frozenset({"www.example.com"}))
    assert secure.hosts == [f"www.example.com:{secure.port}"]


def test_connection_refused_and_https_only_are_told_apart(
    web: Callable[..., Web], monkeypatch: pytest.MonkeyPatch
) -> None:
    with TinyDns({"www.example.com": [("A", "127.0.0.2")]}) as dns:
        problems, _ = self_check(dns, closed_tcp_port(), challenge("www.example.com"))
        assert names(problems) == ["SelfCheckConnectionRefused"]
        assert "127.0.0.2" in problems[0].detail
        https = web({}, address="127.0.0.2")  # something accepts on the "https" port
        monkeypatch.setattr(selfcheck, "HTTPS_PORT", https.port)
        problems, _ = self_check(dns, closed_tcp_port(), challenge("www.example.com"))
        assert names(problems) == ["SelfCheckHttpsOnly"]


def closed_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_server_that_never_answers_times_out_within_the_deadline(tiny: TinyDns) -> None:
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # accepts connections (the kernel does), never answers
        started = time.monotonic()
        problems, passed = self_check(tiny, mute.getsockname()[1],
                                      challenge("www.example.com"), timeout=1.0)
        assert time.monotonic() - started < 2.0
    assert names(problems) == ["SelfCheckTimeout"]
    assert passed == frozenset()


def test_ipv6_failing_while_ipv4_works_is_a_warning_and_not_passed(
    tiny: TinyDns, web: Callable[..., Web]
) -> None:
    """Boulder tries the first IPv6 address first: a broken IPv6 path matters."""
    w = web({PATH: (200, {}, KEY_AUTH.encode())})  # listens on 127.0.0.1 only, not ::1
    problems, passed = self_check(tiny, w.port, challenge("v6.example.com"))
    [p] = problems
    assert p.name in ("SelfCheckConnectionRefused", "SelfCheckUnreachable")
    assert "IPv6 ::1:" in p.detail
    assert "IPv4 127.0.0.1: GET" in p.detail
    assert p.detail.endswith(": ok")
    assert "tries IPv6 first" in p.hint
    assert passed == frozenset()


def test_ip_identifier_is_fetched_at_the_address_itself(
    tiny: TinyDns, web: Callable[..., Web]
) -> None:
    w = web({PATH: (200, {}, KEY_AUTH.encode())})
    ch = challenge("127.0.0.1", identifier_type="ip")
    assert self_check(tiny, w.port, ch) == ([], frozenset({"127.0.0.1"}))
    assert w.hosts == [f"127.0.0.1:{w.port}"]


def test_name_without_address_at_self_check_time_is_a_warning(tiny: TinyDns) -> None:
    [p] = self_check(tiny, 80, challenge("txt-only.example.com"))[0]
    assert (p.name, p.severity) == ("SelfCheckNoAddress", Severity.WARNING)


def test_tls_alpn01_has_no_self_check() -> None:
    c = checks(f"127.0.0.1:{closed_udp_port()}")
    assert c.self_check([challenge("www.example.com", ctype="tls-alpn-01")]) == (
        [], frozenset())


# ============================================================ dns-01 self-check


def test_dns01_self_check_sees_the_published_txt_record(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.set_txt(f"_acme-challenge.{unique_name}", "txt-value")
    try:
        ch = challenge(unique_name, ctype="dns-01", wildcard=True)
        problems, passed = checks(pebble.dns_resolver).self_check([ch])
    finally:
        pebble.clear_txt(f"_acme-challenge.{unique_name}")
    assert (problems, passed) == ([], frozenset({f"*.{unique_name}"}))


def test_dns01_self_check_warns_when_the_record_never_appears(
    pebble: LocalPebble, unique_name: str
) -> None:
    started = time.monotonic()
    problems, passed = checks(pebble.dns_resolver, timeout=1.2).self_check(
        [challenge(unique_name, ctype="dns-01")])
    assert time.monotonic() - started < 3
    [p] = problems
    assert (p.name, p.severity, p.identifier) == (
        "SelfCheckTxtMissing", Severity.WARNING, unique_name)
    assert f"_acme-challenge.{unique_name}" in p.detail
    assert pebble.dns_resolver in p.detail
    assert passed == frozenset()


# ============================================================ whole runs against Pebble


def test_servfail_is_client_error_before_any_request(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.set_servfail(unique_name)
    try:
        report = run(pebble, [unique_name])
    finally:
        pebble.clear_servfail(unique_name)
    assert report.verdict is Verdict.CLIENT_ERROR
    [p] = [p for p in report.problems if p.severity.decisive]
    assert (p.name, p.cause, p.step, p.identifier) == (
        "DnsServfail", Cause.CLIENT, Step.PREFLIGHT, unique_name)
    assert pebble.dns_resolver in p.detail
    assert [s.step for s in report.steps if s.status is not StepStatus.SKIPPED] == [
        Step.PREFLIGHT]
    assert report.requests.total == 0


def test_nxdomain_is_client_error_before_any_request(pebble: LocalPebble) -> None:
    with TinyDns({}) as dns:
        report = run(pebble, ["missing.example.com"], dns_resolver=dns.address)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert names([p for p in report.problems if p.severity.decisive]) == ["DnsNxDomain"]
    assert report.requests.total == 0


def test_caa_naming_another_ca_is_client_error_only_preflight_can_catch(
    pebble: LocalPebble, unique_name: str
) -> None:
    """Pebble ignores CAA; with the CA's identity known, preflight refuses to order."""
    pebble.add_caa(unique_name, [("issue", "other-ca.example")])
    try:
        report = run(pebble, [unique_name], caa_identities=["pebble.letsencrypt.org"])
    finally:
        pebble.clear_caa(unique_name)
    assert report.verdict is Verdict.CLIENT_ERROR
    [p] = report.problems
    assert p.name == "CaaForbidden"
    assert 'issue "other-ca.example"' in p.detail
    assert report.requests.total == 0


def test_caa_naming_the_ca_passes(pebble: LocalPebble, unique_name: str) -> None:
    pebble.add_caa(unique_name, [("issue", "pebble.letsencrypt.org")])
    try:
        report = run(pebble, [unique_name], caa_identities=["pebble.letsencrypt.org"])
    finally:
        pebble.clear_caa(unique_name)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.problems == ()


def test_caa_with_no_identity_anywhere_is_a_warning_after_the_directory(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_caa(unique_name, [("issue", "other-ca.example")])
    try:
        report = run(pebble, [unique_name])
    finally:
        pebble.clear_caa(unique_name)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert "CaaIdentityUnknown" in names(report.problems)


def test_address_nobody_serves_is_client_error_with_the_self_check_warning(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])  # the responder binds 127.0.0.1 only
    try:
        report = run(pebble, [unique_name])
    finally:
        pebble.clear_a(unique_name)
    assert report.verdict is Verdict.CLIENT_ERROR
    [warning] = [p for p in report.problems if p.name.startswith("SelfCheck")]
    assert warning.name == "SelfCheckConnectionRefused"
    assert warning.severity is Severity.WARNING
    assert f"127.0.0.2: GET http://{unique_name}:{pebble.http_port}" in warning.detail
    [fatal] = [p for p in report.problems if p.severity.decisive]
    assert fatal.name == "ValidationConnection"
    assert "self-check from this machine reached" not in fatal.hint


def test_self_check_passing_where_the_ca_fails_points_at_the_cas_view(
    pebble: LocalPebble, unique_name: str
) -> None:
    """Split DNS: this machine's resolver says 127.0.0.1 (where the responder is), the
    CA's resolver (challtestsrv) says 127.0.0.2.  The self-check passes, the CA fails,
    and the CA's problem says the difference is in what the CA sees."""
    pebble.add_a(unique_name, ["127.0.0.2"])
    try:
        with TinyDns({unique_name: [("A", "127.0.0.1")]}) as local_view:
            report = run(pebble, [unique_name], dns_resolver=local_view.address)
    finally:
        pebble.clear_a(unique_name)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert not [p for p in report.problems if p.name.startswith("SelfCheck")]
    [fatal] = [p for p in report.problems if p.severity.decisive]
    assert fatal.step is Step.CHALLENGE
    assert "self-check from this machine reached" in fatal.hint


def test_wildcard_with_http01_is_client_error_without_contacting_the_ca(
    pebble: LocalPebble
) -> None:
    report = run(pebble, ["*.example.com"])
    assert report.verdict is Verdict.CLIENT_ERROR
    assert names(report.problems) == ["WildcardNeedsDns01"]
    assert report.requests.total == 0
    assert [s.step for s in report.steps if s.status is not StepStatus.SKIPPED] == [
        Step.PREFLIGHT]


def test_internal_name_at_lets_encrypt_is_refused_without_a_single_lookup(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staging alias is real Let's Encrypt: nothing may leave this machine."""
    lookups: list[tuple[Any, ...]] = []
    real = socket.getaddrinfo

    def recording(*args: Any, **kwargs: Any) -> Any:
        lookups.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    started = time.monotonic()
    report = acmedryrun.dry_run(["example.local"], directory="letsencrypt-staging",
                                solver=HTTP01Standalone(port=0, address="127.0.0.1"),
                                timeout=5)
    assert time.monotonic() - started < 1.0
    assert report.verdict is Verdict.CLIENT_ERROR
    assert names(report.problems) == ["InternalName"]
    assert report.requests.total == 0
    assert [s.step for s in report.steps if s.status is not StepStatus.SKIPPED] == [
        Step.PREFLIGHT]
    assert lookups == []


def test_unparsable_resolver_is_a_usage_error(pebble: LocalPebble, unique_name: str) -> None:
    for bad in ("resolver.example.com", "127.0.0.1:99999", "127.0.0.1:dns"):
        with pytest.raises(UsageError, match="--dns-resolver"):
            run(pebble, [unique_name], dns_resolver=bad)


def test_unreachable_resolver_is_a_warning_and_the_run_goes_on(
    pebble: LocalPebble, unique_name: str
) -> None:
    resolver = f"127.0.0.1:{closed_udp_port()}"
    started = time.monotonic()
    report = run(pebble, [unique_name], dns_resolver=resolver)
    assert time.monotonic() - started < 20
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    [p] = report.problems
    assert (p.name, p.severity) == ("DnsResolverUnreachable", Severity.WARNING)
    assert resolver in p.detail


def test_dns01_run_with_a_wildcard_passes_preflight_and_self_check(
    pebble: LocalPebble, unique_name: str
) -> None:
    solver = DNS01Callback(pebble.set_txt, lambda name, _value: pebble.clear_txt(name))
    report = run(pebble, [f"*.{unique_name}", unique_name], solver=solver)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.problems == ()

