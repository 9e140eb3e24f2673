"""Issue 13's blame fixes, end to end: each through a real Pebble or acme2certifier.

Every test here drives the real thing: Pebble 2.4.0 (``LocalPebble``), acme2certifier
(``LocalA2C``), ``FaultProxy`` in front of either for the failures a healthy CA does
not produce, a real production twin (a second Pebble) where the twin decides, and the
CLI as a subprocess where the exit code or the JSON is the point.  The pure table of
the same rows is in tests/test_classify.py; the real problem documents CAs sent are
replayed in tests/test_problem_fixtures.py.

Deadlines are short on purpose: a case whose verdict should arrive at once is held
to a second or two, so a regression that waits out the timeout fails here.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from a2c import LocalA2C
from conftest import cli, http_solver, report_json
from dnsserver import BlackHole, TinyDns

import acmedryrun
import acmedryrun.retry
from acmedryrun import Cancelled, Verdict
from acmedryrun.report import (
    Cause,
    Confidence,
    Problem,
    Report,
    Severity,
    Step,
    StepStatus,
)
from acmedryrun.solvers import Challenge, HTTP01Hook, HTTP01Standalone
from acmedryrun.testing import Fault, FaultProxy, LocalPebble, parse_fault

pytest_plugins = ["a2c_fixtures"]

CLIENT, STAGING = Cause.CLIENT, Cause.STAGING
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW
#: A verdict the CA (or this machine) gave at once must arrive this fast.
PROMPT = 2.0
#: acme2certifier refuses newAccount without a contact; Pebble takes it too.
EMAIL = "admin@example.com"


# ------------------------------------------------------------------------------ helpers


def proxy(p: LocalPebble, *faults: str | Fault) -> FaultProxy:
    """A FaultProxy in front of ``p`` with ``faults`` (spec strings or Fault objects)."""
    return FaultProxy(p.directory_url, upstream_ca_bundle=p.ca_bundle,
                      faults=[parse_fault(f) if isinstance(f, str) else f for f in faults])


def via(px: FaultProxy, p: LocalPebble, names: Sequence[str], **kwargs: Any) -> Report:
    """One dry run through ``px`` to ``p``, with ``p``'s DNS and http-01 port."""
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("dns_resolver", p.dns_resolver)
    kwargs.setdefault("solver", http_solver(p))
    return acmedryrun.dry_run(list(names), directory=px.directory_url,
                              ca_bundle=kwargs.pop("ca_bundle", px.ca_bundle), **kwargs)


def fatal(report: Report) -> Problem:
    """The run's one fatal problem."""
    found = [p for p in report.problems if p.severity is Severity.FATAL]
    assert len(found) == 1, report.problems
    return found[0]


def problem(report: Report, name: str) -> Problem:
    """The problem called ``name`` (exactly one)."""
    found = [p for p in report.problems if p.name == name]
    assert len(found) == 1, report.problems
    return found[0]


def step_status(report: Report, step: Step) -> StepStatus:
    """How ``step`` ended (the last record of it)."""
    return [s for s in report.steps if s.step is step][-1].status


def bundle(tmp_path: Path, *paths: str) -> str:
    """One trust store for staging and production, as a real machine has."""
    out = tmp_path / "bundle.pem"
    out.write_text("".join(Path(p).read_text() for p in paths))
    return str(out)


def closed_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def causes_hold(data: dict[str, Any]) -> None:
    """CONTRACT.md: fatal/error problems carry client or staging; notices may be null."""
    for p in data["problems"]:
        if p["severity"] in ("fatal", "error"):
            assert p["cause"] in ("client", "staging"), p


def gone(pid: int) -> bool:
    """True when no process ``pid`` exists any more (or only its zombie is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_for(predicate: Callable[[], object], seconds: float = 20.0) -> None:
    """Poll ``predicate`` until it is true (fails the test after ``seconds``)."""
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


class WrongKeyAuthorization(HTTP01Standalone):
    """An http-01 responder serving the key authorization of some other account key."""

    def perform(self, challenge: Challenge) -> None:
        wrong = f"{challenge.token}.{'A' * 43}"  # a well-formed thumbprint, not ours
        super().perform(dataclasses.replace(challenge, key_authorization=wrong))


@pytest.fixture(scope="module")
def production() -> Iterator[LocalPebble]:
    """A second Pebble: the production twin of the suite's Pebble."""
    with LocalPebble() as p:
        yield p


@pytest.fixture
def name(unique_name: str) -> str:
    """A name no other test uses."""
    return unique_name


# ------------------------------------------------------------------- 1. cancelled runs


def _sleeping_hook(pidfile: Path) -> str:
    """An http-01 auth hook that records its PID, then holds the run for 30 s."""
    return f"echo $$ > {pidfile}; exec sleep 30"


