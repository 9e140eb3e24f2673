"""End-to-end dry runs against a real Pebble (issue: foundation)."""

from __future__ import annotations

import functools
import http.server
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import http_solver, run

import acmedryrun
from acmedryrun import Cause, Severity, Step, StepStatus, Verdict
from acmedryrun.solvers import Challenge, HTTP01Webroot, Solver
from acmedryrun.testing import LocalPebble

STEPS_OF_A_FULL_RUN = [
    "preflight", "directory", "nonce", "account", "order", "authorization", "challenge", "finalize",
    "certificate", "cleanup",
]


def test_one_name_issues_and_is_likely_success(pebble: LocalPebble, unique_name: str) -> None:
    report = run(pebble, [unique_name])
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.prod_likely_to_succeed is True
    assert report.problems == ()
    assert [s.step.value for s in report.steps] == STEPS_OF_A_FULL_RUN
    assert all(s.status is StepStatus.OK for s in report.steps)
    assert report.certificate is not None
    assert report.certificate.names == (unique_name,)
    assert report.certificate.chain_length >= 2
    assert report.exit_code == 0


def test_three_names_in_one_order_are_all_on_the_certificate(
    pebble: LocalPebble, unique_name: str
) -> None:
    names = [unique_name, f"www.{unique_name}", f"api.{unique_name}"]
    report = run(pebble, names)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert sorted(report.certificate.names) == sorted(names)
    assert report.identifiers == tuple(names)


@pytest.mark.parametrize("n", [1, 2, 12])
def test_requests_stay_at_the_protocol_floor(pebble: LocalPebble, unique_name: str,
                                             n: int) -> None:
    """directory, nonce, account, order, N authz, N answers, finalize, cert, N deactivations;
    parallel streams add at most one newNonce each beyond the first (issue 18)."""
    from acmedryrun.run import STREAMS

    names = [unique_name] + [f"n{i}.{unique_name}" for i in range(n - 1)]
    report = run(pebble, names)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    floor = 1 + 1 + 1 + 1 + n + n + 1 + 1 + n
    extra = report.requests.total - report.requests.polls - floor
    assert 0 <= extra <= min(n, STREAMS) - 1
    assert report.requests.retries == 0


