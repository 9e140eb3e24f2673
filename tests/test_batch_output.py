"""A batch's output is safe (issue 14): checked before any run, whole lines, resumable.

Every refusal is exit 64 with one line naming the input, nothing written (every
file under the test's directory byte-for-byte and mtime unchanged, nothing
created) and nothing sent (the batch's directory is a listener that counts
connections).  Interrupted batches -- Ctrl-C, ``kill -9``, a torn last line --
go on with ``--resume`` and end with every certificate exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cli
from counting_listener import CountingListener

from acmedryrun.schema import validate_report
from acmedryrun.testing import LocalPebble


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | str]:
    """Every path under ``root``: a file's bytes and mtime, a link's target, a directory."""
    found: dict[str, tuple[bytes, int] | str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path)] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
        else:
            found[str(path)] = "dir"
    return found


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    with CountingListener() as counting:
        yield counting


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def batch_args(directory: str, path: Path, *extra: str, ca_bundle: str | None = None,
               http_port: int | None = None) -> list[str]:
    args = ["batch", str(path), "--directory", directory, "--timeout", "60"]
    if ca_bundle:
        args += ["--ca-bundle", ca_bundle]
    # Never the default port 80 on every address: loopback only.
    args += ["--http-01-address", "127.0.0.1", "--http-01-port", str(http_port or free_port())]
    return [*args, *extra]


def pebble_args(p: LocalPebble, path: Path, *extra: str) -> list[str]:
    return [*batch_args(p.directory_url, path, ca_bundle=p.ca_bundle, http_port=p.http_port),
            "--dns-resolver", p.dns_resolver, *extra]


# ------------------------------------------------------------------ refused before anything


def _same_path(tmp: Path, names: Path) -> list[str]:
    return ["--output", str(names)]


def _symlink(tmp: Path, names: Path) -> list[str]:
    (tmp / "reports.jsonl").symlink_to(names)
    return ["--output", str(tmp / "reports.jsonl")]


def _hard_link(tmp: Path, names: Path) -> list[str]:
    os.link(names, tmp / "reports.jsonl")
    return ["--output", str(tmp / "reports.jsonl")]


def _other_spelling(tmp: Path, names: Path) -> list[str]:
    (tmp / "sub").mkdir()
    return ["--output", f"{tmp}/sub/../{names.name}"]


def _dangling_link_to_the_key(tmp: Path, names: Path) -> list[str]:
    # The account key does not exist yet (it would be created): a link to where it
    # will be is the same file too.
    (tmp / "reports.jsonl").symlink_to(tmp / "account.pem")
    return ["--account-key", str(tmp / "account.pem"), "--output", str(tmp / "reports.jsonl")]


def _the_ca_bundle(tmp: Path, names: Path) -> list[str]:
    (tmp / "ca.pem").write_text("not really a bundle\n")
    return ["--ca-bundle", str(tmp / "ca.pem"), "--output", str(tmp / "ca.pem")]


def _missing_directory(tmp: Path, names: Path) -> list[str]:
    return ["--output", str(tmp / "no" / "such" / "dir" / "reports.jsonl")]


def _parent_is_a_file(tmp: Path, names: Path) -> list[str]:
    return ["--output", str(names / "reports.jsonl")]


def _a_directory(tmp: Path, names: Path) -> list[str]:
    return ["--output", str(tmp)]


def _a_fifo(tmp: Path, names: Path) -> list[str]:
    os.mkfifo(tmp / "reports.jsonl")  # opening it for writing would block until read
    return ["--output", str(tmp / "reports.jsonl")]


def _resume_without_output(tmp: Path, names: Path) -> list[str]:
    return ["--resume"]


def _resume_a_foreign_file(tmp: Path, names: Path) -> list[str]:
    (tmp / "notes.txt").write_text("my notes\nnot a report\n")
    return ["--resume", "--output", str(tmp / "notes.txt")]


def _resume_a_file_with_a_broken_middle_line(tmp: Path, names: Path) -> list[str]:
    good = json.dumps({"identifiers": ["a.example.com"], "verdict": "likely_success"})
    (tmp / "reports.jsonl").write_text(f"{good}\n{good[:20]}\n{good}\n")
    return ["--resume", "--output", str(tmp / "reports.jsonl")]


REFUSALS: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "same path": (_same_path, "is the same file as the batch file"),
    "symlink to the input": (_symlink, "is the same file as the batch file"),
    "hard link to the input": (_hard_link, "is the same file as the batch file"),
    "another spelling of the input": (_other_spelling, "is the same file as the batch file"),
    "where the account key goes": (_dangling_link_to_the_key, "same file as --account-key"),
    "the CA bundle": (_the_ca_bundle, "is the same file as --ca-bundle"),
    "missing directory": (_missing_directory, "does not exist"),
    "parent is a file": (_parent_is_a_file, "is not a directory"),
    "a directory": (_a_directory, "is a directory"),
    "a fifo": (_a_fifo, "is not a regular file"),
    "--resume without --output": (_resume_without_output, "--resume needs --output"),
    "--resume a foreign file": (_resume_a_foreign_file, "notes.txt:1 is not a report line"),
    "--resume a broken middle line": (_resume_a_file_with_a_broken_middle_line,
                                      "reports.jsonl:2 is not a report line"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_unsafe_output_is_exit_64_with_one_line_nothing_written_nothing_sent(
    tmp_path: Path, listener: CountingListener, case: str
) -> None:
    setup, needle = REFUSALS[case]
    names = tmp_path / "names.txt"
    names.write_text("a.example.com\nb.example.com\n")
    extra = setup(tmp_path, names)
    before = snapshot(tmp_path)
    proc = cli(*batch_args(listener.url, names, *extra))
    assert proc.returncode == 64, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("acmedryrun: error: ")
    assert needle in proc.stderr
    assert proc.stdout == ""
    assert snapshot(tmp_path) == before, "nothing written"
    assert listener.connections == 0, "nothing sent"


def test_stdout_appended_to_the_input_is_exit_64(
    tmp_path: Path, listener: CountingListener
) -> None:
    """``acmedryrun batch names.txt >> names.txt``: stdout is the input file."""
    names = tmp_path / "names.txt"
    names.write_text("a.example.com\n")
    before = snapshot(tmp_path)
    with open(names, "a") as stdout:
        proc = subprocess.run(
            [sys.executable, "-m", "acmedryrun", *batch_args(listener.url, names)],
            stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert proc.returncode == 64, proc.stderr
    assert "stdout is the same file as the batch file" in proc.stderr
    assert snapshot(tmp_path) == before
    assert listener.connections == 0


def test_a_bad_batch_wide_option_is_one_usage_error_not_one_per_line(
    tmp_path: Path, listener: CountingListener
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("".join(f"n{i}.example.com\n" for i in range(50)))
    before = snapshot(tmp_path)
    proc = cli(*batch_args(listener.url, names, "--ca-bundle", str(tmp_path / "nope.pem"),
                           "--output", str(tmp_path / "out.jsonl")))
    assert proc.returncode == 64
    assert proc.stderr == f"acmedryrun: error: --ca-bundle: {tmp_path / 'nope.pem'} is not a" \
                          " readable file\n"
    assert snapshot(tmp_path) == before
    assert listener.connections == 0


def test_the_listener_does_count_a_batch_that_runs(
    tmp_path: Path, listener: CountingListener
) -> None:
    """The control for the tests above: a batch allowed to run does connect."""
    names = tmp_path / "names.txt"
    names.write_text("a.example.com\n")
    proc = cli(*batch_args(listener.url, names, "--output", str(tmp_path / "out.jsonl"),
                           "--timeout", "2"))
    assert proc.returncode == 2, proc.stderr  # the "CA" hangs up: staging_unstable
    assert listener.connections >= 1
    assert len(read_lines(tmp_path / "out.jsonl")) == 1


# ------------------------------------------------------------------ whole lines, resumed


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The output's reports; every line whole (ends in a newline) and a valid report."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the file ends with a whole line"
    reports = [json.loads(line) for line in data.splitlines()]
    for r in reports:
        validate_report(r)
    return reports


def summary_of(stderr: str) -> dict[str, int]:
    rows = {}
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and not line.startswith(" "):
            rows[parts[0]] = int(parts[1])
    return rows


@pytest.fixture(scope="module")
def slow_pebble() -> Iterator[LocalPebble]:
    """Pebble sleeping up to 2 s before each validation: a batch is mid-flight for a while."""
    with LocalPebble(va_nosleep=False, va_sleep_time=2) as p:
        yield p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_batch_resumes_where_it_stopped_every_certificate_once(
    slow_pebble: LocalPebble, tmp_path: Path, sig: signal.Signals
) -> None:
    names = [f"r{i}-{sig.value}.resume.example.com" for i in range(24)]
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n")
    out = tmp_path / "reports.jsonl"
    argv = [sys.executable, "-m", "acmedryrun",
            *pebble_args(slow_pebble, path, "--concurrency", "4", "--output", str(out))]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
            not out.exists() or out.read_bytes().count(b"\n") < 3):
        time.sleep(0.02)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == (130 if sig is signal.SIGINT else -9), stderr
    if sig is signal.SIGINT:
        assert "the same command with --resume" in stderr
    first = out.read_bytes()
    done = read_lines(out)  # whole lines only, even after kill -9
    assert 3 <= len(done) < len(names), "interrupted mid-way"

    again = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes().startswith(first), "appended: earlier lines untouched"
    reports = read_lines(out)
    assert Counter(r["identifiers"][0] for r in reports) == Counter(names), \
        "every certificate exactly once"
    assert f"--resume: {len(done)} certificate(s) already in {out}," \
           f" {len(names) - len(done)} to go" in again.stderr
    summary = summary_of(again.stderr)
    assert summary["resumed"] == len(done)
    assert summary["likely_success"] == len(names)  # the resumed ones counted too
    assert summary["not_run"] == 0


def test_a_torn_last_line_is_dropped_and_its_certificate_runs_again(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    names = [f"t{i}-{os.getpid()}.torn.example.com" for i in range(6)]
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n")
    out = tmp_path / "reports.jsonl"
    assert cli(*pebble_args(pebble, path, "--output", str(out))).returncode == 0
    lines = out.read_bytes().splitlines(keepends=True)
    torn = lines[3][: len(lines[3]) // 2]  # a crash inside the fourth write
    out.write_bytes(b"".join(lines[:3]) + torn)

    proc = cli(*pebble_args(pebble, path, "--output", str(out), "--resume"))
    assert proc.returncode == 0, proc.stderr
    assert f"its incomplete last line ({len(torn)} bytes) is dropped" in proc.stderr
    assert out.read_bytes().startswith(b"".join(lines[:3]))
    reports = read_lines(out)
    assert Counter(r["identifiers"][0] for r in reports) == Counter(names)


def test_resume_matches_the_exact_identifier_set_counting_duplicates(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    a, b = f"a-{os.getpid()}.set.example.com", f"b-{os.getpid()}.set.example.com"
    out = tmp_path / "reports.jsonl"
    first = tmp_path / "first.txt"
    first.write_text(f"{a} {b}\n")
    assert cli(*pebble_args(pebble, first, "--output", str(out))).returncode == 0
    # Same set in another order and case: done.  {a} alone: a different certificate.
    # The second {a, b} line: the file holds only one report for that set, so it runs.
    path = tmp_path / "names.txt"
    path.write_text(f"{b.upper()}, {a}\n{a}\n{a} {b}\n")
    proc = cli(*pebble_args(pebble, path, "--output", str(out), "--resume"))
    assert proc.returncode == 0, proc.stderr
    sets = [frozenset(r["identifiers"]) for r in read_lines(out)]
    assert sets[0] == frozenset({a, b})
    assert Counter(sets[1:]) == Counter([frozenset({a}), frozenset({a, b})])
    assert summary_of(proc.stderr)["resumed"] == 1


def test_resuming_a_finished_batch_sends_nothing_and_exits_with_its_verdicts(
    pebble: LocalPebble, tmp_path: Path, listener: CountingListener
) -> None:
    ok, broken = f"ok-{os.getpid()}.fin.example.com", f"no-{os.getpid()}.fin.example.com"
    pebble.add_a(broken, ["127.0.0.2"])
    path = tmp_path / "names.txt"
    path.write_text(f"{ok}\n{broken}\n")
    out = tmp_path / "reports.jsonl"
    assert cli(*pebble_args(pebble, path, "--output", str(out))).returncode == 1
    before = out.read_bytes()
    proc = cli(*batch_args(listener.url, path, "--output", str(out), "--resume"))
    assert proc.returncode == 1, proc.stderr  # the client_error it had still counts
    assert listener.connections == 0
    assert out.read_bytes() == before
    summary = summary_of(proc.stderr)
    assert (summary["resumed"], summary["client_error"], summary["likely_success"]) == (2, 1, 1)
    assert "  ValidationConnection" in proc.stderr


def test_a_10000_line_batch_goes_on_where_it_stopped(pebble: LocalPebble, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """9,990 of 10,000 certificates already in the output: the resumed batch runs the other 10.

    The output's earlier lines are real reports (one run's, renamed), as an
    interrupted batch leaves them.
    """
    names = [f"n{i}.tenk.example.com" for i in range(10_000)]
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n")
    out = tmp_path / "reports.jsonl"
    seed = tmp_path / "seed.txt"
    seed.write_text("seed.tenk.example.com\n")
    assert cli(*pebble_args(pebble, seed, "--output", str(out))).returncode == 0
    template = json.loads(out.read_text())
    todo = set(range(0, 10_000, 1000))  # ten gaps, spread over the file
    with open(out, "w") as f:
        for i, name in enumerate(names):
            if i not in todo:
                f.write(json.dumps({**template, "identifiers": [name]}) + "\n")
    started = time.monotonic()
    proc = cli(*pebble_args(pebble, path, "--output", str(out), "--resume", "--concurrency",
                            "5"), timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports = [json.loads(line) for line in out.read_text().splitlines()]
    assert Counter(r["identifiers"][0] for r in reports) == Counter(names)
    assert summary_of(proc.stderr)["resumed"] == 9_990
    with capsys.disabled():
        print(f"\n10,000-line batch, 9,990 resumed, 10 run: {took:.1f} s")
    assert took < 60


def test_a_closed_stdout_stops_the_batch_cleanly_not_as_a_bug(
    pebble: LocalPebble, tmp_path: Path
) -> None:
    """``acmedryrun batch FILE | head -1``: the batch stops (130), no traceback, no exit 70."""
    path = tmp_path / "names.txt"
    path.write_text("".join(f"p{i}-{os.getpid()}.pipe.example.com\n" for i in range(20)))
    proc = subprocess.Popen([sys.executable, "-m", "acmedryrun",
                             *pebble_args(pebble, path, "--concurrency", "1")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 130, stderr
    validate_report(json.loads(first))
    assert "stdout was closed" in stderr
    assert "Traceback" not in stderr
    assert summary_of(stderr)["not_run"] > 0
