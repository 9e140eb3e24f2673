#!/usr/bin/env python3
"""Benchmark acmedryrun against certbot ``--dry-run`` and lego on one local Pebble (issue 8).

One command (from the repository root, with the project's venv active)::

    python bench/run.py                 # everything, 5 runs per figure (about 8-10 minutes)
    python bench/run.py --skip-slow     # without lego's 50-name order (about 4 minutes)
    python bench/run.py --runs 3 --peer-sample 5
    python bench/run.py --rtt-ms 50     # the same, every tool's CA traffic 50 ms away

It starts one ``LocalPebble`` (validation sleep off, nonce rejection 0, authz reuse 0) and
measures, against that same Pebble and in the same run:

* (a) one name, (b) one order of 50 names, (c) 100 single-name dry runs at concurrency 10,
* for acmedryrun as a whole process (``acmedryrun check`` / ``acmedryrun batch``) and in
  process (``dry_run()`` / ``dry_run_many()``), certbot ``certonly --dry-run`` (PyPI, in
  ``bench/.venv-certbot``) and lego (Debian's package),
* wall time, peak RSS of each child process (``os.wait4``), and requests per run (counted
  in Pebble's own log, and acmedryrun's ``report.requests``),
* start-up: ``python -X importtime -c "import acmedryrun"`` and ``acmedryrun --help``.

It writes ``bench/results/latest.{md,json,png}`` and, where a target is missed, profiles it
(``bench/results/profile-*.txt``).  A tool that is missing or fails is reported as such.

Latency mode (``--rtt-ms N``, issue 18): every tool's ACME traffic goes through one
`FaultProxy` with ``latency=N/2`` ms one way (and ``upstream_keepalive``), in its own
process (``bench/latency_proxy.py``): each request/response costs one round trip, each new
connection its TCP and TLS handshake round trips as well; Pebble's validation traffic is
not delayed.  The tables are the same, written to ``bench/results/rtt<N>ms/``, with the
new connections each run opened and a check of the model (measured round trips through
the proxy vs straight to Pebble).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CERTBOT_VENV = BENCH / ".venv-certbot"
#: Byte-code cache for every Python child (acmedryrun's editable install has none when
#: PYTHONDONTWRITEBYTECODE is set; an installed wheel always has one).
PYCACHE = BENCH / ".cache" / "pycache"

LOOPBACK = "127.0.0.1"
DOMAIN = "example.com"
MIB = 1024.0  # ru_maxrss is in KiB on Linux

# Tool labels, in table order.
ADR_CLI = "acmedryrun (CLI)"
ADR_LIB = "acmedryrun (in process)"
CERTBOT = "certbot --dry-run"
LEGO = "lego run"
TOOLS = (ADR_CLI, ADR_LIB, CERTBOT, LEGO)

# The issue's targets.
TARGET_ONE_VS_CERTBOT = 0.2
TARGET_ONE_VS_LEGO = 0.1
TARGET_INPROC_S = 0.150
TARGET_50_VS_CERTBOT = 0.2
TARGET_50_VS_LEGO = 0.02
TARGET_BATCH_X_CERTBOT = 10.0
TARGET_POLLS_PER_AUTHZ = 2
# Issue 18's targets: at realistic latency (--rtt-ms), and at loopback.
TARGET_RTT_ONE_VS_CERTBOT = 0.25
TARGET_RTT_50_VS_CERTBOT = 0.1
TARGET_RTT_50_VS_LEGO = 0.02
TARGET_RTT_BATCH_X_CERTBOT = 50.0
TARGET_LOOP_ONE_S = 0.300
TARGET_LOOP_50_VS_CERTBOT_FASTEST = 0.2

# Pebble logs "<METHOD> <path> -> calling handler()" for every ACME request it serves.
PEBBLE_REQ = re.compile(rb"^Pebble \S+ \S+ (GET|HEAD|POST) (/\S*) -> calling handler", re.M)
ENDPOINTS = {
    "dir": "directory", "nonce-plz": "newNonce", "sign-me-up": "newAccount",
    "order-plz": "newOrder", "authZ": "authz", "chalZ": "challenge",
    "finalize-order": "finalize", "my-order": "order", "certZ": "certificate",
    "my-account": "account",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ samples


@dataclass
class Sample:
    """One measured run of one tool."""

    ok: bool
    wall_s: float | None = None
    rc: int | None = None
    maxrss_kib: int | None = None
    pebble_requests: int | None = None
    endpoints: dict[str, int] = field(default_factory=dict)
    adr_requests: int | None = None
    adr_polls: int | None = None
    adr_duration_s: float | None = None
    #: acmedryrun: the slowest step of the run and its seconds.
    slowest_step: str | None = None
    slowest_step_s: float | None = None
    #: TCP listen-queue overflows (``TcpExt: ListenOverflows``) during the run: SYNs
    #: dropped because a listener's accept backlog was full (each costs the sender a
    #: 1 s+ SYN retransmission).
    listen_overflows: int | None = None
    #: Latency mode: client connections the proxy accepted, requests it relayed.
    proxy_connections: int | None = None
    proxy_requests: int | None = None
    verdicts: dict[str, int] = field(default_factory=dict)
    runs: int = 1
    #: Batches: the most polls of one run, runs over 2 polls, runs above the floor,
    #: runs slower than 1 s, the slowest run.
    poll_max: int | None = None
    over_two_polls: int | None = None
    over_floor: int | None = None
    slow_runs: int | None = None
    slowest_s: float | None = None
    error: str | None = None


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


@dataclass
class Series:
    """The samples of one tool in one scenario, and why it was not run, if so."""

    samples: list[Sample] = field(default_factory=list)
    skipped: str | None = None

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    def med(self, attr: str) -> float | None:
        return median([getattr(s, attr) for s in self.good])

    def summary(self) -> dict[str, Any]:
        good = self.good
        walls = [s.wall_s for s in good if s.wall_s is not None]
        out: dict[str, Any] = {
            "n": len(self.samples), "ok": len(good), "skipped": self.skipped,
            "median_wall_s": median(walls),
            "min_wall_s": min(walls) if walls else None,
            "max_wall_s": max(walls) if walls else None,
            "median_maxrss_mib": (m / MIB if (m := self.med("maxrss_kib")) else None),
            "median_pebble_requests": self.med("pebble_requests"),
            "median_adr_requests": self.med("adr_requests"),
            "median_adr_polls": self.med("adr_polls"),
            "median_adr_duration_s": self.med("adr_duration_s"),
            "median_listen_overflows": self.med("listen_overflows"),
            "median_proxy_connections": self.med("proxy_connections"),
            "median_proxy_requests": self.med("proxy_requests"),
            "slowest_steps": dict(Counter(x.slowest_step for x in good if x.slowest_step)),
            "median_slowest_step_s": self.med("slowest_step_s"),
            "errors": sorted({s.error for s in self.samples if s.error})[:3],
        }
        return out


# ------------------------------------------------------------------------------ children


#: A tiny parent for the fallback when /usr/bin/time is missing: it forks and execs the
#: tool, then writes the tool's own ``ru_maxrss`` and exit code to argv[1].
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {code}")
sys.exit(code if code >= 0 else 128 - code)
"""
GNU_TIME = "/usr/bin/time"


def rss_method() -> str:
    if Path(GNU_TIME).exists():
        return "`/usr/bin/time -f %M` (GNU time: the child's own wait4 ru_maxrss)"
    return ("a `python -S` launcher's os.wait4 (the child's own ru_maxrss; it includes the"
            " launcher's ~9 MiB image it was forked from)")


def run_child(cmd: Sequence[str], env: dict[str, str], timeout: float,
              cwd: str | None = None) -> tuple[Sample, str, str]:
    """Run one process; its own wall time and peak RSS, its stdout and stderr.

    The peak RSS is the tool's own ``ru_maxrss``, read by a small parent (GNU time, else
    a ``python -S`` launcher) that forks it: a child forked straight from this benchmark
    would start its high-water mark at this process's size (Linux carries the pre-exec
    RSS into ``ru_maxrss``), and ``RUSAGE_CHILDREN`` would be cumulative.
    """
    with tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False) as rss_file:
        rss_path = rss_file.name
    try:
        if Path(GNU_TIME).exists():
            wrapped = [GNU_TIME, "-q", "-f", "%M %x", "-o", rss_path, *cmd]
        else:
            wrapped = [sys.executable, "-S", "-c", _LAUNCHER, rss_path, *cmd]
        return _run_wrapped(wrapped, env, timeout, cwd, rss_path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(rss_path)


def _run_wrapped(wrapped: list[str], env: dict[str, str], timeout: float, cwd: str | None,
                 rss_path: str) -> tuple[Sample, str, str]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(wrapped, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=env, cwd=cwd, start_new_session=True)
        except OSError as exc:
            return Sample(ok=False, error=f"cannot start {wrapped[0]}: {exc}"), "", ""
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)  # the group this call created: the tool and its parent
            proc.wait()
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    maxrss: int | None = None
    code: int | None = proc.returncode
    with contextlib.suppress(OSError, ValueError, IndexError):
        # GNU time writes "Command exited with non-zero status N" first when N != 0.
        fields = Path(rss_path).read_text().strip().splitlines()[-1].split()
        maxrss, code = int(fields[0]), int(fields[1])
    sample = Sample(ok=code == 0 and not timed_out, wall_s=wall, rc=code, maxrss_kib=maxrss)
    if timed_out:
        sample.error = f"timed out after {timeout:.0f} s"
    elif code != 0:
        tail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or [""]
        sample.error = f"exit {code}: {tail[0][:200]}"
    return sample, stdout, stderr


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                        "LEGO_CA_CERTIFICATES")}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["NO_PROXY"] = env["no_proxy"] = f"{LOOPBACK},localhost"
    env.update(extra)
    return env


