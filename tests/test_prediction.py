"""Conclusive predictions (issue 17): evidence by stage, production's rate limits from CT,
and patience, through a real Pebble, FaultProxy and a local CT search server."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from conftest import cli, http_solver, report_json
from ctserver import CtServer, Route, closed_port, crtsh_rows

import acmedryrun
import acmedryrun.api
from acmedryrun import Cause, Severity, Verdict
from acmedryrun.report import Confidence, Problem, Step
from acmedryrun.testing import FaultProxy, LocalPebble, parse_fault
from acmedryrun.verdict import decide


def proxied(pebble: LocalPebble, *specs: str) -> FaultProxy:
    return FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                      faults=[parse_fault(s) for s in specs], seed=3)


def run(pebble: LocalPebble, proxy: FaultProxy, names: list[str], **kwargs: object
        ) -> acmedryrun.Report:
    kwargs.setdefault("timeout", 10)
    return acmedryrun.dry_run(names, directory=proxy.directory_url, ca_bundle=proxy.ca_bundle,
                              solver=http_solver(pebble), dns_resolver=pebble.dns_resolver,
                              **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------- evidence by stage


def test_the_prediction_rule_uses_fresh_validation() -> None:
    """Pure: a staging fault after every name was validated today predicts success."""
    fault = Problem("ServerInternal", Cause.STAGING, Severity.FATAL, Step.FINALIZE)
    assert decide([fault], validated=True)[:2] == (Verdict.STAGING_UNSTABLE, True)
    assert decide([fault], validated=True).confidence is Confidence.MEDIUM
    assert decide([fault], validated=False)[:2] == (Verdict.STAGING_UNSTABLE, None)
    client = Problem("CaaForbidden", Cause.CLIENT, Severity.ERROR, Step.FINALIZE)
    assert decide([fault, client], validated=True)[:2] == (Verdict.CLIENT_ERROR, False)


def test_finalize_failing_after_every_name_validated_predicts_production_success(
        pebble: LocalPebble, unique_name: str) -> None:
    """Exit 2, but the setup is proven: prod_likely_to_succeed true, confidence medium."""
    names = [unique_name, f"www.{unique_name}"]
    with proxied(pebble, "finalize:status:500,type=serverInternal") as proxy:
        args = ["check", "--directory", proxy.directory_url, "--ca-bundle", proxy.ca_bundle,
                "--http-01-port", str(pebble.http_port), "--http-01-address", "127.0.0.1",
                "--dns-resolver", pebble.dns_resolver, "--timeout", "6", "--json"]
        for name in names:
            args += ["-d", name]
        proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    report = report_json(proc)
    assert (report["verdict"], report["prod_likely_to_succeed"], report["confidence"]) == (
        "staging_unstable", True, "medium")
    assert report["validated"] == [
        {"identifier": n, "challenge": "http-01", "fresh": True} for n in names]
    assert "Your setup is proven" in proc.stderr


def test_a_reused_authorization_leaves_the_prediction_open(
        pebble: LocalPebble, unique_name: str) -> None:
    """The same finalize failure, but the CA kept serving a valid authorization: that name
    was never validated today, so staging could not tell (null)."""
    with proxied(pebble, "authz:patch,status=valid",
                 "finalize:status:500,type=serverInternal") as proxy:
        report = run(pebble, proxy, [unique_name], timeout=6)
    assert report.verdict is Verdict.STAGING_UNSTABLE, report.problems
    assert report.prod_likely_to_succeed is None
    assert any(p.name == "AuthorizationReused" and p.severity.decisive
               for p in report.problems)
    assert report.validated[0].fresh is False


# ----------------------------------------------------------------- rate limits from CT


def _ct_run(pebble: LocalPebble, name: str, server: CtServer | None, url: str | None = None,
            **kwargs: object) -> acmedryrun.Report:
    return acmedryrun.dry_run(
        [name], directory=pebble.directory_url, ca_bundle=pebble.ca_bundle,
        solver=http_solver(pebble), dns_resolver=pebble.dns_resolver, timeout=20,
        production_policy="letsencrypt", ct_url=url or (server.url if server else None),
        **kwargs)  # type: ignore[arg-type]


def test_five_certificates_for_the_exact_set_turn_a_staging_success_into_client_error(
        pebble: LocalPebble, unique_name: str) -> None:
    """Production would refuse the sixth in 7 days: client_error, with when it frees up."""
    now = datetime.now(timezone.utc)
    rows = crtsh_rows([unique_name], [30, 24, 12, 6, 1], now=now)
    with CtServer({"example.com": json.dumps(rows).encode()}) as server:
        report = _ct_run(pebble, unique_name, server)
        asked = list(server.requests)
    assert report.verdict is Verdict.CLIENT_ERROR, report.problems
    assert report.prod_likely_to_succeed is False
    assert report.certificate is not None, "staging issued all the same"
    problem = next(p for p in report.problems if p.severity.decisive)
    assert (problem.name, problem.cause) == ("ProductionExactSetLimit", Cause.CLIENT)
    assert "until" in problem.detail, "the date the limit frees up"
    assert any("refuses this exact set until" in r for r in report.production_twin.reasons)
    assert len(asked) == 1, "one look-up per registered domain"


def test_four_certificates_for_the_exact_set_are_a_warning(
        pebble: LocalPebble, unique_name: str) -> None:
    now = datetime.now(timezone.utc)
    rows = crtsh_rows([unique_name], [24, 12, 6, 1], now=now)
    with CtServer({"example.com": json.dumps(rows).encode()}) as server:
        report = _ct_run(pebble, unique_name, server)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    warning = next(p for p in report.problems if p.name == "ProductionExactSetNearLimit")
    assert (warning.severity, warning.cause) == (Severity.WARNING, Cause.CLIENT)
    assert "4" in warning.detail
    assert report.confidence is Confidence.MEDIUM


def test_an_unreachable_ct_source_changes_nothing_but_a_notice(
        pebble: LocalPebble, unique_name: str) -> None:
    report = _ct_run(pebble, unique_name, None, url=f"http://127.0.0.1:{closed_port()}/")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.confidence is Confidence.HIGH, "a notice lowers nothing"
    notice = next(p for p in report.problems if p.name == "CtUnavailable")
    assert (notice.severity, notice.cause) == (Severity.INFO, None)


def test_a_slow_ct_source_costs_the_run_no_time_past_its_deadline(
        pebble: LocalPebble, unique_name: str) -> None:
    """CT is asked beside the run and bounded by its deadline: no answer in time is a notice."""
    with CtServer({"example.com": Route(b"[]", delay=30)}) as server:
        started = time.monotonic()
        report = acmedryrun.dry_run(
            [unique_name], directory=pebble.directory_url, ca_bundle=pebble.ca_bundle,
            solver=http_solver(pebble), dns_resolver=pebble.dns_resolver, timeout=3,
            production_policy="letsencrypt", ct_url=server.url)
        took = time.monotonic() - started
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert took < 3 + 2
    assert any(p.name == "CtUnavailable" for p in report.problems)


def test_no_ct_skips_the_look_up(pebble: LocalPebble, unique_name: str) -> None:
    now = datetime.now(timezone.utc)
    rows = crtsh_rows([unique_name], [30, 24, 12, 6, 1], now=now)
    with CtServer({"example.com": json.dumps(rows).encode()}) as server:
        report = _ct_run(pebble, unique_name, server, ct=False)
        asked = list(server.requests)
    assert report.verdict is Verdict.LIKELY_SUCCESS
    assert asked == []


def test_a_batch_asks_ct_once_per_registered_domain(pebble: LocalPebble) -> None:
    from acmedryrun.batch import dry_run_many

    names = [[f"b{i}-{time.monotonic_ns()}.example.com"] for i in range(3)]
    with CtServer({"example.com": b"[]"}) as server:
        results = dry_run_many(names, directory=pebble.directory_url,
                               ca_bundle=pebble.ca_bundle, solver=http_solver(pebble),
                               dns_resolver=pebble.dns_resolver, timeout=20, concurrency=3,
                               production_policy="letsencrypt", ct_url=server.url)
        asked = list(server.requests)
    assert all(r.verdict is Verdict.LIKELY_SUCCESS for _, r in results)
    assert len(asked) == 1, asked


# ----------------------------------------------------------------- patience


def test_patience_waits_out_a_staging_outage(pebble: LocalPebble, unique_name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Staging fails the first two runs, then heals: likely_success, three attempts kept."""
    monkeypatch.setattr(acmedryrun.api, "PATIENCE_FIRST", 0.2)
    events: list[acmedryrun.Event] = []
    # A run retries a 503 MAX_ATTEMPTS (12) times (backoff off in the suite): 24 fail two.
    with proxied(pebble, "order:status:503,type=serverInternal,count=24") as proxy:
        report = run(pebble, proxy, [unique_name], timeout=5, patience=60,
                     on_event=events.append)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert [a.verdict for a in report.attempts] == [
        Verdict.STAGING_UNSTABLE, Verdict.STAGING_UNSTABLE, Verdict.LIKELY_SUCCESS]
    assert report.attempts[0].problems == ("ServerInternal",)
    assert [e.attempt for e in events if e.kind == "wait"] == [1, 2]
    assert report.attempts[2].wait_s > report.attempts[1].wait_s > 0


