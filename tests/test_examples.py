"""Every example in examples/ runs, as a user would run it, against a local Pebble.

Each example is a real subprocess; the Pebble's URL, trust anchor, http-01 port
and DNS reach it through its documented arguments or environment variables.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from acmedryrun.testing import LocalPebble
from acmedryrun.testing._faultproxy import FaultProxy, parse_fault

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(argv: Sequence[str], *, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=EXAMPLES.parent, check=False)


@pytest.fixture
def staging_down(pebble: LocalPebble) -> Iterator[FaultProxy]:
    """A proxy in front of the Pebble that answers every newOrder with 503.

    Its Retry-After lies beyond any run's deadline, so the run gives up at once.
    """
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                    faults=[parse_fault("order:status:503,retry_after=600")]) as proxy:
        yield proxy


# ------------------------------------------------------------------------------ dry_run_basic.py


def basic_env(p: LocalPebble, directory: str | None = None,
              ca_bundle: str | None = None) -> dict[str, str]:
    return {"ACMEDRYRUN_DIRECTORY": directory or p.directory_url,
            "ACMEDRYRUN_CA_BUNDLE": ca_bundle or p.ca_bundle,
            "ACMEDRYRUN_HTTP_PORT": str(p.http_port), "ACMEDRYRUN_HTTP_ADDRESS": "127.0.0.1",
            "ACMEDRYRUN_DNS_RESOLVER": p.dns_resolver}


def test_dry_run_basic_prints_likely_success_and_exits_0(
    pebble: LocalPebble, unique_name: str
) -> None:
    proc = run_example([sys.executable, str(EXAMPLES / "dry_run_basic.py"), unique_name],
                       env=basic_env(pebble))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("verdict: likely_success (production likely to succeed: yes)")


def test_dry_run_basic_names_the_client_problem_and_exits_1(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])
    proc = run_example([sys.executable, str(EXAMPLES / "dry_run_basic.py"), unique_name],
                       env=basic_env(pebble))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verdict: client_error (production likely to succeed: no)" in proc.stdout
    assert "ValidationConnection (client's fault)" in proc.stdout
    assert "hint: " in proc.stdout


def test_dry_run_basic_exits_2_when_staging_is_down(
    pebble: LocalPebble, staging_down: FaultProxy, unique_name: str
) -> None:
    env = basic_env(pebble, staging_down.directory_url, staging_down.ca_bundle)
    proc = run_example([sys.executable, str(EXAMPLES / "dry_run_basic.py"), unique_name],
                       env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "verdict: staging_unstable (production likely to succeed: cannot tell)" in proc.stdout


def test_dry_run_basic_refuses_production_with_exit_64(unique_name: str) -> None:
    proc = run_example([sys.executable, str(EXAMPLES / "dry_run_basic.py"), unique_name],
                       env={"ACMEDRYRUN_DIRECTORY": "letsencrypt"})
    assert proc.returncode == 64
    assert "production" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------ client_backend.py


def tinyacme(p: LocalPebble, *names: str, directory: str | None = None,
             ca_bundle: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(EXAMPLES / "client_backend.py"), "--dry-run",
            "--server", directory or p.directory_url, "--ca-bundle", ca_bundle or p.ca_bundle,
            "--http-port", str(p.http_port), "--listen", "127.0.0.1",
            "--dns-resolver", p.dns_resolver, "--timeout", "30"]
    for name in names:
        argv += ["-d", name]
    return run_example(argv)


def test_client_backend_serves_the_challenge_itself_and_exits_0(
    pebble: LocalPebble, unique_name: str
) -> None:
    proc = tinyacme(pebble, unique_name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("The dry run was successful")
    assert f"tinyacme: served the challenge for {unique_name}" in proc.stderr, \
        "the custom solver's own web server answered the CA"
    assert "tinyacme: certificate: ok" in proc.stderr


def test_client_backend_blames_the_setup_and_exits_1(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])
    proc = tinyacme(pebble, unique_name)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "because of your setup" in proc.stdout
    assert f"- ValidationConnection for {unique_name}:" in proc.stdout
    assert "what to do: " in proc.stdout


def test_client_backend_says_try_later_and_exits_2_when_staging_is_down(
    pebble: LocalPebble, staging_down: FaultProxy, unique_name: str
) -> None:
    proc = tinyacme(pebble, unique_name, directory=staging_down.directory_url,
                    ca_bundle=staging_down.ca_bundle)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Nothing to fix on your side: try again later." in proc.stdout
    assert "what to do:" not in proc.stdout, "no advice to fix what is not broken"


def test_client_backend_usage_errors_exit_64_not_argparses_2() -> None:
    script = str(EXAMPLES / "client_backend.py")
    assert run_example([sys.executable, script, "--dry-run"]).returncode == 64  # no -d
    assert run_example([sys.executable, script, "-d", "www.example.com"]).returncode == 64


def test_client_backend_reports_its_busy_port_with_exit_64() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_example([sys.executable, str(EXAMPLES / "client_backend.py"), "--dry-run",
                            "-d", "www.example.com", "--listen", "127.0.0.1",
                            "--http-port", str(port)])
    assert proc.returncode == 64
    assert f"cannot listen on port {port}" in proc.stderr


# ------------------------------------------------------------------------------ setup_check.sh


def setup_check(p: LocalPebble, *names: str, directory: str | None = None,
                ca_bundle: str | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(EXAMPLES / "setup_check.sh"), "--directory", directory or p.directory_url,
            "--ca-bundle", ca_bundle or p.ca_bundle, "--http-01-port", str(p.http_port),
            "--http-01-address", "127.0.0.1", "--dns-resolver", p.dns_resolver,
            "--timeout", "30"]
    for name in names:
        argv += ["-d", name]
    return run_example(argv, env={"ACMEDRYRUN": f"{sys.executable} -m acmedryrun",
                                  "PYTHON": sys.executable, **(env or {})})


def test_setup_check_proceeds_on_likely_success(pebble: LocalPebble, unique_name: str) -> None:
    proc = setup_check(pebble, unique_name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "setup-check: OK" in proc.stdout


def test_setup_check_fails_the_pipeline_naming_the_problems(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])
    proc = setup_check(pebble, unique_name)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "setup-check: FAILED" in proc.stdout
    assert f"  ValidationConnection [{unique_name}]: " in proc.stdout


def test_setup_check_retries_an_unstable_staging_then_skips_with_a_warning(
    pebble: LocalPebble, staging_down: FaultProxy, unique_name: str
) -> None:
    proc = setup_check(pebble, unique_name, directory=staging_down.directory_url,
                       ca_bundle=staging_down.ca_bundle,
                       env={"SETUP_CHECK_RETRIES": "1", "SETUP_CHECK_DELAY": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attempt 2 of 2" in proc.stderr
    assert "WARNING, staging stayed unstable" in proc.stderr
    assert "skipping the certificate check" in proc.stdout
    assert staging_down.hits("order") == 2, "one run per attempt"


def test_setup_check_strict_mode_exits_2_on_unstable_staging(
    pebble: LocalPebble, staging_down: FaultProxy, unique_name: str
) -> None:
    proc = setup_check(pebble, unique_name, directory=staging_down.directory_url,
                       ca_bundle=staging_down.ca_bundle,
                       env={"SETUP_CHECK_RETRIES": "0", "SETUP_CHECK_STRICT": "1"})
    assert proc.returncode == 2, proc.stdout + proc.stderr


def test_setup_check_passes_a_usage_error_through_as_64(pebble: LocalPebble) -> None:
    proc = setup_check(pebble, "www.example.com", directory="letsencrypt")
    assert proc.returncode == 64, proc.stdout + proc.stderr
    assert "acmedryrun itself failed (exit 64)" in proc.stderr


# ------------------------------------------------------------------------ pytest_fixture_test.py


def test_pytest_fixture_example_passes_with_the_plugin() -> None:
    # Autoload off: with the pytest11 entry point installed too, pluggy would
    # refuse the module registered a second time under its module name.
    proc = run_example(
        [sys.executable, "-m", "pytest", "-p", "acmedryrun.testing.pytest_plugin",
         "-p", "no:cacheprovider", "-q", str(EXAMPLES / "pytest_fixture_test.py")],
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout


# ------------------------------------------------------------------------------ batch_check.py


def test_batch_check_sorts_customers_into_fine_and_to_fix(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    names = [f"customer{i}.batchex.example.com" for i in range(12)]
    pebble.add_a(names[3], ["127.0.0.2"])
    path = tmp_path / "names.txt"
    path.write_text("# customers\n" + "\n".join(names) + "\nbad.example.com colour=blue\n")
    proc = run_example([sys.executable, str(EXAMPLES / "batch_check.py"), str(path)],
                       env=basic_env(pebble))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{names[3]}: client_error - ValidationConnection" in proc.stdout
    assert "12 checked: 11 fine, 1 to fix on the customer's side, 0 to retry" in proc.stdout
    assert "skipped: unknown option 'colour'" in proc.stderr


def test_batch_check_with_a_missing_file_is_exit_64(tmp_path: Path) -> None:
    proc = run_example([sys.executable, str(EXAMPLES / "batch_check.py"),
                        str(tmp_path / "nope.txt")])
    assert proc.returncode == 64