def listen_overflows() -> int | None:
    """The kernel's ``TcpExt: ListenOverflows`` counter (this network namespace), if readable."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            with contextlib.suppress(KeyError, ValueError):
                return int(table["ListenOverflows"])
    return None


class PebbleLog:
    """Counts the ACME requests Pebble logged since the last mark (runs are sequential).

    In latency mode also the connections and requests the proxy logged (``proxy_log``).
    """

    def __init__(self, path: str, proxy_log: str | None = None) -> None:
        self.path = path
        self.offset = 0
        self.proxy_log = proxy_log
        self.proxy_offset = 0
        self.overflows: int | None = None
        self.mark()

    def mark(self) -> None:
        self.offset = os.path.getsize(self.path)
        if self.proxy_log is not None:
            self.proxy_offset = os.path.getsize(self.proxy_log)
        self.overflows = listen_overflows()

    def take_proxy(self) -> tuple[int, int] | None:
        """Connections and requests the proxy logged since the mark."""
        if self.proxy_log is None:
            return None
        with open(self.proxy_log, "rb") as f:
            f.seek(self.proxy_offset)
            data = f.read()
        data = data[: data.rfind(b"\n") + 1]  # a line being written belongs to the next
        self.proxy_offset += len(data)
        lines = data.splitlines()
        return (sum(ln.startswith(b"conn ") for ln in lines),
                sum(ln.startswith(b"req ") for ln in lines))

    def take(self) -> tuple[int, dict[str, int]]:
        time.sleep(0.02)  # let Pebble's last log lines land
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        counts: Counter[str] = Counter()
        for match in PEBBLE_REQ.finditer(data):
            first = match.group(2).decode().strip("/").split("/", 1)[0]
            counts[ENDPOINTS.get(first, first or "/")] += 1
        return sum(counts.values()), dict(counts)

    def take_into(self, sample: Sample) -> None:
        """The requests and listen-queue overflows since the mark, into ``sample``."""
        before = self.overflows
        sample.pebble_requests, sample.endpoints = self.take()
        proxied = self.take_proxy()
        if proxied is not None:
            sample.proxy_connections, sample.proxy_requests = proxied
        after = listen_overflows()
        if before is not None and after is not None:
            sample.listen_overflows = after - before
        self.overflows = after


# ------------------------------------------------------------------------------ tools


@dataclass
class Env:
    """The Pebble under test, the directory the tools use, and the tools found.

    ``directory_url`` and ``ca_bundle`` are Pebble's at loopback, the latency proxy's in
    latency mode; validation (``pebble.http_port``, its DNS) is Pebble's either way.
    """

    pebble: Any
    directory_url: str
    ca_bundle: str
    plog: PebbleLog
    tag: str
    adr_cmd: list[str]
    certbot: str | None
    certbot_why: str | None
    lego: str | None
    lego_why: str | None
    counter: int = 0

    def names(self, prefix: str, count: int) -> list[str]:
        """``count`` names never used before in this run (no authorization reuse)."""
        self.counter += 1
        return [f"{prefix}{self.counter}-{i}.{self.tag}.{DOMAIN}" for i in range(count)]

    def adr_common(self) -> list[str]:
        p = self.pebble
        return ["--directory", self.directory_url, "--ca-bundle", self.ca_bundle,
                "--http-01-port", str(p.http_port), "--http-01-address", LOOPBACK,
                "--dns-resolver", p.dns_resolver]


def find_acmedryrun() -> list[str]:
    script = Path(sys.executable).parent / "acmedryrun"
    if script.exists():
        return [str(script)]
    found = shutil.which("acmedryrun")
    return [found] if found else [sys.executable, "-m", "acmedryrun"]


def ensure_certbot(install: bool) -> tuple[str | None, str | None]:
    """certbot in its own venv, created with ``pip install certbot`` when missing."""
    binary = CERTBOT_VENV / "bin" / "certbot"
    if binary.exists():
        return str(binary), None
    if not install:
        return None, f"not installed ({binary}); run without --no-install"
    log(f"creating {CERTBOT_VENV} and installing certbot from PyPI ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(CERTBOT_VENV)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(CERTBOT_VENV / "bin" / "pip"), "install", "-q", "certbot"],
                       check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"pip install certbot failed: {exc} {detail.decode()[-200:]}".strip()
    return (str(binary), None) if binary.exists() else (None, "certbot missing after install")


def ensure_lego(install: bool) -> tuple[str | None, str | None]:
    """Debian's lego, installed with apt-get when missing (as root)."""
    found = shutil.which("lego")
    if found:
        return found, None
    if not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "not installed (apt-get install -y lego)"
    log("installing lego with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "lego"], ["apt-get", "update"],
                ["apt-get", "install", "-y", "lego"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(cmd, check=False, capture_output=True, timeout=600, env=env)
        found = shutil.which("lego")
        if found:
            return found, None
    return None, "apt-get install -y lego failed"


def run_adr_cli(env: Env, names: Sequence[str], timeout: float = 600) -> Sample:
    cmd = [*env.adr_cmd, "check", *[a for n in names for a in ("-d", n)],
           *env.adr_common(), "--json", "-q"]
    env.plog.mark()
    sample, stdout, _ = run_child(cmd, child_env(), timeout)
    env.plog.take_into(sample)
    try:
        report = json.loads(stdout)
    except ValueError:
        sample.ok = False
        sample.error = sample.error or "no JSON report on stdout"
        return sample
    _read_report(sample, report)
    return sample


def _read_report(sample: Sample, report: dict[str, Any]) -> None:
    sample.adr_requests = report["requests"]["total"]
    sample.adr_polls = report["requests"]["polls"]
    sample.adr_duration_s = report["duration_s"]
    sample.verdicts = {report["verdict"]: 1}
    steps = [st for st in report.get("steps", []) if st.get("duration_s") is not None]
    if steps:
        top = max(steps, key=lambda st: st["duration_s"])
        sample.slowest_step, sample.slowest_step_s = top["step"], top["duration_s"]
    if report["verdict"] != "likely_success":
        sample.ok = False
        first = next((p for p in report["problems"] if p["severity"] in ("fatal", "error")),
                     None)
        sample.error = f"verdict {report['verdict']}" + (f": {first['name']}" if first else "")


def run_adr_lib(env: Env, names: Sequence[str]) -> Sample:
    env.plog.mark()
    started = time.perf_counter()
    try:
        report = _dry_run_once(env, names)
    except Exception as exc:  # noqa: BLE001 - a failing tool is a table entry, not a crash
        return Sample(ok=False, error=f"{type(exc).__name__}: {exc}")
    wall = time.perf_counter() - started
    sample = Sample(ok=True, wall_s=wall)
    env.plog.take_into(sample)
    _read_report(sample, report.to_dict())
    return sample


def run_certbot(env: Env, names: Sequence[str], workdir: str | None = None,
                timeout: float = 600) -> Sample:
    if env.certbot is None:
        return Sample(ok=False, error=env.certbot_why)
    p = env.pebble
    with contextlib.ExitStack() as stack:
        d = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-certbot-"))
        cmd = [env.certbot, "certonly", "--dry-run", "--server", env.directory_url,
               "--standalone", "--http-01-port", str(p.http_port),
               "--http-01-address", LOOPBACK,
               "--config-dir", f"{d}/config", "--work-dir", f"{d}/work",
               "--logs-dir", f"{d}/logs", "--register-unsafely-without-email",
               "--agree-tos", "--non-interactive", "-d", ",".join(names)]
        env.plog.mark()
        sample, stdout, stderr = run_child(cmd, child_env(REQUESTS_CA_BUNDLE=env.ca_bundle),
                                           timeout)
        env.plog.take_into(sample)
    if sample.ok and "dry run was successful" not in stdout + stderr:
        sample.ok = False
        sample.error = "no 'The dry run was successful.'"
    return sample


def run_lego(env: Env, names: Sequence[str], workdir: str | None = None,
             timeout: float = 600) -> Sample:
    if env.lego is None:
        return Sample(ok=False, error=env.lego_why)
    p = env.pebble
    with contextlib.ExitStack() as stack:
        d = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lego-"))
        # http-01 needs no --dns.resolvers: lego resolves nothing itself for http-01
        # (its DNS pre-checks are dns-01's propagation checks).
        cmd = [env.lego, "--server", env.directory_url, "--email", "bench@example.com",
               "--accept-tos", *[a for n in names for a in ("--domains", n)],
               "--http", "--http.port", f"{LOOPBACK}:{p.http_port}", "--path", d, "run"]
        env.plog.mark()
        sample, _, _ = run_child(cmd, child_env(LEGO_CA_CERTIFICATES=env.ca_bundle), timeout)
        env.plog.take_into(sample)
    return sample


def run_adr_batch_cli(env: Env, count: int, concurrency: int) -> Sample:
    names = env.names("b", count)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as d:
        batch = Path(d) / "names.txt"
        batch.write_text("\n".join(names) + "\n", encoding="utf-8")
        output = Path(d) / "reports.jsonl"
        cmd = [*env.adr_cmd, "batch", str(batch), *env.adr_common(),
               "--concurrency", str(concurrency), "--output", str(output), "-q"]
        env.plog.mark()
        sample, _, _ = run_child(cmd, child_env(), 1800)
        env.plog.take_into(sample)
        reports = [json.loads(line) for line in output.read_text("utf-8").splitlines()
                   if line.strip()] if output.exists() else []
    return _batch_sample(sample, reports, count)


def run_adr_batch_lib(env: Env, count: int, concurrency: int) -> Sample:
    from acmedryrun.batch import dry_run_many
    from acmedryrun.solvers import HTTP01Standalone

    p = env.pebble
    names = env.names("m", count)
    env.plog.mark()
    started = time.perf_counter()
    try:
        results = dry_run_many(
            [[n] for n in names], directory=env.directory_url, ca_bundle=env.ca_bundle,
            solver=HTTP01Standalone(port=p.http_port, address=LOOPBACK),
            dns_resolver=p.dns_resolver, concurrency=concurrency)
    except Exception as exc:  # noqa: BLE001 - a failing tool is a table entry, not a crash
        return Sample(ok=False, error=f"{type(exc).__name__}: {exc}")
    sample = Sample(ok=True, wall_s=time.perf_counter() - started, rc=0)
    env.plog.take_into(sample)
    return _batch_sample(sample, [r.to_dict() for _, r in results], count)


def _batch_sample(sample: Sample, reports: list[dict[str, Any]], count: int) -> Sample:
    sample.runs = count
    sample.verdicts = dict(Counter(r["verdict"] for r in reports))
    if reports:
        polls = [r["requests"]["polls"] for r in reports]
        sample.adr_requests = sum(r["requests"]["total"] for r in reports)
        sample.adr_polls = sum(polls)
        sample.poll_max = max(polls)
        sample.over_two_polls = sum(p > TARGET_POLLS_PER_AUTHZ for p in polls)
        sample.over_floor = sum(r["requests"]["total"] - r["requests"]["polls"]
                                > floor_requests(len(r["identifiers"])) for r in reports)
        sample.slow_runs = sum(r["duration_s"] > 1.0 for r in reports)
        sample.slowest_s = max(r["duration_s"] for r in reports)
    good = sample.verdicts.get("likely_success", 0)
    if good != count:
        sample.ok = False
        sample.error = sample.error or f"{good}/{count} likely_success ({sample.verdicts})"
    return sample


def run_peer_loop(runner: Callable[..., Sample], env: Env, sample_size: int,
                  prefix: str) -> Sample:
    """``sample_size`` single-name runs in a row, one account dir (as a shell loop would)."""
    walls: list[float] = []
    rss: list[int] = []
    requests = overflows = connections = 0
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as d:
        for _ in range(sample_size):
            s = runner(env, env.names(prefix, 1), workdir=d)
            if s.ok and s.wall_s is not None:
                walls.append(s.wall_s)
                rss.append(s.maxrss_kib or 0)
                requests += s.pebble_requests or 0
                overflows += s.listen_overflows or 0
                connections += s.proxy_connections or 0
            elif s.error:
                errors.append(s.error)
    if not walls:
        return Sample(ok=False, runs=sample_size, error=errors[0] if errors else "no run")
    return Sample(ok=not errors, wall_s=sum(walls), runs=len(walls), maxrss_kib=max(rss),
                  pebble_requests=requests, listen_overflows=overflows,
                  proxy_connections=connections if env.plog.proxy_log else None,
                  error=errors[0] if errors else None)


# ------------------------------------------------------------------------------ scenarios


def scenario_one(env: Env, runs: int, inproc_runs: int) -> dict[str, Series]:
    log(f"(a) one name: {runs} runs each, in-process {inproc_runs} runs")
    series = {t: Series() for t in TOOLS}
    for i in range(max(runs, inproc_runs)):
        if i < runs:
            series[ADR_CLI].samples.append(run_adr_cli(env, env.names("c", 1)))
            series[CERTBOT].samples.append(run_certbot(env, env.names("cb", 1)))
            series[LEGO].samples.append(run_lego(env, env.names("lg", 1)))
        series[ADR_LIB].samples.append(run_adr_lib(env, env.names("i", 1)))
        _progress(series, i)
    return series


def scenario_fifty(env: Env, runs: int, lego_runs: int, size: int) -> dict[str, Series]:
    log(f"(b) one order of {size} names: {runs} runs each, lego {lego_runs}")
    series = {t: Series() for t in TOOLS}
    for i in range(runs):
        series[ADR_CLI].samples.append(run_adr_cli(env, env.names("c", size)))
        series[ADR_LIB].samples.append(run_adr_lib(env, env.names("i", size)))
        series[CERTBOT].samples.append(run_certbot(env, env.names("cb", size)))
        if i < lego_runs:
            series[LEGO].samples.append(run_lego(env, env.names("lg", size), timeout=1800))
        _progress(series, i)
    if lego_runs == 0:
        series[LEGO].skipped = "skipped (--skip-slow / --lego-50-runs 0)"
    return series


def scenario_batch(env: Env, runs: int, count: int, concurrency: int,
                   peer_sample: int) -> dict[str, Series]:
    log(f"(c) {count} single-name dry runs at concurrency {concurrency}: {runs} runs;"
        f" peers: {peer_sample} sequential runs each, extrapolated")
    series = {t: Series() for t in TOOLS}
    for i in range(runs):
        series[ADR_CLI].samples.append(run_adr_batch_cli(env, count, concurrency))
        series[ADR_LIB].samples.append(run_adr_batch_lib(env, count, concurrency))
        _progress(series, i)
    if peer_sample > 0:
        series[CERTBOT].samples.append(run_peer_loop(run_certbot, env, peer_sample, "cbl"))
        series[LEGO].samples.append(run_peer_loop(run_lego, env, peer_sample, "lgl"))
    else:
        series[CERTBOT].skipped = series[LEGO].skipped = "skipped (--peer-sample 0)"
    return series


def _progress(series: dict[str, Series], i: int) -> None:
    parts = []
    for tool, s in series.items():
        if len(s.samples) > i:
            last = s.samples[i]
            parts.append(f"{tool}: " + (f"{last.wall_s:.2f} s" if last.ok and last.wall_s
                                        else f"FAILED {last.error}"))
    log(f"  run {i + 1}: " + "; ".join(parts))


def throughput(s: Sample) -> float | None:
    return s.runs / s.wall_s if s.ok and s.wall_s else None


# ------------------------------------------------------------------------------ start-up


def measure_startup(env: Env, reps: int) -> dict[str, Any]:
    log(f"start-up: {reps} runs each")
    py = sys.executable
    out: dict[str, Any] = {}
    imports: list[float] = []
    for _ in range(reps):
        s, _, stderr = run_child([py, "-X", "importtime", "-c", "import acmedryrun"],
                                 child_env(), 60)
        total = importtime_of(stderr, "acmedryrun")
        if s.ok and total is not None:
            imports.append(total)
    out["import_acmedryrun_s"] = median(imports)
    # The same without any byte-code cache, as this machine's PYTHONDONTWRITEBYTECODE=1
    # leaves the editable install (first run after an edit, too).
    s, _, stderr = run_child([py, "-X", "importtime", "-c", "import acmedryrun"],
                             child_env(PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="bench-pyc-")),
                             60)
    out["import_acmedryrun_no_pyc_s"] = importtime_of(stderr, "acmedryrun")

    def wall_of(cmd: list[str], extra_env: dict[str, str] | None = None) -> float | None:
        walls = []
        for _ in range(reps):
            s, _, _ = run_child(cmd, child_env(**(extra_env or {})), 60)
            if s.ok and s.wall_s is not None:
                walls.append(s.wall_s)
        return median(walls)

    out["python_noop_s"] = wall_of([py, "-c", "pass"])
    out["python_import_acmedryrun_s"] = wall_of([py, "-c", "import acmedryrun"])
    out["acmedryrun_help_s"] = wall_of([*env.adr_cmd, "--help"])
    out["certbot_help_s"] = wall_of([env.certbot, "--help"]) if env.certbot else None
    out["lego_help_s"] = wall_of([env.lego, "--help"]) if env.lego else None
    # What `acmedryrun check` imports, one name, against the Pebble.
    s, _, stderr = run_child([sys.executable, "-X", "importtime", "-m", "acmedryrun",
                              "check", "-d", env.names("it", 1)[0], *env.adr_common(), "-q"],
                             child_env(), 120)
    out["check_imports"] = top_level_imports(stderr)[:12] if s.ok else []
    out["check_imports_total_s"] = sum(t for _, t in top_level_imports(stderr)) if s.ok \
        else None
    env.plog.mark()
    return out


def importtime_of(stderr: str, module: str) -> float | None:
    """Cumulative seconds of ``module`` in ``-X importtime`` output."""
    for line in stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == module and parts[1].strip().isdigit():
            return int(parts[1]) / 1e6
    return None


def top_level_imports(stderr: str) -> list[tuple[str, float]]:
    """The top-level imports of an ``-X importtime`` log, by cumulative time."""
    rows = []
    for line in stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and parts[2].startswith(" ") \
                and not parts[2].startswith("  "):
            rows.append((parts[2].strip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])


# ------------------------------------------------------------------------------ profiles


def _dry_run_once(env: Env, names: Sequence[str]) -> Any:
    import acmedryrun
    from acmedryrun.solvers import HTTP01Standalone

    p = env.pebble
    return acmedryrun.dry_run(list(names), directory=env.directory_url, ca_bundle=env.ca_bundle,
                              solver=HTTP01Standalone(port=p.http_port, address=LOOPBACK),
                              dns_resolver=p.dns_resolver)


def profile_inproc(env: Env, reps: int, size: int) -> tuple[str, list[dict[str, Any]]]:
    """Where an in-process ``dry_run()`` of ``size`` names spends its time."""
    prof = cProfile.Profile()
    started = time.perf_counter()
    for _ in range(reps):
        prof.runcall(_dry_run_once, env, env.names("p", size))
    wall = time.perf_counter() - started
    stats = pstats.Stats(prof)
    text = [f"cProfile of {reps} in-process dry_run() calls of {size} name(s),"
            f" {wall:.3f} s in all"
            " (wall clock: time blocked in sleeps and lock waits shows as"
            " {method 'acquire' of '_thread.lock' objects}):",
            _pstats_text(stats, "cumulative", 40), _pstats_text(stats, "tottime", 25)]
    try:
        from pyinstrument import Profiler
    except ImportError:
        text.append("(pip install pyinstrument for a call-tree profile)")
    else:
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(reps):
            _dry_run_once(env, env.names("p", size))
        profiler.stop()
        text.append(f"pyinstrument, {reps} calls:\n"
                    + profiler.output_text(unicode=False, color=False, show_all=False))
    env.plog.mark()
    return "\n".join(text), hot_functions(stats, reps)


def profile_cli(env: Env, size: int) -> tuple[str, list[dict[str, Any]]]:
    """cProfile of one whole ``acmedryrun check`` process of ``size`` names."""
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as d:
        path = f"{d}/check.pstats"
        cmd = [sys.executable, "-m", "cProfile", "-o", path, "-m", "acmedryrun", "check",
               *[a for n in env.names("pc", size) for a in ("-d", n)], *env.adr_common(),
               "-q"]
        s, _, stderr = run_child(cmd, child_env(), 120)
        env.plog.mark()
        if not Path(path).exists():
            return f"cProfile of the CLI failed: {s.error} {stderr[-300:]}", []
        stats = pstats.Stats(path)
        text = (f"cProfile of one whole `acmedryrun check` process of {size} name(s)"
                f" ({s.wall_s or 0:.3f} s"
                " wall under the profiler; imports show as _find_and_load):\n"
                + _pstats_text(stats, "cumulative", 45) + _pstats_text(stats, "tottime", 25))
        return text, hot_functions(stats, 1, imports=True)


def _pstats_text(stats: pstats.Stats, key: str, limit: int) -> str:
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats(key).print_stats(limit)
    return buf.getvalue()


def hot_functions(stats: pstats.Stats, reps: int, *, imports: bool = False,
                  limit: int = 24) -> list[dict[str, Any]]:
    """acmedryrun's own functions by cumulative time per run, plus the waits and imports."""
    rows = []
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, func), (_, _, tottime, cumtime, _) in raw.items():
        mine = "/acmedryrun/" in filename and "/bench/" not in filename
        wait = func in ("<method 'acquire' of '_thread.lock' objects>",
                        "<built-in method time.sleep>")
        imp = imports and func == "_find_and_load"
        if mine or wait or imp:
            where = f"{filename.split('/acmedryrun/', 1)[-1]}:{line}" if mine else filename
            rows.append({"function": f"{where} {func}" if mine else func,
                         "cum_ms_per_run": cumtime / reps * 1000,
                         "self_ms_per_run": tottime / reps * 1000})
    rows.sort(key=lambda r: -r["cum_ms_per_run"])
    return rows[:limit]


