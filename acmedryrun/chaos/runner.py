"""Run an ACME client's command once per scenario: a fresh Pebble, a FaultProxy, a bound.

For each scenario the runner starts a `LocalPebble` and a `FaultProxy` armed
with the scenario's faults (both on 127.0.0.1 only), fills the command
template's placeholders, runs the command in its own process group with a
private working directory, and kills the whole group at the scenario's time
bound.  When the scenario ends, nothing it started is left: the client's
process group is killed (stragglers included), the proxy and Pebble are
stopped, and every temporary directory is removed.

Placeholders (``str.format`` syntax; ``{{`` and ``}}`` are literal braces):

=============== =============================================================
``{directory}`` the ACME directory URL, through the proxy
``{ca_bundle}`` PEM file to trust for it (also in ``REQUESTS_CA_BUNDLE``,
                ``SSL_CERT_FILE`` and ``CURL_CA_BUNDLE``)
``{http_port}`` port Pebble dials for http-01 on 127.0.0.1: the client's
                responder binds it
``{tls_port}``  port Pebble dials for tls-alpn-01 on 127.0.0.1
``{dns_server}`` ``127.0.0.1:PORT`` of the DNS server Pebble uses
                (challtestsrv); ``{dns_port}`` is the port alone
``{dns_hook}``  an executable that sets and clears TXT records there (see
                :mod:`acmedryrun.chaos.dns`); ``{dns_api}`` its management URL
``{name}``      a fresh DNS name for this run (any name resolves to 127.0.0.1)
``{workdir}``   an empty directory for the client's state, removed afterwards
                (the command runs in the current directory, so relative
                paths in it work; point the client's state here)
``{python}``    the Python interpreter acmedryrun runs on
``{scenario}``  the scenario's name
=============== =============================================================
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from acmedryrun.chaos.catalog import Scenario
from acmedryrun.chaos.score import Evidence, ScenarioResult, Scorecard, score, traffic
from acmedryrun.errors import UsageError

__all__ = ["PLACEHOLDERS", "Template", "run_scenario", "run_scorecard"]

#: Every placeholder a command template may use.
PLACEHOLDERS = ("directory", "ca_bundle", "http_port", "tls_port", "dns_server", "dns_port",
                "dns_hook", "dns_api", "name", "workdir", "python", "scenario")
#: Seconds between SIGTERM to a hung client's group and SIGKILL.
KILL_GRACE_S = 2.0
#: Bytes of the client's output kept for the reason line and the JUnit report.
OUTPUT_TAIL_BYTES = 8192
_POLL_S = 0.02
_LABEL = re.compile(r"[^a-z0-9-]+")
# Options whose value is a secret, redacted wherever the command is shown.
_SECRET_OPTION = re.compile(r"^--?[\w.-]*(hmac|secret|password|passwd|token)[\w.-]*$", re.I)


@dataclass(frozen=True, slots=True)
class Template:
    """A client command line with placeholders, checked once up front.

    Raises:
        UsageError: empty, an unknown placeholder, or malformed braces (one
            line naming the argument).
    """

    argv: tuple[str, ...]

    def __post_init__(self) -> None:
        """Validate every argument's placeholders."""
        if not self.argv:
            raise UsageError("CLIENT COMMAND: missing (give it after '--')")
        for arg in self.argv:
            for field_name in _fields(arg):
                if field_name not in PLACEHOLDERS:
                    raise UsageError(f"CLIENT COMMAND: unknown placeholder {{{field_name}}} in"
                                     f" {arg!r} (known: {', '.join(PLACEHOLDERS)})")

    def render(self, values: dict[str, str]) -> list[str]:
        """The argv with every placeholder filled in."""
        return [arg.format_map(values) for arg in self.argv]

    def program(self) -> str | None:
        """The program as it will be run, if it depends on no per-run placeholder."""
        first = self.argv[0]
        if set(_fields(first)) - {"python"}:
            return None
        return first.format_map({"python": sys.executable})

    def shown(self) -> tuple[str, ...]:
        """The template for display: values of secret-looking options redacted."""
        shown: list[str] = []
        hide_next = False
        for arg in self.argv:
            if hide_next:
                shown.append("***")
                hide_next = False
                continue
            option, eq, _ = arg.partition("=")
            if _SECRET_OPTION.match(option):
                if eq:
                    shown.append(f"{option}=***")
                    continue
                hide_next = True
            shown.append(arg)
        return tuple(shown)


def _fields(arg: str) -> list[str]:
    """The placeholder names in one argument."""
    try:
        parsed = list(string.Formatter().parse(arg))
    except ValueError as exc:
        raise UsageError(f"CLIENT COMMAND: {arg!r}: {exc} (write '{{{{' for a literal"
                         " brace)") from None
    names = []
    for _, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if spec or conversion or not field_name:
            raise UsageError(f"CLIENT COMMAND: {arg!r}: placeholders take no format or"
                             " conversion, e.g. {name}")
        names.append(field_name)
    return names


def _fresh_name(scenario: str) -> str:
    """A DNS name no earlier run used: the scenario's name as a label plus random hex."""
    label = _LABEL.sub("-", scenario.lower()).strip("-")[:40] or "chaos"
    return f"{label}-{secrets.token_hex(3)}.example.com"


def _write_dns_hook(directory: Path, api: str) -> Path:
    """An executable that runs the DNS helper against this run's challtestsrv."""
    hook = directory / "dns-hook"
    hook.write_text(
        "#!/bin/sh\n# acmedryrun chaos: TXT records in this run's challtestsrv\n"
        f"exec {shlex.quote(sys.executable)} -m acmedryrun.chaos.dns"
        f" --api {shlex.quote(api)} \"$@\"\n",
        encoding="utf-8")
    hook.chmod(0o755)
    return hook


