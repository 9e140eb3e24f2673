"""dns-01 solvers: certbot-compatible hooks and Python callables (RFC 8555 section 8.4).

Unit tests run the real hook scripts under ``tests/hooks/``; end-to-end tests
run complete dry runs against the suite's real Pebble, whose challtestsrv
serves the TXT records the hooks publish.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import acmedryrun
from acmedryrun import Verdict
from acmedryrun.classify import SolverErrorKind
from acmedryrun.errors import UsageError
from acmedryrun.report import Report
from acmedryrun.solvers._base import Challenge, Solver, SolverFailure
from acmedryrun.solvers.dns01 import (
    DNS01Callback,
    DNS01Hook,
    check_hook_command,
    redact_command,
    run_hook,
    wait_for_txt,
)
from acmedryrun.testing import LocalPebble

HOOKS = Path(__file__).parent / "hooks"
AUTH = str(HOOKS / "challtestsrv-auth.sh")
CLEANUP = str(HOOKS / "challtestsrv-cleanup.sh")


def challenge(name: str, token: str = "tok",  # noqa: S107 - an ACME token, not a secret
              *, wildcard: bool = False) -> Challenge:
    """A dns-01 challenge as the flow builds it (identifier = the base name)."""
    key_auth = f"{token}.thumbprint"
    digest = hashlib.sha256(key_auth.encode()).digest()
    return Challenge(type="dns-01", identifier=name, identifier_type="dns", wildcard=wildcard,
                     token=token, key_authorization=key_auth,
                     validation=base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), url=f"https://ca/chall/{token}")


def dry_run(p: LocalPebble, names: Sequence[str], solver: Solver, **kwargs: Any) -> Report:
    """One dry run against the local Pebble with a 60 s deadline."""
    kwargs.setdefault("timeout", 60)
    return acmedryrun.dry_run(list(names), directory=p.directory_url, ca_bundle=p.ca_bundle,
                              solver=solver, dns_resolver=p.dns_resolver, **kwargs)


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.fixture
def hook_env(monkeypatch: pytest.MonkeyPatch, pebble: LocalPebble, tmp_path: Path) -> Path:
    """CHALLTESTSRV_URL and HOOK_LOG for the hook scripts (they inherit our environment)."""
    log = tmp_path / "hooks.log"
    monkeypatch.setenv("CHALLTESTSRV_URL", pebble.challtestsrv_url)
    monkeypatch.setenv("HOOK_LOG", str(log))
    return log


# ------------------------------------------------------------------ hook environment


def test_hooks_get_certbots_manual_hook_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_ENV_DIR", str(tmp_path))
    monkeypatch.setenv("CERTBOT_AUTH_OUTPUT", "stale value from an outer certbot")
    script = shlex.quote(str(HOOKS / "record-env.sh"))
    solver = DNS01Hook(f"{script} auth", f"{script} cleanup")
    chs = [challenge("example.com", "t1", wildcard=True), challenge("example.com", "t2"),
           challenge("www.example.org", "t3")]
    solver.open()
    for ch in chs:
        solver.prepare(ch)
    for ch in chs:
        solver.perform(ch)
    for ch in chs:
        solver.cleanup(ch)
    solver.close()

    for remaining, ch in zip((2, 1, 0), chs, strict=True):
        auth = read_env(tmp_path / f"auth-{ch.validation}.env")
        assert auth == {  # no CERTBOT_TOKEN: certbot sets it for http-01 only
            "CERTBOT_DOMAIN": ch.identifier,  # the base name, no "*." (as certbot)
            "CERTBOT_IDENTIFIER": ch.identifier,
            "CERTBOT_VALIDATION": ch.validation,
            "CERTBOT_REMAINING_CHALLENGES": str(remaining),
            "CERTBOT_ALL_DOMAINS": "example.com,example.com,www.example.org",
            "CERTBOT_ALL_IDENTIFIERS": "example.com,example.com,www.example.org",
        }
        cleanup = read_env(tmp_path / f"cleanup-{ch.validation}.env")
        assert cleanup == {**auth, "CERTBOT_AUTH_OUTPUT": f"out-{ch.validation}"}


def test_hook_inherits_the_parent_environment(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_DNS_API_URL", "http://127.0.0.1:1")
    out = tmp_path / "seen"
    solver = DNS01Hook(f'echo "$MY_DNS_API_URL" > {shlex.quote(str(out))}')
    solver.perform(challenge("example.com"))
    assert out.read_text().strip() == "http://127.0.0.1:1"


def test_auth_hook_runs_through_the_shell_like_certbot(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    solver = DNS01Hook(f"X=1; test \"$X\" = 1 && echo shell > {shlex.quote(str(out))}")
    solver.perform(challenge("example.com"))
    assert out.read_text() == "shell\n"


# ------------------------------------------------------------------ hook failures


def test_auth_hook_exiting_1_is_hook_failed_with_the_stderr_tail() -> None:
    solver = DNS01Hook(str(HOOKS / "failing-auth.sh"))
    ch = challenge("example.com")
    solver.prepare(ch)
    with pytest.raises(SolverFailure) as info:
        solver.perform(ch)
    assert info.value.kind is SolverErrorKind.HOOK_FAILED
    detail = info.value.detail
    assert detail.startswith(f"auth hook '{HOOKS / 'failing-auth.sh'}' exited 1: ")
    assert detail.endswith("error: API token rejected for example.com")
    assert "line 4" in detail
    assert "line 3" not in detail, "only the last 5 lines of stderr"


def test_stderr_tail_is_capped_at_500_characters() -> None:
    solver = DNS01Hook("printf '%0900d\\n' 7 >&2; exit 3")
    with pytest.raises(SolverFailure) as info:
        solver.perform(challenge("example.com"))
    assert "exited 3: ..." in info.value.detail
    assert len(info.value.detail.split(": ", 1)[1]) <= 503


def test_hook_killed_by_a_signal_says_so() -> None:
    solver = DNS01Hook("kill -TERM $$")
    with pytest.raises(SolverFailure, match="was killed by SIGTERM") as info:
        solver.perform(challenge("example.com"))
    assert info.value.kind is SolverErrorKind.HOOK_FAILED


def test_hook_over_its_timeout_is_killed_with_its_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The shell waits on a background child: both must die, not just the shell.
    solver = DNS01Hook(f"sleep 60 & echo $! > {shlex.quote(str(pidfile))}; wait", timeout=1)
    started = time.monotonic()
    with pytest.raises(SolverFailure) as info:
        solver.perform(challenge("example.com"))
    elapsed = time.monotonic() - started
    assert info.value.kind is SolverErrorKind.HOOK_TIMEOUT
    assert "did not finish within 1 s" in info.value.detail
    assert elapsed < 5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the hook's child process was killed too"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not reaped by its (killed) parent yet.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_hook_leaving_a_daemon_behind_does_not_block_the_run(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    # The daemon keeps the hook's stdout/stderr open: with pipes, the wait would hang.
    result_started = time.monotonic()
    result = run_hook(f"sleep 30 & echo $! > {shlex.quote(str(pidfile))}; echo done",
                      dict(os.environ), timeout=20)
    try:
        assert time.monotonic() - result_started < 5
        assert result.returncode == 0
        assert result.stdout == "done\n"
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_failing_cleanup_hook_raises_solver_failure() -> None:
    solver = DNS01Hook("true", "echo gone wrong >&2; exit 2")
    ch = challenge("example.com")
    solver.prepare(ch)
    solver.perform(ch)
    with pytest.raises(SolverFailure, match="cleanup hook 'echo gone wrong >&2; exit 2' "
                                            "exited 2: gone wrong") as info:
        solver.cleanup(ch)
    assert info.value.kind is SolverErrorKind.HOOK_FAILED


def test_cleanup_hook_runs_after_a_failed_auth_hook_but_not_for_unperformed_challenges(
    tmp_path: Path,
) -> None:
    log = tmp_path / "cleanups"
    solver = DNS01Hook("exit 1", f"echo $CERTBOT_VALIDATION >> {shlex.quote(str(log))}")
    first, second = challenge("a.example.com", "t1"), challenge("b.example.com", "t2")
    solver.prepare(first)
    solver.prepare(second)
    with pytest.raises(SolverFailure):
        solver.perform(first)
    solver.cleanup(first)
    solver.cleanup(second)  # never performed: nothing to undo
    assert log.read_text() == f"{first.validation}\n"


def test_secret_assignments_in_the_hook_command_are_redacted() -> None:
    solver = DNS01Hook("API_TOKEN=s3cr3t false")
    with pytest.raises(SolverFailure) as info:
        solver.perform(challenge("example.com"))
    assert "s3cr3t" not in info.value.detail
    assert "auth hook 'API_TOKEN=*** false' exited 1" in info.value.detail
    assert "s3cr3t" not in solver.describe()
    assert redact_command("/bin/hook --zone x") == "/bin/hook --zone x"


# ------------------------------------------------------------------ hook validation


def test_hook_not_on_path_is_a_usage_error_naming_the_option() -> None:
    with pytest.raises(UsageError, match=r"^--dns-01-auth-hook: 'no-such-hook-xyz' is not an "
                                         r"executable found on PATH"):
        DNS01Hook("no-such-hook-xyz --flag")


def test_hook_file_without_execute_permission_is_a_usage_error(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(UsageError, match=r"^--dns-01-cleanup-hook: '.*hook.sh' is not an "
                                         r"executable: it exists but cannot be run"):
        DNS01Hook("true", str(script))


def test_missing_hook_path_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="is not an executable: no such file"):
        DNS01Hook("/nonexistent/dir/hook.sh")


def test_unparseable_or_empty_hook_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot parse"):
        DNS01Hook("'unbalanced")
    with pytest.raises(UsageError, match="no command given"):
        DNS01Hook("TOKEN=x")


def test_hook_program_is_found_after_assignments_and_builtins_pass() -> None:
    check_hook_command("ZONE=example.com sh -c 'exit 0'", "--dns-01-auth-hook")
    check_hook_command("true", "--dns-01-auth-hook")
    check_hook_command("cd /tmp && ./x", "--dns-01-auth-hook")


def test_hook_removed_after_construction_is_a_usage_error_at_open(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    solver = DNS01Hook(str(script))
    script.unlink()
    with pytest.raises(UsageError, match="--dns-01-auth-hook"):
        solver.open()


def test_dry_run_with_a_broken_hook_raises_usage_error_before_any_request(
    tmp_path: Path,
) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    solver = DNS01Hook(str(script))
    script.chmod(0o644)
    with socket.create_server(("127.0.0.1", 0)) as ca:
        ca.settimeout(0.3)
        url = f"https://127.0.0.1:{ca.getsockname()[1]}/dir"
        with pytest.raises(UsageError, match="--dns-01-auth-hook"):
            acmedryrun.dry_run(["example.com"], directory=url, solver=solver, timeout=10)
        with pytest.raises(TimeoutError):
            ca.accept()  # nobody connected to the "CA"


def test_bad_timeout_or_resolver_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="timeout"):
        DNS01Hook("true", timeout=0)
    with pytest.raises(UsageError, match="propagation_resolver"):
        DNS01Hook("true", propagation_resolver="dns.example.com")


# ------------------------------------------------------------------ callbacks


def test_callback_gets_record_name_and_value_and_clear_for_each_performed() -> None:
    calls: list[tuple[str, str, str]] = []
    solver = DNS01Callback(lambda n, v: calls.append(("set", n, v)),
                           lambda n, v: calls.append(("clear", n, v)))
    ch = challenge("example.com", wildcard=True)
    solver.prepare(ch)
    solver.perform(ch)
    solver.cleanup(ch)
    assert calls == [("set", "_acme-challenge.example.com", ch.validation),
                     ("clear", "_acme-challenge.example.com", ch.validation)]


def dns_provider_set(name: str, value: str) -> None:
    raise RuntimeError("provider API returned 403")


def test_callback_exception_is_hook_failed_naming_the_callable() -> None:
    solver = DNS01Callback(dns_provider_set, lambda n, v: None)
    with pytest.raises(SolverFailure) as info:
        solver.perform(challenge("example.com"))
    assert info.value.kind is SolverErrorKind.HOOK_FAILED
    assert info.value.detail == (
        "set_txt callable test_solvers_dns01.dns_provider_set raised RuntimeError:"
        " provider API returned 403")


def test_non_callable_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="set_txt is not callable"):
        DNS01Callback("nope", lambda n, v: None)  # type: ignore[arg-type]


# ------------------------------------------------------------------ propagation


def test_wait_for_txt_sees_a_record_published_later(pebble: LocalPebble,
                                                    unique_name: str) -> None:
    name = f"_acme-challenge.{unique_name}"
    timer = threading.Timer(0.7, pebble.set_txt, (name, "late-value"))
    timer.start()
    try:
        started = time.monotonic()
        assert wait_for_txt(name, "late-value", pebble.dns_resolver, 10, interval=0.2)
        assert time.monotonic() - started < 5
    finally:
        timer.join()
        pebble.clear_txt(name)


def test_wait_for_txt_gives_up_after_the_timeout(pebble: LocalPebble, unique_name: str) -> None:
    started = time.monotonic()
    assert not wait_for_txt(f"_acme-challenge.{unique_name}", "never", pebble.dns_resolver,
                            1.0, interval=0.2)
    assert 0.9 < time.monotonic() - started < 4


def test_propagation_wait_starts_after_the_last_challenge_so_batching_scripts_work(
    pebble: LocalPebble, unique_name: str
) -> None:
    """Like a hook that publishes everything when CERTBOT_REMAINING_CHALLENGES is 0."""
    batch: list[tuple[str, str]] = []

    def set_txt(name: str, value: str) -> None:
        batch.append((name, value))
        if len(batch) == 2:
            for n, v in batch:
                pebble.set_txt(n, v)

    solver = DNS01Callback(set_txt, lambda n, v: pebble.clear_txt(n),
                           propagation_resolver=pebble.dns_resolver, propagation_timeout=5)
    chs = [challenge(unique_name, "t1"), challenge(f"www.{unique_name}", "t2")]
    for ch in chs:
        solver.prepare(ch)
    for ch in chs:
        solver.perform(ch)  # the first must not wait for a record not yet published
    for ch in chs:
        solver.cleanup(ch)


def test_record_never_visible_fails_after_the_propagation_timeout(
    pebble: LocalPebble, unique_name: str
) -> None:
    solver = DNS01Hook("true", propagation_resolver=pebble.dns_resolver,
                       propagation_timeout=1)
    ch = challenge(unique_name)
    solver.prepare(ch)
    with pytest.raises(SolverFailure) as info:
        solver.perform(ch)
    assert info.value.kind is SolverErrorKind.OTHER
    assert info.value.detail == (
        f"TXT record _acme-challenge.{unique_name} with value {ch.validation!r} not visible"
        f" at resolver {pebble.dns_resolver} after 1 s")


# ------------------------------------------------------------------ end to end (Pebble)


def test_dns01_via_certbot_hooks_is_likely_success_and_cleans_up(
    pebble: LocalPebble, unique_name: str, hook_env: Path
) -> None:
    report = dry_run(pebble, [unique_name], DNS01Hook(AUTH, CLEANUP))
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.problems == ()
    lines = hook_env.read_text().splitlines()
    assert lines[0].startswith(f"auth {unique_name} ")
    assert lines[1].startswith(f"cleanup {unique_name} output=record-id-")
    assert not wait_for_txt(f"_acme-challenge.{unique_name}", lines[0].split()[2],
                            pebble.dns_resolver, 0.1), "the cleanup hook removed the record"


def test_auth_hook_exiting_1_is_client_error_with_hook_failed_naming_the_hook(
    pebble: LocalPebble, unique_name: str, hook_env: Path
) -> None:
    failing = str(HOOKS / "failing-auth.sh")
    report = dry_run(pebble, [unique_name], DNS01Hook(failing, CLEANUP))
    assert report.verdict is Verdict.CLIENT_ERROR
    [problem] = [p for p in report.problems if p.name == "HookFailed"]
    assert problem.cause.value == "client"
    assert problem.identifier == unique_name
    assert f"auth hook '{failing}' exited 1" in problem.detail
    assert "API token rejected" in problem.detail
    assert f"cleanup {unique_name}" in hook_env.read_text(), "cleanup hook still ran"


def test_txt_never_published_is_client_error_from_the_ca_and_cleanup_still_runs(
    pebble: LocalPebble, unique_name: str, hook_env: Path
) -> None:
    report = dry_run(pebble, [unique_name], DNS01Hook(str(HOOKS / "noop-auth.sh"), CLEANUP),
                     timeout=8)  # the TXT self-check waits half of it, then the CA decides
    assert report.verdict is Verdict.CLIENT_ERROR
    fatal = [p for p in report.problems if p.severity.decisive]
    assert fatal, report.problems
    assert fatal[0].acme_type == "urn:ietf:params:acme:error:unauthorized"
    assert "TXT" in fatal[0].detail
    assert hook_env.read_text().splitlines() == [
        f"noop-auth {unique_name}", f"cleanup {unique_name} output="]


def test_wildcard_and_its_base_name_in_one_order_are_likely_success(
    pebble: LocalPebble, unique_name: str, hook_env: Path
) -> None:
    names = [f"*.{unique_name}", unique_name]
    report = dry_run(pebble, names, DNS01Hook(AUTH, CLEANUP))
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert sorted(report.certificate.names) == sorted(names)
    auth_lines = [ln for ln in hook_env.read_text().splitlines() if ln.startswith("auth ")]
    assert len(auth_lines) == 2
    assert all(f"all={unique_name},{unique_name}" in ln for ln in auth_lines)
    assert sorted(ln.split()[3] for ln in auth_lines) == ["remaining=0", "remaining=1"]


def test_hook_timeout_is_client_error_hook_timeout(
    pebble: LocalPebble, unique_name: str
) -> None:
    report = dry_run(pebble, [unique_name], DNS01Hook("sleep 30", timeout=1))
    assert report.verdict is Verdict.CLIENT_ERROR
    assert any(p.name == "HookTimeout" for p in report.problems), report.problems


def test_dns01_callback_with_propagation_wait_is_likely_success(
    pebble: LocalPebble, unique_name: str
) -> None:
    solver = DNS01Callback(pebble.set_txt, lambda name, _value: pebble.clear_txt(name),
                           propagation_resolver=pebble.dns_resolver, propagation_timeout=10)
    report = dry_run(pebble, [unique_name, f"*.{unique_name}"], solver)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