def test_cancel_while_a_hook_holds_the_run_raises_cancelled(
    pebble: LocalPebble, name: str, tmp_path: Path
) -> None:
    """``cancel=`` set from another thread while the auth hook sleeps: no report, the
    hook killed at once (TAXONOMY: a cancelled run has no verdict, and no blame)."""
    pidfile = tmp_path / "hook.pid"
    cancel = threading.Event()
    cancelled_at: list[float] = []
    events: list[acmedryrun.Event] = []

    def canceller() -> None:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        cancelled_at.append(time.monotonic())
        cancel.set()

    thread = threading.Thread(target=canceller, daemon=True)
    thread.start()
    with pytest.raises(Cancelled):
        acmedryrun.dry_run([name], directory=pebble.directory_url, ca_bundle=pebble.ca_bundle,
                           solver=HTTP01Hook(_sleeping_hook(pidfile), timeout=60),
                           dns_resolver=pebble.dns_resolver, timeout=60, cancel=cancel,
                           on_event=events.append)
    took = time.monotonic() - cancelled_at[0]
    thread.join(5)
    assert took < PROMPT, f"a cancel must end the run at once, not after {took:.1f} s"
    assert gone(int(pidfile.read_text())), "the hook outlived the cancelled run"
    assert not [e for e in events if e.kind == "problem" and e.problem is not None
                and e.problem.severity.decisive], "a cancel is nobody's fault"


def test_cancel_while_the_ca_is_slow_raises_cancelled_and_skips_the_deactivations(
    pebble: LocalPebble, name: str
) -> None:
    """The CA never decides (order and authorization shown pending); a cancel during the
    polling ends the run at once, with no request for the deactivations."""
    cancel = threading.Event()
    cancelled_at: list[float] = []
    with proxy(pebble, "order_poll:patch,status=pending", "authz:patch,status=pending") as px:
        def canceller() -> None:
            wait_for(lambda: px.hits("order_poll") >= 2)
            cancelled_at.append(time.monotonic())
            cancel.set()

        thread = threading.Thread(target=canceller, daemon=True)
        thread.start()
        with pytest.raises(Cancelled):
            via(px, pebble, [name], timeout=60, cancel=cancel)
        took = time.monotonic() - cancelled_at[0]
        thread.join(5)
        assert px.hits("deactivate") == 0
    assert took < PROMPT, f"a cancel must end the run at once, not after {took:.1f} s"


def test_sigint_while_a_hook_holds_the_cli_exits_130_with_no_report(
    pebble: LocalPebble, name: str, tmp_path: Path
) -> None:
    """Ctrl-C during the auth hook: exit 130, no JSON report, the hook killed."""
    pidfile = tmp_path / "hook.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "acmedryrun", "check", "-d", name, "--directory",
         pebble.directory_url, "--ca-bundle", pebble.ca_bundle, "--dns-resolver",
         pebble.dns_resolver, "--http-01-auth-hook", _sleeping_hook(pidfile),
         "--timeout", "60", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 5
    assert stdout == "", "a cancelled run has no report"
    assert "Traceback" not in stderr
    assert gone(int(pidfile.read_text())), "the hook outlived the interrupted CLI"


# --------------------------------------------------- 2. authorization reused after deactivation


@pytest.fixture(scope="module")
def reuse_pebble() -> Iterator[LocalPebble]:
    """A Pebble that hands back a valid authorization whenever it has one."""
    with LocalPebble(authz_reuse=100) as p:
        yield p


