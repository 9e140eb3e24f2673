"""certbot's manual-hook contract, exactly (issue 14, item 2).

The same recording hook runs under real certbot (``certonly --manual``) and under
acmedryrun (``check --dns-01-auth-hook`` / ``--http-01-auth-hook``) against one
Pebble; what each hook saw must be the same, challenge type by challenge type.
The hook branches on ``CERTBOT_TOKEN`` like real public hooks do, so a stray
token in a dns-01 run sends it down the http-01 branch and the run fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from certbot_support import HOOKS, host_web_server, run_certbot
from conftest import cli, report_json

from acmedryrun.classify import SolverErrorKind
from acmedryrun.errors import UsageError
from acmedryrun.solvers import DNS01Hook, HTTP01Hook, SolverFailure
from acmedryrun.solvers._base import Challenge
from acmedryrun.testing import LocalPebble

COMPAT = HOOKS / "certbot-compat.sh"
WEB_ADDRESS = "127.0.0.2"  # the subscriber's web server; Pebble's http port on 127.0.0.1 stays free
B64URL = r"[A-Za-z0-9_-]+"


def records(env_dir: Path) -> list[tuple[str, dict[str, str]]]:
    """(phase, CERTBOT_* environment) of every hook call, in call order."""
    calls = (env_dir / "calls").read_text().split()
    out = []
    for path in calls:
        phase = Path(path).name.split("-", 1)[0]
        lines = Path(path).read_text().splitlines()
        out.append((phase, dict(line.split("=", 1) for line in lines)))
    return out


def normalized(calls: list[tuple[str, dict[str, str]]],
               challenge: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The calls, checked for certbot's rules, with what differs per run masked.

    The token and validation differ per run, and the order of the challenges is
    the order of the CA's authorizations, which Pebble shuffles: each run's
    ``CERTBOT_ALL_DOMAINS`` must list its own auth calls in call order and
    ``CERTBOT_REMAINING_CHALLENGES`` count down along it; then both are masked.
    """
    auths = [env for phase, env in calls if phase == "auth"]
    order = [env["CERTBOT_DOMAIN"] for env in auths]
    result = []
    for phase, seen in calls:
        env = dict(seen)
        assert env["CERTBOT_ALL_DOMAINS"] == env["CERTBOT_ALL_IDENTIFIERS"] == ",".join(order)
        assert env["CERTBOT_DOMAIN"] == env["CERTBOT_IDENTIFIER"]
        position = len(order) - 1 - int(env["CERTBOT_REMAINING_CHALLENGES"])
        assert order[position] == env["CERTBOT_DOMAIN"]
        if phase == "cleanup":
            auth = next(a for a in auths if a["CERTBOT_VALIDATION"] == env["CERTBOT_VALIDATION"])
            assert env == {**auth, "CERTBOT_AUTH_OUTPUT": env["CERTBOT_AUTH_OUTPUT"]}
            assert env["CERTBOT_AUTH_OUTPUT"] == \
                f"published {env['CERTBOT_DOMAIN']} {env['CERTBOT_REMAINING_CHALLENGES']}"
            env["CERTBOT_AUTH_OUTPUT"] = "published <domain> <remaining>"
        validation = env.pop("CERTBOT_VALIDATION")
        if challenge == "http-01":
            token = env.pop("CERTBOT_TOKEN")
            # RFC 8555 section 8.1: key authorization = token "." base64url(thumbprint)
            assert re.fullmatch(rf"{re.escape(token)}\.{B64URL}", validation), validation
            env["CERTBOT_TOKEN"] = "<token>"
            env["CERTBOT_VALIDATION"] = "<key authorization>"
        else:
            # RFC 8555 section 8.4: base64url(SHA-256(key authorization)), 43 characters
            assert re.fullmatch(r"[A-Za-z0-9_-]{43}", validation), validation
            env["CERTBOT_VALIDATION"] = "<txt value>"
        env["CERTBOT_ALL_DOMAINS"] = env["CERTBOT_ALL_IDENTIFIERS"] = ",".join(sorted(order))
        env["CERTBOT_REMAINING_CHALLENGES"] = "<n>"
        result.append((phase, sorted(env.items())))
    return sorted(result)


