"""Tests for acmedryrun.production: what a staging run cannot see about production.

The pure parts (comparison rules, limits, CAA accounturi, the safety guard, ARI
identifiers and windows) are table-tested.  The I/O parts talk to real Pebbles, one
as staging and one as production, each behind a FaultProxy whose ``directory:patch``
fault rewrites the directory.  The patch is a shallow merge, so it carries the whole
``meta`` object (see the first Pebble test).  Pebble 2.4.0 has no ARI, and references
that are no ACME directory need a web server of their own: a loopback stub serves both.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmedryrun import directories
from acmedryrun.deadline import Deadline
from acmedryrun.directories import LETSENCRYPT, KnownDirectory
from acmedryrun.preflight.caa import caa_accounturi_warning
from acmedryrun.production import ari as ari_mod
from acmedryrun.production import compare, policy, twin
from acmedryrun.production.ari import RenewalInfo
from acmedryrun.production.compare import BASE_ENDPOINTS, UsedFeatures
from acmedryrun.production.twin import TwinUnavailable, UnavailableKind
from acmedryrun.report import Cause, Severity, Verdict
from acmedryrun.testing import Fault, FaultProxy, LocalPebble
from acmedryrun.transport import Transport
from acmedryrun.verdict import decide

TIMEOUT = 5.0


def transport(verify: str | bool = True) -> Transport:
    """A transport for one test's read-only GETs."""
    return Transport(verify=verify, deadline=Deadline(TIMEOUT))


def production_by_endpoints(doc: dict[str, Any]) -> KnownDirectory | None:
    """The known production CA whose host serves ``doc``'s resources."""
    return directories.by_endpoints(doc, directories.Kind.PRODUCTION)

# What Let's Encrypt's directories look like (2025), Boulder's random entry included:
# its name differs per environment and must never count as a difference.
LE_PRODUCTION: dict[str, Any] = {
    "keyChange": "https://acme-v02.api.letsencrypt.org/acme/key-change",
    "meta": {
        "caaIdentities": ["letsencrypt.org"],
        "profiles": {
            "classic": "https://letsencrypt.org/docs/profiles#classic",
            "shortlived": "https://letsencrypt.org/docs/profiles#shortlived",
            "tlsclient": "https://letsencrypt.org/docs/profiles#tlsclient",
            "tlsserver": "https://letsencrypt.org/docs/profiles#tlsserver",
        },
        "termsOfService": "https://letsencrypt.org/documents/LE-SA-v1.6-August-18-2025.pdf",
        "website": "https://letsencrypt.org",
    },
    "newAccount": "https://acme-v02.api.letsencrypt.org/acme/new-acct",
    "newNonce": "https://acme-v02.api.letsencrypt.org/acme/new-nonce",
    "newOrder": "https://acme-v02.api.letsencrypt.org/acme/new-order",
    "renewalInfo": "https://acme-v02.api.letsencrypt.org/acme/renewal-info",
    "revokeCert": "https://acme-v02.api.letsencrypt.org/acme/revoke-cert",
    "vmXM3vOrDiQ": "https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417",
}
LE_STAGING: dict[str, Any] = {
    "7hzBxoPp3yI": "https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417",
    "keyChange": "https://acme-staging-v02.api.letsencrypt.org/acme/key-change",
    "meta": {
        "caaIdentities": ["letsencrypt.org"],
        "profiles": {
            "classic": "https://letsencrypt.org/docs/profiles#classic",
            "shortlived": "https://letsencrypt.org/docs/profiles#shortlived",
            "tlsclient": "https://letsencrypt.org/docs/profiles#tlsclient",
            "tlsserver": "https://letsencrypt.org/docs/profiles#tlsserver",
        },
        "termsOfService": "https://letsencrypt.org/documents/LE-SA-v1.6-August-18-2025.pdf",
        "website": "https://letsencrypt.org/docs/staging-environment/",
    },
    "newAccount": "https://acme-staging-v02.api.letsencrypt.org/acme/new-acct",
    "newNonce": "https://acme-staging-v02.api.letsencrypt.org/acme/new-nonce",
    "newOrder": "https://acme-staging-v02.api.letsencrypt.org/acme/new-order",
    "renewalInfo": "https://acme-staging-v02.api.letsencrypt.org/acme/renewal-info",
    "revokeCert": "https://acme-staging-v02.api.letsencrypt.org/acme/revoke-cert",
}

# RFC 9773 appendix A: this AKI keyIdentifier and serial give this certID.
RFC_AKI = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
RFC_SERIAL = 0x87654321
RFC_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"

HTTP01 = "http-01"


def directory(base: str = "https://ca.test", *, meta: Mapping[str, Any] | None = None,
              **extra: str) -> dict[str, Any]:
    """A minimal directory on ``base`` with ``meta`` and extra resources."""
    d: dict[str, Any] = {
        "newNonce": f"{base}/nonce", "newAccount": f"{base}/account",
        "newOrder": f"{base}/order", "meta": dict(meta or {}),
    }
    d.update({k: f"{base}/{v}" for k, v in extra.items()})
    return d


def summary(problems: tuple[Any, ...] | list[Any]) -> set[tuple[str, Cause, Severity]]:
    return {(p.name, p.cause, p.severity) for p in problems}


# ------------------------------------------------------------ comparison rules (pure)

