"""Survive what is transient, name what is not: a real Pebble behind a real FaultProxy (issue 3).

Each case is one line of the issue's "Must hold" list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli, http_solver, report_json

import acmedryrun
from acmedryrun import Cause, Report, Verdict
from acmedryrun.testing import FaultProxy, LocalPebble, parse_fault


@pytest.fixture(scope="module")
def upstream() -> Iterator[LocalPebble]:
    with LocalPebble() as p:
        yield p


def through_proxy(p: LocalPebble, names: list[str], *specs: str, timeout: float = 30,
                  **kwargs: object) -> tuple[Report, FaultProxy, float]:
    """One dry run through a FaultProxy injecting ``specs``; returns report, proxy, wall time."""
    with FaultProxy(p.directory_url, upstream_ca_bundle=p.ca_bundle,
                    faults=[parse_fault(s) for s in specs], seed=1) as proxy:
        started = time.monotonic()
        report = acmedryrun.dry_run(
            names, directory=proxy.directory_url, ca_bundle=proxy.ca_bundle,
            solver=http_solver(p), dns_resolver=p.dns_resolver, timeout=timeout,
            **kwargs)  # type: ignore[arg-type]
        return report, proxy, time.monotonic() - started


def fatal(report: Report) -> acmedryrun.Problem:
    return next(p for p in report.problems if p.severity.decisive)


# -- transient faults survived: likely_success, exit 0, retries recorded ---------------------

@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("order:status:503,retry_after=1,count=2", "serverInternal"),
        ("authz:html:502,count=1", "http_502"),
        ("finalize:reset,count=1", "connection_reset"),
        ("finalize:lost,count=1", "connection_reset"),
        ("authz:truncated,count=1", "malformed_json"),
        ("account:not_json,count=1", "malformed_json"),
    ],
)
def test_transient_fault_is_survived_and_recorded(
    upstream: LocalPebble, spec: str, reason: str
) -> None:
    name = f"t-{abs(hash(spec))}.example.com"
    report, proxy, _ = through_proxy(upstream, [name], spec)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.exit_code == 0
    assert report.retries, "the retry is in the report"
    assert {r.reason for r in report.retries} == {reason}
    assert report.confidence is acmedryrun.Confidence.MEDIUM
    warning = next(p for p in report.problems if p.name == "StagingUnstable")
    assert warning.cause is Cause.STAGING
    assert not warning.severity.decisive
    assert proxy.events, "the fault really went through the proxy"


def test_two_503s_wait_for_retry_after(upstream: LocalPebble) -> None:
    report, _, _ = through_proxy(upstream, ["ra.example.com"],
                                 "order:status:503,retry_after=1,count=2")
    assert [r.wait_s >= 1.0 for r in report.retries] == [True, True]


def test_lost_finalize_response_is_reread_not_posted_again(upstream: LocalPebble) -> None:
    report, proxy, _ = through_proxy(upstream, ["lost.example.com"], "finalize:lost,count=1")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert proxy.hits("finalize") == 1, "the finalize POST that took effect is not repeated"


def test_stripped_replay_nonce_costs_one_new_nonce(upstream: LocalPebble) -> None:
    report, proxy, _ = through_proxy(upstream, ["nonce.example.com"],
                                     "account:strip_nonce,count=1")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert [r.reason for r in report.retries] == ["missing_replay_nonce"]
    assert proxy.hits("nonce") == 2


# -- persistent staging faults: staging_unstable, exit 2, within the deadline -----------------

@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("order:status:503", "ServerInternal"),
        ("finalize:status:500,type=serverInternal", "ServerInternal"),
        ("authz:not_json", "MalformedResponse"),
        ("authz:stall:pending;order_poll:stall:pending", "AuthorizationStuckPending"),
        ("order_poll:patch,status=processing", "OrderStuckProcessing"),
        ("order:html:504", "ServerUnavailable"),
        ("*:status:400,type=badNonce", "BadNonceStorm"),
        ("authz:reset", "StagingUnreachable"),
    ],
)
def test_persistent_staging_fault_is_staging_unstable_within_the_deadline(
    upstream: LocalPebble, spec: str, name: str
) -> None:
    timeout = 3.0
    report, _, wall = through_proxy(upstream, [f"p-{abs(hash(spec))}.example.com"],
                                    *spec.split(";"), timeout=timeout)
    assert report.verdict is Verdict.STAGING_UNSTABLE, report.problems
    assert report.exit_code == 2
    # After every name was validated today, the setup is proven (issue 17); before, staging
    # could not tell.
    validated = all(v.fresh for v in report.validated)
    assert report.prod_likely_to_succeed is (True if validated else None)
    assert validated is spec.startswith(("finalize:", "order_poll:patch,status=processing"))
    problem = fatal(report)
    assert (problem.name, problem.cause) == (name, Cause.STAGING)
    assert wall < timeout + 3, "never past the deadline by more than a few seconds"
    assert not any(p.cause is Cause.CLIENT and p.severity.decisive for p in report.problems)


# -- client faults: client_error, exit 1, no retry ----------------------------------------------

@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("finalize:status:403,type=caa", "CaaForbidden"),
        ("finalize:status:400,type=badCSR", "BadCsr"),
        ("order:status:429,type=rateLimited,retry_after=3600", "RateLimited"),
        ("order:status:400,type=rejectedIdentifier", "RejectedIdentifier"),
    ],
)
def test_client_fault_is_client_error_without_retry(
    upstream: LocalPebble, spec: str, name: str
) -> None:
    report, _, _ = through_proxy(upstream, [f"c-{abs(hash(spec))}.example.com"], spec)
    assert report.verdict is Verdict.CLIENT_ERROR, report.problems
    assert report.exit_code == 1
    assert (fatal(report).name, fatal(report).cause) == (name, Cause.CLIENT)
    assert report.retries == (), "client faults are never retried"


def test_rate_limit_keeps_retry_after(upstream: LocalPebble) -> None:
    report, _, _ = through_proxy(upstream, ["rl.example.com"],
                                 "order:status:429,type=rateLimited,retry_after=3600")
    problem = fatal(report)
    assert problem.retry_after == 3600
    assert "3600 s" in problem.hint


def test_429_whose_retry_after_fits_the_deadline_is_waited_out(upstream: LocalPebble) -> None:
    report, _, _ = through_proxy(upstream, ["rlw.example.com"],
                                 "order:status:429,type=rateLimited,retry_after=1,count=1")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert [(r.reason, r.wait_s >= 1) for r in report.retries] == [("rateLimited", True)]


def test_validation_dns_failure_is_client_error(upstream: LocalPebble) -> None:
    upstream.set_servfail("servfail.example.com")
    report, _, _ = through_proxy(upstream, ["servfail.example.com"], preflight=False)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert fatal(report).cause is Cause.CLIENT
    # Pebble 2.4.0 reports a SERVFAIL at validation as "connection"; Boulder says "dns".
    assert fatal(report).name in {"ValidationDns", "ValidationConnection"}
    assert report.retries == ()


def test_wrong_challenge_content_is_unauthorized_client_error(upstream: LocalPebble) -> None:
    from acmedryrun.solvers import Challenge, HTTP01Standalone

    class WrongContent(HTTP01Standalone):
        def perform(self, challenge: Challenge) -> None:
            import dataclasses

            super().perform(dataclasses.replace(challenge, key_authorization="not-it"))

    with FaultProxy(upstream.directory_url, upstream_ca_bundle=upstream.ca_bundle) as proxy:
        report = acmedryrun.dry_run(
            ["wrong.example.com"], directory=proxy.directory_url, ca_bundle=proxy.ca_bundle,
            solver=WrongContent(port=upstream.http_port, address="127.0.0.1"),
            dns_resolver=upstream.dns_resolver, timeout=30)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert (fatal(report).name, fatal(report).cause) == ("Unauthorized", Cause.CLIENT)


# -- the same through the CLI: exit codes ---------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "code"),
    [("order:status:503,retry_after=1,count=2", 0), ("order:status:503", 2),
     ("finalize:status:403,type=caa", 1)],
)
def test_cli_exit_codes_through_the_proxy(upstream: LocalPebble, spec: str, code: int) -> None:
    with FaultProxy(upstream.directory_url, upstream_ca_bundle=upstream.ca_bundle,
                    faults=[parse_fault(spec)]) as proxy:
        proc = cli("check", "-d", f"cli-{code}.example.com", "--directory", proxy.directory_url,
                   "--ca-bundle", proxy.ca_bundle, "--http-01-port", str(upstream.http_port),
                   "--http-01-address", "127.0.0.1", "--dns-resolver", upstream.dns_resolver,
                   "--timeout", "5", "--json")
    assert proc.returncode == code, proc.stderr
    assert report_json(proc)["verdict"] == ["likely_success", "client_error",
                                            "staging_unstable"][code]


def test_staging_that_stops_answering_mid_run_is_staging_even_with_the_twin_down(
    upstream: LocalPebble,
) -> None:
    """Staging answered directory, nonce, account and order: the network reaches it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    report, _, _ = through_proxy(upstream, ["midrun.example.com"], "finalize:reset",
                                 timeout=3,
                                 reference_directory=f"https://127.0.0.1:{closed}/dir")
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert (fatal(report).name, fatal(report).cause) == ("StagingUnreachable", Cause.STAGING)