def test_patience_stops_at_a_conclusive_verdict(pebble: LocalPebble, unique_name: str) -> None:
    """A client error is conclusive: one attempt, no waiting."""
    pebble.add_a(unique_name, ["127.0.0.2"])
    try:
        with proxied(pebble) as proxy:
            started = time.monotonic()
            report = run(pebble, proxy, [unique_name], patience=60, preflight=False)
            took = time.monotonic() - started
    finally:
        pebble.clear_a(unique_name)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert len(report.attempts) == 1
    assert took < 10


def test_ctrl_c_stops_a_patient_run_at_once(pebble: LocalPebble, unique_name: str) -> None:
    """SIGINT while patience waits: exit 130 within a second or two."""
    import signal
    import subprocess
    import sys

    with proxied(pebble, "directory:html:503") as proxy:
        proc = subprocess.Popen(
            [sys.executable, "-m", "acmedryrun", "check", "-d", unique_name, "--directory",
             proxy.directory_url, "--ca-bundle", proxy.ca_bundle, "--no-preflight",
             "--http-01-port", str(pebble.http_port), "--http-01-address", "127.0.0.1",
             "--timeout", "2", "--patience", "10m"],
            stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proxy.hits("directory") == 0:
                time.sleep(0.05)
            time.sleep(2.5)  # the first attempt has ended: patience is waiting
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, stderr = proc.communicate(timeout=20)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    assert took < 2.0
    assert "trying again in" in stderr
