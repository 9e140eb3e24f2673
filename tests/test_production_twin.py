"""Predicting production: two LocalPebbles as staging and production (issue 6).

FaultProxy patches a directory's ``meta`` (Pebble 2.4.0 has no profiles) the way a
staging CA that got a feature first would look.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, http_solver

import acmedryrun
from acmedryrun import Cause, Severity, UsageError, Verdict
from acmedryrun.testing import FaultProxy, LocalPebble

PROFILES = {"shortlived": "certificates valid for six days"}


@pytest.fixture(scope="module")
def production() -> Iterator[LocalPebble]:
    with LocalPebble() as p:
        yield p


@pytest.fixture(scope="module")
def production_eab() -> Iterator[LocalPebble]:
    with LocalPebble(eab_required=True, eab_keys={"kid-1": "zWNDZM6eQGHWpSRTPal5eIUY"}) as p:
        yield p


def _meta_patch(p: LocalPebble, **extra: Any) -> str:
    """A directory patch fault adding ``extra`` to ``p``'s real meta (patch replaces meta)."""
    import requests

    meta = requests.get(p.directory_url, verify=p.ca_bundle, timeout=5).json()["meta"]
    meta.update(extra)
    return json.dumps({"meta": meta})


def _proxy(p: LocalPebble, patch: str | None = None) -> FaultProxy:
    faults = []
    if patch is not None:
        from acmedryrun.testing import Fault

        faults = [Fault("directory", "patch", patch=json.loads(patch))]
    return FaultProxy(p.directory_url, upstream_ca_bundle=p.ca_bundle, faults=faults)


def _bundle(tmp_path: Path, *paths: str) -> str:
    """One trust store for staging and production, as a real machine has."""
    out = tmp_path / "bundle.pem"
    out.write_text("".join(Path(p).read_text() for p in paths))
    return str(out)


def _run(pebble: LocalPebble, staging_url: str, reference: str, bundle: str, name: str,
         **kwargs: Any) -> acmedryrun.Report:
    return acmedryrun.dry_run([name], directory=staging_url, reference_directory=reference,
                              ca_bundle=bundle, solver=http_solver(pebble),
                              dns_resolver=pebble.dns_resolver, timeout=30, **kwargs)


def test_profile_only_staging_offers_is_client_error_naming_it(
    pebble: LocalPebble, production: LocalPebble, tmp_path: Path
) -> None:
    with _proxy(pebble, _meta_patch(pebble, profiles=PROFILES)) as staging:
        bundle = _bundle(tmp_path, staging.ca_bundle, production.ca_bundle)
        report = _run(pebble, staging.directory_url, production.directory_url, bundle,
                      "profile1.example.com", profile="shortlived")
    assert report.verdict is Verdict.CLIENT_ERROR
    assert report.prod_likely_to_succeed is False
    problem = next(p for p in report.problems if p.severity.decisive)
    assert (problem.name, problem.cause) == ("ProfileNotInProduction", Cause.CLIENT)
    assert "shortlived" in problem.detail
    assert "profile:shortlived" in report.staging_only_features
    assert report.production_twin.compared
    assert any("shortlived" in r for r in report.production_twin.reasons)
    assert report.certificate is not None, "staging itself issued"


def test_profile_offered_by_both_is_likely_success(
    pebble: LocalPebble, production: LocalPebble, tmp_path: Path
) -> None:
    with _proxy(pebble, _meta_patch(pebble, profiles=PROFILES)) as staging, \
            _proxy(production, _meta_patch(production, profiles=PROFILES)) as prod:
        bundle = _bundle(tmp_path, staging.ca_bundle, prod.ca_bundle)
        report = _run(pebble, staging.directory_url, prod.directory_url, bundle,
                      "profile2.example.com", profile="shortlived")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.staging_only_features == ()


def test_staging_only_features_not_used_are_info_only(
    pebble: LocalPebble, production: LocalPebble, tmp_path: Path
) -> None:
    with _proxy(pebble, _meta_patch(pebble, profiles=PROFILES)) as staging:
        bundle = _bundle(tmp_path, staging.ca_bundle, production.ca_bundle)
        report = _run(pebble, staging.directory_url, production.directory_url, bundle,
                      "profile3.example.com")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.prod_likely_to_succeed is True
    infos = [p for p in report.problems if p.name == "StagingOnlyFeature"]
    assert infos
    assert all(p.severity is Severity.INFO for p in infos)
    assert report.confidence is acmedryrun.Confidence.HIGH


