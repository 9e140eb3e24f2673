"""Scoring one client run under one scenario: pure functions over what was observed.

The evidence is the client's exit (code, signal, or killed at the time bound),
its output's tail, and the FaultProxy's events: every request the client sent,
which endpoint it went to, what the client got back and what upstream (Pebble)
answered.  From the events alone: requests per endpoint, the retries the client
made (a request repeated to the same URL after a failed answer), certificates
issued (finalize requests Pebble answered 2xx: Pebble issues at finalize) and
whether an intact certificate reached the client.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from acmedryrun.chaos.catalog import Scenario
from acmedryrun.testing._faultproxy import ProxyEvent

__all__ = ["OUTCOMES", "Evidence", "ScenarioResult", "Scorecard", "Traffic", "crash_line",
           "error_line", "score", "traffic"]

#: Outcomes, best first.
OUTCOMES = ("passed", "failed", "hung", "crashed")

# Fault kinds after which the client holds no usable answer (the request must be
# sent again); strip_nonce, delay, trickle, patch and stall leave a usable one.
_BROKEN_KINDS = frozenset({"status", "html", "reset", "lost", "truncated", "not_json"})
# Lines that only an uncaught exception or a runtime abort prints.
_BOILERPLATE = re.compile(r"^(Ask for help|See the logfile|Saving debug log|IMPORTANT NOTES)|"
                         r"re-run \S+ with -v", re.I)
_ERROR = re.compile(r"fatal|error|exception", re.I)
_ERRORISH = re.compile(r"fail|unable|cannot|could not|refused|denied|reset|timed? ?out|"
                       r"invalid|unexpected|problem", re.I)
_CRASH_MARKERS = ("Traceback (most recent call last):", "panic: ", "fatal error: ",
                  "Segmentation fault", "core dumped", "AddressSanitizer")


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the proxy saw of one run.

    Attributes:
        requests: Endpoint -> requests the client sent there, in endpoint order.
        retries: Requests repeated to the same method and URL after an answer
            that was no use (a fault, a reset, HTTP >= 400 from the CA).
        issued: Certificates the CA issued (finalize answered 2xx upstream).
        delivered: True when a certificate reached the client intact.
        faults_fired: Requests a fault was applied to.
        last: The last request, ``"METHOD endpoint"``, for a hung client's reason.
    """

    requests: Mapping[str, int]
    retries: int
    issued: int
    delivered: bool
    faults_fired: int
    last: str | None

    @property
    def total(self) -> int:
        """Every request the client sent."""
        return sum(self.requests.values())


def traffic(events: Sequence[ProxyEvent]) -> Traffic:
    """Count requests per endpoint, retries, issuance and delivery from proxy events."""
    from acmedryrun.testing._faultproxy import ENDPOINTS

    counts: Counter[str] = Counter()
    failed: dict[tuple[str, str], bool] = {}
    retries = issued = fired = 0
    delivered = False
    for event in events:
        counts[event.endpoint] += 1
        key = (event.method, event.path)
        if failed.get(key):
            retries += 1
        kind = event.fault.kind if event.fault is not None else None
        broken = (event.status is None or event.status >= 400 or kind in _BROKEN_KINDS)
        failed[key] = broken
        if event.fault is not None:
            fired += 1
        if (event.endpoint == "finalize" and event.upstream_status is not None
                and 200 <= event.upstream_status < 300):
            issued += 1
        if event.endpoint == "certificate" and event.status == 200 and not broken:
            delivered = True
    ordered = {e: counts[e] for e in ENDPOINTS if counts[e]}
    last = f"{events[-1].method} {events[-1].endpoint}" if events else None
    return Traffic(ordered, retries, issued, delivered, fired, last)


@dataclass(frozen=True, slots=True)
class Evidence:
    """How the client's process ended.

    Attributes:
        exit_code: The exit status; negative for a signal (``-9``), None when it
            was still running at the time bound.
        timed_out: True when it was killed at the time bound.
        wall_s: Seconds from start to exit (or to the kill).
        output_tail: The last lines of its stdout and stderr together.
    """

    exit_code: int | None
    timed_out: bool
    wall_s: float
    output_tail: str = ""