PROFILES_BOTH = {"profiles": {"classic": "c", "shortlived": "s"}}
PROFILES_CLASSIC = {"profiles": {"classic": "c"}}

_ROWS = [
    pytest.param(
        directory(meta=PROFILES_BOTH), directory(meta=PROFILES_CLASSIC),
        UsedFeatures(challenge_type=HTTP01, profile="shortlived"),
        {("ProfileNotInProduction", Cause.CLIENT, Severity.ERROR)},
        ("profile:shortlived",), (), id="profile-only-staging-offers-requested"),
    pytest.param(
        directory(meta=PROFILES_BOTH), directory(meta=PROFILES_BOTH),
        UsedFeatures(challenge_type=HTTP01, profile="shortlived"),
        set(), (), (), id="same-profile-offered-by-both"),
    pytest.param(
        directory(meta=PROFILES_BOTH), directory(),
        UsedFeatures(challenge_type=HTTP01, profile="classic"),
        {("ProfileNotInProduction", Cause.CLIENT, Severity.ERROR),
         ("StagingOnlyFeature", None, Severity.INFO)},
        ("profile:classic", "profile:shortlived"), (), id="production-without-profiles"),
    pytest.param(
        directory(meta=PROFILES_BOTH, renewalInfo="ari"), directory(meta=PROFILES_CLASSIC),
        UsedFeatures(challenge_type=HTTP01),
        {("StagingOnlyFeature", None, Severity.INFO)},
        ("endpoint:renewalInfo", "profile:shortlived"), (), id="staging-only-unused-is-info"),
    pytest.param(
        directory(renewalInfo="ari"), directory(),
        UsedFeatures(challenge_type=HTTP01, endpoints=BASE_ENDPOINTS | {"renewalInfo"}),
        {("EndpointNotInProduction", Cause.CLIENT, Severity.ERROR)},
        ("endpoint:renewalInfo",), (), id="endpoint-used-production-lacks"),
    pytest.param(
        directory(), directory(renewalInfo="ari", meta=PROFILES_CLASSIC),
        UsedFeatures(challenge_type=HTTP01),
        {("ProductionOnlyFeature", None, Severity.INFO)},
        (), ("endpoint:renewalInfo", "profile:classic"), id="production-only-is-info"),
    pytest.param(
        directory(), directory(meta={"externalAccountRequired": True}),
        UsedFeatures(challenge_type=HTTP01),
        {("ProductionRequiresEab", Cause.CLIENT, Severity.ERROR)},
        (), ("meta.externalAccountRequired",), id="eab-only-in-production-run-without"),
    pytest.param(
        directory(), directory(meta={"externalAccountRequired": True}),
        UsedFeatures(challenge_type=HTTP01, eab=True),
        {("ProductionEabCredentials", None, Severity.INFO)},
        (), ("meta.externalAccountRequired",), id="eab-in-production-run-with-eab"),
    pytest.param(
        directory(meta={"externalAccountRequired": True}), directory(),
        UsedFeatures(challenge_type=HTTP01, eab=True),
        {("StagingOnlyFeature", None, Severity.INFO)},
        ("meta.externalAccountRequired",), (), id="eab-only-in-staging"),
    pytest.param(
        directory(meta={"caaIdentities": ["staging.ca.test"]}),
        directory(meta={"caaIdentities": ["ca.test"]}),
        UsedFeatures(challenge_type=HTTP01),
        {("CaaIdentitiesDiffer", Cause.CLIENT, Severity.WARNING)},
        ("caaIdentity:staging.ca.test",), ("caaIdentity:ca.test",), id="caa-identities-differ"),
    pytest.param(
        directory(meta={"caaIdentities": ["ca.test"]}),
        directory(meta={"caaIdentities": ["ca.test", "other.ca.test"]}),
        UsedFeatures(challenge_type=HTTP01),
        set(), (), ("caaIdentity:other.ca.test",), id="production-honours-more-caa-identities"),
    pytest.param(
        directory(meta={"termsOfService": "https://ca.test/tos-2"}),
        directory(meta={"termsOfService": "https://ca.test/tos-1"}),
        UsedFeatures(challenge_type=HTTP01),
        {("TermsOfServiceDiffer", None, Severity.INFO)}, (), (), id="tos-differ"),
    pytest.param(
        LE_STAGING, LE_PRODUCTION, UsedFeatures(challenge_type=HTTP01, profile="tlsserver"),
        set(), (), (), id="letsencrypt-random-directory-entries-ignored"),
]


#: (staging, production, used, (problems, staging-only, production-only)) per rule.
COMPARE_CASES = [pytest.param(*row.values[:3], tuple(row.values[3:]), id=row.id)
                 for row in _ROWS]
Expected = tuple[set[tuple[str, Cause, Severity]], tuple[str, ...], tuple[str, ...]]


@pytest.mark.parametrize(("staging", "production", "used", "expected"), COMPARE_CASES)
def test_compare_directories_rules(staging: dict[str, Any], production: dict[str, Any],
                                   used: UsedFeatures, expected: Expected) -> None:
    """Each comparison rule yields its problem, and the feature lists are stable names."""
    problems, staging_only, production_only = expected
    result = compare.compare_directories(staging, production, used=used)
    assert summary(result.problems) == problems
    assert result.staging_only_features == staging_only
    assert result.production_only_features == production_only
    assert result.reasons, "every comparison explains itself"
    assert result.production_blocked == any(s.decisive for _, _, s in problems)