@pytest.mark.parametrize("challenge", ["dns-01", "http-01"])
def test_hooks_see_the_same_environment_under_certbot_and_acmedryrun(
    pebble: LocalPebble, tmp_path: Path, challenge: str
) -> None:
    """Same hook, same names, same Pebble: certbot's and acmedryrun's hooks see the same."""
    tag = f"c{os.getpid()}{challenge[:3]}"
    if challenge == "dns-01":
        names = [f"{tag}.compat.example.com", f"*.{tag}.compat.example.com",
                 f"w{tag}.compat.example.com"]
    else:
        names = [f"{tag}.compat.example.com", f"w{tag}.compat.example.com"]
    htdocs = tmp_path / "htdocs"
    htdocs.mkdir()
    roots = {n: htdocs for n in names}
    for name in names:
        pebble.add_a(name, [WEB_ADDRESS])
    auth, cleanup = f"{shlex.quote(str(COMPAT))} auth", f"{shlex.quote(str(COMPAT))} cleanup"
    seen: dict[str, list[tuple[str, dict[str, str]]]] = {}
    with host_web_server(WEB_ADDRESS, pebble.http_port, roots):
        for tool in ("certbot", "acmedryrun"):
            env_dir = tmp_path / tool
            env_dir.mkdir()
            env = {"HOOK_ENV_DIR": str(env_dir), "HOOK_WEBROOT": str(htdocs),
                   "CHALLTESTSRV_URL": pebble.challtestsrv_url}
            if tool == "certbot":
                proc = run_certbot(
                    pebble, tmp_path / "certbot-root", "certonly", "--manual",
                    "--preferred-challenges", challenge.split("-", maxsplit=1)[0],
                    "--manual-auth-hook", auth, "--manual-cleanup-hook", cleanup,
                    *[a for n in names for a in ("-d", n)], env=env)
                assert proc.returncode == 0, proc.stderr
            else:
                proc = cli("check", "--directory", pebble.directory_url, "--ca-bundle",
                           pebble.ca_bundle, "--dns-resolver", pebble.dns_resolver,
                           "--timeout", "60", "--json", f"--{challenge}-auth-hook", auth,
                           f"--{challenge}-cleanup-hook", cleanup,
                           *[a for n in names for a in ("-d", n)], env=env)
                assert proc.returncode == 0, proc.stderr
                assert report_json(proc)["verdict"] == "likely_success"
            seen[tool] = normalized(records(env_dir), challenge)
    assert seen["acmedryrun"] == seen["certbot"]
    # ... and what that is, spelled out: every auth hook before any cleanup hook, a
    # wildcard's base name, CERTBOT_TOKEN for http-01 only.
    calls = records(tmp_path / "acmedryrun")
    assert [phase for phase, _ in calls] == ["auth"] * len(names) + ["cleanup"] * len(names)
    base = sorted(n.removeprefix("*.") for n in names)
    assert sorted(env["CERTBOT_DOMAIN"] for phase, env in calls if phase == "auth") == base
    assert {phase: sorted(env) for phase, env in calls} == {
        "auth": sorted(["CERTBOT_ALL_DOMAINS", "CERTBOT_ALL_IDENTIFIERS", "CERTBOT_DOMAIN",
                        "CERTBOT_IDENTIFIER", "CERTBOT_REMAINING_CHALLENGES",
                        "CERTBOT_VALIDATION"] + (["CERTBOT_TOKEN"] if challenge == "http-01"
                                                 else [])),
        "cleanup": sorted(["CERTBOT_ALL_DOMAINS", "CERTBOT_ALL_IDENTIFIERS", "CERTBOT_AUTH_OUTPUT",
                           "CERTBOT_DOMAIN", "CERTBOT_IDENTIFIER",
                           "CERTBOT_REMAINING_CHALLENGES", "CERTBOT_VALIDATION"]
                          + (["CERTBOT_TOKEN"] if challenge == "http-01" else [])),
    }


# ------------------------------------------------------------------ failures quote the hook


def _challenge(ctype: str = "dns-01") -> Challenge:
    return Challenge(type=ctype, identifier="example.com", identifier_type="dns",
                     wildcard=False, token="tok", key_authorization="tok.thumb",
                     validation="txtvalue" if ctype == "dns-01" else "tok.thumb",
                     url="https://ca.example/chall/1")


