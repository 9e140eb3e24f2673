"""tls-alpn-01 standalone responder (RFC 8737; RFC 8738 section 6 for IP addresses).

Unit tests connect with a real TLS client (ALPN and SNI as the CA sends them)
and parse the certificate served; end-to-end tests run complete dry runs
against the suite's real Pebble, whose VA dials ``NAME:tls_port``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import acmedryrun
from acmedryrun import Verdict
from acmedryrun.errors import UsageError
from acmedryrun.report import Report
from acmedryrun.solvers._base import Challenge, Solver
from acmedryrun.solvers.tlsalpn01 import (
    ACME_TLS_1,
    ID_PE_ACME_IDENTIFIER,
    TLSALPN01Standalone,
    client_hello_alpn,
    sni_for,
)
from acmedryrun.testing import LocalPebble

SAN_OID = x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME


def challenge(identifier: str, token: str = "tok",  # noqa: S107 - an ACME token, not a secret
              identifier_type: str = "dns") -> Challenge:
    """A tls-alpn-01 challenge as the flow builds it (validation: hex SHA-256)."""
    key_auth = f"{token}.thumbprint"
    return Challenge(type="tls-alpn-01", identifier=identifier, identifier_type=identifier_type,
                     wildcard=False, token=token, key_authorization=key_auth,
                     validation=hashlib.sha256(key_auth.encode()).hexdigest(),
                     url=f"https://ca/chall/{token}")


def dry_run(p: LocalPebble, names: Sequence[str], solver: Solver, **kwargs: Any) -> Report:
    """One dry run against the local Pebble with a 60 s deadline."""
    kwargs.setdefault("timeout", 60)
    return acmedryrun.dry_run(list(names), directory=p.directory_url, ca_bundle=p.ca_bundle,
                              solver=solver, dns_resolver=p.dns_resolver, **kwargs)


def handshake(port: int, sni: str | None, alpn: list[str] | None,
              ) -> tuple[str | None, x509.Certificate]:
    """Connect like a CA's VA; return the negotiated ALPN and the served certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the challenge certificate is self-signed (RFC 8737)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return tls.selected_alpn_protocol(), x509.load_der_x509_certificate(der)


@pytest.fixture
def responder() -> Iterator[TLSALPN01Standalone]:
    solver = TLSALPN01Standalone(port=0, address="127.0.0.1")
    solver.open()
    yield solver
    solver.close()