def test_profile_not_in_production_names_the_profile_and_decides_client_error() -> None:
    """The problem names the profile; the verdict becomes client_error, prod false."""
    result = compare.compare_directories(
        directory(meta=PROFILES_BOTH), directory(meta=PROFILES_CLASSIC),
        used=UsedFeatures(challenge_type=HTTP01, profile="shortlived"))
    (problem,) = result.problems
    assert problem.step.value == "order"
    assert "shortlived" in problem.detail
    assert "shortlived" in problem.hint
    assert "classic" in problem.detail
    assert any("shortlived" in r for r in result.reasons)
    decision = decide(result.problems)
    assert decision.verdict is Verdict.CLIENT_ERROR
    assert decision.prod_likely_to_succeed is False


def test_features_merely_on_offer_leave_the_verdict_alone() -> None:
    """Info problems never change likely_success, nor its confidence."""
    result = compare.compare_directories(
        directory(meta=PROFILES_BOTH, renewalInfo="ari", newAuthz="authz"), directory(),
        used=UsedFeatures(challenge_type=HTTP01))
    assert {p.severity for p in result.problems} == {Severity.INFO}
    decision = decide(result.problems)
    assert decision.verdict is Verdict.LIKELY_SUCCESS
    assert decision.prod_likely_to_succeed is True
    assert decision.confidence.value == "high"


def test_no_production_directory_means_no_problem_and_says_so() -> None:
    """Without a twin nothing is compared, and the reason says so."""
    result = compare.compare_directories(LE_STAGING, None,
                                      used=UsedFeatures(challenge_type=HTTP01))
    assert result.problems == ()
    assert result.staging_only_features == result.production_only_features == ()
    assert "No production directory" in result.reasons[0]


# --------------------------------------------------------------- safety guard (pure)


@pytest.mark.parametrize(("doc", "alias"), [
    pytest.param(LE_PRODUCTION, "letsencrypt", id="letsencrypt-production"),
    pytest.param(LE_STAGING, None, id="letsencrypt-staging"),
    pytest.param({"newNonce": "https://ACME-V02.api.letsencrypt.org./acme/new-nonce",
                  "newAccount": "https://127.0.0.1:14000/acct",
                  "newOrder": "https://127.0.0.1:14000/order"},
                 "letsencrypt", id="production-endpoint-behind-another-url"),
    pytest.param(directory("https://dv.acme-v02.api.pki.goog"), "google", id="google"),
    pytest.param(directory("https://dv.acme-v02.test-api.pki.goog"), None,
                 id="google-staging"),
    pytest.param(directory("https://api.buypass.com/acme"), "buypass", id="buypass"),
    pytest.param(directory("https://api.test4.buypass.no/acme"), None, id="buypass-staging"),
    pytest.param(directory("https://127.0.0.1:14000"), None, id="local-pebble"),
    pytest.param({"newNonce": "https://[::1", "newAccount": 7, "meta": {}}, None,
                 id="garbage-values"),
])
def test_production_by_endpoints(doc: dict[str, Any], alias: str | None) -> None:
    """A directory is production when its resources live on a production CA's host."""
    known = production_by_endpoints(doc)
    assert (known.alias if known else None) == alias


# ------------------------------------------------------------------- limits (pure)


def test_letsencrypt_figures_match_the_published_pages() -> None:
    """The table holds the figures of letsencrypt.org's rate-limit and staging pages."""
    prod, staging = policy.POLICIES["letsencrypt"], policy.POLICIES["letsencrypt-staging"]

    def figures(p: policy.CaPolicy) -> list[tuple[int, str] | None]:
        return [(limit.count, limit.window) if limit else None for limit in (
            p.new_orders_per_account, p.certificates_per_registered_domain,
            p.certificates_per_exact_set, p.authorization_failures_per_identifier)]

    assert figures(prod) == [(300, "3 hours"), (50, "7 days"), (5, "7 days"), (5, "hour")]
    assert prod.names_per_certificate == 100
    assert figures(staging) == [(1500, "3 hours"), (30000, "7 days"), (30000, "7 days"),
                                (200, "hour")]
    assert prod.ari_replacements_exempt


@pytest.mark.parametrize(("name", "expected"), [
    ("www.example.com", "example.com"),
    ("Example.COM.", "example.com"),
    ("*.shop.example.com", "example.com"),
    ("new.blog.example.co.uk", "example.co.uk"),
    ("example.co.uk", "example.co.uk"),
    ("a.b.example.com.au", "example.com.au"),
    ("x.pvt.k12.ma.us", "x.pvt.k12.ma.us"),
    ("x.city.kobe.jp", "city.kobe.jp"),
    ("me.github.io", "me.github.io"),
    ("localhost", "localhost"),
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8::1", "2001:db8::/64"),
])
def test_registered_domain(name: str, expected: str) -> None:
    """The whole Public Suffix List decides; IPv4 alone, IPv6 per /64."""
    assert policy.registered_domain(name) == expected


def _distinct(n: int) -> list[list[str]]:
    return [[f"www.site{i}.example{i}.org"] for i in range(n)]


