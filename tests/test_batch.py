"""Batch mode: many dry runs, bounded concurrency, clean Ctrl-C (issue 7)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli

from acmedryrun.batch import BatchJob, parse_batch
from acmedryrun.schema import validate_report
from acmedryrun.testing import LocalPebble


def batch_args(p: LocalPebble, path: Path, *extra: str) -> list[str]:
    return ["batch", str(path), "--directory", p.directory_url, "--ca-bundle", p.ca_bundle,
            "--dns-resolver", p.dns_resolver, "--timeout", "60", *extra]


def test_two_hundred_names_each_get_the_right_verdict_and_the_summary_adds_up(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    names = [f"b{i}-{os.getpid()}.batch.example.com" for i in range(200)]
    broken = set(names[::20])  # 10 of them point where nothing listens
    for name in broken:
        pebble.add_a(name, ["127.0.0.2"])
    path = tmp_path / "names.txt"
    path.write_text("# customers\n" + "\n".join(names) + "\n")
    proc = cli(*batch_args(pebble, path, "--http-01-port", str(pebble.http_port),
                           "--http-01-address", "127.0.0.1", "--concurrency", "10"),
               timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]  # some client errors
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    for r in reports:
        validate_report(r)
    assert len(reports) == 200
    verdicts = {r["identifiers"][0]: r["verdict"] for r in reports}
    assert set(verdicts) == set(names)
    for name, verdict in verdicts.items():
        assert verdict == ("client_error" if name in broken else "likely_success"), name
    lines = proc.stderr.splitlines()
    table = lines.index("most frequent problems:")
    summary = dict(line.split() for line in lines[table - 6:table])
    assert lines[table + 1:] == ["  ValidationConnection      10"]
    assert int(summary["total"]) == 200
    assert int(summary["likely_success"]) == 190
    assert int(summary["client_error"]) == 10
    assert int(summary["staging_unstable"]) == 0
    assert int(summary["not_run"]) == 0


def test_malformed_line_is_reported_with_its_number_and_the_rest_still_run(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    path = tmp_path / "names.txt"
    path.write_text("ok1.example.com\nok2.example.com frobnicate=1\nok3.example.com\n")
    proc = cli(*batch_args(pebble, path, "--http-01-port", str(pebble.http_port),
                           "--http-01-address", "127.0.0.1"))
    assert f"{path}:2: unknown option 'frobnicate'" in proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    assert proc.returncode == 1, "an unreadable line is the user's to fix"


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        ("", (), "no certificate"),
        ("# only a comment\n\n", (), "no certificate"),
        ("key-type=ec384\n", (), "no certificate"),
        ("a.example.com\n", ("--concurrency", "0"), "--concurrency"),
        ("a.example.com\n", ("--concurrency", "-3"), "--concurrency"),
    ],
)
def test_batch_bad_input_is_exit_64(
    tmp_path: Path, content: str, args: tuple[str, ...], needle: str
) -> None:
    path = tmp_path / "names.txt"
    path.write_text(content)
    proc = cli("batch", str(path), "--directory", "https://127.0.0.1:9/dir", *args)
    assert proc.returncode == 64, proc.stderr
    assert needle in proc.stderr
    assert proc.stdout == ""


def test_missing_batch_file_is_exit_64(tmp_path: Path) -> None:
    proc = cli("batch", str(tmp_path / "nope.txt"))
    assert proc.returncode == 64
    assert "nope.txt" in proc.stderr


def test_parse_batch_reads_names_options_and_comments() -> None:
    jobs, errors = parse_batch([
        "a.example.com, www.a.example.com  # two names\n",
        "\n",
        "b.example.com key-type=rsa2048 timeout=30\n",
        "c.example.com timeout=soon\n",
        "key-type=ec384\n",
    ])
    assert jobs == [
        BatchJob(("a.example.com", "www.a.example.com"), {}, 1),
        BatchJob(("b.example.com",), {"key_type": "rsa2048", "timeout": 30.0}, 3),
    ]
    assert [(e.line, e.reason) for e in errors] == [
        (4, "bad value for timeout: 'soon'"), (5, "no name on the line")]


@pytest.fixture(scope="module")
def slow_pebble() -> Iterator[LocalPebble]:
    """Pebble sleeping up to 2 s before each validation, so a batch is mid-flight for a while."""
    with LocalPebble(va_nosleep=False, va_sleep_time=2) as p:
        yield p


@pytest.fixture
def webroot(slow_pebble: LocalPebble, tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", slow_pebble.http_port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root
    server.shutdown()
    server.server_close()


def test_ctrl_c_stops_promptly_cleans_up_and_keeps_finished_lines(
    slow_pebble: LocalPebble, webroot: Path, tmp_path: Path
) -> None:
    path = tmp_path / "names.txt"
    path.write_text("\n".join(f"i{i}.interrupt.example.com" for i in range(40)) + "\n")
    out = tmp_path / "reports.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "acmedryrun", *batch_args(
            slow_pebble, path, "--webroot", str(webroot), "--concurrency", "4",
            "--output", str(out))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or not out.read_text().strip()):
        time.sleep(0.05)
    assert out.read_text().strip(), "at least one run finished before the interrupt"
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "stops promptly"
    assert proc.returncode == 130, stderr
    finished = [json.loads(line) for line in out.read_text().splitlines()]
    for r in finished:
        validate_report(r)
    assert 1 <= len(finished) < 40
    assert all(r["verdict"] == "likely_success" for r in finished)
    assert "interrupted" in stderr
    leftovers = list((webroot / ".well-known" / "acme-challenge").glob("*")) \
        if (webroot / ".well-known").exists() else []
    assert leftovers == [], "no challenge file left behind"
    assert not (webroot / ".well-known").exists(), "created directories removed"


def test_ctrl_c_frees_the_standalone_port(slow_pebble: LocalPebble, tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("\n".join(f"p{i}.interrupt.example.com" for i in range(20)) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "acmedryrun", *batch_args(
            slow_pebble, path, "--http-01-port", str(slow_pebble.http_port),
            "--http-01-address", "127.0.0.1", "--concurrency", "4")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", slow_pebble.http_port))  # nothing listens there any more


def test_a_line_with_bad_options_is_reported_and_skipped_the_rest_run(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    path = tmp_path / "names.txt"
    path.write_text("okA.example.com\nbadA.example.com key-type=bogus\n"
                    "badB.example.com timeout=-1\nbad/name.example.com\nokB.example.com\n")
    proc = cli(*batch_args(pebble, path, "--http-01-port", str(pebble.http_port),
                           "--http-01-address", "127.0.0.1"))
    assert proc.returncode == 1, proc.stderr
    assert f"{path}:2: --key-type" in proc.stderr
    assert f"{path}:3: --timeout" in proc.stderr
    assert f"{path}:4: -d" in proc.stderr
    done = sorted(json.loads(line)["identifiers"][0] for line in proc.stdout.splitlines())
    assert done == ["oka.example.com", "okb.example.com"]


def test_dns01_hooks_in_a_concurrent_batch_each_clean_up_their_own_run(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    hooks = Path(__file__).parent / "hooks"
    log = tmp_path / "hooks.log"
    names = [f"h{i}.hookbatch.example.com" for i in range(8)]
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n")
    proc = cli(*batch_args(pebble, path, "--dns-01-auth-hook",
                           str(hooks / "challtestsrv-auth.sh"), "--dns-01-cleanup-hook",
                           str(hooks / "challtestsrv-cleanup.sh"), "--concurrency", "4"),
               env={"CHALLTESTSRV_URL": pebble.challtestsrv_url, "HOOK_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    auths = [line for line in lines if line.startswith("auth ")]
    cleanups = [line for line in lines if line.startswith("cleanup ")]
    assert len(auths) == len(cleanups) == 8, "every auth hook has its cleanup"
    for line in auths:  # CERTBOT_ALL_DOMAINS holds only that run's own names
        name, all_domains = line.split()[1], line.split("all=")[1]
        assert all_domains == name


def test_a_new_account_key_is_created_once_and_shared_by_the_batch(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    key = tmp_path / "account.pem"
    path = tmp_path / "names.txt"
    path.write_text("\n".join(f"k{i}.keybatch.example.com" for i in range(6)) + "\n")
    proc = cli(*batch_args(pebble, path, "--http-01-port", str(pebble.http_port),
                           "--http-01-address", "127.0.0.1", "--concurrency", "6",
                           "--account-key", str(key)))
    assert proc.returncode == 0, proc.stderr
    accounts = {json.loads(line)["account_url"] for line in proc.stdout.splitlines()}
    assert len(accounts) == 1
    assert os.stat(key).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("extra", "needle"), [
    (("--pace", "inf"), "--pace"),
    (("--webroot", "/tmp", "--http-01-port", "8080"), "exclude each other"),
    (("--directory", "no-such-alias"), "no-such-alias"),
])
def test_batch_usage_errors_leave_an_existing_output_file_untouched(
    tmp_path: Path, extra: tuple[str, ...], needle: str
) -> None:
    out = tmp_path / "reports.jsonl"
    out.write_text("yesterday's reports\n")
    path = tmp_path / "names.txt"
    path.write_text("a.example.com\n")
    proc = cli("batch", str(path), "--output", str(out), *extra)
    assert proc.returncode == 64, proc.stderr
    assert needle in proc.stderr
    assert out.read_text() == "yesterday's reports\n"


def test_batch_output_that_is_a_directory_is_exit_64(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("a.example.com\n")
    proc = cli("batch", str(path), "--output", str(tmp_path))
    assert proc.returncode == 64
    assert "--output" in proc.stderr


def test_a_batch_asks_directory_twin_and_account_once_and_passes_nonces_on(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """What does not change between runs is asked once per batch (acmedryrun.run_cache);
    what each run must prove (order, authorizations, challenges, finalize, certificate)
    is asked by every run."""
    from acmedryrun import Verdict
    from acmedryrun.batch import dry_run_many
    from acmedryrun.solvers import HTTP01Standalone
    from acmedryrun.testing import FaultProxy

    with LocalPebble() as production, FaultProxy(
            pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle) as staging, \
            FaultProxy(production.directory_url,
                       upstream_ca_bundle=production.ca_bundle) as twin:
        bundle = tmp_path / "both.pem"
        bundle.write_text(Path(staging.ca_bundle).read_text()
                          + Path(twin.ca_bundle).read_text())
        names = [f"a{i}.once.example.com" for i in range(8)]
        results = dry_run_many(
            [[n] for n in names], directory=staging.directory_url, ca_bundle=str(bundle),
            reference_directory=twin.directory_url, dns_resolver=pebble.dns_resolver,
            concurrency=4, solver=HTTP01Standalone(port=pebble.http_port, address="127.0.0.1"))
        hits = {e: staging.hits(e) for e in ("directory", "nonce", "account", "order",
                                            "finalize", "certificate")}
        twin_hits = twin.hits("directory")
    assert [r.verdict for _, r in results] == [Verdict.LIKELY_SUCCESS] * 8, results
    assert all(v.fresh for _, r in results for v in r.validated)
    assert twin_hits == 1
    assert hits["directory"] == 1
    assert hits["account"] == 2  # the first run alone: the look-up, then the creation
    assert hits["order"] == hits["finalize"] == hits["certificate"] == 8
    # Spare nonces pass from run to run: newNonce only while none is left (the first
    # run, then at most the other three of the first wave).
    assert 1 <= hits["nonce"] <= 4, hits
    assert len({r.account_url for _, r in results}) == 1
    floor = 6  # order, authorization, answer, finalize, certificate, deactivation
    first = results[0][1]
    assert first.requests.total - first.requests.polls == floor + 4  # dir, nonce, 2 account
    later = sorted(r.requests.total - r.requests.polls - floor for _, r in results[1:])
    assert set(later) <= {0, 1}, later  # 1: a newNonce of its own


def test_a_twin_that_could_not_be_read_is_asked_again_by_the_next_run(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """Only a twin that answered is remembered: one 500 costs one run its comparison."""
    from acmedryrun.batch import dry_run_many
    from acmedryrun.solvers import HTTP01Standalone
    from acmedryrun.testing import FaultProxy, parse_fault

    with LocalPebble() as production, FaultProxy(
            production.directory_url, upstream_ca_bundle=production.ca_bundle,
            faults=[parse_fault("directory:status:500,count=1")]) as twin:
        bundle = tmp_path / "both.pem"
        bundle.write_text(Path(pebble.ca_bundle).read_text() + Path(twin.ca_bundle).read_text())
        results = dry_run_many(
            [[f"t{i}.twin.example.com"] for i in range(3)], directory=pebble.directory_url,
            ca_bundle=str(bundle), reference_directory=twin.directory_url,
            dns_resolver=pebble.dns_resolver, concurrency=1,
            solver=HTTP01Standalone(port=pebble.http_port, address="127.0.0.1"))
        twin_hits = twin.hits("directory")
    unavailable = [any(p.name == "ProductionTwinUnavailable" for p in r.problems)
                   for _, r in results]
    assert unavailable == [True, False, False]
    assert [r.production_twin.compared for _, r in results] == [False, True, True]
    assert twin_hits == 2