def san_of(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def acme_identifier(cert: x509.Certificate) -> bytes:
    """The raw acmeIdentifier extension value (RFC 8737 section 3)."""
    ext = cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    return ext.value


def port_of(solver: TLSALPN01Standalone) -> int:
    port = solver.bound_port
    assert port is not None
    return port


# ------------------------------------------------------------------ the certificate


def test_served_certificate_has_one_dns_san_and_the_critical_acme_identifier(
    responder: TLSALPN01Standalone,
) -> None:
    ch = challenge("example.com")
    responder.perform(ch)
    alpn, cert = handshake(port_of(responder), "example.com", [ACME_TLS_1])
    assert alpn == ACME_TLS_1
    san = san_of(cert)
    assert list(san) == [x509.DNSName("example.com")]
    ext = cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    assert ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    # RFC 8737 section 3: the DER of OCTET STRING (SIZE (32)) of SHA-256(key authorization).
    digest = hashlib.sha256(ch.key_authorization.encode()).digest()
    assert ext.value.value == b"\x04\x20" + digest
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    assert cert.issuer == cert.subject, "self-signed"


def test_ip_identifier_is_served_for_the_reverse_dns_sni_with_an_ip_san(
    responder: TLSALPN01Standalone,
) -> None:
    responder.perform(challenge("127.0.0.1", identifier_type="ip"))
    responder.perform(challenge("2001:db8::1", "t6", identifier_type="ip"))
    _, cert4 = handshake(port_of(responder), "1.0.0.127.in-addr.arpa", [ACME_TLS_1])
    san4 = san_of(cert4)
    assert list(san4) == [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    sni6 = sni_for("2001:db8::1", "ip")
    assert sni6.endswith(".8.b.d.0.1.0.0.2.ip6.arpa")
    _, cert6 = handshake(port_of(responder), sni6, [ACME_TLS_1])
    assert [str(ip) for ip in san_of(cert6).get_values_for_type(x509.IPAddress)] == [
        "2001:db8::1"]


def test_certificate_is_chosen_by_sni_among_several_challenges(
    responder: TLSALPN01Standalone,
) -> None:
    a, b = challenge("a.example.com", "ta"), challenge("b.example.com", "tb")
    responder.perform(a)
    responder.perform(b)
    for ch in (b, a):
        _, cert = handshake(port_of(responder), ch.identifier, [ACME_TLS_1])
        assert san_of(cert) == x509.SubjectAlternativeName([x509.DNSName(ch.identifier)])
        assert acme_identifier(cert)[2:] == bytes.fromhex(ch.validation)
    _, cert = handshake(port_of(responder), "A.Example.COM", [ACME_TLS_1])
    assert san_of(cert).get_values_for_type(x509.DNSName) == ["a.example.com"], \
        "SNI matches case-insensitively"


def test_very_long_name_gets_an_empty_subject_and_a_critical_san(
    responder: TLSALPN01Standalone,
) -> None:
    name = ("a" * 60) + ".example.com"
    responder.perform(challenge(name))
    _, cert = handshake(port_of(responder), name, [ACME_TLS_1])
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_oid(SAN_OID).critical


# ------------------------------------------------------------------ refusals


def test_client_without_acme_tls_alpn_is_refused_without_a_certificate(
    responder: TLSALPN01Standalone,
) -> None:
    responder.perform(challenge("example.com"))
    for alpn in (["h2", "http/1.1"], None):
        with pytest.raises(ssl.SSLError, match=r"NO_APPLICATION_PROTOCOL|no application protocol"):
            handshake(port_of(responder), "example.com", alpn)
    # The refusal hurt nothing: a proper client still gets its answer.
    assert handshake(port_of(responder), "example.com", [ACME_TLS_1])[0] == ACME_TLS_1


def test_unknown_or_missing_sni_is_refused_with_unrecognized_name(
    responder: TLSALPN01Standalone,
) -> None:
    responder.perform(challenge("example.com"))
    for sni in ("other.example.com", None):
        with pytest.raises(ssl.SSLError, match=r"UNRECOGNIZED_NAME|unrecognized name"):
            handshake(port_of(responder), sni, [ACME_TLS_1])


def test_tls_1_1_is_refused_with_a_protocol_version_alert(
    responder: TLSALPN01Standalone,
) -> None:
    """RFC 8737 section 4: TLS 1.2 or higher only."""
    responder.perform(challenge("example.com"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([ACME_TLS_1])
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", port_of(responder)), timeout=5) as raw, \
            pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|protocol version"):
        ctx.wrap_socket(raw, server_hostname="example.com")


def test_cleanup_stops_serving_that_name(responder: TLSALPN01Standalone) -> None:
    ch = challenge("example.com")
    responder.perform(ch)
    responder.cleanup(ch)
    with pytest.raises(ssl.SSLError, match=r"UNRECOGNIZED_NAME|unrecognized name"):
        handshake(port_of(responder), "example.com", [ACME_TLS_1])


def test_client_hello_parser_reads_the_offered_alpn_list() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["h2", ACME_TLS_1])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="example.com")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert client_hello_alpn(hello) == [b"h2", ACME_TLS_1.encode()]
    assert client_hello_alpn(hello[:40]) is None, "incomplete: undecided"
    assert client_hello_alpn(b"GET / HTTP/1.1\r\n\r\n") is None


# ------------------------------------------------------------------ lifecycle


def test_port_in_use_is_a_usage_error_naming_the_option() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        solver = TLSALPN01Standalone(port=port, address="127.0.0.1")
        with pytest.raises(UsageError, match=rf"^--tls-alpn-01-port: 127.0.0.1:{port} is "
                                             r"already in use"):
            solver.open()


def test_bad_port_or_address_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--tls-alpn-01-port"):
        TLSALPN01Standalone(port=70000)
    with pytest.raises(UsageError, match="--tls-alpn-01-address"):
        TLSALPN01Standalone(address="localhost")


def test_close_releases_the_port_and_the_key_files() -> None:
    solver = TLSALPN01Standalone(port=0, address="127.0.0.1")
    solver.open()
    port = port_of(solver)
    solver.perform(challenge("example.com"))
    key_dir = solver._dir  # private: checking the key files are gone
    assert key_dir is not None
    assert key_dir.stat().st_mode & 0o077 == 0, "key directory is private"
    solver.close()
    assert not key_dir.exists()
    assert solver.bound_port is None
    with socket.create_server(("127.0.0.1", port)):
        pass  # the port is free again


def test_one_key_serves_every_challenge_of_a_solver(responder: TLSALPN01Standalone) -> None:
    responder.perform(challenge("a.example.com", "ta"))
    responder.perform(challenge("b.example.com", "tb"))
    _, a = handshake(port_of(responder), "a.example.com", [ACME_TLS_1])
    _, b = handshake(port_of(responder), "b.example.com", [ACME_TLS_1])
    assert a.public_key() == b.public_key()


# ------------------------------------------------------------------ end to end (Pebble)


def test_tls_alpn_01_dry_run_is_likely_success(pebble: LocalPebble, unique_name: str) -> None:
    solver = TLSALPN01Standalone(port=pebble.tls_port, address="127.0.0.1")
    names = [unique_name, f"www.{unique_name}"]
    report = dry_run(pebble, names, solver)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.problems == ()
    assert report.certificate is not None
    assert sorted(report.certificate.names) == sorted(names)


def test_tls_alpn_01_for_an_ip_identifier_is_likely_success(pebble: LocalPebble) -> None:
    solver = TLSALPN01Standalone(port=pebble.tls_port, address="127.0.0.1")
    report = dry_run(pebble, ["127.0.0.1"], solver)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems


def test_tls_alpn_01_with_nothing_listening_is_client_error(
    pebble: LocalPebble, unique_name: str
) -> None:
    class Silent(TLSALPN01Standalone):
        def perform(self, challenge: Challenge) -> None:
            """Put nothing in place: the CA finds no responder."""

    report = dry_run(pebble, [unique_name], Silent(port=0, address="127.0.0.1"))
    assert report.verdict is Verdict.CLIENT_ERROR
    assert any(p.severity.decisive and p.cause.value == "client" for p in report.problems)