@pytest.fixture
def webroot_server(pebble: LocalPebble, tmp_path: Path) -> Iterator[Path]:
    """A plain static web server on Pebble's validation port, serving ``tmp_path``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", pebble.http_port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path
    server.shutdown()
    server.server_close()


def test_webroot_served_by_a_running_web_server_succeeds_and_leaves_nothing(
    pebble: LocalPebble, webroot_server: Path, unique_name: str
) -> None:
    report = run(pebble, [unique_name], solver=HTTP01Webroot(webroot_server))
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert list(webroot_server.iterdir()) == [], "challenge files and created dirs are removed"


def test_connection_refused_at_validation_is_client_error(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])  # the responder binds 127.0.0.1 only
    report = run(pebble, [unique_name])
    assert report.verdict is Verdict.CLIENT_ERROR
    assert report.prod_likely_to_succeed is False
    fatal = [p for p in report.problems if p.severity is Severity.FATAL]
    assert [p.name for p in fatal] == ["ValidationConnection"]
    assert fatal[0].cause is Cause.CLIENT
    assert fatal[0].step is Step.CHALLENGE
    assert fatal[0].identifier == unique_name
    assert fatal[0].acme_type == "urn:ietf:params:acme:error:connection"
    assert report.exit_code == 1


@pytest.fixture(scope="module")
def blocklist_pebble() -> Iterator[LocalPebble]:
    with LocalPebble(blocklist=["blocked.example"]) as p:
        yield p


def test_blocklisted_name_is_rejected_identifier_client_error(
    blocklist_pebble: LocalPebble,
) -> None:
    report = run(blocklist_pebble, ["www.blocked.example"])
    assert report.verdict is Verdict.CLIENT_ERROR
    problem = next(p for p in report.problems if p.severity.decisive)
    assert problem.name == "RejectedIdentifier"
    assert problem.cause is Cause.CLIENT
    assert problem.step is Step.ORDER


@pytest.fixture(scope="module")
def reuse_pebble() -> Iterator[LocalPebble]:
    """A Pebble that always reuses valid authorizations (PEBBLE_AUTHZREUSE=100)."""
    with LocalPebble(authz_reuse=100) as p:
        yield p


def test_reused_valid_authorization_does_not_hide_a_broken_setup(
    reuse_pebble: LocalPebble, tmp_path: Path
) -> None:
    """A name that passed once, then broke, fails on the next run with the same account."""
    key = tmp_path / "account.pem"
    name = "reuse.example.com"
    first = run(reuse_pebble, [name], account_key=key)
    assert first.verdict is Verdict.LIKELY_SUCCESS, first.problems
    reuse_pebble.add_a(name, ["127.0.0.2"])  # now broken: nothing answers there
    second = run(reuse_pebble, [name], account_key=key)
    assert second.account_url == first.account_url
    assert second.verdict is Verdict.CLIENT_ERROR, second.problems
    assert any(p.name == "ValidationConnection" for p in second.problems)


def test_valid_authorization_reused_from_another_client_is_deactivated_and_revalidated(
    reuse_pebble: LocalPebble, tmp_path: Path
) -> None:
    """Pebble hands back a valid authz; acmedryrun deactivates it and validates afresh."""
    from acme import client as acme_client
    from acme import crypto_util, messages
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC

    name = "reused-elsewhere.example.com"
    key_path = tmp_path / "account.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    # Another client (certbot's acme package) validates the name and leaves the authz valid.
    net = acme_client.ClientNetwork(JWKEC(key=key), alg=ES256,
                                    verify_ssl=reuse_pebble.ca_bundle)  # type: ignore[arg-type]
    directory = acme_client.ClientV2.get_directory(reuse_pebble.directory_url, net)
    acme = acme_client.ClientV2(directory, net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    cert_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    order = acme.new_order(crypto_util.make_csr(cert_key, [name]))
    solver = http_solver(reuse_pebble)
    solver.open()
    try:
        from acmedryrun.acme_steps import key_authorization
        from acmedryrun.solvers import Challenge

        authz = order.authorizations[0]
        chall = next(c for c in authz.body.challenges if c.chall.typ == "http-01")
        ka = key_authorization(chall.chall.encode("token"), JWKEC(key=key))
        solver.perform(Challenge("http-01", name, "dns", False, chall.chall.encode("token"),
                                 ka, ka, chall.uri))
        acme.answer_challenge(chall, chall.response(JWKEC(key=key)))
        import datetime

        acme.poll_authorizations(order, datetime.datetime.now() + datetime.timedelta(seconds=30))
    finally:
        solver.close()
    report = run(reuse_pebble, [name], account_key=key_path)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert not any(p.name == "AuthorizationReused" for p in report.problems)
    challenge = next(s for s in report.steps if s.step is Step.CHALLENGE)
    assert challenge.status is StepStatus.OK, "the name was validated again, not reused"


def test_account_key_file_is_created_0600_and_reused(
    pebble: LocalPebble, tmp_path: Path, unique_name: str
) -> None:
    key = tmp_path / "acct.pem"
    first = run(pebble, [unique_name], account_key=key)
    assert first.verdict is Verdict.LIKELY_SUCCESS, first.problems
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    second = run(pebble, [unique_name], account_key=key)
    assert second.account_url is not None
    assert second.account_url == first.account_url
    assert key.read_bytes() not in first.to_json().encode()


def test_dry_run_never_raises_for_an_unreachable_ca(unique_name: str, tmp_path: Path) -> None:
    """Nothing listens at the directory URL: a problem in the report, not an exception."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = acmedryrun.dry_run([unique_name], directory=f"https://127.0.0.1:{port}/dir",
                                solver=HTTP01Webroot(tmp_path), timeout=3,
                                preflight=False)
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert report.problems[0].step is Step.DIRECTORY
    statuses = {s.step: s.status for s in report.steps}
    assert statuses[Step.DIRECTORY] is StepStatus.FAILED
    assert statuses[Step.PREFLIGHT] is StepStatus.SKIPPED, "turned off"
    assert all(statuses[s] is StepStatus.SKIPPED for s in (Step.ORDER, Step.CERTIFICATE))


def test_a_hook_slower_than_the_deadline_is_the_clients_fault(
    pebble: LocalPebble, unique_name: str
) -> None:
    from acmedryrun.solvers import DNS01Hook

    started = time.monotonic()
    report = run(pebble, [unique_name], solver=DNS01Hook("sleep 3", timeout=10), timeout=1.5)
    assert time.monotonic() - started < 1.5 + 3 + 2
    assert report.verdict is Verdict.CLIENT_ERROR
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("SolverDeadlineExceeded", Cause.CLIENT)