# ------------------------------------------------------------------------------ machine


def machine_info(env: Env) -> dict[str, Any]:
    import acmedryrun

    def cmd_out(cmd: list[str]) -> str | None:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if r.returncode == 0 \
            and (r.stdout.strip() or r.stderr.strip()) else None

    def deb(pkg: str) -> str | None:
        return cmd_out(["dpkg-query", "-W", "-f", "${Version}", pkg])

    def pkg_version(name: str) -> str | None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(name)
        except PackageNotFoundError:
            return None

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "os": cmd_out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "acmedryrun": acmedryrun.__version__,
        "acme (python)": pkg_version("acme"), "cryptography": pkg_version("cryptography"),
        "certbot": cmd_out([env.certbot, "--version"]) if env.certbot else env.certbot_why,
        "certbot python": cmd_out([str(CERTBOT_VENV / "bin" / "python"), "--version"])
        if env.certbot else None,
        "lego": (f"{deb('lego') or '?'} (Debian; `lego --version`: "
                 f"{cmd_out([env.lego, '--version']) or '?'})") if env.lego else env.lego_why,
        "pebble": f"{deb('pebble') or '?'} (Debian)",
        "git": (cmd_out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or "?")
        + (" + uncommitted changes in acmedryrun/" if cmd_out(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "acmedryrun"]) else ""),
    }