def test_failing_hook_that_writes_only_to_stdout_is_quoted_in_the_detail() -> None:
    """A hook that reports on stdout only shows more than "exited 1"."""
    solver = DNS01Hook("echo 'provider: zone example.com not found'; exit 1")
    with pytest.raises(SolverFailure) as info:
        solver.perform(_challenge())
    assert info.value.kind is SolverErrorKind.HOOK_FAILED
    assert info.value.detail.endswith(
        "exited 1; stdout: provider: zone example.com not found")


def test_failing_hook_quotes_stderr_and_stdout_tails() -> None:
    solver = HTTP01Hook("printf 'out%s\\n' 1 2 3 4 5 6 7; echo bad >&2; exit 4")
    with pytest.raises(SolverFailure) as info:
        solver.perform(_challenge("http-01"))
    detail = info.value.detail
    assert "exited 4: bad; stdout: out3\nout4\nout5\nout6\nout7" in detail
    assert "out2" not in detail, "only the last 5 lines"


def test_timed_out_hook_keeps_its_still_waiting_lines(tmp_path: Path) -> None:
    """What a hook printed before it was killed for its time limit is in the detail."""
    solver = DNS01Hook("echo 'Still waiting for propagation of _acme-challenge.example.com';"
                       " echo 'retrying API' >&2; sleep 30", timeout=1)
    started = time.monotonic()
    with pytest.raises(SolverFailure) as info:
        solver.perform(_challenge())
    assert time.monotonic() - started < 10
    assert info.value.kind is SolverErrorKind.HOOK_TIMEOUT
    detail = info.value.detail
    assert "did not finish within 1 s" in detail
    assert "retrying API" in detail
    assert "stdout: Still waiting for propagation of _acme-challenge.example.com" in detail