def _two_valid_authorizations(p: LocalPebble, name: str, key_path: Path) -> None:
    """Another client (certbot's ``acme``) leaves two valid authorizations for ``name``.

    Both orders are placed before either is validated, so Pebble cannot reuse the
    first for the second; afterwards it holds two, and deactivating one still leaves
    one to hand back.
    """
    from acme import client as acme_client
    from acme import crypto_util, messages
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC

    from acmedryrun.acme_steps import key_authorization

    key = ec.generate_private_key(ec.SECP256R1())
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    jwk = JWKEC(key=key)
    net = acme_client.ClientNetwork(jwk, alg=ES256,
                                    verify_ssl=p.ca_bundle)  # type: ignore[arg-type]
    acme = acme_client.ClientV2(acme_client.ClientV2.get_directory(p.directory_url, net), net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    cert_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    csr = crypto_util.make_csr(cert_key, [name])
    orders = [acme.new_order(csr), acme.new_order(csr)]
    assert orders[0].authorizations[0].uri != orders[1].authorizations[0].uri
    solver = http_solver(p)
    solver.open()
    try:
        for order in orders:
            authz = order.authorizations[0]
            chall = next(c for c in authz.body.challenges if c.chall.typ == "http-01")
            token = chall.chall.encode("token")
            ka = key_authorization(token, jwk)
            solver.perform(Challenge("http-01", name, "dns", False, token, ka, ka, chall.uri))
            acme.answer_challenge(chall, chall.response(jwk))
        for order in orders:
            acme.poll_authorizations(order, datetime.datetime.now()
                                     + datetime.timedelta(seconds=20))
    finally:
        solver.close()


def test_authorization_reused_after_deactivation_is_never_likely_success(
    reuse_pebble: LocalPebble, name: str, tmp_path: Path
) -> None:
    """Pebble (authz reuse 100 %) hands back a valid authorization on the re-order too,
    after the run deactivated the first: the name was not validated today, so the run
    is staging_unstable although the certificate was issued (TAXONOMY, Truthfulness)."""
    key = tmp_path / "account.pem"
    _two_valid_authorizations(reuse_pebble, name, key)
    with proxy(reuse_pebble) as px:
        report = via(px, reuse_pebble, [name], account_key=key)
        orders, deactivations = px.hits("order"), px.hits("deactivate")
    assert report.certificate is not None, "staging issued: only the reuse stops success"
    assert report.verdict is Verdict.STAGING_UNSTABLE, report.problems
    assert report.prod_likely_to_succeed is None
    reused = problem(report, "AuthorizationReused")
    assert (reused.cause, reused.severity, reused.identifier) == (STAGING, Severity.ERROR, name)
    assert orders == 2, "deactivated and ordered again, once"
    assert deactivations == 2, "the reused one, then this run's own in cleanup"
    assert step_status(report, Step.CHALLENGE) is StepStatus.SKIPPED, "nothing validated"


# ------------------------------------------ 3. CAA accounturi naming only the production account


_CAA_NAME = "caa-prod-account.example.com"
_CAA_DETAIL = f"CAA record for {_CAA_NAME} prevents issuance"
#: Where staging refuses: at finalize (Boulder's CAA recheck), or inside the challenge
#: (Let's Encrypt checks CAA while validating: the challenge turns invalid with ``caa``).
_CAA_REFUSALS: dict[str, Fault] = {
    "finalize": parse_fault(f"finalize:status:403,type=caa,detail={_CAA_DETAIL}"),
    "challenge": Fault("challenge", "patch", patch={"status": "invalid", "error": {
        "type": "urn:ietf:params:acme:error:caa", "detail": _CAA_DETAIL, "status": 403}}),
}


@pytest.fixture(scope="module", params=sorted(_CAA_REFUSALS))
def caa_run(request: pytest.FixtureRequest, pebble: LocalPebble, production: LocalPebble,
            tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Staging refuses with ``caa``; the name's CAA record binds issuance to an account on
    the production twin's host (RFC 8657), which a staging run cannot use."""
    # Production lives on another host than staging, as it does for real CAs.
    prod_url = production.directory_url.replace("127.0.0.1", "localhost")
    prod_account = prod_url.rsplit("/", 1)[0] + "/my-account/1"
    pebble.add_caa(_CAA_NAME, [("issue", f"pebble.example; accounturi={prod_account}")])
    try:
        with proxy(pebble, _CAA_REFUSALS[request.param]) as px:
            trust = bundle(tmp_path_factory.mktemp("caa"), px.ca_bundle, production.ca_bundle)
            return via(px, pebble, [_CAA_NAME], ca_bundle=trust, reference_directory=prod_url,
                       caa_identities=["pebble.example"])
    finally:
        pebble.clear_caa(_CAA_NAME)


def test_caa_accounturi_naming_only_production_is_seen_by_preflight(caa_run: Report) -> None:
    """The precondition of the next test: preflight saw the production-only accounturi
    (a notice, nobody's fault) and staging did refuse with ``caa``."""
    notice = problem(caa_run, "CaaAccountUriProductionOnly")
    assert (notice.severity, notice.cause, notice.identifier) == (
        Severity.WARNING, None, _CAA_NAME)
    assert fatal(caa_run).acme_type == "urn:ietf:params:acme:error:caa"
    assert fatal(caa_run).step in (Step.FINALIZE, Step.CHALLENGE)


def test_caa_refusal_of_a_production_only_account_is_staging_not_the_client(
    caa_run: Report
) -> None:
    """TAXONOMY: ``caa`` when preflight saw an accounturi naming only the production
    account is a staging-run artefact (production would issue), confidence medium."""
    refused = fatal(caa_run)
    assert (refused.name, refused.cause, refused.confidence) == (
        "CaaRefusedStagingAccount", STAGING, MEDIUM)
    assert caa_run.verdict is Verdict.STAGING_UNSTABLE


# ---------------------------------------------- 4. the CA lost an object it handed out


@pytest.mark.parametrize(("spec", "step"), [
    ("order_poll:status:404,type=malformed,detail=No order for ID 4123", Step.CHALLENGE),
    ("authz:status:404,type=malformed,detail=No such authorization", Step.AUTHORIZATION),
])
def test_malformed_404_on_a_url_the_ca_handed_out_is_ca_lost_object(
    pebble: LocalPebble, name: str, spec: str, step: Step
) -> None:
    """``malformed`` + 404 on the CA's own order or authorization URL: the CA lost it
    (replica lag, a botched deploy, boulder#3431), not the client's request."""
    with proxy(pebble, spec) as px:
        report = via(px, pebble, [name])
    lost = fatal(report)
    assert (lost.name, lost.cause, lost.confidence, lost.step) == (
        "CaLostObject", STAGING, LOW, step)
    assert lost.http_status == 404
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert report.retries == (), "a 404 is not retried"


# -------------------------------------------------------------------- 5. service busy


@pytest.mark.parametrize("status", [429, 503])
def test_service_busy_is_staging_and_retried_with_backoff(
    pebble: LocalPebble, name: str, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """"Service busy; retry later." (Let's Encrypt sent it with 429 for weeks in 2022, and
    with 503): staging overload, retried with real backoff until it clears."""
    monkeypatch.setattr(acmedryrun.retry, "_testing", False)  # the waits are the point
    spec = f"order:status:{status},type=rateLimited,detail=Service busy; retry later.,count=2"
    with proxy(pebble, spec) as px:
        report = via(px, pebble, [name])
        orders = px.hits("order")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert orders == 3
    assert [(r.step, r.reason, r.attempt) for r in report.retries] == [
        (Step.ORDER, "service_busy", 1), (Step.ORDER, "service_busy", 2)]
    assert all(r.wait_s > 0 for r in report.retries), "backoff, not a rate-limit refusal"
    assert problem(report, "StagingUnstable").cause is STAGING


@pytest.mark.parametrize("status", [429, 503])
def test_service_busy_that_never_clears_is_staging_unstable(
    pebble: LocalPebble, name: str, status: int
) -> None:
    with proxy(pebble, f"order:status:{status},type=rateLimited,"
               "detail=Service busy; retry later.") as px:
        report = via(px, pebble, [name], timeout=5)
    busy = fatal(report)
    assert (busy.name, busy.cause) == ("ServiceBusy", STAGING)
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert report.retries, "retried before giving up"


def test_a_real_rate_limit_429_is_the_client_and_not_retried(
    pebble: LocalPebble, name: str
) -> None:
    """The contrast: a 429 whose detail is a rate limit is the subscriber's (production's
    limits are lower still), and without a Retry-After it is not waited for."""
    with proxy(pebble, "order:status:429,type=rateLimited,detail=too many certificates"
               " (5) already issued for this exact set of identifiers") as px:
        report = via(px, pebble, [name])
    limited = fatal(report)
    assert (limited.name, limited.cause) == ("RateLimited", CLIENT)
    assert report.retries == ()


# --------------------------------------------------- 6. who used up the deadline


def test_deadline_used_up_by_a_silent_resolver_is_the_client(
    pebble: LocalPebble, name: str
) -> None:
    """Preflight's look-ups through a resolver that never answers eat the whole deadline:
    the subscriber's resolver (PreflightDeadlineExceeded), not staging's."""
    with BlackHole() as hole:
        report = acmedryrun.dry_run([name], directory=pebble.directory_url,
                                    ca_bundle=pebble.ca_bundle, solver=http_solver(pebble),
                                    dns_resolver=hole.address, timeout=1.5)
    expired = fatal(report)
    assert (expired.name, expired.cause) == ("PreflightDeadlineExceeded", CLIENT)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert problem(report, "DnsResolverUnreachable").severity is Severity.WARNING
    assert report.duration_s < 1.5 + PROMPT


@pytest.fixture(scope="module")
def slow_ca_run(pebble: LocalPebble) -> Report:
    """The same run with a resolver that answers at once and a CA that takes too long:
    newOrder answers after 20 s, the deadline is 1.5 s."""
    with proxy(pebble, "order:delay,delay=20") as px:
        return via(px, pebble, ["slow-ca.example.com"], timeout=1.5)


def test_deadline_used_up_by_a_slow_ca_is_staging(slow_ca_run: Report) -> None:
    expired = fatal(slow_ca_run)
    assert (expired.cause, expired.step) == (STAGING, Step.ORDER)
    assert slow_ca_run.verdict is Verdict.STAGING_UNSTABLE
    assert slow_ca_run.duration_s < 1.5 + PROMPT


def test_deadline_used_up_by_a_slow_ca_is_named_deadline_exceeded(slow_ca_run: Report) -> None:
    assert fatal(slow_ca_run).name == "DeadlineExceeded"


# ------------------------------------------ 7. an HTML 401/403 from in front of staging


@pytest.mark.parametrize("status", [401, 403])
def test_html_block_page_with_a_healthy_twin_is_staging(
    pebble: LocalPebble, production: LocalPebble, name: str, tmp_path: Path, status: int
) -> None:
    """Staging's directory answers an HTML 403; production's twin answers its directory:
    the network reaches CAs, so staging itself refused."""
    with proxy(pebble, f"directory:html:{status}") as staging:
        trust = bundle(tmp_path, staging.ca_bundle, production.ca_bundle)
        report = via(staging, pebble, [name], ca_bundle=trust,
                     reference_directory=production.directory_url)
    refused = fatal(report)
    assert (refused.name, refused.cause, refused.confidence) == (
        "UnexpectedHttpStatus", STAGING, HIGH)
    assert refused.http_status == status
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert report.duration_s < PROMPT


@pytest.mark.parametrize("status", [401, 403])
def test_html_block_page_from_staging_and_its_twin_is_the_network(
    pebble: LocalPebble, production: LocalPebble, name: str, tmp_path: Path, status: int
) -> None:
    """Staging and production both answer the same HTML 403: a proxy or filter on this
    machine's network answers in the CAs' place, and production fails the same way."""
    with proxy(pebble, f"directory:html:{status}") as staging, \
            proxy(production, f"directory:html:{status}") as twin:
        trust = bundle(tmp_path, staging.ca_bundle, twin.ca_bundle)
        report = via(staging, pebble, [name], ca_bundle=trust,
                     reference_directory=twin.directory_url)
        asked = twin.hits("directory")
    blocked = fatal(report)
    assert (blocked.name, blocked.cause) == ("NetworkBlocksCa", CLIENT)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert report.prod_likely_to_succeed is False
    assert asked == 1, "one read-only GET of the twin decided it"


def test_html_block_page_without_a_twin_is_staging_low(pebble: LocalPebble, name: str) -> None:
    with proxy(pebble, "directory:html:403") as staging:
        report = via(staging, pebble, [name])
    refused = fatal(report)
    assert (refused.name, refused.cause, refused.confidence) == (
        "UnexpectedHttpStatus", STAGING, LOW)


# ------------------------------------------------------------ 8. legacy problem types


def test_legacy_invalid_email_is_invalid_contact_the_client(
    pebble: LocalPebble, name: str
) -> None:
    """Boulder sent ``invalidEmail`` until May 2023 (PR 6877): today's invalidContact."""
    with proxy(pebble, "account:status:400,type=invalidEmail,detail=contact email"
               " \"admin@example.invalid\" has invalid domain") as px:
        report = via(px, pebble, [name], email=EMAIL)
    bad = fatal(report)
    assert (bad.name, bad.cause, bad.step) == ("InvalidContact", CLIENT, Step.ACCOUNT)
    assert bad.acme_type == "urn:ietf:params:acme:error:invalidEmail", "reported as sent"
    assert report.retries == ()


def test_acmev1_server_internal_maintenance_page_is_staging(
    pebble: LocalPebble, name: str
) -> None:
    """Let's Encrypt's static maintenance page: HTTP 503, ``urn:acme:error:serverInternal``
    (the ACMEv1 namespace) even on the v2 API.  Staging's, and retried."""
    with proxy(pebble, "directory:status:503,type=urn:acme:error:serverInternal,detail=The"
               " service is down for maintenance or had an internal error.") as px:
        report = via(px, pebble, [name], timeout=5)
    down = fatal(report)
    assert (down.name, down.cause, down.step) == ("ServerInternal", STAGING, Step.DIRECTORY)
    assert down.acme_type == "urn:acme:error:serverInternal"
    assert report.verdict is Verdict.STAGING_UNSTABLE
    assert {r.reason for r in report.retries} == {"serverInternal"}


# ------------------------------------------------- 9. a web page where the directory is


class _Page:
    """A plain HTTP server on 127.0.0.1 that answers every GET with one 200 body."""

    def __init__(self, body: bytes, content_type: str) -> None:
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.hits = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/directory"

    def __enter__(self) -> _Page:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("body", "ctype"), [
    (b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>", "text/html"),
    (b'{"status": "ok", "version": "1.2.3"}', "application/json"),
])
def test_an_unknown_url_answering_200_without_a_directory_is_the_client_at_once(
    name: str, body: bytes, ctype: str
) -> None:
    """The user's wrong URL (a web page, a health endpoint): NotAnAcmeDirectory within a
    second, and the directory GET is sent exactly once (no retries)."""
    with _Page(body, ctype) as page, FaultProxy(page.url) as px:
        started = time.monotonic()
        report = acmedryrun.dry_run([name], directory=px.directory_url,
                                    ca_bundle=px.ca_bundle, preflight=False, timeout=30,
                                    solver=HTTP01Standalone(port=0, address="127.0.0.1"))
        took = time.monotonic() - started
        hits = px.hits("directory")
    wrong = fatal(report)
    assert (wrong.name, wrong.cause, wrong.step) == (
        "NotAnAcmeDirectory", CLIENT, Step.DIRECTORY)
    assert took < 1.0
    assert hits == 1
    assert report.retries == ()
    assert report.requests.total == 1


# --------------------------------------------------- 10. notices are nobody's fault


def test_notices_are_cause_null_in_the_cli_json(pebble: LocalPebble, name: str) -> None:
    """A CNAME seen (info) and a production twin not reachable from here (warning): the
    CLI's JSON says ``"cause": null`` for both, and the run is likely_success."""
    target = f"target-{name}"
    pebble.set_cname(name, target)
    twin = f"https://127.0.0.1:{closed_port()}/dir"
    try:
        proc = cli("check", "-d", name, "--directory", pebble.directory_url, "--ca-bundle",
                   pebble.ca_bundle, "--http-01-port", str(pebble.http_port),
                   "--http-01-address", "127.0.0.1", "--dns-resolver", pebble.dns_resolver,
                   "--reference-directory", twin, "--timeout", "30", "--json")
    finally:
        pebble.clear_cname(name)
    assert proc.returncode == 0, proc.stderr
    data = report_json(proc)
    by_name = {p["name"]: p for p in data["problems"]}
    assert by_name["DnsCname"]["severity"] == "info"
    assert by_name["ProductionTwinUnavailable"]["severity"] == "warning"
    assert by_name["DnsCname"]["cause"] is None
    assert by_name["ProductionTwinUnavailable"]["cause"] is None
    assert "cause" in by_name["DnsCname"], "null, not left out"
    assert data["verdict"] == "likely_success"
    causes_hold(data)


def test_decisive_problems_next_to_notices_carry_a_cause_in_the_cli_json(
    pebble: LocalPebble, name: str
) -> None:
    """The same notices next to a client fault (nothing answers http-01 where the name
    points): the notices stay null, every fatal/error problem is client or staging."""
    pebble.set_cname(name, f"target-{name}")
    pebble.add_a(f"target-{name}", ["127.0.0.2"])  # nothing listens there
    try:
        proc = cli("check", "-d", name, "--directory", pebble.directory_url, "--ca-bundle",
                   pebble.ca_bundle, "--http-01-port", str(pebble.http_port),
                   "--http-01-address", "127.0.0.1", "--dns-resolver", pebble.dns_resolver,
                   "--reference-directory", f"https://127.0.0.1:{closed_port()}/dir",
                   "--timeout", "30", "--json")
    finally:
        pebble.clear_cname(name)
        pebble.clear_a(f"target-{name}")
    assert proc.returncode == 1, proc.stderr
    data = report_json(proc)
    decisive = [p for p in data["problems"] if p["severity"] in ("fatal", "error")]
    assert decisive
    assert {p["cause"] for p in decisive} == {"client"}
    notices = {p["name"]: p["cause"] for p in data["problems"]
               if p["name"] in ("DnsCname", "ProductionTwinUnavailable")}
    assert notices == {"DnsCname": None, "ProductionTwinUnavailable": None}
    causes_hold(data)


# ------------------------------------------------------------ 11. cleanup tells the truth


def test_deactivation_answered_valid_is_a_warning_and_cleanup_failed(
    pebble: LocalPebble, name: str
) -> None:
    """The CA answers the deactivation 200 but shows the authorization still valid: the
    next dry run may be served it reused, so cleanup is not 'ok'."""
    with proxy(pebble, "deactivate:patch,status=valid") as px:
        report = via(px, pebble, [name])
        deactivations = px.hits("deactivate")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    ignored = problem(report, "DeactivationIgnored")
    assert (ignored.severity, ignored.cause, ignored.step, ignored.identifier) == (
        Severity.WARNING, STAGING, Step.CLEANUP, name)
    assert step_status(report, Step.CLEANUP) is StepStatus.FAILED
    assert deactivations == 1
    assert report.confidence is MEDIUM, "a warning lowers confidence"


def test_deadline_passed_before_cleanup_is_a_warning_and_cleanup_skipped(
    pebble: LocalPebble, name: str
) -> None:
    """The challenge POST is answered only after the deadline, so the deadline is gone
    when cleanup starts: the deactivation cannot be sent, and cleanup says skipped."""
    with proxy(pebble, "challenge:delay,delay=20") as px:
        report = via(px, pebble, [name], timeout=1.5)
        deactivations = px.hits("deactivate")
    assert (fatal(report).step, fatal(report).cause) == (Step.CHALLENGE, STAGING)
    skipped = problem(report, "DeactivationSkipped")
    assert (skipped.severity, skipped.cause, skipped.step) == (
        Severity.WARNING, STAGING, Step.CLEANUP)
    assert step_status(report, Step.CLEANUP) is StepStatus.SKIPPED
    assert deactivations == 0


# ------------------------------------------ 12. validation semantics (RFC 8555 section 7.5.1)


def _read_authorizations_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read lingering authorizations after 0.2 s, 0.6 s, 1.4 s instead of 1 s, 3 s:
    the same sequence in a 2 s deadline (only the spacing is tuned, not the CA)."""
    import acmedryrun.run

    monkeypatch.setattr(acmedryrun.run, "AUTHZ_CHECK_FIRST", 0.2)


def _challenge_posts(px: FaultProxy) -> int:
    """POSTs with a ``{}`` payload or POST-as-GETs to the challenge URL."""
    return sum(1 for e in px.events if e.endpoint == "challenge" and e.method == "POST")


def test_challenge_back_at_pending_gets_exactly_one_more_post(
    pebble: LocalPebble, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The challenge POST answers ``processing``; afterwards the authorization shows it
    ``pending`` again, as if never answered: POSTed once more, and only once.  With
    nothing invalid, the CA that never decides is staging's (AuthorizationStuckPending)."""
    _read_authorizations_often(monkeypatch)
    with proxy(pebble, Fault("challenge", "patch", patch={"status": "processing"}, count=1),
               "order_poll:stall:pending", "authz:stall:unanswered") as px:
        report = via(px, pebble, [name], timeout=2)
        posts = _challenge_posts(px)
        authz_reads = px.hits("authz")
    assert authz_reads >= 3, "the authorization was read at least twice while pending"
    assert posts == 2, "the answer, then exactly one more POST"
    stuck = fatal(report)
    assert (stuck.name, stuck.cause) == ("AuthorizationStuckPending", STAGING)


class _StepCaLike(HTTP01Standalone):
    """An http-01 responder that also makes the proxied CA behave like step-ca after a
    failed attempt: the challenge stays ``pending`` with an ``error`` (step-ca's
    acme/challenge.go markInvalid=false), the authorization and order stay pending."""

    ERROR: ClassVar[dict[str, str]] = {
        "type": "urn:ietf:params:acme:error:connection",
        "detail": "The server could not connect to validation target"}

    def __init__(self, px: FaultProxy, port: int) -> None:
        super().__init__(port=port, address="127.0.0.1")
        self.px = px

    def perform(self, challenge: Challenge) -> None:
        super().perform(challenge)
        self.px.add_fault(Fault("authz", "patch", patch={
            "status": "pending",
            "challenges": [{"type": "http-01", "url": challenge.url, "token": challenge.token,
                            "status": "pending", "error": self.ERROR}]}))


def test_challenge_pending_with_an_error_is_reposted_once_then_the_client_not_stuck(
    pebble: LocalPebble, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed attempt left the challenge pending WITH an error until the deadline: one
    more POST, then the validation failure (client), never AuthorizationStuckPending."""
    _read_authorizations_often(monkeypatch)
    with proxy(pebble, "order_poll:stall:pending") as px:
        report = via(px, pebble, [name], timeout=2, solver=_StepCaLike(px, pebble.http_port))
        posts = _challenge_posts(px)
    assert posts == 2, "the answer, then exactly one more POST"
    failed = fatal(report)
    assert failed.name != "AuthorizationStuckPending"
    assert (failed.name, failed.cause, failed.step, failed.identifier) == (
        "ValidationConnection", CLIENT, Step.CHALLENGE, name)
    assert "could not connect to validation target" in failed.detail
    assert report.verdict is Verdict.CLIENT_ERROR


def test_invalid_challenge_without_an_error_object_is_the_client_medium(
    a2c: LocalA2C, name: str
) -> None:
    """acme2certifier marks a wrong http-01 answer ``invalid`` in the challenge POST, with
    no ``error`` object anywhere: still a failed validation, the client's, medium."""
    report = acmedryrun.dry_run(
        [name], directory=a2c.directory_url, ca_bundle=a2c.ca_bundle,
        dns_resolver=a2c.dns_resolver, email=EMAIL, preflight=False, timeout=8,
        solver=WrongKeyAuthorization(port=a2c.http_port, address=a2c.http_address))
    failed = fatal(report)
    assert (failed.name, failed.cause, failed.confidence, failed.acme_type) == (
        "ValidationFailed", CLIENT, MEDIUM, None)
    assert report.duration_s < PROMPT + 1


def test_invalid_challenge_without_an_error_and_a_failed_self_check_is_high(
    a2c: LocalA2C, name: str
) -> None:
    """The same, with preflight: this machine's self-check saw the wrong content too."""
    report = acmedryrun.dry_run(
        [name], directory=a2c.directory_url, ca_bundle=a2c.ca_bundle,
        dns_resolver=a2c.dns_resolver, email=EMAIL, timeout=8,
        solver=WrongKeyAuthorization(port=a2c.http_port, address=a2c.http_address))
    failed = fatal(report)
    assert (failed.name, failed.cause, failed.confidence) == ("ValidationFailed", CLIENT, HIGH)
    seen = problem(report, "SelfCheckWrongContent")
    assert (seen.severity, seen.identifier) == (Severity.WARNING, name)


def test_failed_validation_leaves_no_false_cleanup_warning(a2c: LocalA2C, name: str) -> None:
    """Cleanup tells the truth in the other direction too: no warning for nothing."""
    report = acmedryrun.dry_run(
        [name], directory=a2c.directory_url, ca_bundle=a2c.ca_bundle,
        dns_resolver=a2c.dns_resolver, email=EMAIL, preflight=False, timeout=8,
        solver=WrongKeyAuthorization(port=a2c.http_port, address=a2c.http_address))
    assert fatal(report).name == "ValidationFailed"
    assert [p.name for p in report.problems if p.step is Step.CLEANUP] == []
    assert step_status(report, Step.CLEANUP) is StepStatus.OK


# ------------------------------------------------ 13. a profile staging does not offer


def test_cli_profile_the_directory_does_not_list_is_exit_1_with_no_order(
    pebble: LocalPebble, name: str
) -> None:
    """``--profile shortlived`` against a directory listing only ``classic``: a client
    problem naming both, exit 1, and no newOrder sent."""
    with proxy(pebble, Fault("directory", "patch",
                             patch={"meta": {"profiles": {"classic": "90 days"}}})) as px:
        proc = cli("check", "-d", name, "--directory", px.directory_url, "--ca-bundle",
                   px.ca_bundle, "--http-01-port", str(pebble.http_port),
                   "--http-01-address", "127.0.0.1", "--dns-resolver", pebble.dns_resolver,
                   "--profile", "shortlived", "--timeout", "20", "--json")
        orders = px.hits("order")
    assert proc.returncode == 1, proc.stderr
    data = report_json(proc)
    (refused,) = [p for p in data["problems"] if p["severity"] == "fatal"]
    assert (refused["name"], refused["cause"], refused["step"]) == (
        "ProfileNotOffered", "client", "directory")
    assert "'shortlived'" in refused["detail"]
    assert "classic" in refused["detail"]
    assert orders == 0
    causes_hold(data)


# ---------------------------------------------------------- 14. single-label names


def test_single_label_name_at_an_unknown_directory_is_a_warning(
    pebble: LocalPebble
) -> None:
    """Pebble (an unknown URL: maybe an internal CA) issues ``nodot``: a warning only."""
    label = f"nodot{os.getpid()}"
    report = acmedryrun.dry_run([label], directory=pebble.directory_url,
                                ca_bundle=pebble.ca_bundle, solver=http_solver(pebble),
                                dns_resolver=pebble.dns_resolver, timeout=20)
    warning = problem(report, "NotFullyQualified")
    assert (warning.severity, warning.cause) == (Severity.WARNING, CLIENT)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None


_NO_WAY_OUT = '''\
"""Test guard: refuse any connection or name look-up that would leave loopback."""
import ipaddress, socket

open(MARKER + ".loaded", "w").close()

_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo

def _loopback(host):
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"

def connect(self, address):
    if isinstance(address, tuple) and not _loopback(address[0]):
        open(MARKER, "a").write(f"connect {address!r}\\n")
        raise OSError("test guard: no traffic beyond loopback")
    return _connect(self, address)

def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _loopback(host):
        open(MARKER, "a").write(f"getaddrinfo {host!r}\\n")
        raise socket.gaierror(socket.EAI_NONAME, "test guard: no look-ups beyond loopback")
    return _getaddrinfo(host, *args, **kwargs)

socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
'''


def test_single_label_name_at_a_known_ca_is_fatal_with_no_request(tmp_path: Path) -> None:
    """``--directory letsencrypt-staging`` with ``nodot``: production refuses it, so the
    run stops in preflight: exit 1, ``requests.total == 0``.  The CLI runs as a
    subprocess with its resolver on a local DNS server; a guard on its sockets (which
    would only fire, and fail the test, if a request were made) keeps every packet on
    this machine."""
    guard = tmp_path / "guard"
    guard.mkdir()
    marker = tmp_path / "attempts.txt"
    (guard / "sitecustomize.py").write_text(f"MARKER = {str(marker)!r}\n" + _NO_WAY_OUT)
    webroot = tmp_path / "www"
    webroot.mkdir()
    with TinyDns({}) as dns:
        proc = cli("check", "-d", "nodot", "--directory", "letsencrypt-staging",
                   "--webroot", str(webroot), "--timeout", "20", "--json",
                   env={"ACMEDRYRUN_DNS_RESOLVER": dns.address,
                        "PYTHONPATH": os.pathsep.join(
                            [str(guard), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert proc.returncode == 1, proc.stderr
    data = report_json(proc)
    (refused,) = [p for p in data["problems"] if p["severity"] == "fatal"]
    assert (refused["name"], refused["cause"], refused["step"]) == (
        "NotFullyQualified", "client", "preflight")
    assert data["requests"]["total"] == 0
    assert Path(f"{marker}.loaded").exists(), "the guard was active in the subprocess"
    assert not marker.exists(), marker.read_text()
    assert data["production_twin"]["compared"] is False
    causes_hold(data)