@pytest.mark.parametrize("patch_fault", [
    ("order", {"authorizations": None}),
    ("order", {"finalize": None}),
    ("order", {"authorizations": "not-a-list"}),
    ("authz", {"challenges": [1]}),
    ("authz", {"challenges": None}),
    ("authz", {"identifier": "example.com"}),
    ("order", {"authorizations": ["not a url at all"]}),
])
def test_malformed_but_valid_json_from_the_ca_is_a_staging_problem_not_a_crash(
    upstream: LocalPebble, patch_fault: tuple[str, dict[str, object]]
) -> None:
    from acmedryrun.testing import Fault

    endpoint, patch = patch_fault
    with FaultProxy(upstream.directory_url, upstream_ca_bundle=upstream.ca_bundle,
                    faults=[Fault(endpoint, "patch", patch=patch)]) as proxy:
        report = acmedryrun.dry_run(
            [f"m-{abs(hash(str(patch)))}.example.com"], directory=proxy.directory_url,
            ca_bundle=proxy.ca_bundle, solver=http_solver(upstream),
            dns_resolver=upstream.dns_resolver, timeout=3)
    assert report.verdict is Verdict.STAGING_UNSTABLE, report.problems
    assert fatal(report).name == "MalformedResponse"


def test_a_challenge_token_that_could_escape_the_webroot_is_refused(
    upstream: LocalPebble, tmp_path: Path
) -> None:
    from acmedryrun.solvers import HTTP01Webroot
    from acmedryrun.testing import Fault

    evil = {"challenges": [{"type": "http-01", "url": "https://127.0.0.1:1/chal",
                            "token": "../../../etc/evil", "status": "pending"}]}
    with FaultProxy(upstream.directory_url, upstream_ca_bundle=upstream.ca_bundle,
                    faults=[Fault("authz", "patch", patch=evil)]) as proxy:
        report = acmedryrun.dry_run(
            ["evil.example.com"], directory=proxy.directory_url, ca_bundle=proxy.ca_bundle,
            solver=HTTP01Webroot(tmp_path), dns_resolver=upstream.dns_resolver, timeout=5)
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert "not base64url" in fatal(report).detail
    assert list(tmp_path.rglob("evil")) == []
