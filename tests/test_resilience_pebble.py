"""Resilience against Pebble's own instability knobs and an unreachable CA (issue 3).

FaultProxy scenarios live in test_resilience_proxy.py; these need only Pebble.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run

import acmedryrun
from acmedryrun import Cause, Verdict
from acmedryrun.solvers import HTTP01Webroot
from acmedryrun.testing import LocalPebble


@pytest.fixture(scope="module")
def flaky_nonces() -> Iterator[LocalPebble]:
    """Pebble rejecting 30% of valid nonces, as staging's badNonce storms do."""
    with LocalPebble(nonce_reject=30) as p:
        yield p


@pytest.fixture(scope="module")
def no_nonce_accepted() -> Iterator[LocalPebble]:
    with LocalPebble(nonce_reject=100) as p:
        yield p


def test_thirty_percent_bad_nonces_are_survived_and_recorded(
    flaky_nonces: LocalPebble,
) -> None:
    names = [f"n{i}.nonce.example.com" for i in range(3)]
    report = run(flaky_nonces, names)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.exit_code == 0
    # 3 names make ~20 POSTs: at 30% the chance of no rejection at all is below 0.1%.
    assert report.retries, "badNonce retries are recorded"
    assert {r.reason for r in report.retries} == {"badNonce"}
    assert all(r.wait_s == 0 for r in report.retries), "badNonce is retried at once"
    assert report.confidence is not acmedryrun.Confidence.HIGH
    assert any(p.name == "StagingUnstable" and not p.severity.decisive for p in report.problems)


def test_every_nonce_rejected_is_staging_unstable(no_nonce_accepted: LocalPebble) -> None:
    report = run(no_nonce_accepted, ["storm.example.com"])
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert report.exit_code == 2
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("BadNonceStorm", Cause.STAGING)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ca_down_while_the_reference_answers_is_staging(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    started = time.monotonic()
    report = acmedryrun.dry_run(
        ["down.example.com"], directory=f"https://127.0.0.1:{_closed_port()}/dir",
        reference_directory=pebble.directory_url, ca_bundle=pebble.ca_bundle,
        solver=HTTP01Webroot(str(tmp_path)), dns_resolver=pebble.dns_resolver,
        timeout=4)
    assert time.monotonic() - started < 4 + 3
    assert report.verdict is Verdict.STAGING_UNSTABLE
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("StagingUnreachable", Cause.STAGING)
    assert report.retries, "connection refused is retried with backoff"
    assert {r.reason for r in report.retries} == {"connection_refused"}


def test_ca_and_reference_both_unreachable_is_client(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    report = acmedryrun.dry_run(
        ["down.example.com"], directory=f"https://127.0.0.1:{_closed_port()}/dir",
        reference_directory=f"https://127.0.0.1:{_closed_port()}/dir",
        ca_bundle=pebble.ca_bundle, solver=HTTP01Webroot(str(tmp_path)),
        dns_resolver=pebble.dns_resolver,
        timeout=3)
    assert report.verdict is Verdict.CLIENT_ERROR
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("CaUnreachable", Cause.CLIENT)


def test_untrusted_ca_certificate_with_the_reference_trusted_is_staging(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """Staging's TLS certificate fails verification while production's passes: staging."""
    with LocalPebble() as other:  # its TLS CA is not in pebble.ca_bundle
        report = acmedryrun.dry_run(
            ["tls.example.com"], directory=other.directory_url,
            reference_directory=pebble.directory_url, ca_bundle=pebble.ca_bundle,
            solver=HTTP01Webroot(str(tmp_path)), dns_resolver=pebble.dns_resolver,
        timeout=5)
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("StagingCertificateInvalid", Cause.STAGING)
    assert not report.retries, "a verification failure is not retried"


def test_stale_trust_store_for_both_is_client(pebble: LocalPebble, tmp_path: Path) -> None:
    """Neither staging nor production verifies with this trust store: the machine's fault."""
    with LocalPebble() as other:
        report = acmedryrun.dry_run(
            ["tls.example.com"], directory=other.directory_url,
            reference_directory=pebble.directory_url, ca_bundle=_unrelated_ca(tmp_path),
            solver=HTTP01Webroot(str(tmp_path)), dns_resolver=pebble.dns_resolver,
        timeout=5)
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("TrustStoreStale", Cause.CLIENT)


def _unrelated_ca(tmp_path: Path) -> str:
    """A CA bundle holding one CA that signed nothing (a stale trust store)."""
    import trustme

    path = tmp_path / "stale.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def _html_404_server() -> tuple[str, object]:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>not here</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/directory", server


def test_ca_down_while_the_reference_answers_with_an_error_page_is_still_staging(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """Any HTTP answer from the twin proves this machine's network works."""
    reference, server = _html_404_server()
    try:
        report = acmedryrun.dry_run(
            ["down.example.com"], directory=f"https://127.0.0.1:{_closed_port()}/dir",
            reference_directory=reference, ca_bundle=pebble.ca_bundle,
            solver=HTTP01Webroot(str(tmp_path)), dns_resolver=pebble.dns_resolver, timeout=3)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("StagingUnreachable", Cause.STAGING)


def test_untrusted_ca_with_an_unreachable_reference_is_never_the_client(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """A closed twin says nothing about the trust store: staging, low confidence."""
    with LocalPebble() as other:
        report = acmedryrun.dry_run(
            ["tls.example.com"], directory=other.directory_url,
            reference_directory=f"https://127.0.0.1:{_closed_port()}/dir",
            ca_bundle=pebble.ca_bundle, solver=HTTP01Webroot(str(tmp_path)),
            dns_resolver=pebble.dns_resolver, timeout=5)
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert fatal.cause is Cause.STAGING
    assert fatal.confidence is acmedryrun.Confidence.LOW
