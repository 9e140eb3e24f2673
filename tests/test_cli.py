"""The CLI as a real subprocess: exit codes, JSON report, usage errors (CONTRACT.md)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli, cli_check, report_json

from acmedryrun.schema import validate_report
from acmedryrun.testing import LocalPebble

#: Every key CONTRACT.md promises in the JSON report.
REPORT_KEYS = {
    "schema_version", "verdict", "prod_likely_to_succeed", "confidence", "directory",
    "identifiers", "problems", "retries", "steps", "requests", "certificate",
    "staging_only_features", "duration_s",
}
PROBLEM_KEYS = {"name", "cause", "severity", "step", "identifier", "acme_type", "http_status",
                "detail", "hint"}


def test_check_success_exits_0_with_the_contracts_json(
    pebble: LocalPebble, unique_name: str
) -> None:
    proc = cli_check(pebble, unique_name)
    assert proc.returncode == 0, proc.stderr
    report = report_json(proc)
    assert set(report) >= REPORT_KEYS
    assert report["schema_version"] == 2
    assert report["verdict"] == "likely_success"
    assert report["prod_likely_to_succeed"] is True
    assert report["identifiers"] == [unique_name]
    assert report["requests"]["total"] > 0
    assert set(report["certificate"]) >= {"serial", "not_after", "chain_length", "names"}
    assert {s["step"] for s in report["steps"]} >= {"directory", "finalize", "certificate"}
    assert "verdict: likely_success" in proc.stderr, "human output goes to stderr"


def test_check_client_error_exits_1_and_names_the_problem(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])
    proc = cli_check(pebble, unique_name)
    assert proc.returncode == 1, proc.stderr
    report = report_json(proc)
    assert report["verdict"] == "client_error"
    problem = next(p for p in report["problems"] if p["severity"] == "fatal")
    assert set(problem) >= PROBLEM_KEYS
    assert problem["cause"] == "client"
    assert problem["name"] == "ValidationConnection"
    assert "hint:" in proc.stderr


def test_check_unreachable_ca_exits_2(unique_name: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli("check", "-d", unique_name, "--directory", f"https://127.0.0.1:{port}/dir",
               "--webroot", str(tmp_path), "--timeout", "3", "--no-preflight", "--json")
    assert proc.returncode == 2, proc.stderr
    assert report_json(proc)["verdict"] == "staging_unstable"


def test_python_dash_m_and_console_script_agree() -> None:
    import shutil
    import subprocess
    import sys

    script = shutil.which("acmedryrun", path=os.path.dirname(sys.executable))
    assert script, "the console script is installed beside the interpreter"
    via_script = subprocess.run([script, "--help"], capture_output=True, text=True,
                                check=False, timeout=30)
    via_module = cli("--help")
    assert via_script.returncode == via_module.returncode == 0
    assert via_script.stdout.replace("acmedryrun", "X") == \
        via_module.stdout.replace("acmedryrun", "X")
    assert "check" in via_script.stdout


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["check"], "-d"),
        (["check", "-d", ""], "-d"),
        (["check", "-d", "a.example", "--bogus"], "--bogus"),
        (["check", "-d", "a.example", "--directory", "no-such-alias"], "no-such-alias"),
        (["check", "-d", "a.example", "--timeout", "-1"], "--timeout"),
        (["check", "-d", "a.example", "--http-01-port", "70000"], "--http-01-port"),
        (["check", "-d", "a.example", "--key-type", "dsa"], "--key-type"),
        (["check", "-d", "a.example", "--webroot", "/nonexistent/webroot"], "--webroot"),
        (["check", "-d", "a.example", "--csr", "/nonexistent/csr.pem"], "--csr"),
        (["check", "-d", "a.example", "--account-key", "/nonexistent/dir/key.pem"],
         "--account-key"),
        (["check", "-d", "a.example", "--ca-bundle", "/nonexistent/ca.pem"], "--ca-bundle"),
        (["check", "-d", "a.example", "--directory", "letsencrypt"], "production"),
        (["check", "-d", "a b.example"], "-d"),
        (["check", "-d", "a.example.com", "--directory", "https://127.0.0.1:99999/dir"],
         "--directory"),
        (["check", "-d", "a.example.com", "--directory", "https://[::1/dir"], "--directory"),
        (["check", "-d", "a.example.com", "--reference-directory", "https://[::1/"],
         "--reference-directory"),
        (["check", "-d", "a.example.com", "--ca-bundle", "/etc/hostname"], "--ca-bundle"),
        (["check", "-d", "a.example.com", "--caa-identity", ""], "--caa-identity"),
        (["check", "-d", "a.example.com", "--dns-resolver", "dns.example:53"],
         "--dns-resolver"),
        (["frobnicate"], "frobnicate"),
        ([], "usage"),
    ],
)
def test_bad_input_is_one_line_and_exit_64(args: list[str], needle: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 64, (proc.stdout, proc.stderr)
    assert needle in proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_port_in_use_is_exit_64_before_any_request(busy_port: int) -> None:
    # The directory is a closed port: had any request been sent, the verdict would be 2.
    proc = cli("check", "-d", "a.example.com", "--directory", "https://127.0.0.1:9/dir",
               "--http-01-port", str(busy_port), "--http-01-address", "127.0.0.1")
    assert proc.returncode == 64, proc.stderr
    assert f"127.0.0.1:{busy_port} is already in use" in proc.stderr


def test_unreadable_account_key_is_exit_64_and_left_untouched(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    proc = cli("check", "-d", "a.example.com", "--directory", "https://127.0.0.1:9/dir",
               "--account-key", str(key), "--webroot", str(tmp_path))
    assert proc.returncode == 64, proc.stderr
    assert "--account-key" in proc.stderr
    assert key.read_text() == "not a key"


def test_unwritable_webroot_is_exit_64(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        import os

        if os.access(root, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        proc = cli("check", "-d", "a.example.com", "--webroot", str(root))
        assert proc.returncode == 64
        assert "--webroot" in proc.stderr
    finally:
        root.chmod(0o700)


def test_webroot_whose_well_known_is_a_file_is_exit_64(tmp_path: Path) -> None:
    """Works as root too, where permission bits do not stop writes."""
    (tmp_path / ".well-known").write_text("not a directory")
    proc = cli("check", "-d", "a.example.com", "--webroot", str(tmp_path),
               "--directory", "https://127.0.0.1:9/dir")
    assert proc.returncode == 64
    assert ".well-known exists and is not a directory" in proc.stderr


@pytest.mark.parametrize("bad", [
    ["--directory", "letsencrypt"],          # refused after the key path was accepted
    ["--http-01-port", "0", "--webroot", "/tmp"],
    ["--ca-bundle", "/etc/hostname"],
])
def test_new_account_key_is_not_created_when_input_is_bad(
    tmp_path: Path, bad: list[str]
) -> None:
    key = tmp_path / "new.pem"
    proc = cli("check", "-d", "a.example.com", "--account-key", str(key), *bad)
    assert proc.returncode == 64
    assert not key.exists(), "nothing half-written"
    assert list(tmp_path.iterdir()) == [], "no temporary file either"


def test_json_goes_to_stdout_only(pebble: LocalPebble, unique_name: str) -> None:
    proc = cli_check(pebble, unique_name)
    report_json(proc)  # stdout is exactly one JSON document, valid against the schema
    assert "directory" in proc.stderr


def test_quiet_prints_only_the_verdict(pebble: LocalPebble, unique_name: str) -> None:
    proc = cli_check(pebble, unique_name, extra=["-q"])
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == [
        "verdict: likely_success  production likely to succeed: yes  confidence: high"]


def test_verbose_logs_each_exchange_without_secrets(
    pebble: LocalPebble, unique_name: str, tmp_path: Path
) -> None:
    key = tmp_path / "account.pem"
    proc = cli_check(pebble, unique_name, extra=["-v", "--account-key", str(key)])
    assert proc.returncode == 0, proc.stderr
    http = [line for line in proc.stderr.splitlines() if line.startswith("  http: ")]
    assert any(" POST " in line and "-> 201" in line for line in http)
    assert any(line.startswith("  http: HEAD ") for line in http)
    body = key.read_text()
    secret_lines = [line for line in body.splitlines() if "-----" not in line]
    assert not any(s in proc.stderr or s in proc.stdout for s in secret_lines)
    assert '"signature"' not in proc.stderr
    assert '"protected"' not in proc.stderr


def test_no_colour_when_piped_or_with_no_color(pebble: LocalPebble, unique_name: str) -> None:
    proc = cli_check(pebble, unique_name)
    assert "\033[" not in proc.stderr


def test_colour_and_live_line_on_a_terminal_unless_no_color() -> None:
    import io

    from acmedryrun.render import Output
    from acmedryrun.report import Event, Step, StepStatus

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for env_no_color, expect_colour in ((False, True), (True, False)):
        stream = Tty()
        old = os.environ.pop("NO_COLOR", None)
        if env_no_color:
            os.environ["NO_COLOR"] = "1"
        try:
            out = Output(stream)
        finally:
            os.environ.pop("NO_COLOR", None)
            if old is not None:
                os.environ["NO_COLOR"] = old
        out.on_event(Event("step_start", Step.ORDER))
        out.on_event(Event("step_end", Step.ORDER, status=StepStatus.OK, duration_s=0.01))
        text = stream.getvalue()
        assert "running" in text, "a live line while the step runs"
        assert text.endswith(" ms\n")
        assert ("\033[32m" in text) is expect_colour


@pytest.mark.parametrize(("args", "needle"), [
    (["--fault", "order:explode"], "--fault"),
    (["--fault", "nowhere:status:503"], "--fault"),
    ([], "--upstream"),
])
def test_proxy_bad_fault_spec_or_unreachable_upstream_is_exit_64(
    args: list[str], needle: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli("proxy", "--upstream", f"https://127.0.0.1:{port}/dir", *args, timeout=30)
    assert proc.returncode == 64, proc.stderr
    assert needle in proc.stderr


def test_a_bug_in_acmedryrun_is_exit_70_with_a_traceback_never_a_verdict() -> None:
    """Simulate a bug (a TypeError deep in the run) in a real subprocess."""
    import subprocess
    import sys

    code = (
        "import sys, acmedryrun.run as run, acmedryrun.cli as cli\n"
        "def boom(*a, **k):\n"
        "    raise TypeError('simulated bug')\n"
        "run.Run.report = boom\n"
        "sys.exit(cli.main(['check', '-d', 'bug.example.com', '--webroot', '/tmp',"
        " '--directory', 'https://127.0.0.1:9/dir', '--json']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 70
    assert "Traceback" in proc.stderr
    assert "TypeError: simulated bug" in proc.stderr
    assert proc.stdout == "", "no verdict, no report"


def test_ctrl_c_during_a_check_exits_130_promptly(unique_name: str) -> None:
    """A run stuck waiting on a slow staging stops at once on SIGINT.

    Deactivations answer 503 too: cleanup must not retry them after an interrupt.
    """
    import signal
    import subprocess
    import sys
    import time

    from acmedryrun.testing import FaultProxy, parse_fault

    with LocalPebble() as p, FaultProxy(
            p.directory_url, upstream_ca_bundle=p.ca_bundle,
            faults=[parse_fault("order_poll:patch,status=pending"),
                    parse_fault("deactivate:status:503")]) as proxy:
        proc = subprocess.Popen(
            [sys.executable, "-m", "acmedryrun", "check", "-d", unique_name, "--directory",
             proxy.directory_url, "--ca-bundle", proxy.ca_bundle, "--http-01-port",
             str(p.http_port), "--http-01-address", "127.0.0.1", "--dns-resolver",
             p.dns_resolver, "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proxy.hits("order_poll") < 3:
            time.sleep(0.05)  # the run is polling an order stuck pending
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 3
    assert "Traceback" not in stderr


def test_demo_without_pebble_names_the_debian_package_and_exits_69() -> None:
    proc = cli("demo", env={"ACMEDRYRUN_PEBBLE": "/nonexistent/pebble"})
    assert proc.returncode == 69
    assert "apt-get install pebble" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_all_shows_the_three_verdicts() -> None:
    proc = cli("demo", "--scenario", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    decoder, text, verdicts = json.JSONDecoder(), proc.stdout, []
    while text.strip():
        report, end = decoder.raw_decode(text.lstrip())
        validate_report(report)
        verdicts.append(report["verdict"])
        text = text.lstrip()[end:]
    assert verdicts == ["likely_success", "client_error", "staging_unstable"]


def test_help_names_every_exit_code_of_the_contract() -> None:
    result = cli("--help")
    assert result.returncode == 0
    epilog = " ".join(result.stdout.split()).partition("exit codes:")[2]
    for code in ("0 likely_success", "1 client_error", "2 staging_unstable", "64 usage error",
                 "69 a required local program missing", "70 internal error",
                 "130 interrupted"):
        assert code in epilog