def test_hook_timeout_through_the_cli_reports_the_output(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """End to end: exit 1, HookTimeout, and the hook's last words in the JSON report."""
    proc = cli("check", "-d", f"slow{os.getpid()}.compat.example.com", "--directory",
               pebble.directory_url, "--ca-bundle", pebble.ca_bundle, "--dns-resolver",
               pebble.dns_resolver, "--timeout", "3", "--json", "--dns-01-auth-hook",
               "echo Still waiting for DNS; sleep 30")
    assert proc.returncode == 1, proc.stderr
    problem = next(p for p in report_json(proc)["problems"] if p["severity"] == "fatal")
    assert problem["name"] in ("HookTimeout", "SolverDeadlineExceeded")
    assert problem["cause"] == "client"
    assert "Still waiting for DNS" in problem["detail"]


# ------------------------------------------------------------------ interpreter checked first


@pytest.fixture
def silent_ca() -> Iterator[tuple[str, socket.socket]]:
    """A "directory" that only listens: any request shows up as a pending connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.3)
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/dir", listener


def script(tmp_path: Path, first_line: str) -> Path:
    path = tmp_path / "hook.sh"
    path.write_text(f"{first_line}\necho hi\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("option", ["--dns-01-auth-hook", "--http-01-auth-hook",
                                    "--dns-01-cleanup-hook", "--http-01-cleanup-hook"])
def test_missing_interpreter_is_exit_64_before_any_request(
    tmp_path: Path, silent_ca: tuple[str, socket.socket], option: str
) -> None:
    url, listener = silent_ca
    hook = script(tmp_path, "#!/usr/bin/python9.9 -u")
    auth = option.replace("cleanup", "auth")
    args = ["check", "-d", "example.com", "--directory", url]
    args += [option, str(hook)] if option == auth else [auth, "true", option, str(hook)]
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 64, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"{option}: '{hook}' starts with '#!/usr/bin/python9.9 -u'" in proc.stderr
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing was sent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hook.sh"]  # nothing written


def test_env_interpreter_not_on_path_is_a_usage_error(tmp_path: Path) -> None:
    hook = script(tmp_path, "#!/usr/bin/env -S no-such-interpreter-xyz --flag")
    with pytest.raises(UsageError, match="'no-such-interpreter-xyz' is not an executable"):
        HTTP01Hook(str(hook))


@pytest.mark.parametrize("first_line", ["#!/bin/sh", "#! /bin/sh -e", "#!/usr/bin/env sh",
                                        "# no interpreter line"])
def test_scripts_with_a_present_interpreter_pass(tmp_path: Path, first_line: str) -> None:
    HTTP01Hook(str(script(tmp_path, first_line)))


def test_interpreter_removed_after_construction_is_caught_at_open(tmp_path: Path) -> None:
    interpreter = tmp_path / "myshell"
    interpreter.symlink_to("/bin/sh")
    hook = script(tmp_path, f"#!{interpreter}")
    solver = DNS01Hook(str(hook))
    interpreter.unlink()
    with pytest.raises(UsageError, match="is not an executable file"):
        solver.open()


# ------------------------------------------------------------------ http-01 hooks end to end


def test_http01_hook_that_serves_nothing_is_client_error_from_the_ca(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    name = f"nothing{os.getpid()}.compat.example.com"
    log = tmp_path / "log"
    proc = cli("check", "-d", name, "--directory", pebble.directory_url, "--ca-bundle",
               pebble.ca_bundle, "--dns-resolver", pebble.dns_resolver, "--timeout", "60",
               "--json", "--http-01-auth-hook", f"echo $CERTBOT_TOKEN >> {log}",
               "--http-01-cleanup-hook", f"echo cleanup $CERTBOT_AUTH_OUTPUT >> {log}")
    assert proc.returncode == 1, proc.stderr
    report = report_json(proc)
    fatal = next(p for p in report["problems"] if p["severity"] == "fatal")
    assert fatal["cause"] == "client"
    assert fatal["step"] == "challenge"
    token, cleanup = log.read_text().splitlines()
    assert re.fullmatch(B64URL, token)
    assert cleanup == "cleanup"  # the auth hook printed nothing to stdout


def test_http01_cleanup_hook_needs_the_auth_hook() -> None:
    proc = cli("check", "-d", "example.com", "--http-01-cleanup-hook", "true")
    assert proc.returncode == 64
    assert "--http-01-cleanup-hook needs --http-01-auth-hook" in proc.stderr


def test_http01_hook_and_webroot_exclude_each_other(tmp_path: Path) -> None:
    proc = cli("check", "-d", "example.com", "--webroot", str(tmp_path),
               "--http-01-auth-hook", "true")
    assert proc.returncode == 64
    assert "exclude each other" in proc.stderr


def test_http01_hook_batch_gets_a_fresh_solver_per_run(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """Hook solvers keep per-run state: batch builds one per run (no shared instance)."""
    names = [f"b{i}x{os.getpid()}.compat.example.com" for i in range(3)]
    htdocs = tmp_path / "htdocs"
    for name in names:
        pebble.add_a(name, [WEB_ADDRESS])
    batch = tmp_path / "names.txt"
    batch.write_text("\n".join(names) + "\n")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    hook = shlex.quote(str(COMPAT))
    with host_web_server(WEB_ADDRESS, pebble.http_port, dict.fromkeys(names, htdocs)):
        proc = cli("batch", str(batch), "--directory", pebble.directory_url, "--ca-bundle",
                   pebble.ca_bundle, "--dns-resolver", pebble.dns_resolver, "--timeout", "60",
                   "--http-01-auth-hook", f"{hook} auth", "--http-01-cleanup-hook",
                   f"{hook} cleanup", "--concurrency", "3",
                   env={"HOOK_ENV_DIR": str(env_dir), "HOOK_WEBROOT": str(htdocs)})
    assert proc.returncode == 0, proc.stderr
    verdicts = [json.loads(line)["verdict"] for line in proc.stdout.splitlines()]
    assert verdicts == ["likely_success"] * 3
    calls = records(env_dir)
    # Each run is its own certbot run: one challenge, nothing remaining, its own name only.
    assert sorted(env["CERTBOT_ALL_DOMAINS"] for phase, env in calls if phase == "auth") == \
        sorted(names)
    assert {env["CERTBOT_REMAINING_CHALLENGES"] for _, env in calls} == {"0"}