def test_unreachable_production_twin_is_a_warning_never_a_failure(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    report = _run(pebble, pebble.directory_url, f"https://127.0.0.1:{closed}/dir",
                  pebble.ca_bundle, "twin-down.example.com")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    warning = next(p for p in report.problems if p.name == "ProductionTwinUnavailable")
    assert warning.severity is Severity.WARNING
    assert not report.production_twin.compared


@pytest.mark.parametrize(("body", "ctype", "status"), [
    ("<html><body>Welcome</body></html>", "text/html", 200),
    ("not found", "text/plain", 404),
    ('{"hello": "world"}', "application/json", 200),
])
def test_reference_that_is_not_an_acme_directory_is_a_warning_naming_it(
    pebble: LocalPebble, body: str, ctype: str, status: int
) -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reference = f"http://127.0.0.1:{server.server_address[1]}/directory"
    try:
        report = _run(pebble, pebble.directory_url, reference, pebble.ca_bundle,
                      f"notdir{status}.example.com")
    finally:
        server.shutdown()
        server.server_close()
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    warning = next(p for p in report.problems if p.name == "ProductionTwinUnavailable")
    assert reference in warning.detail


def test_production_requiring_eab_is_a_client_problem_for_a_run_without_it(
    pebble: LocalPebble, production_eab: LocalPebble, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path, pebble.ca_bundle, production_eab.ca_bundle)
    report = _run(pebble, pebble.directory_url, production_eab.directory_url, bundle,
                  "eab-prod.example.com")
    assert report.verdict is Verdict.CLIENT_ERROR
    problem = next(p for p in report.problems if p.severity.decisive)
    assert (problem.name, problem.cause) == ("ProductionRequiresEab", Cause.CLIENT)


def test_production_alias_is_refused_with_no_request_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("a request was attempted")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(UsageError, match="production"):
        acmedryrun.dry_run(["example.com"], directory="letsencrypt",
                           solver=acmedryrun.solvers.HTTP01Webroot("/tmp"))
    assert attempts == []


def test_production_alias_on_the_cli_is_exit_64() -> None:
    proc = cli("check", "-d", "example.com", "--directory", "letsencrypt", "--webroot", "/tmp")
    assert proc.returncode == 64
    assert "--allow-production" in proc.stderr


def test_directory_advertising_production_endpoints_is_refused(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    patch = json.dumps({"newNonce": "https://acme-v02.api.letsencrypt.org/acme/new-nonce",
                        "newAccount": "https://acme-v02.api.letsencrypt.org/acme/new-acct",
                        "newOrder": "https://acme-v02.api.letsencrypt.org/acme/new-order"})
    with _proxy(pebble, patch) as disguised:
        with pytest.raises(UsageError, match="production"):
            acmedryrun.dry_run(["disguised.example.com"], directory=disguised.directory_url,
                               ca_bundle=disguised.ca_bundle, solver=http_solver(pebble),
                               dns_resolver=pebble.dns_resolver, timeout=10)
        assert [e.endpoint for e in disguised.events] == ["directory"], "one read-only GET"
        proc = cli("check", "-d", "disguised.example.com", "--directory",
                   disguised.directory_url, "--ca-bundle", disguised.ca_bundle,
                   "--http-01-port", str(pebble.http_port), "--http-01-address", "127.0.0.1",
                   "--dns-resolver", pebble.dns_resolver)
    assert proc.returncode == 64
    assert "production" in proc.stderr


def test_renewing_a_certificate_that_is_not_one_is_exit_64(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("nope")
    proc = cli("check", "-d", "a.example.com", "--renewing", str(bad),
               "--directory", "https://127.0.0.1:9/dir", "--webroot", str(tmp_path))
    assert proc.returncode == 64
    assert "--renewing" in proc.stderr


def test_batch_warns_where_production_limits_would_bite(tmp_path: Path) -> None:
    from acmedryrun.production import policy

    sets = [[f"host{i}.example.com"] for i in range(60)]
    warnings = policy.batch_limit_warnings(sets, "letsencrypt-staging")
    assert any(p.name == "BatchRegisteredDomainLimit" for p in warnings)


def test_caa_accounturi_naming_only_the_staging_account_fails_production(
    pebble: LocalPebble, production: LocalPebble, tmp_path: Path
) -> None:
    """Staging and production accounts differ: a CAA record bound to the staging one
    lets staging issue and production never (RFC 8657 section 3)."""
    name = "accounturi.example.com"
    key = tmp_path / "account.pem"
    bundle = _bundle(tmp_path, pebble.ca_bundle, production.ca_bundle)
    first = _run(pebble, pebble.directory_url, production.directory_url, bundle, name,
                 account_key=key)
    assert first.account_url is not None
    pebble.add_caa(name, [("issue", f"pebble.example; accounturi={first.account_url}")])
    # Production lives on another host than staging, as it does for real CAs.
    prod_url = production.directory_url.replace("127.0.0.1", "localhost")
    report = _run(pebble, pebble.directory_url, prod_url, bundle, name, account_key=key,
                  caa_identities=["pebble.example"])
    assert report.certificate is not None, "staging issued: the record names its account"
    assert report.verdict is Verdict.CLIENT_ERROR
    problem = next(p for p in report.problems if p.severity.decisive)
    assert (problem.name, problem.cause) == ("CaaAccountUriStagingOnly", Cause.CLIENT)
    assert report.prod_likely_to_succeed is False
