"""What must hold whatever the CA does (issue 12), and one helper to run a case.

:func:`check_invariants` returns every violated invariant of one dry run made
through a :class:`~hostile.proxy.HostileProxy`:

1. no exception out of ``acmedryrun.dry_run`` (its traceback is kept);
2. wall time <= timeout + :data:`DEADLINE_SLACK` seconds;
3. no ``likely_success`` unless a valid chain for exactly the ordered names
   arrived: the report's certificate names the ordered names, the client was
   sent the chain Pebble issued byte for byte (checked strictly by the harness's
   own oracle), and the mutation is not one through which no correct client can
   succeed (``Mutation.fatal_on``: over-size bodies, production links, redirects,
   corrupted chains);
4. a CA fault is never ``client_error`` (every mutation is the CA's fault, but for what
   TAXONOMY.md makes the user's: the directory URL they typed redirects, is no directory
   or is not found, see :data:`USERS_URL`);
5. no request to a production host, nor to anything else off loopback
   (:mod:`hostile.netguard` blocks and records them), and no redirect followed at
   all (one that leads back to the proxy is seen by its marker);

and three that the contract states for every report (CONTRACT.md, "The report"):

6. the report is valid JSON (``allow_nan=False``) and matches the shipped schema;
7. no JWS signature the client sent appears anywhere in the report, and no signed
   request is sent twice (RFC 8555 section 6.5: a nonce is single-use, so a repeated
   JWS means a followed redirect re-sent it);
8. the run's peak memory grew by at most :data:`RSS_BUDGET` (a capped transport
   never holds a 300 MB body).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acmedryrun.api import dry_run as _dry_run  # the real one, not conftest's wrapper
from acmedryrun.errors import UsageError
from acmedryrun.report import Report, Verdict
from acmedryrun.schema import validate_report
from acmedryrun.solvers import HTTP01Standalone
from hostile import netguard
from hostile.certtools import strict_chain_problem

if TYPE_CHECKING:
    from acmedryrun.testing import LocalPebble
    from hostile.mutations import Mutation
    from hostile.proxy import HostileProxy

__all__ = [
    "DEADLINE_SLACK",
    "RSS_BUDGET",
    "InvariantViolated",
    "Outcome",
    "assert_holds",
    "check_invariants",
    "run_case",
    "run_through",
    "unique_name",
]

#: Issue 12, "One deadline": nothing may outlive the deadline by more than 2 s.
DEADLINE_SLACK = 2.0
#: Peak RSS growth allowed for one run.  A healthy one-name run grows by < 20 MiB.
RSS_BUDGET = 128 * 1024 * 1024
#: Default per-run deadline: short, so slow mutations stay cheap (a healthy run takes
#: 0.2 s); ``ACMEDRYRUN_HOSTILE_TIMEOUT`` overrides it.
DEFAULT_TIMEOUT = float(os.environ.get("ACMEDRYRUN_HOSTILE_TIMEOUT", "2"))

_names = itertools.count(1)


class InvariantViolated(AssertionError):
    """An invariant of issue 12 does not hold (what ``xfail(raises=...)`` expects today).

    Anything else a test raises -- a mutation that never fired, a harness bug --
    stays a real failure even under ``xfail``.
    """


def unique_name() -> str:
    """A DNS name no other run of this process orders."""
    return f"h{next(_names)}-{os.getpid()}.hostile.example.com"


def _rss_peak_reset() -> int | None:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5); the current RSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _proc_status("VmRSS")
    except OSError:
        return None


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One dry run through a hostile proxy, and what it left behind."""

    result: Report | Exception
    traceback: str | None
    wall: float
    timeout: float
    names: tuple[str, ...]
    proxy: HostileProxy
    net: netguard.Recording
    rss_growth: int | None
    violations: tuple[str, ...] = ()

    @property
    def report(self) -> Report | None:
        """The report, or None when dry_run raised."""
        return self.result if isinstance(self.result, Report) else None

    def summary(self) -> str:
        """One line: verdict (or exception), decisive problem, wall time, fired count."""
        m = self.proxy.mutation
        where = f"{m} on {','.join(sorted(self.proxy.endpoints))}" if m else "baseline"
        if isinstance(self.result, Exception):
            text = str(self.result).splitlines()[0][:160] if str(self.result) else ""
            what = f"EXCEPTION {type(self.result).__name__}: {text}"
        else:
            decisive = next((p for p in self.result.problems if p.severity.decisive), None)
            what = self.result.verdict.value
            if decisive is not None:
                what += (f" [{decisive.name}/{decisive.cause.value if decisive.cause else None}"
                         f" at {decisive.step.value}: {decisive.detail[:120]!r}]")
        rss = f", peak +{self.rss_growth // (1 << 20)} MiB" if self.rss_growth else ""
        return f"{where}: {what} in {self.wall:.1f} s (fired {self.proxy.fired}x{rss})"

    def describe(self) -> str:
        """Everything needed to understand a failure: summary, violations, traffic."""
        lines = [self.summary(), *(f"  VIOLATION: {v}" for v in self.violations)]
        traffic = " ".join(f"{s.method[0]}:{s.endpoint}{'*' if s.mutated else ''}"
                           f"->{s.status}" for s in self.proxy.served)
        lines.append(f"  traffic: {traffic[:1500]}")
        if self.traceback:
            lines.append(self.traceback)
        return "\n".join(lines)


