"""A hostile or broken CA, one named case per class of issue 12, through a real Pebble.

Each CA case runs one in-process ``dry_run`` through a `HostileProxy` that applies
one mutation to every request of one endpoint, and asserts every invariant of
:mod:`hostile.invariants` (no exception, deadline + 2 s, no false
``likely_success``, never ``client_error`` for a CA fault, no production contact,
a valid JSON report without request signatures, bounded memory).  The user-input
cases run the real CLI in a subprocess under the same audit hook and expect exit
64, one line, zero requests.

Every case here failed on the main of issue 12 (exit 70, a false success, a blown
deadline, a request aimed at production, a broken report); each now holds.  A case
that ever needs to be marked again carries ``today=`` (the strict-xfail reason).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostile import netguard
from hostile.invariants import (
    DEADLINE_SLACK,
    DEFAULT_TIMEOUT,
    InvariantViolated,
    assert_holds,
    run_case,
    unique_name,
)
from hostile.mutations import by_name
from hostile.proxy import TlsMaterial

from acmedryrun.solvers import DNS01Hook
from acmedryrun.testing import LocalPebble

HOOKS = Path(__file__).parent / "hooks"
LAUNCH = Path(__file__).parent / "hostile" / "launch.py"
TIMEOUT = DEFAULT_TIMEOUT


@pytest.fixture(scope="module")
def upstream() -> Iterator[LocalPebble]:
    """One Pebble for the module.  ``always_valid``: Pebble 2.4.0 deadlocks (every later
    newAccount/newOrder hangs) when an authorization is deactivated while a failing
    validation of it is still running, which runs that stop early provoke."""
    with LocalPebble(always_valid=True) as p:
        yield p


@pytest.fixture(scope="module")
def tls() -> Iterator[TlsMaterial]:
    with TlsMaterial() as material:
        yield material


@dataclass(frozen=True, slots=True)
class Case:
    """One named CA misbehaviour: ``mutation`` on every request of ``endpoint``.

    ``today``, when set, is what happens instead (a strict-xfail reason); None: it holds.
    """

    id: str
    mutation: str
    endpoint: str
    today: str | None = None


def params(cases: list[Case]) -> list[Any]:
    """The cases as pytest params, strict-xfailed where ``today`` says they fail."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(
        strict=True, raises=InvariantViolated, reason=c.today)] if c.today else [])
        for c in cases]


def check(upstream: LocalPebble, tls: TlsMaterial, case: Case) -> None:
    assert_holds(run_case(upstream, by_name(case.mutation), case.endpoint, tls=tls,
                          timeout=TIMEOUT))


# -- the harness itself ----------------------------------------------------------------------

def test_the_proxy_is_transparent_without_a_mutation(upstream: LocalPebble,
                                                     tls: TlsMaterial) -> None:
    """Baseline: through the proxy, a healthy run succeeds with every invariant holding."""
    outcome = run_case(upstream, None, None, tls=tls, timeout=TIMEOUT)
    assert outcome.report is not None, outcome.describe()
    assert outcome.report.verdict.value == "likely_success", outcome.describe()
    assert not outcome.violations, outcome.describe()
    assert {s.endpoint for s in outcome.proxy.served} >= {
        "directory", "nonce", "account", "order", "authz", "challenge", "finalize",
        "order_poll", "certificate", "deactivate"}, "every endpoint is classified"
    assert outcome.net.events, "the recording saw the run's (loopback) traffic"


def test_the_network_guard_blocks_and_records_production_in_any_spelling() -> None:
    """The audit hook turns a production connection into a local DNS failure, and says so."""
    import requests

    spellings = ["https://acme-v02.api.letsencrypt.org/directory",
                 "https://ACME-V02.api.letsencrypt.org./directory",
                 "https://acme-v02.api.letsencrypt.org\\@127.0.0.1:9/directory",
                 "https://172.65.32.248/directory"]
    with netguard.record() as rec:
        for url in spellings:
            with pytest.raises(requests.ConnectionError):
                requests.get(url, timeout=2)
    assert len(rec.production) == len(spellings), rec.contacts
    assert all(not netguard.is_loopback(c.host) for c in rec.contacts)