class _BrokenCustomSolver(Solver):
    """An ACME client's own solver whose machinery raises."""

    challenge_type = "http-01"

    def __init__(self) -> None:
        self.cleaned: list[str] = []

    def perform(self, challenge: Challenge) -> None:
        raise OSError("the client's DNS API is down")

    def cleanup(self, challenge: Challenge) -> None:
        self.cleaned.append(challenge.token)


def test_a_custom_solver_that_raises_is_a_client_problem_and_still_cleaned_up(
    pebble: LocalPebble, unique_name: str
) -> None:
    solver = _BrokenCustomSolver()
    report = run(pebble, [unique_name], solver=solver)
    assert report.verdict is Verdict.CLIENT_ERROR
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert fatal.name == "SolverFailed"
    assert "OSError: the client's DNS API is down" in fatal.detail
    assert len(solver.cleaned) == 1, "cleanup ran for the prepared challenge"


def test_an_ip_identifier_validates_over_http01(pebble: LocalPebble) -> None:
    """RFC 8738: 127.0.0.1 as an identifier; Pebble's VA dials it directly."""
    report = run(pebble, ["127.0.0.1"])
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert report.certificate.names == ("127.0.0.1",)


def test_raise_for_verdict_raises_with_the_report_unless_likely_success(
    pebble: LocalPebble, unique_name: str
) -> None:
    ok = run(pebble, [unique_name])
    ok.raise_for_verdict()
    pebble.add_a(unique_name, ["127.0.0.2"])
    bad = run(pebble, [unique_name])
    with pytest.raises(acmedryrun.DryRunFailed, match="client_error") as info:
        bad.raise_for_verdict()
    assert info.value.report is bad


def test_a_hook_never_runs_past_the_deadline(pebble: LocalPebble, unique_name: str) -> None:
    from acmedryrun.solvers import DNS01Hook

    started = time.monotonic()
    report = run(pebble, [unique_name], solver=DNS01Hook("sleep 30", timeout=120), timeout=2)
    assert time.monotonic() - started < 2 + 3, "the hook was cut at the run's deadline"
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert fatal.cause is Cause.CLIENT


def test_a_hook_cut_short_because_staging_ate_the_time_is_not_the_clients_fault(
    pebble: LocalPebble, unique_name: str
) -> None:
    """Two 503s with Retry-After: 2 use most of the deadline; the hook is not to blame."""
    from acmedryrun.solvers import DNS01Hook
    from acmedryrun.testing import FaultProxy, parse_fault

    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                    faults=[parse_fault("order:status:503,retry_after=2,count=2")]) as proxy:
        report = acmedryrun.dry_run(
            [unique_name], directory=proxy.directory_url, ca_bundle=proxy.ca_bundle,
            solver=DNS01Hook("sleep 2.5", timeout=10), dns_resolver=pebble.dns_resolver,
            timeout=5.5)
    assert report.verdict is Verdict.STAGING_UNSTABLE, report.problems
    fatal = next(p for p in report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause) == ("DeadlineExceeded", Cause.STAGING)


def test_one_order_of_fifty_names_is_validated_name_by_name(pebble: LocalPebble) -> None:
    names = [f"n{i}.fifty-{os.getpid()}.example.com" for i in range(50)]
    report = run(pebble, names)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert sorted(report.certificate.names) == sorted(names)
    floor = 4 + 3 * len(names) + 2  # directory, nonce, account, order; N x 3; finalize, cert
    from acmedryrun.run import STREAMS

    extra = report.requests.total - report.requests.polls - floor
    assert 0 <= extra <= STREAMS - 1, "one newNonce per extra request stream at most"


def test_parallel_streams_survive_a_badnonce_on_one_stream(pebble: LocalPebble) -> None:
    """badNonce answers on some of a 12-name order's parallel authorization reads: each
    is retried with the nonce its error carried, and the run needs nothing else."""
    from acmedryrun.testing import FaultProxy, parse_fault

    names = [f"s{i}.streams-{os.getpid()}.example.com" for i in range(12)]
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                    faults=[parse_fault("authz:status:400,type=badNonce,count=3")]) as proxy:
        report = acmedryrun.dry_run(names, directory=proxy.directory_url,
                                    ca_bundle=proxy.ca_bundle, solver=http_solver(pebble),
                                    dns_resolver=pebble.dns_resolver, timeout=30)
        nonces = proxy.hits("nonce")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert [r.reason for r in report.retries] == ["badNonce"] * 3
    assert nonces <= 8, "no stream needed more than its first newNonce"