@pytest.mark.parametrize(("sets", "ca", "kwargs", "expected"), [
    pytest.param(_distinct(300), "letsencrypt", {}, [], id="300-orders-fit"),
    pytest.param(_distinct(301), "letsencrypt", {},
                 [("BatchNewOrdersLimit", None)], id="301-orders"),
    pytest.param(_distinct(301), "letsencrypt-staging", {},
                 [("BatchNewOrdersLimit", None)], id="staging-alias-checks-production"),
    pytest.param(_distinct(301), "letsencrypt", {"ari_renewal": True}, [],
                 id="ari-replacements-exempt"),
    pytest.param([[f"h{i}.example.com"] for i in range(50)], "letsencrypt", {}, [],
                 id="50-per-registered-domain-fit"),
    pytest.param([[f"h{i}.example.com", "example.com"] for i in range(51)], "letsencrypt", {},
                 [("BatchRegisteredDomainLimit", "example.com")],
                 id="51-under-example.com"),
    pytest.param([[f"h{i}.shop.example.co.uk"] for i in range(51)], "letsencrypt", {},
                 [("BatchRegisteredDomainLimit", "example.co.uk")],
                 id="51-under-example.co.uk"),
    pytest.param([["a.example.net", "b.example.net"]] * 5, "letsencrypt", {}, [],
                 id="5-duplicates-fit"),
    pytest.param([["a.example.net", "b.example.net"]] * 5 + [["B.example.net.", "a.example.net"]],
                 "letsencrypt", {}, [("BatchExactSetLimit", "a.example.net")],
                 id="6-duplicates-any-order-or-case"),
    pytest.param([[f"n{i}.example.org" for i in range(101)]], "letsencrypt", {},
                 [("ProductionNamesPerCertificate", "n0.example.org")], id="101-names"),
    pytest.param([[f"h{i}.example.com"] for i in range(21)], "buypass", {},
                 [("BatchRegisteredDomainLimit", "example.com")], id="buypass-20-per-week"),
    pytest.param(_distinct(400), "google", {}, [], id="no-published-policy"),
    pytest.param(_distinct(400), "https://ca.test/directory", {}, [], id="unknown-ca"),
])
def test_batch_limit_warnings(sets: list[list[str]], ca: str, kwargs: dict[str, bool],
                              expected: list[tuple[str, str | None]]) -> None:
    """A batch that production would refuse gets a problem per exceeded limit."""
    problems = policy.batch_limit_warnings(sets, ca, **kwargs)
    assert [(p.name, p.identifier) for p in problems] == expected
    for p in problems:
        assert p.cause is Cause.CLIENT
        assert p.severity is (Severity.ERROR if p.name == "ProductionNamesPerCertificate"
                              else Severity.WARNING)


def test_batch_warning_quotes_production_and_staging_figures() -> None:
    """The detail says what production allows and how much more staging does."""
    (problem,) = policy.batch_limit_warnings(_distinct(301), "letsencrypt")
    assert "301 orders" in problem.detail
    assert "300 per 3 hours" in problem.detail
    assert "1,500 per 3 hours" in problem.detail
    assert "ARI" in problem.hint


S_ACCT = "https://acme-staging-v02.api.letsencrypt.org/acme/acct/123"
P_ACCT = "https://acme-v02.api.letsencrypt.org/acme/acct/456"


@pytest.mark.parametrize(("uris", "staging_account", "expected"), [
    pytest.param([P_ACCT], S_ACCT, ("CaaAccountUriProductionOnly", Severity.WARNING),
                 id="names-production-account-only"),
    pytest.param([P_ACCT], None, ("CaaAccountUriProductionOnly", Severity.WARNING),
                 id="before-the-staging-account-exists"),
    pytest.param([S_ACCT], S_ACCT, ("CaaAccountUriStagingOnly", Severity.ERROR),
                 id="names-staging-account-only"),
    pytest.param([S_ACCT, P_ACCT], S_ACCT, None, id="names-both"),
    pytest.param([P_ACCT, None], S_ACCT, None, id="a-record-without-accounturi"),
    pytest.param([], S_ACCT, None, id="no-records"),
    pytest.param(["https://other.ca.test/acct/1"], S_ACCT, None, id="another-host"),
])
def test_caa_accounturi_warning(uris: list[str | None], staging_account: str | None,
                                expected: tuple[str, Severity] | None) -> None:
    """accounturi bound to one environment's account decides staging and production apart."""
    problem = caa_accounturi_warning("example.com", uris,
                                          staging_account_url=staging_account,
                                          production_url=LETSENCRYPT)
    assert (None if problem is None else (problem.name, problem.severity)) == expected
    if problem is not None:
        assert problem.identifier == "example.com"
        assert problem.cause is (Cause.CLIENT if problem.severity.decisive else None)


# ------------------------------------------------------------------------ ARI (pure)


@pytest.mark.parametrize(("aki", "serial", "expected"), [
    pytest.param(RFC_AKI, RFC_SERIAL, RFC_CERT_ID, id="rfc9773-appendix-a"),
    pytest.param(b"\x01", 1, "AQ.AQ", id="one-octet"),
    pytest.param(b"\x01", 0x7F, "AQ.fw", id="high-bit-clear-no-padding-octet"),
    pytest.param(b"\x01", 0x80, "AQ.AIA", id="high-bit-set-keeps-leading-zero"),
    pytest.param(b"\xfb\xff", 0, "-_8.AA", id="base64url-alphabet-and-zero-serial"),
])
def test_ari_cert_id_from_parts(aki: bytes, serial: int, expected: str) -> None:
    """base64url(keyIdentifier) "." base64url(DER serial content), no padding."""
    assert ari_mod.ari_cert_id_from_parts(aki, serial) == expected