# -- issue 12, bullet 1: "Exit 70 from CA data" ----------------------------------------------

CRASHES = [
    Case("deep-json-directory", "structure.deep_json", "directory"),
    Case("deep-json-order", "structure.deep_json_object", "order"),
    Case("deep-json-problem-document", "problems.deep_json", "account"),
    Case("deep-json-reference-directory", "structure.deep_json", "reference"),
    Case("replay-nonce-not-base64url", "encodings.nonce_not_base64url", "nonce"),
    Case("retry-after-superscript-two-on-503", "encodings.retry_after_superscript_two_on_503",
         "order"),
    Case("retry-after-superscript-two-on-poll", "encodings.retry_after_superscript_two",
         "order_poll"),
    Case("empty-label-in-directory-link", "headers.link_empty_label", "directory"),
    Case("long-label-in-order-location", "headers.link_long_label", "order"),
    Case("redirect-to-malformed-url", "redirects.302_malformed_url", "order"),
    Case("subproblems-not-a-list", "problems.subproblems_number", "order"),
    Case("embedded-error-subproblems-not-a-list", "types.error_subproblems_number", "authz"),
    Case("subproblem-identifier-not-a-string", "problems.subproblem_identifier_number",
         "finalize"),
    Case("problem-identifier-not-a-string", "problems.identifier_value_number", "order"),
    Case("challenge-token-not-a-string", "types.token_number", "authz"),
    Case("leaf-duplicate-extension", "certificates.leaf_duplicate_extension", "certificate"),
    Case("leaf-unknown-key-algorithm", "certificates.leaf_unknown_key_algorithm",
         "certificate"),
]


@pytest.mark.parametrize("case", params(CRASHES))
def test_ca_data_never_crashes_the_run(upstream: LocalPebble, tls: TlsMaterial,
                                       case: Case) -> None:
    """Malformed CA data is a staging problem in the report, never an exception (exit 70)."""
    check(upstream, tls, case)


# -- bullet 2: "A failure reported as likely_success" ----------------------------------------

FALSE_SUCCESS = [
    Case("chain-last-block-cut", "certificates.last_block_cut", "certificate"),
    Case("chain-extra-non-certificate-block", "certificates.extra_non_certificate_block",
         "certificate"),
    Case("chain-invalid-utf8", "certificates.invalid_utf8", "certificate"),
    Case("huge-certificate-body", "sizes.huge_body", "certificate"),
    Case("huge-directory-body", "sizes.huge_body", "directory"),
    Case("huge-authorization-body", "sizes.huge_body", "authz"),
    # Controls that hold today: the chain check and the oracle see these.
    Case("leaf-wrong-names", "certificates.leaf_wrong_names", "certificate"),
    Case("leaf-ed448-key", "certificates.leaf_ed448_key", "certificate"),
    Case("chain-not-signed-by-next", "certificates.chain_not_signed_by_next", "certificate"),
    Case("huge-header", "sizes.huge_header", "order"),
]


@pytest.mark.parametrize("case", params(FALSE_SUCCESS))
def test_no_likely_success_without_the_issued_chain(upstream: LocalPebble, tls: TlsMaterial,
                                                    case: Case) -> None:
    """Only the chain the CA issued, for exactly the ordered names, is a success."""
    check(upstream, tls, case)


# -- bullet 3: "The deadline blown" ----------------------------------------------------------

SLOW = [
    Case("trickled-headers", "slowness.trickle_head", "order"),
    Case("trickled-body", "slowness.trickle_body", "authz"),
    Case("trickled-reference-directory", "slowness.trickle_body", "reference"),
    # Control: a stall is cut by the per-read timeout today already.
    Case("stall-after-headers", "slowness.stall_after_headers", "finalize"),
]