# ------------------------------------------------------------------------------ report


def fmt_s(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def fmt(v: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def fmt_x(v: float | None, spec: str = ".3f") -> str:
    return fmt(v, spec, "x")


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def status_of(series: Series) -> str:
    if series.skipped:
        return series.skipped
    if not series.samples:
        return "not run"
    good = len(series.good)
    if good == len(series.samples):
        return f"{good}/{len(series.samples)} ok"
    errs = "; ".join(sorted({s.error or "?" for s in series.samples if not s.ok})[:2])
    return f"{good}/{len(series.samples)} ok - FAILED: {errs}"


def slowest_step(sm: dict[str, Any]) -> str:
    steps = sm.get("slowest_steps") or {}
    if not steps:
        return "n/a"
    name = max(steps, key=lambda k: steps[k])
    return f"{name} {fmt_s(sm.get('median_slowest_step_s'))}"


def floor_requests(n: int) -> int:
    """directory, newNonce, newAccount, newOrder, finalize, certificate + 3 per name."""
    return 6 + 3 * n


#: Parallel request streams for an order's authorizations (acmedryrun.run.STREAMS): each
#: stream past the first may cost one newNonce of its own (issue 18).
STREAMS = 8


def extra_stream_nonces(n: int) -> int:
    """The most newNonce requests above the floor an order of ``n`` names may cost."""
    return min(n, STREAMS) - 1


def evaluate(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issues (8 and 18; at latency 18's): measured, threshold, met."""
    one = res["scenarios"]["one"]
    fifty = res["scenarios"]["fifty"]
    batch = res["scenarios"]["batch"]
    size = res["config"]["fifty_size"]
    rtt = res["config"].get("rtt_ms") or 0

    def med(scn: dict[str, Series], tool: str) -> float | None:
        return scn[tool].med("wall_s")

    rows: list[dict[str, Any]] = []

    def add(name: str, measured: float | None, op: str, threshold: float, *, shown: str,
            note: str = "", unit: str = "x") -> None:
        met = None if measured is None else (measured <= threshold if op == "<="
                                             else measured >= threshold)
        rows.append({"target": name, "measured": measured, "op": op, "threshold": threshold,
                     "shown": shown, "met": met, "note": note, "unit": unit})

    at = f" (issue 18, {rtt:g} ms RTT)" if rtt else ""
    r = ratio(med(one, ADR_CLI), med(one, CERTBOT))
    add(f"one name, whole process vs certbot{at}", r, "<=",
        TARGET_RTT_ONE_VS_CERTBOT if rtt else TARGET_ONE_VS_CERTBOT,
        shown=f"{fmt_x(r)} ({fmt_s(med(one, ADR_CLI))} vs {fmt_s(med(one, CERTBOT))})")
    if not rtt:
        r = ratio(med(one, ADR_CLI), med(one, LEGO))
        add("one name, whole process vs lego", r, "<=", TARGET_ONE_VS_LEGO,
            shown=f"{fmt_x(r)} ({fmt_s(med(one, ADR_CLI))} vs {fmt_s(med(one, LEGO))})")
        m = med(one, ADR_CLI)
        add("one name, whole process median (issue 18)", m, "<=", TARGET_LOOP_ONE_S,
            shown=fmt_s(m), unit=" s")
        m = med(one, ADR_LIB)
        add("one name, in process dry_run() median", m, "<=", TARGET_INPROC_S,
            shown=fmt_s(m), unit=" s")
    r = ratio(med(fifty, ADR_CLI), med(fifty, CERTBOT))
    add(f"{size} names in one order vs certbot{at}", r, "<=",
        TARGET_RTT_50_VS_CERTBOT if rtt else TARGET_50_VS_CERTBOT,
        shown=f"{fmt_x(r)} ({fmt_s(med(fifty, ADR_CLI))} vs {fmt_s(med(fifty, CERTBOT))})")
    if not rtt:
        fastest = min((x.wall_s for x in fifty[CERTBOT].good if x.wall_s), default=None)
        r = ratio(med(fifty, ADR_CLI), fastest)
        add(f"{size} names in one order vs certbot's fastest run (issue 18)", r, "<=",
            TARGET_LOOP_50_VS_CERTBOT_FASTEST,
            shown=f"{fmt_x(r)} ({fmt_s(med(fifty, ADR_CLI))} vs {fmt_s(fastest)})")
    r = ratio(med(fifty, ADR_CLI), med(fifty, LEGO))
    add(f"{size} names in one order vs lego{at}", r, "<=",
        TARGET_RTT_50_VS_LEGO if rtt else TARGET_50_VS_LEGO,
        shown=f"{fmt_x(r, '.4f')} ({fmt_s(med(fifty, ADR_CLI))} vs {fmt_s(med(fifty, LEGO))})",
        note="lego: single run" if len(fifty[LEGO].good) == 1 else "")
    adr_tp = median([throughput(s) for s in batch[ADR_CLI].samples])
    cb_tp = median([throughput(s) for s in batch[CERTBOT].samples])
    r = ratio(adr_tp, cb_tp)
    add(f"{res['config']['batch_count']} dry runs at concurrency"
        f" {res['config']['concurrency']}: throughput vs certbot{at}", r, ">=",
        TARGET_RTT_BATCH_X_CERTBOT if rtt else TARGET_BATCH_X_CERTBOT,
        shown=f"{fmt_x(r, '.1f')} ({fmt(adr_tp, '.1f')} vs {fmt(cb_tp, '.2f')} runs/s)",
        note="certbot extrapolated from its sequential sample")
    for label, scn, n in (("1 name", one, 1), (f"{size} names", fifty, size)):
        ok = True
        worst = []
        for tool in (ADR_CLI, ADR_LIB):
            for s in scn[tool].good:
                floor = floor_requests(n)
                pebble_polls = (s.pebble_requests or 0) - floor
                if s.adr_requests is None or s.adr_polls is None:
                    continue
                nonces = s.endpoints.get("newNonce") or 0
                exact = 1 <= nonces <= 1 + extra_stream_nonces(n) \
                    and s.adr_requests - s.adr_polls == floor + nonces - 1 \
                    and s.pebble_requests == s.adr_requests \
                    and s.endpoints.get("directory") == 1 \
                    and s.endpoints.get("newAccount") == 1 \
                    and s.endpoints.get("newOrder") == 1 \
                    and s.endpoints.get("challenge") == n \
                    and s.endpoints.get("finalize") == 1 \
                    and s.endpoints.get("certificate") == 1
                ok = ok and exact and s.adr_polls <= TARGET_POLLS_PER_AUTHZ * n
                worst.append((s.adr_requests, s.adr_polls, pebble_polls, nonces - 1))
        shown = "n/a" if not worst else (
            f"floor {floor_requests(n)}; total {min(w[0] for w in worst)}-"
            f"{max(w[0] for w in worst)}, polls {min(w[1] for w in worst)}-"
            f"{max(w[1] for w in worst)} (<= {TARGET_POLLS_PER_AUTHZ * n} allowed), extra"
            f" stream nonces {min(w[3] for w in worst)}-{max(w[3] for w in worst)}"
            f" (<= {extra_stream_nonces(n)} allowed)")
        rows.append({"target": f"requests = floor + stream nonces + polls, polls <= 2/authz"
                               f" ({label})",
                     "measured": None, "op": "==", "threshold": None, "shown": shown,
                     "unit": "",
                     "met": ok if worst else None, "note": "report and Pebble's log agree"
                     if ok and worst else ""})
    runs = [x for tool in (ADR_CLI, ADR_LIB) for x in batch[tool].good]
    if runs:
        total = sum(x.runs for x in runs)
        over_floor = sum(x.over_floor or 0 for x in runs)
        over_polls = sum(x.over_two_polls or 0 for x in runs)
        new_accounts = sum(x.endpoints.get("newAccount", 0) for x in runs)
        rows.append({
            "target": "requests = floor + polls, polls <= 2/authz (batch, every run)",
            "measured": None, "op": "==", "threshold": None, "unit": "",
            # The first run of each batch creates the shared account; the others reuse it
            # (run_cache), so at most one run a batch is above the floor.
            "met": over_floor <= len(runs) and over_polls == 0,
            "note": f"{new_accounts} newAccount requests in Pebble's log for {total} runs in"
                    f" {len(runs)} batches: the first run of a batch looks the shared key up"
                    " (accountDoesNotExist) and creates the account, the others reuse it",
            "shown": f"runs above the floor ({floor_requests(1)}): {over_floor} of {total};"
                     f" runs over 2 polls: {over_polls} of {total}; most polls in one run"
                     f" {max(x.poll_max or 0 for x in runs)}"})
    a = one[ADR_CLI].med("maxrss_kib")
    c = one[CERTBOT].med("maxrss_kib")
    r = ratio(a, c)
    add("CLI peak memory, one name, vs certbot", r, "<=", 1.0,
        shown=f"{fmt_x(r, '.2f')} ({fmt(a and a / MIB, '.1f', ' MiB')} vs"
        f" {fmt(c and c / MIB, '.1f', ' MiB')})")
    return rows


def write_markdown(res: dict[str, Any], path: Path) -> None:
    m = res["machine"]
    cfg = res["config"]
    rtt = cfg.get("rtt_ms") or 0
    lines = [
        f"# acmedryrun benchmark at {rtt:g} ms round trip (issue 18)" if rtt
        else "# acmedryrun benchmark (issue 8)", "",
        f"{m['date']} - `python bench/run.py {' '.join(cfg['argv'])}`".rstrip(), "",
        f"**Machine**: {m['nproc']} CPU ({m['cpu']}), {m['memory']}, {m['os']},"
        f" kernel {m['kernel']}; Python {m['python']}.  ",
        f"**Tools**: acmedryrun {m['acmedryrun']} at {m['git']} (acme {m['acme (python)']},"
        f" cryptography {m['cryptography']}); certbot: {m['certbot']}"
        f" ({m['certbot python']}); lego: {m['lego']}; Pebble {m['pebble']}.  ",
        "**CA**: one LocalPebble for every run (PEBBLE_VA_NOSLEEP=1, nonce rejection 0,"
        " authz reuse 0), http-01 on 127.0.0.1, a fresh name per run."
        f" Medians of {cfg['runs']} runs unless said otherwise.", "",
    ]
    if rtt:
        lines[-2] += "  "  # a line break before the latency line
        lines[-1:-1] = [
            f"**Latency**: every tool's ACME traffic goes through one FaultProxy"
            f" ({rtt / 2:g} ms each way, in its own process): {rtt:g} ms per request, and"
            f" per new connection its TCP and TLS round trips on top (TLS 1.3:"
            f" {2 * rtt:g} ms, so its first request costs {3 * rtt:g} ms). Pebble's"
            " validation of the tools' http-01 responders is not delayed (Pebble 2.4.0"
            " validates at most 3 challenges at a time)."]
    conn_head, conn_rule = (" new connections (proxy) |", "---:|") if rtt else ("", "")
    size = cfg["fifty_size"]
    for key, title in (("one", "(a) one name"), ("fifty", f"(b) one order of {size} names")):
        scn = res["scenarios"][key]
        base = scn[ADR_CLI].med("wall_s")
        lines += [f"## {title}", "",
                  "| tool | median wall | min-max | vs acmedryrun CLI | peak RSS | requests"
                  " (Pebble) | acmedryrun requests / polls | slowest step (median) |"
                  f" listen overflows |{conn_head} runs |",
                  f"|---|---:|---:|---:|---:|---:|---:|---|---:|{conn_rule}---|"]
        for tool in TOOLS:
            s = scn[tool]
            sm = s.summary()
            w = sm["median_wall_s"]
            rel = ratio(w, base)
            lines.append(
                f"| {tool} | {fmt_s(w)} | {fmt_s(sm['min_wall_s'])}-{fmt_s(sm['max_wall_s'])}"
                f" | {fmt(rel, '.1f', 'x')} | {fmt(sm['median_maxrss_mib'], '.1f', ' MiB')}"
                f" | {fmt(sm['median_pebble_requests'], '.0f')}"
                f" | {fmt(sm['median_adr_requests'], '.0f')} /"
                f" {fmt(sm['median_adr_polls'], '.0f')} | {slowest_step(sm)}"
                f" | {fmt(sm['median_listen_overflows'], '.0f')} |"
                + (f" {fmt(sm['median_proxy_connections'], '.0f')} |" if rtt else "")
                + f" {status_of(s)} |")
        lines.append("")
    scn = res["scenarios"]["batch"]
    base = median([throughput(s) for s in scn[ADR_CLI].samples])
    lines += [f"## (c) {cfg['batch_count']} single-name dry runs, concurrency"
              f" {cfg['concurrency']}", "",
              "| tool | how | median wall for the batch | throughput | vs acmedryrun CLI |"
              " peak RSS | requests per run (Pebble) | polls per run (most) |"
              f" runs over 1 s (slowest) | listen overflows |"
              f"{conn_head.replace('connections', 'connections per run')} batches |",
              f"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|{conn_rule}---|"]
    for tool in TOOLS:
        s = scn[tool]
        tps = [throughput(x) for x in s.samples]
        tp = median(tps)
        if tool in (ADR_CLI, ADR_LIB):
            how = (f"`acmedryrun batch --concurrency {cfg['concurrency']}`, one responder"
                   if tool == ADR_CLI else f"`dry_run_many(concurrency={cfg['concurrency']})`")
            wall = s.med("wall_s")
            runs_per_sample = cfg["batch_count"]
        else:
            how = (f"{cfg['peer_sample']} sequential runs (one port), extrapolated to"
                   f" {cfg['batch_count']}")
            wall = cfg["batch_count"] / tp if tp else None
            runs_per_sample = s.good[0].runs if s.good else None
        per = ratio(s.med("pebble_requests"), runs_per_sample)
        conns = ratio(s.med("proxy_connections"), runs_per_sample)
        rss = s.med("maxrss_kib")
        extrapolated = " (extrapolated)" if tool in (CERTBOT, LEGO) and wall else ""
        polls = slow = "n/a"
        if tool in (ADR_CLI, ADR_LIB) and s.good:
            done = sum(x.runs for x in s.good)
            polls = (f"{sum(x.adr_polls or 0 for x in s.good) / done:.2f}"
                     f" ({max(x.poll_max or 0 for x in s.good)})")
            slow = (f"{sum(x.slow_runs or 0 for x in s.good)} of {done}"
                    f" ({fmt_s(max(x.slowest_s or 0 for x in s.good))})")
        lines.append(
            f"| {tool} | {how} | {fmt_s(wall)}{extrapolated}"
            f" | {fmt(tp, '.2f', ' runs/s')} | {fmt(ratio(tp, base), '.3f', 'x')}"
            f" | {fmt(rss and rss / MIB, '.1f', ' MiB')} | {fmt(per, '.1f')}"
            f" | {polls} | {slow} | {fmt(s.med('listen_overflows'), '.0f')} |"
            + (f" {fmt(conns, '.2f')} |" if rtt else "")
            + f" {status_of(s)} |")
    lines.append("")
    st = res["startup"]
    lines += ["## Start-up", "",
              f"| what | median of {cfg['startup_reps']} |", "|---|---:|",
              f"| `python -X importtime -c \"import acmedryrun\"` (cumulative, with .pyc) |"
              f" {fmt_s(st.get('import_acmedryrun_s'))} |",
              f"| same, no byte-code cache (once; this machine sets PYTHONDONTWRITEBYTECODE=1)"
              f" | {fmt_s(st.get('import_acmedryrun_no_pyc_s'))} |",
              f"| `python -c pass` wall | {fmt_s(st.get('python_noop_s'))} |",
              f"| `python -c \"import acmedryrun\"` wall | "
              f"{fmt_s(st.get('python_import_acmedryrun_s'))} |",
              f"| `acmedryrun --help` wall | {fmt_s(st.get('acmedryrun_help_s'))} |",
              f"| `certbot --help` wall | {fmt_s(st.get('certbot_help_s'))} |",
              f"| `lego --help` wall | {fmt_s(st.get('lego_help_s'))} |",
              f"| imports of one `acmedryrun check` (sum of top-level, -X importtime) |"
              f" {fmt_s(st.get('check_imports_total_s'))} |", ""]
    if st.get("check_imports"):
        lines.append("Top-level imports of `acmedryrun check`: " + ", ".join(
            f"{name} {t * 1000:.0f} ms" for name, t in st["check_imports"][:8]) + ".")
        lines.append("")
    one = res["scenarios"]["one"]
    cli, dur = one[ADR_CLI].med("wall_s"), one[ADR_CLI].med("adr_duration_s")
    if cli and dur:
        lines += [f"One `acmedryrun check` process ({fmt_s(cli)}) holds: the interpreter"
                  f" ({fmt_s(st.get('python_noop_s'))} for `python -c pass`), the imports"
                  f" ({fmt_s(st.get('check_imports_total_s'))}, `-X importtime`; most of them"
                  " happen lazily inside `dry_run()`), and the run as the report times it"
                  f" (`duration_s` {fmt_s(dur)}, those lazy imports included).", ""]
    lat = res.get("latency") or {}
    if rtt and lat:
        d_req, p_req = lat.get("direct_request_s"), lat.get("proxy_request_s")
        d_new, p_new = lat.get("direct_new_connection_s"), lat.get("proxy_new_connection_s")
        added_req = p_req - d_req if p_req is not None and d_req is not None else None
        added_new = p_new - d_new if p_new is not None and d_new is not None else None
        lines += ["## The latency, checked", "",
                  f"Medians of {lat.get('reps')} GETs of the directory (`requests`, TLS 1.3),"
                  " straight to Pebble and through the proxy, at the start of the run:", "",
                  "| | straight to Pebble | through the proxy | added | model |",
                  "|---|---:|---:|---:|---:|",
                  f"| a request on a kept-alive connection | {fmt_s(d_req)} | {fmt_s(p_req)}"
                  f" | {fmt_s(added_req)} | {fmt_s(rtt / 1000)} (1 RTT) |",
                  f"| the first request on a new connection | {fmt_s(d_new)} |"
                  f" {fmt_s(p_new)} | {fmt_s(added_new)} | {fmt_s(3 * rtt / 1000)}"
                  " (TCP + TLS 1.3 + request) |", ""]
        cpu = lat.get("proxy_cpu_s")
        if cpu is not None:
            lines += [f"The proxy process used {cpu:.1f} s of CPU in the whole run (it keeps"
                      " one loopback connection to Pebble per client connection).", ""]
    lines += ["## Targets", "", "| target | measured | threshold | met |", "|---|---|---|---|"]
    for t in res["targets"]:
        thr = "exact" if t["threshold"] is None else \
            f"{t['op']} {t['threshold']:g}{t.get('unit', 'x')}"
        met = {True: "**met**", False: "**MISSED**", None: "n/a"}[t["met"]]
        if t["met"] is not None and t["measured"] is not None and t["threshold"]:
            factor = t["measured"] / t["threshold"]
            met += f" ({factor:.2f} of the limit)" if t["op"] == "<=" else \
                f" ({factor:.2f} of the minimum)"
        note = f" - {t['note']}" if t["note"] else ""
        lines.append(f"| {t['target']} | {t['shown']}{note} | {thr} | {met} |")
    lines.append("")
    if res.get("profiles"):
        lines += ["## Profiles of missed targets", ""]
        for name, prof in res["profiles"].items():
            lines += [f"### {name}: [`{prof['file']}`]({prof['file']})", "",
                      "| function (cProfile, wall clock) | cumulative ms/run | self ms/run |",
                      "|---|---:|---:|"]
            lines += [f"| `{r['function']}` | {r['cum_ms_per_run']:.1f} |"
                      f" {r['self_ms_per_run']:.1f} |" for r in prof["hot"]]
            lines.append("")
    lines += ["## Notes", "",
              "- Wall time is the whole process, from spawn to reap. Peak RSS is that"
              f" process's own `ru_maxrss`, read by {res['rss_method']}: per process, not"
              " cumulative, and not inflated by the benchmark's own size.",
              "- Requests (Pebble) are counted in Pebble's own log (`... -> calling"
              " handler()` lines) between the start and the end of each run.",
              "- Listen overflows: the kernel's `TcpExt: ListenOverflows` counter over the"
              " run (SYNs dropped because a listener's accept queue was full; each costs"
              " the sender a 1 s+ SYN retransmission). It counts every listener in this"
              " network namespace, so other programs running at the same time (a test"
              " suite) add to it.",
              "- certbot and lego cannot run concurrently against one Pebble: their"
              " standalone responders each need Pebble's one validation port. Their"
              " throughput is from sequential runs (one account directory, as a shell loop"
              " would) and is extrapolated to the batch size.",
              "- lego 4.9.1 is not a dry run: it keeps the certificate (in a temp dir). It"
              " validates one name after another and waits 5 s between authorization"
              " polls.",
              "- Python children run with a byte-code cache (PYTHONPYCACHEPREFIX under"
              " bench/.cache) and one unmeasured warm-up run each, as an installed wheel"
              " would.",
              "- certbot's own standalone responder drops SYNs under a 50-name order"
              " (listen overflows in its rows), which makes its 50-name times vary; compare"
              " with its fastest run too.",
              "- One machine runs Pebble, challtestsrv and the clients; other load on it"
              " adds noise. See bench/README.md.", ""]
    if rtt:
        lines[-1:-1] = [
            "- Latency mode: the delay is the proxy's (`FaultProxy(latency=...)`): a"
            " request waits half the round trip after the proxy read it, its response"
            " half before the proxy writes it; a new connection waits its TCP and TLS"
            " round trips after its handshake. The kernel's loopback is not slowed, so"
            " TCP's own behaviour at distance (slow start, loss) is not modelled; the"
            " responses are small.",
            "- New connections (proxy): client connections the proxy accepted during the"
            " run; each cost its TCP and TLS round trips."]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_chart(res: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart"
    cfg = res["config"]
    colors = {ADR_CLI: "#1f77b4", ADR_LIB: "#6baed6", CERTBOT: "#d62728", LEGO: "#2ca02c"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    panels: list[tuple[Any, str, str, dict[str, float | None], bool]] = []
    for ax, key, title in ((axes[0][0], "one", "(a) one name: median wall time (s)"),
                           (axes[0][1], "fifty",
                            f"(b) one order of {cfg['fifty_size']} names: median wall (s)")):
        panels.append((ax, title, "s", {t: res["scenarios"][key][t].med("wall_s")
                                        for t in TOOLS}, True))
    batch = res["scenarios"]["batch"]
    panels.append((axes[1][0], f"(c) throughput, {cfg['batch_count']} runs at concurrency"
                   f" {cfg['concurrency']} (runs/s; peers sequential)", "runs/s",
                   {t: median([throughput(s) for s in batch[t].samples]) for t in TOOLS},
                   True))
    panels.append((axes[1][1], "(a) peak RSS per process, one name (MiB)", "MiB",
                   {t: (v / MIB if (v := res["scenarios"]["one"][t].med("maxrss_kib"))
                        else None) for t in (ADR_CLI, CERTBOT, LEGO)}, False))
    for ax, title, unit, values, log_scale in panels:
        labels = list(values)
        heights = [values[t] or 0 for t in labels]
        bars = ax.bar(range(len(labels)), heights, color=[colors[t] for t in labels])
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([t.replace(" (", "\n(").replace(" --", "\n--") for t in labels],
                           fontsize=8)
        ax.set_title(title, fontsize=10)
        if log_scale and any(heights):
            ax.set_yscale("log")
        for bar, t in zip(bars, labels, strict=True):
            v = values[t]
            x = bar.get_x() + bar.get_width() / 2
            if v is None:
                ax.text(x, 0.02, "n/a", transform=ax.get_xaxis_transform(), ha="center",
                        fontsize=8)
            else:
                ax.annotate(f"{v:.3g} {unit}", (x, bar.get_height()), ha="center",
                            va="bottom", fontsize=8)
    m = res["machine"]
    where = (f"behind {cfg['rtt_ms']:g} ms RTT" if cfg.get("rtt_ms")
             else "on one local Pebble")
    fig.suptitle(f"acmedryrun {m['acmedryrun']} vs certbot / lego {where}"
                 f" - {m['nproc']} CPU, Python {m['python']}, {m['date']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="runs per figure (default 5)")
    p.add_argument("--inproc-runs", type=int, default=20,
                   help="in-process one-name dry_run() runs (default 20)")
    p.add_argument("--fifty-size", type=int, default=50, help="names in the big order")
    p.add_argument("--lego-50-runs", type=int, default=1,
                   help="lego runs of the big order (default 1: it takes minutes)")
    p.add_argument("--skip-slow", action="store_true",
                   help="skip lego's big order (same as --lego-50-runs 0)")
    p.add_argument("--batch-count", type=int, default=100, help="dry runs in (c)")
    p.add_argument("--concurrency", type=int, default=10, help="concurrency in (c)")
    p.add_argument("--peer-sample", type=int, default=10,
                   help="sequential certbot/lego runs that rate their throughput in (c)")
    p.add_argument("--startup-reps", type=int, default=10, help="start-up repetitions")
    p.add_argument("--no-certbot", action="store_true", help="leave certbot out")
    p.add_argument("--no-lego", action="store_true", help="leave lego out")
    p.add_argument("--no-install", action="store_true",
                   help="do not create bench/.venv-certbot or apt-get install lego")
    p.add_argument("--no-profile", action="store_true", help="do not profile missed targets")
    p.add_argument("--rtt-ms", type=float, default=0.0,
                   help="latency mode: every tool's CA traffic through one proxy this many"
                        " ms of round trip away (e.g. 50; default 0: straight to Pebble on"
                        " loopback)")
    p.add_argument("--out", type=Path, default=None,
                   help="results directory (default bench/results, in latency mode"
                        " bench/results/rtt<N>ms)")
    p.add_argument("--render", action="store_true",
                   help="only rebuild latest.md and latest.png from OUT/latest.json")
    args = p.parse_args(argv)
    if args.skip_slow:
        args.lego_50_runs = 0
    if not 0 <= args.rtt_ms <= 10_000:
        p.error("--rtt-ms must be within 0-10000")
    if args.out is None:
        args.out = RESULTS / f"rtt{args.rtt_ms:g}ms" if args.rtt_ms else RESULTS
    if min(args.runs, args.inproc_runs, args.fifty_size, args.batch_count,
           args.concurrency, args.startup_reps) < 1:
        p.error("counts must be at least 1")
    return args


@contextlib.contextmanager
def local_pebble() -> Iterator[Any]:
    from acmedryrun.testing import LocalPebble

    with LocalPebble(va_nosleep=True, nonce_reject=0, authz_reuse=0) as pebble:
        yield pebble


@dataclass
class LatencyProxy:
    """The running ``bench/latency_proxy.py``: where the tools go, its log, its CPU time."""

    directory_url: str
    ca_bundle: str
    log_path: str
    latency_s: float
    cpu_s: float | None = None


@contextlib.contextmanager
def latency_proxy(pebble: Any, rtt_ms: float) -> Iterator[LatencyProxy]:
    """One `FaultProxy` with ``latency = rtt / 2`` in front of ``pebble``, in a child process.

    The child stops when its stdin closes; it is ended by its pid if it does not.
    """
    latency = rtt_ms / 2000.0
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as d:
        log_path = str(Path(d) / "proxy.log")
        Path(log_path).touch()
        proc = subprocess.Popen(
            [sys.executable, str(BENCH / "latency_proxy.py"), pebble.directory_url,
             pebble.ca_bundle, repr(latency), log_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(), text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"latency proxy exited ({proc.wait()}) before it served")
            info = json.loads(line)
            lp = LatencyProxy(info["directory_url"], info["ca_bundle"], log_path, latency)
            yield lp
        finally:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(OSError, ValueError, IndexError):
            last = Path(log_path).read_text(encoding="utf-8").splitlines()[-1].split()
            if last[0] == "cpu":
                lp.cpu_s = float(last[1]) + float(last[2])


def calibrate(env: Env, reps: int = 10) -> dict[str, Any]:
    """What one request and one new connection cost through the proxy and straight to Pebble.

    Medians of ``reps`` GETs of the directory on one kept-alive connection, and of
    ``reps`` first GETs on new connections (``requests``, TLS 1.3): the proxy's added
    delay should be one round trip per request and three for a new connection's first.
    """
    import requests

    def costs(url: str, ca: str) -> tuple[float | None, float | None]:
        kept, fresh = [], []
        with requests.Session() as session:
            session.trust_env = False
            session.get(url, verify=ca, timeout=30).raise_for_status()
            for _ in range(reps):
                t = time.perf_counter()
                session.get(url, verify=ca, timeout=30).raise_for_status()
                kept.append(time.perf_counter() - t)
        for _ in range(reps):
            with requests.Session() as session:
                session.trust_env = False
                t = time.perf_counter()
                session.get(url, verify=ca, timeout=30).raise_for_status()
                fresh.append(time.perf_counter() - t)
        return median(kept), median(fresh)

    env.plog.mark()
    direct = costs(env.pebble.directory_url, env.pebble.ca_bundle)
    proxied = costs(env.directory_url, env.ca_bundle)
    env.plog.mark()
    return {"reps": reps, "direct_request_s": direct[0], "direct_new_connection_s": direct[1],
            "proxy_request_s": proxied[0], "proxy_new_connection_s": proxied[1]}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render_only(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    PYCACHE.mkdir(parents=True, exist_ok=True)
    certbot, certbot_why = (None, "left out (--no-certbot)") if args.no_certbot \
        else ensure_certbot(not args.no_install)
    lego, lego_why = (None, "left out (--no-lego)") if args.no_lego \
        else ensure_lego(not args.no_install)
    for name, why in (("certbot", certbot_why), ("lego", lego_why)):
        if why:
            log(f"{name}: {why}")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        pebble = stack.enter_context(local_pebble())
        log(f"Pebble at {pebble.directory_url}, http-01 port {pebble.http_port},"
            f" DNS {pebble.dns_resolver}")
        proxy: LatencyProxy | None = None
        if args.rtt_ms:
            proxy = stack.enter_context(latency_proxy(pebble, args.rtt_ms))
            log(f"latency mode: every tool's CA traffic through {proxy.directory_url}"
                f" ({args.rtt_ms:g} ms RTT, {proxy.latency_s * 1000:g} ms each way)")
        env = Env(pebble=pebble,
                  directory_url=proxy.directory_url if proxy else pebble.directory_url,
                  ca_bundle=proxy.ca_bundle if proxy else pebble.ca_bundle,
                  plog=PebbleLog(pebble.log_path, proxy.log_path if proxy else None),
                  tag=secrets.token_hex(3),
                  adr_cmd=find_acmedryrun(), certbot=certbot, certbot_why=certbot_why,
                  lego=lego, lego_why=lego_why)
        log("warm-up (byte-code caches, page cache): one unmeasured run per tool")
        for warm in (run_adr_cli, run_adr_lib, run_certbot, run_lego):
            s = warm(env, env.names("w", 1))
            if not s.ok:
                log(f"  warm-up {warm.__name__}: {s.error}")
        res: dict[str, Any] = {
            "machine": machine_info(env),
            "config": {"argv": list(argv if argv is not None else sys.argv[1:]),
                       "runs": args.runs, "inproc_runs": args.inproc_runs,
                       "fifty_size": args.fifty_size, "lego_50_runs": args.lego_50_runs,
                       "batch_count": args.batch_count, "concurrency": args.concurrency,
                       "peer_sample": args.peer_sample, "startup_reps": args.startup_reps,
                       "rtt_ms": args.rtt_ms,
                       "pebble": {"va_nosleep": True, "nonce_reject": 0, "authz_reuse": 0}},
            "scenarios": {},
        }
        if proxy is not None:
            res["latency"] = _guard("latency check", lambda: calibrate(env), {})
            log("latency check: " + ", ".join(
                f"{k} {fmt_s(v)}" for k, v in res["latency"].items() if k.endswith("_s")))
        res["startup"] = _guard("start-up", lambda: measure_startup(env, args.startup_reps),
                                {})
        res["scenarios"]["one"] = scenario_one(env, args.runs, args.inproc_runs)
        res["scenarios"]["fifty"] = scenario_fifty(env, args.runs, args.lego_50_runs,
                                                   args.fifty_size)
        res["scenarios"]["batch"] = scenario_batch(env, args.runs, args.batch_count,
                                                   args.concurrency, args.peer_sample)
        res["targets"] = evaluate(res)
        res["profiles"] = {}
        if not args.no_profile:
            run_profiles(env, res, args.out, args.fifty_size)
    if proxy is not None:
        res.setdefault("latency", {})["proxy_cpu_s"] = proxy.cpu_s
    res["rss_method"] = rss_method()
    res["elapsed_s"] = time.monotonic() - started
    write_outputs(res, args.out)
    log(f"done in {res['elapsed_s']:.0f} s: {args.out / 'latest.md'}")
    print((args.out / "latest.md").read_text(encoding="utf-8"))
    return 0


def write_outputs(res: dict[str, Any], out: Path, *, raw_json: bool = True) -> None:
    """latest.md, latest.json (every sample) and latest.png."""
    write_markdown(res, out / "latest.md")
    if raw_json:
        raw = {**res, "scenarios": {k: {t: {"summary": s.summary(), "skipped": s.skipped,
                                             "samples": [asdict(x) for x in s.samples]}
                                         for t, s in v.items()}
                                    for k, v in res["scenarios"].items()}}
        (out / "latest.json").write_text(json.dumps(raw, indent=2, default=str) + "\n",
                                         encoding="utf-8")
    problem = _guard("chart", lambda: write_chart(res, out / "latest.png"), "chart failed")
    if problem:
        log(problem)


def render_only(out: Path) -> int:
    """Rebuild latest.md and latest.png from latest.json, without measuring anything."""
    res = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    res["scenarios"] = {k: {t: Series([Sample(**x) for x in v["samples"]], v["skipped"])
                            for t, v in scn.items()}
                        for k, scn in res["scenarios"].items()}
    res["targets"] = evaluate(res)
    write_outputs(res, out, raw_json=False)
    log(f"rendered {out / 'latest.md'} and latest.png from latest.json")
    return 0


def run_profiles(env: Env, res: dict[str, Any], out: Path, size: int) -> None:
    """Profile what explains each missed target, into ``out/profile-*.txt``."""
    missed = [t["target"] for t in res["targets"] if t["met"] is False]
    wanted: dict[str, tuple[str, Callable[[], tuple[str, list[dict[str, Any]]]]]] = {}
    if any(t.startswith("one name, in process") for t in missed):
        wanted["profile-dry_run.txt"] = ("in-process dry_run(), one name",
                                         lambda: profile_inproc(env, 10, 1))
    if any(t.startswith("one name, whole process") for t in missed):
        wanted["profile-cli.txt"] = ("whole `acmedryrun check` process, one name",
                                     lambda: profile_cli(env, 1))
    if any(t.startswith(f"{size} names in one order") for t in missed):
        wanted[f"profile-dry_run-{size}.txt"] = (
            f"in-process dry_run(), one order of {size} names",
            lambda: profile_inproc(env, 3, size))
        wanted[f"profile-cli-{size}.txt"] = (
            f"whole `acmedryrun check` process, one order of {size} names",
            lambda: profile_cli(env, size))
    for fname, (title, fn) in wanted.items():
        log(f"profiling: {title} ...")
        text, hot = _guard("profile", fn, ("profile failed", []))
        (out / fname).write_text(text, encoding="utf-8")
        res["profiles"][title] = {"file": fname, "hot": hot}
    for stale in out.glob("profile-*.txt"):
        if stale.name not in wanted:
            stale.unlink()


def _guard(what: str, fn: Callable[[], Any], fallback: Any) -> Any:
    """Run ``fn``; a crash in one part is logged and the rest of the benchmark goes on."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - keep the benchmark going, say what broke
        log(f"{what} failed:\n{traceback.format_exc()}")
        return fallback


if __name__ == "__main__":
    sys.exit(main())