def crash_line(output: str) -> str | None:
    """The line that says the client crashed (an uncaught exception's last line), if any."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if any(marker in line for marker in _CRASH_MARKERS):
            if line.startswith("Traceback"):
                # The exception itself is the first unindented line after the frames.
                after = [x for x in lines[index + 1:] if x and not x.startswith(" ")]
                return (after[0] if after else line).strip()[:200]
            return line.strip()[:200]
    return None


def error_line(output: str) -> str:
    """The line of a client's output that best says why it failed.

    The last line that names an error or a fatal problem (certbot's
    ``acme.errors...: ...``, lego's ``acme: error: 503 :: ...``, acmedryrun's
    ``FATAL ...``), else the last that reads like a failure, skipping the
    advice clients print after it ("Ask for help", "See the logfile"); else
    the last line.
    """
    lines = [x.strip() for x in output.splitlines() if x.strip()]
    useful = [x for x in lines if not _BOILERPLATE.search(x)] or lines
    for pattern in (_ERROR, _ERRORISH):
        for index in range(len(useful) - 1, -1, -1):
            line = useful[index]
            if pattern.search(line):
                if line.endswith(":") and index + 1 < len(useful):
                    # "error: one or more domains had a problem:" -- the problem follows.
                    line = f"{line} {useful[index + 1]}"
                return line[:200]
    return useful[-1][:200] if useful else "no output"


def score(scenario: Scenario, evidence: Evidence, seen: Traffic) -> tuple[str, str]:
    """The outcome (one of `OUTCOMES`) and a one-line reason.

    Rules, first match wins: killed at the bound -> ``hung``; ended by a signal,
    or a non-zero exit printing an uncaught exception or a runtime panic ->
    ``crashed``; more than one certificate issued, or an endpoint's request
    limit exceeded -> ``failed``; then the scenario's expectation: ``succeed``
    needs exit 0 and an intact certificate delivered, ``fail`` needs a non-zero
    exit.
    """
    code = evidence.exit_code
    if evidence.timed_out or code is None:
        last = f"; last request {seen.last}" if seen.last else ""
        return "hung", (f"still running at the {scenario.time_bound:g} s bound, killed"
                        f" ({seen.total} requests{last})")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "crashed", f"killed by {name}"
    crash = crash_line(evidence.output_tail) if code != 0 else None
    if crash is not None:
        return "crashed", f"exit {code}: {crash}"
    if seen.issued > 1:
        return "failed", f"issued {seen.issued} certificates for one request (exit {code})"
    for endpoint, sent in seen.requests.items():
        most = scenario.limit(endpoint)
        if sent > most:
            return "failed", (f"sent {sent} {endpoint} requests, at most {most} expected"
                              f" (exit {code})")
    if scenario.expect == "succeed":
        if code != 0:
            return "failed", f"exit {code}: {error_line(evidence.output_tail)}"
        if not seen.delivered:
            return "failed", "exit 0, but no certificate was downloaded"
        retried = f" after {seen.retries} retries" if seen.retries else ""
        return "passed", f"certificate issued{retried} in {evidence.wall_s:.1f} s"
    if code == 0:
        return "failed", "exit 0 under a fault that cannot be survived"
    if not seen.faults_fired:
        # It failed, but not because of the fault: nothing was tested.
        return "failed", f"exit {code} before meeting the fault: {error_line(evidence.output_tail)}"
    return "passed", f"failed cleanly, exit {code} in {evidence.wall_s:.1f} s"


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One scenario's line of the scorecard."""

    scenario: Scenario
    outcome: str
    reason: str
    evidence: Evidence
    traffic: Traffic

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "faults": list(self.scenario.faults),
            "expect": self.scenario.expect,
            "outcome": self.outcome,
            "reason": self.reason,
            "exit_code": self.evidence.exit_code,
            "wall_s": round(self.evidence.wall_s, 3),
            "time_bound_s": self.scenario.time_bound,
            "requests": dict(self.traffic.requests),
            "requests_total": self.traffic.total,
            "retries": self.traffic.retries,
            "certificates_issued": self.traffic.issued,
            "faults_fired": self.traffic.faults_fired,
        }


@dataclass(frozen=True, slots=True)
class Scorecard:
    """Every scenario's result for one client command."""

    command: tuple[str, ...]
    results: tuple[ScenarioResult, ...] = field(default=())
    wall_s: float = 0.0

    @property
    def passed(self) -> int:
        """Scenarios passed."""
        return sum(1 for r in self.results if r.outcome == "passed")

    @property
    def total(self) -> int:
        """Scenarios run."""
        return len(self.results)

    @property
    def exit_code(self) -> int:
        """0 when every scenario passed, else 1."""
        return 0 if self.passed == self.total else 1

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        counts = Counter(r.outcome for r in self.results)
        return {
            "command": list(self.command),
            "score": {"passed": self.passed, "total": self.total,
                      **{o: counts[o] for o in OUTCOMES if o != "passed"}},
            "wall_s": round(self.wall_s, 3),
            "scenarios": [r.to_dict() for r in self.results],
        }