@pytest.mark.parametrize("case", params(SLOW))
def test_a_slow_ca_cannot_stretch_the_deadline(upstream: LocalPebble, tls: TlsMaterial,
                                               case: Case) -> None:
    """One wall-clock deadline: a CA that trickles bytes is cut off at it."""
    check(upstream, tls, case)


def test_cleanup_hooks_that_ignore_sigterm_share_one_budget(
        upstream: LocalPebble, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two names whose cleanup hook ignores SIGTERM: the run still ends by deadline + 2 s."""
    monkeypatch.setenv("CHALLTESTSRV_URL", upstream.challtestsrv_url)
    solver = DNS01Hook(str(HOOKS / "challtestsrv-auth.sh"), "trap '' TERM; sleep 30")
    outcome = run_case(upstream, None, None, names=[unique_name(), unique_name()],
                       solver=solver, timeout=TIMEOUT)
    assert outcome.report is not None, outcome.describe()
    assert any(s.endpoint == "certificate" for s in outcome.proxy.served), \
        "the run got as far as cleanup"
    assert_holds(outcome)


def test_ctrl_c_on_a_batch_kills_running_hooks_at_once(upstream: LocalPebble,
                                                       tmp_path: Path) -> None:
    """SIGINT to a batch whose four auth hooks hang (ignoring SIGTERM): exit 130 within 2 s,
    and no hook process survives."""
    started = tmp_path / "started"
    started.mkdir()
    names = tmp_path / "names.txt"
    names.write_text("".join(f"{unique_name()}\n" for _ in range(4)))
    hook = f"trap '' TERM INT; echo $$ > {started}/$CERTBOT_DOMAIN; sleep 60"
    proc = subprocess.Popen(
        [sys.executable, "-m", "acmedryrun", "batch", str(names), "--directory",
         upstream.directory_url, "--ca-bundle", upstream.ca_bundle, "--no-preflight",
         "--dns-01-auth-hook", hook, "--concurrency", "4", "--timeout", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    groups: list[int] = []
    try:
        until = time.monotonic() + 20
        while len(list(started.iterdir())) < 4 and time.monotonic() < until:
            time.sleep(0.05)
        groups = [int(p.read_text()) for p in started.iterdir()]
        assert len(groups) == 4, "every run's auth hook started"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    alive = [g for g in groups if _group_alive(g)]
    for group in alive:  # ours (the batch started them): leave nothing behind
        os.killpg(group, signal.SIGKILL)
    problems = []
    if took > DEADLINE_SLACK:
        problems.append(f"exit {took:.1f} s after SIGINT")
    if proc.returncode != 130:
        problems.append(f"exit code {proc.returncode}")
    if alive:
        problems.append(f"{len(alive)} hook process group(s) still alive")
    if problems:
        raise InvariantViolated(f"{'; '.join(problems)}\n{stderr[-800:]}")


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group.

    A killed hook's orphaned children are reparented to PID 1, and this machine's
    PID 1 does not reap: their zombies linger in the group, dead all the same.
    """
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


# -- bullet 4: "Production reached without --allow-production" -------------------------------

PRODUCTION = [
    Case("307-from-new-account", "redirects.307_to_production", "account"),
    Case("308-from-new-order", "redirects.308_to_production", "order"),
    Case("302-from-new-nonce", "redirects.302_to_production", "nonce"),
    Case("308-to-http-from-new-account", "redirects.308_to_production_http", "account"),
    Case("307-to-backslash-userinfo-from-finalize", "redirects.307_backslash_userinfo",
         "finalize"),
    Case("order-location-at-production", "headers.link_production", "order"),
    Case("order-location-backslash-userinfo", "headers.link_backslash_userinfo", "order"),
    Case("directory-links-backslash-userinfo", "headers.link_backslash_userinfo",
         "directory"),
    Case("directory-links-percent-encoded-host", "headers.link_percent_encoded_host",
         "directory"),
    Case("directory-links-trailing-dot", "headers.link_trailing_dot", "directory"),
    Case("directory-links-uppercase", "headers.link_uppercase", "directory"),
    Case("directory-links-ip-literal", "headers.link_ip_literal", "directory"),
    Case("challenge-urls-at-production", "headers.link_production", "authz"),
    Case("certificate-url-at-production", "headers.link_production", "order_poll"),
]


def test_a_redirecting_directory_is_never_followed_and_is_the_users_url(
        upstream: LocalPebble, tls: TlsMaterial) -> None:
    """A directory URL the user typed that answers 301 (here towards production) is not
    followed: nothing reaches production, and the verdict names the user's URL
    (DirectoryRedirected, client): the fix is to use the URL it points to."""
    outcome = run_case(upstream, by_name("redirects.301_to_production"), "directory",
                       tls=tls, timeout=TIMEOUT)
    assert outcome.report is not None, outcome.describe()
    assert not outcome.net.production, outcome.describe()
    fatal = next(p for p in outcome.report.problems if p.severity.decisive)
    assert (fatal.name, fatal.cause.value if fatal.cause else None) == (
        "DirectoryRedirected", "client"), outcome.describe()
    assert "not followed" in fatal.detail
    assert [v for v in outcome.violations if "client_error" not in v] == [], \
        outcome.describe()


@pytest.mark.parametrize("case", params(PRODUCTION))
def test_no_ca_answer_can_steer_the_run_to_production(upstream: LocalPebble,
                                                      tls: TlsMaterial, case: Case) -> None:
    """No redirect is followed and no URL on a production host is requested, however spelt."""
    check(upstream, tls, case)


# -- "Smaller" ---------------------------------------------------------------------------------

SMALLER = [
    Case("retry-after-overflowing-float", "encodings.retry_after_four_hundred_nines_on_503",
         "order"),
    Case("embedded-error-status-infinity", "types.error_status_infinity", "authz"),
    Case("relative-account-location", "headers.link_relative", "account"),
    Case("problem-detail-echoes-the-jws", "problems.detail_echoes_request", "order"),
]


@pytest.mark.parametrize("case", params(SMALLER))
def test_smaller_ca_faults_keep_the_report_sound(upstream: LocalPebble, tls: TlsMaterial,
                                                 case: Case) -> None:
    """Valid JSON, no request signature in the report, a CA's bad URL is not client_error."""
    check(upstream, tls, case)


def launch(tmp_path: Path, *args: str, umask: str | None = None,
           timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The CLI in a subprocess under the audit hook: its result and its network log."""
    log = tmp_path / f"net-{time.monotonic_ns()}.json"
    extra = ["--umask", umask] if umask else []
    proc = subprocess.run([sys.executable, str(LAUNCH), "--net-log", str(log), *extra,
                           "--", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    net: dict[str, Any] = json.loads(log.read_text()) if log.exists() else {"events": None}
    return proc, net


def test_account_key_is_created_0600_under_umask_777(upstream: LocalPebble,
                                                     tmp_path: Path) -> None:
    """The account key file is the user's secret: mode 0600 whatever the umask."""
    key = tmp_path / "account.key"
    proc, net = launch(
        tmp_path, "check", "-d", unique_name(), "--directory", upstream.directory_url,
        "--ca-bundle", upstream.ca_bundle, "--http-01-port", str(upstream.http_port),
        "--http-01-address", "127.0.0.1", "--dns-resolver", upstream.dns_resolver,
        "--account-key", str(key), "--timeout", "20", umask="777")
    assert not net["contacts"], net["contacts"]
    assert key.exists(), proc.stderr
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode != 0o600:
        raise InvariantViolated(f"the account key was created mode {mode:04o} (exit "
                                f"{proc.returncode})")


# -- "Bad input": the user's own URLs get the same rules ---------------------------------------

LONG_LABEL = "a" * 64


@dataclass(frozen=True, slots=True)
class BadUrl:
    """A URL the user gives that must be refused before any request."""

    id: str
    option: str
    url: str
    today: str | None = None


BAD_URLS = [
    BadUrl("directory-backslash-userinfo", "--directory",
           "https://acme-v02.api.letsencrypt.org\\@127.0.0.1:9/directory"),
    BadUrl("directory-backslashes", "--directory", "https:\\\\127.0.0.1:9\\directory"),
    BadUrl("directory-userinfo", "--directory", "https://user:pass@127.0.0.1:9/directory"),
    BadUrl("directory-control-character", "--directory", "https://127.0.0.1:9/dir\x01ectory"),
    BadUrl("directory-tab-in-host", "--directory", "https://127.0.\t0.1:9/directory"),
    BadUrl("directory-http-non-loopback", "--directory", "http://198.51.100.7/directory"),
    BadUrl("directory-empty-label", "--directory", "https://ca..example.org/directory"),
    BadUrl("directory-long-label", "--directory", f"https://{LONG_LABEL}.example.org/dir"),
    BadUrl("production-trailing-dot", "--directory",
           "https://acme-v02.api.letsencrypt.org./directory"),
    BadUrl("production-uppercase", "--directory",
           "https://ACME-V02.API.LETSENCRYPT.ORG/directory"),
    BadUrl("production-percent-encoded", "--directory",
           "https://acme%2Dv02.api.letsencrypt.org/directory"),
    BadUrl("production-double-slash-path", "--directory",
           "https://acme-v02.api.letsencrypt.org//directory"),
    BadUrl("production-fullwidth-dot", "--directory",
           "https://acme-v02.api.letsencrypt\u3002org/directory"),
    BadUrl("production-ip-literal", "--directory", "https://172.65.32.248/directory"),
    BadUrl("production-explicit-port", "--directory",
           "https://acme-v02.api.letsencrypt.org:443/directory"),
    BadUrl("reference-backslash-userinfo", "--reference-directory",
           "https://acme-v02.api.letsencrypt.org\\@127.0.0.1:9/directory"),
    BadUrl("reference-userinfo", "--reference-directory",
           "https://user:pass@127.0.0.1:9/directory"),
    BadUrl("reference-control-character", "--reference-directory",
           "https://127.0.0.1:9/dir\x01ectory"),
    BadUrl("reference-http-non-loopback", "--reference-directory",
           "http://198.51.100.7/directory"),
    BadUrl("reference-empty-label", "--reference-directory",
           "https://ca..example.org/directory"),
    BadUrl("reference-long-label", "--reference-directory",
           f"https://{LONG_LABEL}.example.org/directory"),
]


@pytest.mark.parametrize("bad", [pytest.param(b, id=b.id, marks=[pytest.mark.xfail(
    strict=True, raises=InvariantViolated, reason=b.today)] if b.today else [])
    for b in BAD_URLS])
def test_a_bad_or_production_url_from_the_user_is_exit_64_with_zero_requests(
        tmp_path: Path, bad: BadUrl) -> None:
    """Exit 64, one line naming the option, and not one network attempt (audit hook)."""
    args = ["check", "-d", "example.com", "--dns-01-auth-hook", "true", "--no-preflight",
            "--timeout", str(TIMEOUT)]
    if bad.option == "--directory":
        args += ["--directory", bad.url]
    else:
        args += ["--directory", "https://127.0.0.1:9/directory", bad.option, bad.url]
    proc, net = launch(tmp_path, *args)
    lines = proc.stderr.strip().splitlines()
    problems = []
    if proc.returncode != 64:
        problems.append(f"exit {proc.returncode}")
    if len(lines) != 1 or bad.option not in lines[0]:
        problems.append(f"{len(lines)} stderr line(s), not one naming {bad.option}")
    if net["events"]:
        first = net["events"][0]
        problems.append(f"{len(net['events'])} network attempt(s), the first "
                        f"{first[0]} {first[1]}:{first[2]}")
    if net["production"]:
        problems.append(f"{len(net['production'])} aimed at production")
    if problems:
        raise InvariantViolated(f"{'; '.join(problems)}; stderr: {proc.stderr[-600:]!r}")