def _group_alive(pgid: int) -> bool:
    """True while a process (not a zombie) in group ``pgid`` is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a group member changed its uid
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return not Path("/proc/self").exists()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _exited(pid: int) -> bool:
    """True once ``pid`` (our child) has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _run_bounded(argv: Sequence[str], *, cwd: Path, env: dict[str, str], output: Path,
                 bound: float, cancel: threading.Event | None = None) -> Evidence:
    """Run ``argv`` in its own process group; kill the group at ``bound`` seconds.

    The leader is not reaped until its group has been killed, so its PID (the
    group's ID) cannot be reused by another process while it is signalled.
    """
    with open(output, "wb") as sink:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=sink, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            sink.write(f"acmedryrun chaos: cannot start {argv[0]}: {exc}\n".encode())
            return Evidence(127, False, 0.0, _tail(output))
    timed_out = False
    try:
        while not _exited(proc.pid):
            if time.monotonic() - started >= bound:
                timed_out = True
                break
            if cancel is not None and cancel.wait(_POLL_S):
                raise KeyboardInterrupt
            if cancel is None:
                time.sleep(_POLL_S)
        wall = time.monotonic() - started
    finally:
        # Whatever happened (exit, bound, Ctrl-C): the whole group goes.
        if not _exited(proc.pid):
            _signal_group(proc.pid, signal.SIGTERM)
            grace_end = time.monotonic() + KILL_GRACE_S
            while not _exited(proc.pid) and time.monotonic() < grace_end:
                time.sleep(_POLL_S)
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        gone_by = time.monotonic() + KILL_GRACE_S
        while _group_alive(proc.pid) and time.monotonic() < gone_by:
            time.sleep(_POLL_S)
    code = None if timed_out else proc.returncode
    return Evidence(code, timed_out, wall, _tail(output))


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - OUTPUT_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_scenario(scenario: Scenario, template: Template, *, time_bound: float | None = None,
                 seed: int = 0, cancel: threading.Event | None = None) -> ScenarioResult:
    """Run ``template`` once under ``scenario`` and score it.

    Args:
        scenario: The faults and the expectation.
        template: The client command.
        time_bound: Seconds before the client is killed (default the scenario's).
        seed: Seed for probabilistic faults.
        cancel: When set, the client is killed and `KeyboardInterrupt` raised.

    Raises:
        acmedryrun.testing.PebbleNotInstalled: Debian's ``pebble`` is missing.
        acmedryrun.testing.PebbleStartError: Pebble did not start.
    """
    from acmedryrun.testing._faultproxy import FaultProxy, parse_fault
    from acmedryrun.testing._pebble import LocalPebble

    bound = time_bound if time_bound is not None else scenario.time_bound
    if time_bound is not None:
        from dataclasses import replace

        scenario = replace(scenario, time_bound=time_bound)
    faults = [parse_fault(spec) for spec in scenario.faults]
    private = Path(tempfile.mkdtemp(prefix="acmedryrun-chaos-"))
    try:
        workdir = private / "workdir"
        workdir.mkdir()
        with LocalPebble() as pebble, FaultProxy(
            pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle, faults=faults, seed=seed,
        ) as proxy:
            values = {
                "directory": proxy.directory_url,
                "ca_bundle": proxy.ca_bundle,
                "http_port": str(pebble.http_port),
                "tls_port": str(pebble.tls_port),
                "dns_server": pebble.dns_resolver,
                "dns_port": str(pebble.dns_port),
                "dns_api": pebble.challtestsrv_url,
                "dns_hook": str(_write_dns_hook(private, pebble.challtestsrv_url)),
                "name": _fresh_name(scenario.name),
                "workdir": str(workdir),
                "python": sys.executable,
                "scenario": scenario.name,
            }
            env = dict(os.environ)
            env.update({
                "REQUESTS_CA_BUNDLE": proxy.ca_bundle,
                "SSL_CERT_FILE": proxy.ca_bundle,
                "CURL_CA_BUNDLE": proxy.ca_bundle,
                "ACMEDRYRUN_DNS_RESOLVER": pebble.dns_resolver,
                "ACMEDRYRUN_CHAOS_DNS_API": pebble.challtestsrv_url,
                # Only loopback is ever dialled: no configured proxy may intercept it.
                "NO_PROXY": "127.0.0.1,localhost,::1",
                "no_proxy": "127.0.0.1,localhost,::1",
            })
            evidence = _run_bounded(template.render(values), cwd=Path.cwd(), env=env,
                                    output=private / "output", bound=bound, cancel=cancel)
            seen = traffic(proxy.events)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    outcome, reason = score(scenario, evidence, seen)
    return ScenarioResult(scenario, outcome, reason, evidence, seen)


def run_scorecard(scenarios: Sequence[Scenario], template: Template, *,
                  time_bound: float | None = None, seed: int = 0,
                  on_start: Callable[[Scenario], None] | None = None,
                  on_result: Callable[[ScenarioResult], None] | None = None,
                  cancel: threading.Event | None = None) -> Scorecard:
    """Run every scenario in order, one at a time; the scorecard of them all."""
    started = time.monotonic()
    results: list[ScenarioResult] = []
    for scenario in scenarios:
        if on_start is not None:
            on_start(scenario)
        result = run_scenario(scenario, template, time_bound=time_bound, seed=seed,
                              cancel=cancel)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return Scorecard(template.shown(), tuple(results), time.monotonic() - started)