@pytest.mark.parametrize(("aki", "serial"), [(RFC_AKI, -1), (b"", 1)])
def test_ari_cert_id_from_parts_refuses_impossible_input(aki: bytes, serial: int) -> None:
    """A negative serial or an empty key identifier is no certificate's."""
    with pytest.raises(ValueError, match=r"serial|keyIdentifier"):
        ari_mod.ari_cert_id_from_parts(aki, serial)


def make_cert(aki: bytes | None = RFC_AKI, serial: int = RFC_SERIAL) -> x509.Certificate:
    """A certificate with the given AKI keyIdentifier and serial (signed by a throwaway key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.example.com")])
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=89)))
    if aki is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.mark.parametrize("form", ["object", "pem", "der"])
def test_ari_cert_id_of_a_certificate_matches_the_rfc_example(form: str) -> None:
    """The RFC's AKI and serial in a real certificate give the RFC's certID."""
    cert = make_cert()
    given: x509.Certificate | bytes = cert
    if form != "object":
        encoding = serialization.Encoding.PEM if form == "pem" else serialization.Encoding.DER
        given = cert.public_bytes(encoding)
    assert ari_mod.ari_cert_id(given) == RFC_CERT_ID


def test_ari_cert_id_needs_an_authority_key_identifier() -> None:
    """Without AKI there is no ARI identifier, and the error says so."""
    with pytest.raises(ValueError, match="Authority Key Identifier"):
        ari_mod.ari_cert_id(make_cert(aki=None))


WINDOW = {"start": "2026-11-02T17:18:36Z", "end": "2026-11-04T12:29:25.123456789Z"}


@pytest.mark.parametrize(("data", "now", "due", "overdue"), [
    pytest.param({"suggestedWindow": WINDOW}, "2026-11-01T00:00:00+00:00", False, False,
                 id="before-the-window"),
    pytest.param({"suggestedWindow": WINDOW}, "2026-11-02T17:18:36+00:00", True, False,
                 id="at-the-start"),
    pytest.param({"suggestedWindow": WINDOW}, "2026-11-05T00:00:00+00:00", True, True,
                 id="after-the-window"),
    pytest.param({"suggestedWindow": {"start": "2026-11-02T19:18:36+02:00",
                                      "end": "2026-11-03T00:00:00Z"}},
                 "2026-11-02T17:30:00+00:00", True, False, id="offsets-normalized"),
])
def test_parse_renewal_info_window(data: dict[str, Any], now: str, due: bool,
                                   overdue: bool) -> None:
    """Renewal is due once the suggested window has begun (RFC 9773 section 4.2)."""
    info = ari_mod.parse_renewal_info(data, cert_id=RFC_CERT_ID, url="u",
                                   now=datetime.fromisoformat(now))
    assert isinstance(info, RenewalInfo)
    assert (info.due, info.overdue) == (due, overdue)
    assert info.replaces == RFC_CERT_ID
    assert info.window_start.tzinfo is not None


@pytest.mark.parametrize("data", [
    pytest.param({"suggestedWindow": {"start": WINDOW["end"], "end": WINDOW["start"]}},
                 id="end-before-start"),
    pytest.param({"suggestedWindow": {"start": WINDOW["start"]}}, id="no-end"),
    pytest.param({"suggestedWindow": {"start": "2026-11-02", "end": "2026-11-04"}},
                 id="dates-not-date-times"),
    pytest.param({"suggestedWindow": {"start": "2026-11-02T17:18:36",
                                      "end": "2026-11-04T17:18:36"}}, id="no-offset"),
    pytest.param({}, id="no-window"),
    pytest.param([1, 2], id="not-an-object"),
])
def test_parse_renewal_info_rejects_an_invalid_window(data: Any) -> None:
    """An unusable window is reported, never guessed (RFC 9773 section 4.2)."""
    info = ari_mod.parse_renewal_info(data, cert_id=RFC_CERT_ID, url="u",
                                   now=datetime.now(timezone.utc))
    assert isinstance(info, TwinUnavailable)
    assert info.kind is UnavailableKind.BAD_RENEWAL_INFO


def test_renewal_info_problem_is_info_or_warning_never_a_failure() -> None:
    """ARI advises; a due window is info naming replaces, an unreadable one a warning."""
    info = ari_mod.parse_renewal_info(
        {"suggestedWindow": WINDOW, "explanationURL": "https://ca.test/why"},
        cert_id=RFC_CERT_ID, url="u", now=datetime(2026, 11, 3, tzinfo=timezone.utc),
        rate_limit_exempt=True)
    assert isinstance(info, RenewalInfo)
    problem = ari_mod.renewal_info_problem(info)
    assert (problem.name, problem.severity) == ("RenewalDue", Severity.INFO)
    assert RFC_CERT_ID in problem.hint
    assert "exempt" in problem.hint
    assert "https://ca.test/why" in problem.hint
    unavailable = ari_mod.renewal_info_problem(
        TwinUnavailable("https://ca.test/ari/x", UnavailableKind.HTTP_STATUS, "HTTP 404", 404))
    assert (unavailable.severity, unavailable.http_status) == (Severity.WARNING, 404)
    assert decide([problem, unavailable]).verdict is Verdict.LIKELY_SUCCESS


def test_renewal_info_never_asks_a_staging_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A production certificate's ID is never sent to staging (certbot issue 10327)."""
    def no_request(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a request was sent")

    monkeypatch.setattr(requests.Session, "request", no_request)
    cert = make_cert().public_bytes(serialization.Encoding.PEM)
    result = ari_mod.renewal_info(transport(), cert, LE_STAGING)
    assert isinstance(result, TwinUnavailable)
    assert result.kind is UnavailableKind.STAGING_DIRECTORY
    assert "10327" in result.reason


def test_renewal_info_without_ari_in_the_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory without renewalInfo means no ARI, and nothing is sent."""
    monkeypatch.setattr(requests.Session, "request",
                        lambda *a, **k: pytest.fail("a request was sent"))
    cert = make_cert().public_bytes(serialization.Encoding.PEM)
    result = ari_mod.renewal_info(transport(), cert, directory())
    assert isinstance(result, TwinUnavailable)
    assert result.kind is UnavailableKind.NO_RENEWAL_INFO


# ----------------------------------------------------------------- loopback servers


class Stub:
    """A loopback HTTP server answering fixed routes and recording what it was asked."""

    def __init__(self, routes: Mapping[str, tuple[int, str, bytes, Mapping[str, str]]]) -> None:
        self.routes = dict(routes)
        self.seen: list[tuple[str, str]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.seen.append(("GET", self.path))
                status, ctype, body, headers = stub.routes.get(
                    self.path, (404, "text/plain", b"not found", {}))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                stub.seen.append(("POST", self.path))
                self.send_error(405)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> Stub:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None,
          ) -> tuple[int, str, bytes, Mapping[str, str]]:
    return status, "application/json", json.dumps(data).encode(), dict(headers or {})


NOT_DIRECTORIES = {
    "/page": (200, "text/html; charset=utf-8", b"<!doctype html><title>CA</title>", {}),
    "/html-404": (404, "text/html", b"<html><body>Not Found</body></html>", {}),
    "/wrong-json": _json({"hello": "world", "newNonce": 1}),
    "/json-array": _json(["newNonce", "newAccount", "newOrder"]),
    "/text": (200, "text/plain", b"directory: here", {}),
    "/problem-404": _json({"type": "urn:ietf:params:acme:error:malformed"}, 404),
}


@pytest.fixture(scope="module")
def not_directories() -> Iterator[Stub]:
    with Stub(NOT_DIRECTORIES) as stub:
        yield stub


@pytest.mark.parametrize(("path", "kind"), [
    ("/page", UnavailableKind.HTML),
    ("/html-404", UnavailableKind.HTTP_STATUS),
    ("/problem-404", UnavailableKind.HTTP_STATUS),
    ("/missing", UnavailableKind.HTTP_STATUS),
    ("/wrong-json", UnavailableKind.NOT_DIRECTORY),
    ("/json-array", UnavailableKind.NOT_DIRECTORY),
    ("/text", UnavailableKind.NOT_JSON),
])
def test_reference_that_is_not_an_acme_directory_gets_a_warning_naming_it(
        not_directories: Stub, path: str, kind: UnavailableKind) -> None:
    """HTML, 404 or the wrong JSON: a warning naming the reference; the verdict stands."""
    url = not_directories.url(path)
    result = twin.fetch_directory(transport(), url)
    assert isinstance(result, TwinUnavailable)
    assert result.kind is kind
    problem = twin.twin_unavailable_problem(url, result)
    assert (problem.name, problem.cause, problem.severity) == (
        "ProductionTwinUnavailable", None, Severity.WARNING)
    assert url in problem.detail
    assert "the production twin could not be compared" in problem.detail
    assert decide([problem]).verdict is Verdict.LIKELY_SUCCESS
    assert not_directories.seen[-1] == ("GET", path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_production_twin_is_a_warning_never_a_failure() -> None:
    """A twin nobody answers for is a warning; a successful staging run stays a success."""
    url = f"https://127.0.0.1:{_free_port()}/directory"
    result = twin.fetch_directory(transport(), url)
    assert isinstance(result, TwinUnavailable)
    assert result.kind is UnavailableKind.UNREACHABLE
    problem = twin.twin_unavailable_problem(url, result)
    assert problem.severity is Severity.WARNING
    assert url in problem.detail
    decision = decide([problem])
    assert (decision.verdict, decision.prod_likely_to_succeed) == (
        Verdict.LIKELY_SUCCESS, True)


def test_twin_unavailable_problem_takes_a_plain_reason() -> None:
    """A reason given as text works as well as a TwinUnavailable."""
    problem = twin.twin_unavailable_problem("https://ca.test/dir", "no route to host")
    assert problem.detail.endswith("https://ca.test/dir: no route to host")
    assert problem.http_status is None


# ---------------------------------------------------------- two Pebbles as twins


@pytest.fixture(scope="module")
def staging_ca() -> Iterator[LocalPebble]:
    if not LocalPebble.is_installed():
        pytest.skip("Debian package 'pebble' is not installed")
    with LocalPebble() as p:
        yield p


@pytest.fixture(scope="module")
def production_ca() -> Iterator[LocalPebble]:
    if not LocalPebble.is_installed():
        pytest.skip("Debian package 'pebble' is not installed")
    with LocalPebble() as p:
        yield p


@pytest.fixture(scope="module")
def production_eab_ca() -> Iterator[LocalPebble]:
    if not LocalPebble.is_installed():
        pytest.skip("Debian package 'pebble' is not installed")
    with LocalPebble(eab_required=True,
                     eab_keys={"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3M"}
                     ) as p:
        yield p


PEBBLE_TOS = "data:text/plain,Do%20what%20thou%20wilt"


def twin_proxy(ca: LocalPebble, **patch: Any) -> FaultProxy:
    """A proxy in front of ``ca`` whose directory gets ``patch`` merged in (shallowly)."""
    faults = [Fault("directory", "patch", patch=patch)] if patch else []
    return FaultProxy(ca.directory_url, upstream_ca_bundle=ca.ca_bundle, faults=faults)


def meta(**fields: Any) -> dict[str, Any]:
    """A whole meta object: the proxy's patch replaces ``meta``, it does not merge into it."""
    return {"externalAccountRequired": False, "termsOfService": PEBBLE_TOS, **fields}


def fetch(proxy: FaultProxy) -> Mapping[str, Any]:
    got = twin.fetch_directory(transport(proxy.ca_bundle), proxy.directory_url)
    assert not isinstance(got, TwinUnavailable), got
    return got


def test_directory_patch_replaces_meta_wholesale(staging_ca: LocalPebble) -> None:
    """FaultProxy's patch is a shallow merge: a patched meta loses what it does not carry."""
    with twin_proxy(staging_ca, meta={"profiles": {"classic": "c"}}) as proxy:
        got = fetch(proxy)
    assert got["meta"] == {"profiles": {"classic": "c"}}
    assert "newOrder" in got


def test_fetch_directory_reads_a_real_acme_directory(production_ca: LocalPebble) -> None:
    """Pebble's directory comes back whole, fetched with one GET."""
    with twin_proxy(production_ca) as proxy:
        got = fetch(proxy)
        events = proxy.events
    assert set(BASE_ENDPOINTS) <= set(got)
    assert got["meta"]["termsOfService"] == PEBBLE_TOS
    assert [(e.method, e.endpoint) for e in events] == [("GET", "directory")]


@pytest.mark.parametrize(("fault", "kind"), [
    (Fault("directory", "html", status=502), UnavailableKind.HTTP_STATUS),
    (Fault("directory", "status", status=404), UnavailableKind.HTTP_STATUS),
    (Fault("directory", "not_json"), UnavailableKind.NOT_JSON),
    (Fault("directory", "reset"), UnavailableKind.UNREACHABLE),
])
def test_production_twin_misbehaving_over_https_is_unavailable(
        production_ca: LocalPebble, fault: Fault, kind: UnavailableKind) -> None:
    """A load balancer page, a 404, a non-JSON body or a reset: the reason is named."""
    with FaultProxy(production_ca.directory_url, upstream_ca_bundle=production_ca.ca_bundle,
                    faults=[fault]) as proxy:
        result = twin.fetch_directory(transport(proxy.ca_bundle), proxy.directory_url)
    assert isinstance(result, TwinUnavailable)
    assert result.kind is kind


def test_profile_only_staging_offers_requested_is_a_client_problem(
        staging_ca: LocalPebble, production_ca: LocalPebble) -> None:
    """Staging offers shortlived, production does not: requesting it fails production."""
    with twin_proxy(staging_ca, meta=meta(profiles={"classic": "c", "shortlived": "s"})) as s, \
            twin_proxy(production_ca, meta=meta(profiles={"classic": "c"})) as p:
        result = compare.compare_directories(
            fetch(s), fetch(p), used=UsedFeatures(challenge_type=HTTP01, profile="shortlived"))
    assert summary(result.problems) == {
        ("ProfileNotInProduction", Cause.CLIENT, Severity.ERROR)}
    assert "shortlived" in result.problems[0].detail
    assert result.staging_only_features == ("profile:shortlived",)
    decision = decide(result.problems)
    assert (decision.verdict, decision.prod_likely_to_succeed) == (Verdict.CLIENT_ERROR, False)


def test_same_profile_offered_by_both_is_no_problem(
        staging_ca: LocalPebble, production_ca: LocalPebble) -> None:
    """A profile production offers too predicts nothing bad."""
    profiles = {"classic": "c", "shortlived": "s"}
    with twin_proxy(staging_ca, meta=meta(profiles=profiles)) as s, \
            twin_proxy(production_ca, meta=meta(profiles=profiles)) as p:
        result = compare.compare_directories(
            fetch(s), fetch(p), used=UsedFeatures(challenge_type=HTTP01, profile="shortlived"))
    assert result.problems == ()
    assert result.staging_only_features == result.production_only_features == ()


def test_staging_only_features_not_used_are_info_only(
        staging_ca: LocalPebble, production_ca: LocalPebble) -> None:
    """Profiles and ARI only staging offers, unused: info problems, no failure."""
    with twin_proxy(staging_ca, meta=meta(profiles={"shortlived": "s"}),
                    renewalInfo="https://127.0.0.1:1/renewal-info") as s, \
            twin_proxy(production_ca) as p:
        result = compare.compare_directories(fetch(s), fetch(p),
                                          used=UsedFeatures(challenge_type=HTTP01))
    assert result.staging_only_features == ("endpoint:renewalInfo", "profile:shortlived")
    assert {p.severity for p in result.problems} == {Severity.INFO}
    assert decide(result.problems).verdict is Verdict.LIKELY_SUCCESS


def test_eab_required_only_in_production_is_a_client_problem_without_eab(
        staging_ca: LocalPebble, production_eab_ca: LocalPebble) -> None:
    """A production Pebble that requires EAB: a run without EAB fails there."""
    with twin_proxy(staging_ca) as s, twin_proxy(production_eab_ca) as p:
        staging_dir, production_dir = fetch(s), fetch(p)
    assert production_dir["meta"]["externalAccountRequired"] is True
    without = compare.compare_directories(staging_dir, production_dir,
                                       used=UsedFeatures(challenge_type=HTTP01))
    assert summary(without.problems) == {("ProductionRequiresEab", Cause.CLIENT, Severity.ERROR)}
    assert without.production_only_features == ("meta.externalAccountRequired",)
    assert decide(without.problems).verdict is Verdict.CLIENT_ERROR
    with_eab = compare.compare_directories(staging_dir, production_dir,
                                        used=UsedFeatures(challenge_type=HTTP01, eab=True))
    assert not with_eab.production_blocked


def test_renewal_info_asks_production_once_with_the_ari_cert_id(
        production_ca: LocalPebble) -> None:
    """One GET of production's renewalInfo/<certID>; window, Retry-After, exemption read."""
    cert = make_cert()
    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z"}
    routes = {f"/renewal-info/{RFC_CERT_ID}": _json(
        {"suggestedWindow": window, "explanationURL": "https://ca.test/why"},
        headers={"Retry-After": "21600"})}
    with Stub(routes) as ari, \
            twin_proxy(production_ca, renewalInfo=ari.url("/renewal-info/")) as p:
        production_dir = fetch(p)
        result = ari_mod.renewal_info(
            transport(p.ca_bundle), cert.public_bytes(serialization.Encoding.PEM),
            production_dir, ca="letsencrypt",
            now=datetime(2026, 1, 2, tzinfo=timezone.utc))
        seen = list(ari.seen)
    assert seen == [("GET", f"/renewal-info/{RFC_CERT_ID}")]
    assert isinstance(result, RenewalInfo)
    assert result.due
    assert not result.overdue
    assert result.retry_after == 21600
    assert result.rate_limit_exempt is True
    assert result.explanation_url == "https://ca.test/why"
    assert result.replaces == RFC_CERT_ID


def test_renewal_info_for_a_certificate_production_does_not_know_is_a_warning(
        production_ca: LocalPebble) -> None:
    """renewalInfo answering 404 is unavailable ARI: a warning, with the status."""
    with Stub({}) as ari, twin_proxy(production_ca, renewalInfo=ari.url("/ari")) as p:
        result = ari_mod.renewal_info(
            transport(p.ca_bundle), make_cert().public_bytes(serialization.Encoding.DER),
            fetch(p))
    assert isinstance(result, TwinUnavailable)
    assert (result.kind, result.http_status) == (UnavailableKind.HTTP_STATUS, 404)
    assert result.url.endswith(f"/ari/{RFC_CERT_ID}")
    assert ari_mod.renewal_info_problem(result).severity is Severity.WARNING


def test_flow_emulation_fetch_both_twins_guard_compare_and_decide(
        staging_ca: LocalPebble, production_ca: LocalPebble) -> None:
    """What the flow will do: GET both directories, guard, compare, add problems, decide.

    Staging offers profiles and ARI; production offers fewer profiles and no ARI.  The
    run used the shortlived profile and renewalInfo: both are client errors, the
    features are reported, and production saw nothing but one GET of its directory.
    """
    with twin_proxy(staging_ca, meta=meta(profiles={"classic": "c", "shortlived": "s"},
                                          caaIdentities=["pebble.test"]),
                    renewalInfo="https://127.0.0.1:1/renewal-info") as s, \
            twin_proxy(production_ca, meta=meta(profiles={"classic": "c"},
                                                caaIdentities=["pebble.test"])) as p:
        staging_dir = fetch(s)
        assert production_by_endpoints(staging_dir) is None  # a run may go ahead
        production_dir = twin.fetch_directory(transport(p.ca_bundle), p.directory_url)
        assert not isinstance(production_dir, TwinUnavailable)
        used = UsedFeatures(challenge_type=HTTP01, profile="shortlived",
                            endpoints=BASE_ENDPOINTS | {"renewalInfo"})
        result = compare.compare_directories(staging_dir, production_dir, used=used)
        production_requests = [(e.method, e.endpoint) for e in p.events]
    run_problems = [*result.problems]  # the staging run itself went fine
    assert summary(run_problems) == {
        ("ProfileNotInProduction", Cause.CLIENT, Severity.ERROR),
        ("EndpointNotInProduction", Cause.CLIENT, Severity.ERROR),
    }
    assert result.staging_only_features == ("endpoint:renewalInfo", "profile:shortlived")
    assert result.production_only_features == ()
    assert len(result.reasons) >= 2
    decision = decide(run_problems)
    assert (decision.verdict, decision.prod_likely_to_succeed) == (Verdict.CLIENT_ERROR, False)
    assert production_requests == [("GET", "directory")]