def assert_holds(outcome: Outcome) -> None:
    """Raise :class:`InvariantViolated` (with the whole story) when ``outcome`` broke one.

    Raises:
        RuntimeError: the mutation never fired, so the case proved nothing.
    """
    if outcome.proxy.mutation is not None and not outcome.proxy.fired:
        raise RuntimeError(f"vacuous case, the mutation never fired: {outcome.describe()}")
    if outcome.violations:
        raise InvariantViolated(outcome.describe())


#: Problems that blame the directory URL the user typed (the harness's is no known alias).
USERS_URL = frozenset({"DirectoryRedirected", "NotAnAcmeDirectory", "DirectoryNotFound"})


def check_invariants(result: Report | BaseException, wall: float, timeout: float,
                     proxy: HostileProxy, *, net: netguard.Recording | None = None,
                     rss_growth: int | None = None,
                     names: Sequence[str] | None = None) -> list[str]:
    """Every invariant (module docstring) that one run violated; empty when all hold.

    Args:
        result: What ``dry_run`` returned, or the exception it raised.
        wall: The run's wall time, seconds.
        timeout: The ``timeout=`` it was given.
        proxy: The proxy it ran through (mutation, what it served, signatures seen).
        net: The network recording of the run (production and off-loopback contacts).
        rss_growth: Peak RSS growth during the run, bytes.
        names: The ordered names (default: the report's identifiers).
    """
    violations: list[str] = []
    mutation: Mutation | None = proxy.mutation
    fired_on = proxy.endpoints if proxy.fired else frozenset()
    if isinstance(result, BaseException):
        refused = (isinstance(result, UsageError) and mutation is not None
                   and fired_on & mutation.refusal_ok)
        if not refused:
            violations.append(f"exception out of dry_run: {type(result).__name__}: "
                              f"{str(result)[:300]}")
    if wall > timeout + DEADLINE_SLACK:
        violations.append(f"wall time {wall:.1f} s > timeout {timeout:g} s + "
                          f"{DEADLINE_SLACK:g} s")
    if isinstance(result, Report):
        violations += _report_violations(result, proxy, mutation, fired_on, names)
    if proxy.followed_redirects:
        violations.append(f"followed {proxy.followed_redirects} redirect(s) back to the proxy "
                          "(CA traffic follows no redirect)")
    replayed = {s: n for s, n in proxy.signatures.items() if n > 1}
    if replayed:
        violations.append(f"{len(replayed)} signed request(s) sent more than once (up to "
                          f"{max(replayed.values())}x): a redirect was followed")
    for contact in net.contacts if net is not None else ():
        violations.append(f"left loopback: {contact}")
    if rss_growth is not None and rss_growth > RSS_BUDGET:
        violations.append(f"peak memory grew by {rss_growth // (1 << 20)} MiB "
                          f"(> {RSS_BUDGET // (1 << 20)} MiB): a body was held whole")
    violations += [f"harness bug in the proxy: {e}" for e in proxy.errors]
    return violations


