"""Human output: a line per step, each problem with its hint, the verdict; batch progress.

Rendering only: the CLI and ``demo`` hand it events and reports; it writes text to
a stream (stderr).  Colour only on a terminal and never with ``NO_COLOR``.  On a
terminal, text wraps to its width (``COLUMNS`` if set) with a hanging indent,
between words only (a long URL overflows rather than being cut); piped or logged,
each item stays on one line, for grep.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from acmedryrun.report import Event, Problem, Report

#: Narrower than this, wrapping would make things worse.
_MIN_WIDTH = 20


def terminal_width(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to: ``COLUMNS``, else its own size, else 80.

    :func:`shutil.get_terminal_size` asks stdout, which may be piped while stderr
    (where the human text goes) is the terminal, so the stream is asked first.
    """
    if "COLUMNS" not in os.environ:
        try:
            return max(_MIN_WIDTH, os.get_terminal_size(stream.fileno()).columns)
        except (AttributeError, ValueError, OSError):
            pass
    return max(_MIN_WIDTH, shutil.get_terminal_size().columns)


def wrap(text: str, width: int | None, indent: str = "", hang: str | None = None) -> list[str]:
    """``text`` as lines of at most ``width`` columns, broken between words only.

    The first line starts with ``indent``, the others with ``hang`` (a hanging
    indent; default ``indent`` plus four spaces).  A word longer than a line (a
    URL) is kept whole.  ``width`` None: one line.
    """
    if width is None:
        return [indent + text]
    hang = indent + "    " if hang is None else hang
    lines = textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=hang,
                          break_long_words=False, break_on_hyphens=False)
    return lines or [indent]


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
        self._pending = False  # a live line ("running", a progress bar) is on screen

    @property
    def width(self) -> int | None:
        """Columns to wrap at: the terminal's, asked each time (it may be resized); None
        when the stream is not a terminal."""
        return terminal_width(self.stream) if self.live else None

    def _c(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def clear_live(self) -> None:
        """Erase the live line, if one is on screen."""
        if self._pending:
            print("\r\033[K", end="", file=self.stream)
            self._pending = False

    def line(self, text: str = "", *, hang: str | None = None, code: str | None = None) -> None:
        """Write one line (nothing in quiet mode), wrapped on a terminal.

        Continuation lines start with ``hang`` (default: the line's own indent plus
        four spaces); ``code`` colours the text (an SGR code).
        """
        if self.verbosity >= 0:
            self.clear_live()
            indent = text[:len(text) - len(text.lstrip(" "))]
            lines = wrap(text[len(indent):], self.width, indent, hang) if text else [""]
            print("\n".join(self._c(ln, code) if code else ln for ln in lines),
                  file=self.stream, flush=True)

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
        elif event.kind == "wait":
            wait = event.duration_s or 0.0
            until = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
            self.line(self._c(f"staging was unstable (attempt {event.attempt}): trying again in"
                              f" {wait:.0f} s, at {until} (--patience; Ctrl-C stops)", "33"))

    def problem(self, p: Problem, indent: str = "") -> None:
        """One problem: cause, severity, name, detail, hint (wrapped, hanging indents)."""
        code = "31" if p.severity.decisive else "33"
        where = f" [{p.identifier}]" if p.identifier else ""
        whose = f"{p.cause.value}'s fault" if p.cause is not None else "nobody's fault"
        self.line(f"{indent}{p.severity.value.upper()} {p.name} ({whose},"
                  f" {p.step.value}){where}", hang=f"{indent}  ", code=code)
        if p.detail:
            self.line(f"{indent}    {p.detail}", hang=f"{indent}      ")
        if p.hint:
            self.line(f"{indent}    hint: {p.hint}", hang=f"{indent}          ")

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
                self.line(f"  - {reason}", hang="    ")
        if self.verbosity >= 0:
            self.line()
            for attempt_number, attempt in enumerate(report.attempts[:-1], start=1):
                self.line(f"attempt {attempt_number}: {attempt.verdict.value}"
                          f" ({', '.join(attempt.problems) or 'no problem'}),"
                          f" {attempt.duration_s:.1f} s", hang="    ")
            if report.verdict.value == "staging_unstable" and report.prod_likely_to_succeed:
                failed = next((p for p in report.problems if p.severity.decisive), None)
                where = f" at {failed.step.value} ({failed.name})" if failed else ""
                self.line("Your setup is proven: the CA validated every name today. What"
                          f" failed{where} is staging's own machinery, after that.",
                          hang="    ")
            req = report.requests
            self.line(f"{len(report.identifiers)} name(s), {req.total} requests"
                      f" ({req.polls} polls, {req.retries} retries), {report.duration_s:.2f} s")
        prod = {True: "yes", False: "no", None: "cannot tell"}[report.prod_likely_to_succeed]
        code = {"likely_success": "32;1", "client_error": "31;1",
                "staging_unstable": "33;1"}[report.verdict.value]
        verdict = f"verdict: {report.verdict.value}"
        lines = wrap(f"{verdict}  production likely to succeed: {prod}  confidence:"
                     f" {report.confidence.value}", self.width, "", "    ")
        lines[0] = self._c(verdict, code) + lines[0][len(verdict):]
        self.clear_live()
        print("\n".join(lines), file=self.stream, flush=True)


class Progress:
    """Batch progress on stderr.

    On a terminal: a live bar, and above it each failure as it happens (its line
    number, names, verdict, and the fatal problem with its hint).  Piped or
    logged: one line per finished run.  At the end, :meth:`finish` prints the
    summary: counts by verdict and the most frequent problems.
    """

    def __init__(self, out: Output, planned: int) -> None:
        self.out = out
        #: Certificates the batch means to check (resumed ones included).
        self.planned = planned
        self.results: list[tuple[Any, Report]] = []
        self.counts = {v: 0 for v in ("likely_success", "client_error", "staging_unstable")}
        #: Certificates an earlier batch had done already (``--resume``).
        self.resumed = 0
        self.tty = out.stream.isatty()

    def skipped(self, verdict: str | None = None) -> None:
        """Count a certificate done by an earlier batch (with the verdict it had)."""
        self.resumed += 1
        if verdict in self.counts:
            self.counts[verdict] += 1

    def invalid(self) -> None:
        """A certificate whose arguments are bad: it will not run."""
        self.planned -= 1

    def done(self, job: Any, report: Report) -> None:
        """Record a finished run and show it."""
        self.results.append((job, report))
        self.counts[report.verdict.value] += 1
        if self.out.verbosity < 0:
            return
        where = f"line {job.line}: " if getattr(job, "line", None) else ""
        first = next((p for p in report.problems if p.severity.decisive), None)
        if self.tty:
            if not report.ok:
                self.out.line(f"{where}{' '.join(report.identifiers)}  "
                              f"{report.verdict.value}", hang="    ")
                if first is not None:
                    self.out.problem(first, indent="  ")
            self._draw()
        else:
            why = f"  {first.name}" if first else ""
            self.out.line(f"{where}{' '.join(report.identifiers)}  {report.verdict.value}"
                          f"{why}  ({report.duration_s:.2f} s)")

    def _draw(self) -> None:
        """The live bar, cut to the terminal's width (a wrapped bar could not be redrawn)."""
        c = self.counts
        done = len(self.results) + self.resumed
        tail = (f" {done}/{self.planned}  ok {c['likely_success']}  client {c['client_error']}"
                f"  staging {c['staging_unstable']}")
        width = self.out.width or 80
        bar_width = max(0, min(30, width - len(tail) - 3))
        filled = bar_width * done // max(1, self.planned)
        text = (f"[{'#' * filled}{'.' * (bar_width - filled)}]" if bar_width else "") + tail
        self.out.clear_live()
        print(f"\r{text[:width - 1]}", end="", file=self.out.stream, flush=True)
        self.out._pending = True

    def finish(self, summary: Any, interrupted: bool, *, resuming: bool = False,
               then: str | None = None) -> None:
        """The summary: counts by verdict, then the most frequent problems.

        ``resuming`` adds the ``resumed`` row; ``then`` says, after an interrupt, how
        to go on (the command line with ``--resume``).
        """
        if self.tty and self.out.verbosity >= 0 and self.out._pending:
            print(file=self.out.stream)  # the final bar stays on screen
            self.out._pending = False
        if interrupted:
            print("interrupted: finished runs are written; the rest did not run",
                  file=self.out.stream)
            if then:
                print(then, file=self.out.stream)
        rows = summary.to_dict()
        if not resuming:
            rows.pop("resumed", None)
        width = max(len(k) for k in rows)
        lines = [f"{k:<{width}}  {v:>6}" for k, v in rows.items()]
        problems: Sequence[tuple[str, int]] = getattr(summary, "problems", ())
        if problems:
            lines.append("most frequent problems:")
            name_width = max(len(name) for name, _ in problems)
            lines += [f"  {name:<{name_width}}  {n:>6}" for name, n in problems]
        print("\n".join(lines), file=self.out.stream, flush=True)
