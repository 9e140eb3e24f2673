"""Human output: a line per step, each problem with its hint, the verdict; batch progress.

Rendering only: the CLI and ``demo`` hand it events and reports; it writes text to
a stream (stderr).  Colour only on a terminal and never with ``NO_COLOR``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from acmedryrun.report import Event, Problem, Report


class Output:
    """Human output on stderr: a line per step, each problem with its hint, the verdict."""

    def __init__(self, stream: TextIO, *, verbosity: int = 0, color: bool | None = None) -> None:
        self.stream = stream
        self.verbosity = verbosity
        if color is None:
            color = stream.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        #: A live "running" line on a terminal; plain lines when piped or logged.
        self.live = stream.isatty()
        #: Printed before the first progress line, so a usage error prints nothing else.
        self.header: str | None = None
        self._pending = False  # a live "running" line awaits its result

    def _c(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def line(self, text: str = "") -> None:
        """Write one line (nothing in quiet mode)."""
        if self.verbosity >= 0:
            if self._pending:
                print("\r\033[K", end="", file=self.stream)
                self._pending = False
            print(text, file=self.stream, flush=True)

    def on_event(self, event: Event) -> None:
        """The live progress callback for :func:`acmedryrun.dry_run`."""
        if self.header is not None:
            self.line(self.header)
            self.header = None
        if event.kind == "step_start" and self.live and self.verbosity == 0:
            if self._pending:
                print("\r\033[K", end="", file=self.stream)
            print(f"  {event.step.value:<14} {self._c('running', '2')}", end="",
                  file=self.stream, flush=True)
            self._pending = True
        elif event.kind == "step_end" and event.status is not None:
            status = event.status.value
            code = {"ok": "32", "failed": "31", "skipped": "33"}[status]
            ms = (event.duration_s or 0.0) * 1000
            self.line(f"  {event.step.value:<14} {self._c(f'{status:<7}', code)} {ms:8.0f} ms")
        elif event.kind == "retry" and event.retry is not None:
            r = event.retry
            self.line(self._c(f"  {r.step.value:<14} retry   {r.reason} (attempt {r.attempt},"
                              f" waiting {r.wait_s:.2f} s)", "33"))

    def problem(self, p: Problem) -> None:
        """One problem: cause, severity, name, detail, hint."""
        code = "31" if p.severity.decisive else "33"
        where = f" [{p.identifier}]" if p.identifier else ""
        whose = f"{p.cause.value}'s fault" if p.cause is not None else "nobody's fault"
        self.line(self._c(f"{p.severity.value.upper()} {p.name} ({whose},"
                          f" {p.step.value}){where}", code))
        if p.detail:
            self.line(f"    {p.detail}")
        if p.hint:
            self.line(f"    hint: {p.hint}")

    def report(self, report: Report) -> None:
        """The problems, then the verdict line (also in quiet mode)."""
        if report.problems and self.verbosity >= 0:
            self.line()
            for p in report.problems:
                self.problem(p)
        twin = report.production_twin
        if twin.reasons and self.verbosity >= 0:
            self.line()
            self.line(f"compared with production ({twin.directory}):")
            for reason in twin.reasons:
                self.line(f"  - {reason}")
        if self.verbosity >= 0:
            self.line()
            req = report.requests
            self.line(f"{len(report.identifiers)} name(s), {req.total} requests"
                      f" ({req.polls} polls, {req.retries} retries), {report.duration_s:.2f} s")
        prod = {True: "yes", False: "no", None: "cannot tell"}[report.prod_likely_to_succeed]
        code = {"likely_success": "32;1", "client_error": "31;1",
                "staging_unstable": "33;1"}[report.verdict.value]
        print(f"{self._c('verdict: ' + report.verdict.value, code)}"
              f"  production likely to succeed: {prod}  confidence: {report.confidence.value}",
              file=self.stream, flush=True)


class Progress:
    """Batch progress on stderr: a live bar on a TTY, one line per finished run otherwise."""

    def __init__(self, out: Output, planned: int) -> None:
        self.out = out
        self.planned = planned
        self.results: list[tuple[Any, Report]] = []
        self.tty = out.stream.isatty()

    def done(self, job: Any, report: Report) -> None:
        """Record a finished run and show it."""
        self.results.append((job, report))
        if self.out.verbosity < 0:
            return
        counts = {v: 0 for v in ("likely_success", "client_error", "staging_unstable")}
        for _, r in self.results:
            counts[r.verdict.value] += 1
        if self.tty:
            width = 30
            filled = width * len(self.results) // max(1, self.planned)
            bar = "#" * filled + "." * (width - filled)
            print(f"\r[{bar}] {len(self.results)}/{self.planned}  ok {counts['likely_success']}"
                  f"  client {counts['client_error']}  staging {counts['staging_unstable']}",
                  end="", file=self.out.stream, flush=True)
        else:
            first = next((p for p in report.problems if p.severity.decisive), None)
            why = f"  {first.name}" if first else ""
            where = f"line {job.line}: " if getattr(job, "line", None) else ""
            self.out.line(f"{where}{' '.join(report.identifiers)}  {report.verdict.value}"
                          f"{why}  ({report.duration_s:.2f} s)")

    def finish(self, summary: Any, interrupted: bool) -> None:
        """The summary table."""
        if self.tty and self.out.verbosity >= 0:
            print(file=self.out.stream)
        if interrupted:
            print("interrupted: finished runs are written; the rest did not run",
                  file=self.out.stream)
        rows = summary.to_dict()
        width = max(len(k) for k in rows)
        print("\n".join(f"{k:<{width}}  {v:>6}" for k, v in rows.items()),
              file=self.out.stream, flush=True)