def _report_violations(report: Report, proxy: HostileProxy, mutation: Mutation | None,
                       fired_on: frozenset[str], names: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    data = report.to_dict()
    try:
        text = json.dumps(data, allow_nan=False)
    except ValueError as exc:
        out.append(f"report is not valid JSON: {exc}")
        text = json.dumps(data)
    try:
        validate_report(data)
    except ValueError as exc:
        out.append(f"report does not match the schema: {str(exc)[:300]}")
    leaked = [s for s in proxy.signatures if s in text]
    if leaked:
        out.append(f"the report quotes {len(leaked)} JWS signature(s) the client sent")
    if report.verdict is Verdict.CLIENT_ERROR:
        blamed = [p for p in report.problems
                  if p.severity.decisive and p.cause is not None and p.cause.value == "client"]
        # What TAXONOMY.md makes the user's: the directory URL they typed (the harness's
        # URL is no known alias) redirects, or answers 200 with something that is not a
        # directory, or 404: the wrong URL, whatever its server is.
        users_url = all(p.name in USERS_URL and p.step.value == "directory" for p in blamed)
        if not users_url:
            out.append("a CA fault reported as client_error: " + "; ".join(
                f"{p.name} at {p.step.value}: {p.detail[:150]!r}" for p in blamed))
    if report.verdict is Verdict.LIKELY_SUCCESS:
        ordered = sorted(n.lower() for n in (names or report.identifiers))
        cert = report.certificate
        if cert is None or sorted(n.lower() for n in cert.names) != ordered:
            out.append(f"likely_success, but the report's certificate names "
                       f"{None if cert is None else list(cert.names)}, not {ordered}")
        good = [s for s in proxy.certificates()
                if s.intact and s.body is not None
                and strict_chain_problem(s.body, ordered) is None]
        if not good:
            bad = [strict_chain_problem(s.body, ordered) if s.body is not None
                   else "streamed" for s in proxy.certificates()]
            out.append(f"likely_success, but no intact valid chain reached the client "
                       f"({bad or 'no certificate response at all'})")
        if mutation is not None and fired_on & mutation.fatal_on:
            out.append(f"likely_success through {mutation} on "
                       f"{', '.join(sorted(fired_on))}, which no correct client survives")
    return out


def run_through(pebble: LocalPebble, proxy: HostileProxy, *,
                names: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT,
                reference: bool = False, **kwargs: Any) -> Outcome:
    """One in-process ``dry_run`` through ``proxy``, network recorded, memory measured.

    Args:
        pebble: The upstream Pebble (its DNS is used), started ``always_valid=True``
            unless a ``solver`` that its VA can reach is passed.
        proxy: A running proxy in front of it.
        names: The names to order (default: one fresh name).
        timeout: The run's deadline.
        reference: Pass the proxy's ``reference_url`` as ``reference_directory``.
        **kwargs: More ``dry_run`` options.
    """
    ordered = tuple(names or (unique_name(),))
    # Port 0: the harness's Pebbles are ``always_valid`` (they never dial the responder),
    # and a fixed port can collide with a loopback connection's ephemeral port.
    kwargs.setdefault("solver", HTTP01Standalone(port=0, address="127.0.0.1"))
    kwargs.setdefault("dns_resolver", pebble.dns_resolver)
    if reference:
        kwargs["reference_directory"] = proxy.reference_url
    gc.collect()
    before = _rss_peak_reset()
    tb: str | None = None
    with netguard.record() as net:
        started = time.monotonic()
        result: Report | Exception
        try:
            result = _dry_run(list(ordered), directory=proxy.directory_url,
                              ca_bundle=proxy.ca_bundle, timeout=timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any exception is the finding
            result, tb = exc, traceback.format_exc()
        wall = time.monotonic() - started
    peak = _proc_status("VmHWM")
    growth = peak - before if peak is not None and before is not None else None
    violations = check_invariants(result, wall, timeout, proxy, net=net,
                                  rss_growth=growth, names=ordered)
    return Outcome(result, tb, wall, timeout, ordered, proxy, net, growth, tuple(violations))


def run_case(pebble: LocalPebble, mutation: Mutation | None, endpoint: str | None, *,
             timeout: float = DEFAULT_TIMEOUT, tls: Any = None,
             names: Sequence[str] | None = None, **kwargs: Any) -> Outcome:
    """Start a proxy applying ``mutation`` to ``endpoint``, run once through it, stop it."""
    from hostile.proxy import HostileProxy

    endpoints = (endpoint,) if endpoint else ()
    with HostileProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                      mutation=mutation, endpoints=endpoints, tls=tls,
                      slow_cap=timeout + DEADLINE_SLACK + 1.5) as proxy:
        return run_through(pebble, proxy, names=names, timeout=timeout,
                           reference=endpoint == "reference", **kwargs)
