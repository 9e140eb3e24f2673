"""Many dry runs: a hosting provider checking thousands of customer names.

``dry_run_many()`` runs :func:`acmedryrun.dry_run` for each job with bounded
concurrency, one shared account key, one shared solver (a standalone responder
serves every run's tokens), a per-run deadline, and pacing: runs start at most
``pace`` seconds apart, and when the CA answers 429 with ``Retry-After`` no new
run starts before that time (the CA's Retry-After wins).  Setting ``cancel``
(the CLI does on Ctrl-C) stops every running run at its next request, lets it
clean up, and starts no new one.

The batch file: one certificate per line, its names separated by spaces or
commas, optionally followed by ``key=value`` options (``key-type``, ``profile``,
``timeout``).  Blank lines and ``#`` comments are ignored::

    example.com www.example.com
    shop.example.net key-type=rsa2048   # this customer's server wants RSA

(The README's "Batches" section documents it for users.)  ``skip`` resumes an
interrupted batch; where the reports go, safely, is :mod:`acmedryrun.batch_output`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from acmedryrun.errors import Cancelled, UsageError
from acmedryrun.options import Options
from acmedryrun.report import Report

#: Options a batch line may set, and how to read their values.
LINE_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "key-type": str,
    "profile": str,
    "timeout": float,
}


@dataclass(frozen=True, slots=True)
class BatchJob:
    """One certificate to check: its names, and options that differ from the batch's.

    ``solver``, when set, answers this job's challenges instead of the batch's
    solver (certbot lineages each answer their own way); its run opens and
    closes it.
    """

    identifiers: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None
    solver: Any = None


@dataclass(frozen=True, slots=True)
class BatchLineError:
    """A batch file line that could not be read (the other lines still run)."""

    line: int
    text: str
    reason: str


def parse_batch(lines: Iterable[str]) -> tuple[list[BatchJob], list[BatchLineError]]:
    """Read a batch file's lines into jobs; malformed lines are returned as errors."""
    jobs: list[BatchJob] = []
    errors: list[BatchLineError] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        names: list[str] = []
        options: dict[str, Any] = {}
        problem = None
        for token in text.replace(",", " ").split():
            if "=" in token:
                key, _, value = token.partition("=")
                if key not in LINE_OPTIONS:
                    problem = f"unknown option {key!r} (known: {', '.join(LINE_OPTIONS)})"
                    break
                try:
                    options[key.replace("-", "_")] = LINE_OPTIONS[key](value)
                except ValueError:
                    problem = f"bad value for {key}: {value!r}"
                    break
            else:
                names.append(token)
        if problem is None and not names:
            problem = "no name on the line"
        if problem is not None:
            errors.append(BatchLineError(number, raw.rstrip("\n"), problem))
        else:
            jobs.append(BatchJob(tuple(names), options, number))
    return jobs, errors


class _Pacer:
    """Spaces run starts ``pace`` seconds apart; a CA Retry-After pushes the next start."""

    def __init__(self, pace: float, cancel: threading.Event) -> None:
        self.pace = pace
        self.cancel = cancel
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def wait_turn(self) -> bool:
        """Block until this run may start; False when cancelled meanwhile."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.pace
        return not self.cancel.wait(max(0.0, start - now))

    def hold_off(self, seconds: float) -> None:
        """No run starts in the next ``seconds`` (the CA said Retry-After)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def dry_run_many(
    jobs: Iterable[BatchJob | Sequence[str]],
    *,
    directory: str,
    solver: Any = None,
    concurrency: int = 4,
    pace: float = 0.0,
    cancel: threading.Event | None = None,
    on_report: Callable[[BatchJob, Report], None] | None = None,
    on_invalid: Callable[[BatchJob, str], None] | None = None,
    skip: Mapping[frozenset[str], int] | None = None,
    on_skip: Callable[[BatchJob, frozenset[str]], None] | None = None,
    on_start: Callable[[], None] | None = None,
    **options: Any,
) -> list[tuple[BatchJob, Report]]:
    """Dry-run many certificates with bounded concurrency and one shared account.

    Args:
        jobs: :class:`BatchJob` records or plain lists of names.
        directory: As for :func:`acmedryrun.dry_run`.
        solver: One :class:`~acmedryrun.solvers.Solver` shared by every run (the
            built-in standalone responders serve many runs at once), or a
            zero-argument callable returning a fresh solver per run (for hook
            solvers whose state is per run).  Default: standalone http-01 on 80.
        concurrency: How many runs at once (at least 1).
        pace: Minimum seconds between run starts, to stay within the CA's limits.
        cancel: Set it to stop: running runs end at their next request, clean up,
            and are not reported; no new run starts.
        on_report: Called (from worker threads, one at a time) with each finished run.
        on_invalid: Called with each job whose arguments are bad (an unknown key
            type, a malformed name), which is then skipped; without it, the first
            bad job raises :class:`UsageError`.
        skip: Certificates already checked (resuming an interrupted batch): for each
            set of identifiers (as the reports spell them: lower case, A-labels),
            how many jobs with exactly that set to skip.
        on_skip: Called with each job skipped that way, and its identifier set.
        on_start: Called once after every job was checked and the shared solver
            opened, before the first request (open the output here: an error it
            raises ends the batch with nothing sent).
        **options: Any other :func:`acmedryrun.dry_run` keyword (``timeout`` is per
            run; ``account_key`` defaults to one fresh key shared by every run).

    Returns:
        ``(job, report)`` for every run that finished, in the order they finished.

    Raises:
        UsageError: bad arguments (checked before any run starts).
    """
    from acmedryrun.solvers import HTTP01Standalone, Solver

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"--concurrency: {concurrency!r} must be a whole number of at least 1")
    if not (isinstance(pace, int | float) and math.isfinite(pace) and pace >= 0):
        raise UsageError(f"--pace: {pace!r} must be a finite number of seconds, 0 or more")
    if solver is None:
        solver = HTTP01Standalone(port=80)
    shared = solver if isinstance(solver, Solver) else None
    if shared is not None and not shared.shareable and concurrency > 1:
        raise UsageError(f"solver: {type(shared).__name__} keeps per-run state; pass a factory"
                         " (a callable returning a new solver) for concurrent runs")
    base = _batch_options(Options.of(directory=directory, **options), shared)

    def solver_for(job: BatchJob) -> Solver:
        if job.solver is not None:
            return job.solver  # type: ignore[no-any-return]
        return shared if shared is not None else solver()

    def for_run(job: BatchJob, line_options: Options) -> Options:
        if job.solver is None and (shared is None or line_options.solver is not shared):
            # A solver with per-run state: a fresh one for this run (the one made to
            # check the line's arguments answered nothing).
            return dataclasses.replace(line_options, solver=solver_for(job))
        return line_options

    planned, skipped = _plan_jobs(jobs, base, solver_for=solver_for, skip=skip,
                                  on_invalid=on_invalid, on_skip=on_skip)
    if not planned and not skipped:
        raise UsageError("batch: no certificate to check")
    if shared is not None and all(job.solver is not None for job, _ in planned):
        shared = None  # every job brings its own: bind nothing for the batch's
    if shared is not None:
        shared.open()  # bind once: a port in use is a usage error before any run
    try:
        if on_start is not None:
            on_start()
        if not planned:  # every line was in the output already (--resume)
            return []
        return _run_all(planned, concurrency=concurrency, cancel=cancel or threading.Event(),
                        pace=pace, for_run=for_run, connections=base.connections,
                        run_cache=base.run_cache, on_report=on_report)
    finally:
        if shared is not None:
            shared.close()


def _batch_options(base: Options, shared: Any) -> Options:
    """The options every run shares, checked once; the batch's one account key and CT cache.

    The batch-wide options (directory, CA bundle, resolver, EAB, email, the solver, ...)
    are checked before anything is written: a bad one is the batch's usage error, not
    every line's.  (A name that always parses stands in for the lines' names.)
    """
    from acmedryrun import certs
    from acmedryrun import options as opts

    opts.plan(["example.com"], dataclasses.replace(base, solver=shared) if shared else base)
    # One account for the whole batch, resolved (or created, 0600) once, up front.
    key, new_path = opts.account_key_of(base.account_key)
    if new_path is not None:
        fresh = certs.generate_key("ec256")
        certs.write_private_key(new_path, fresh)
        key = certs.jwk_from_private(fresh)
    base = dataclasses.replace(
        base, account_key=key or certs.jwk_from_private(certs.generate_key("ec256")))
    if base.ct and base.ct_cache is None:
        from acmedryrun.production.ct import CtCache

        # One Certificate Transparency look-up per registered domain for the whole batch.
        base = dataclasses.replace(base, ct_cache=CtCache())
    return base


def _plan_jobs(
    jobs: Iterable[BatchJob | Sequence[str]], base: Options, *,
    solver_for: Callable[[BatchJob], Any],
    skip: Mapping[frozenset[str], int] | None,
    on_invalid: Callable[[BatchJob, str], None] | None,
    on_skip: Callable[[BatchJob, frozenset[str]], None] | None,
) -> tuple[list[tuple[BatchJob, Options]], int]:
    """Every line's arguments, checked before any run starts; the lines to run, and how
    many were skipped as already done.

    A bad line is reported and skipped, the others still run.  The CA bundle, checked
    with the batch's options, is not read again for each of thousands of lines (6 s for
    10,000).
    """
    from acmedryrun import options as opts

    planned: list[tuple[BatchJob, Options]] = []
    to_skip = collections.Counter(skip or {})
    skipped = 0
    for job in (j if isinstance(j, BatchJob) else BatchJob(tuple(j)) for j in jobs):
        try:
            line_options = dataclasses.replace(base, solver=solver_for(job), **job.options)
            checked = opts.plan(list(job.identifiers),
                                dataclasses.replace(line_options, ca_bundle=None))
        except UsageError as exc:
            if on_invalid is None:
                raise
            on_invalid(job, str(exc))
            continue
        names = frozenset(i.value for i in checked.idents)
        if to_skip[names] > 0:
            to_skip[names] -= 1
            skipped += 1
            if on_skip is not None:
                on_skip(job, names)
            continue
        planned.append((job, line_options))
    return planned, skipped


def _run_all(
    planned: Sequence[tuple[BatchJob, Options]], *, concurrency: int,
    cancel: threading.Event, pace: float,
    for_run: Callable[[BatchJob, Options], Options], connections: Any, run_cache: Any,
    on_report: Callable[[BatchJob, Report], None] | None,
) -> list[tuple[BatchJob, Report]]:
    """Run the planned jobs, ``concurrency`` at a time; ``(job, report)`` as they finish."""
    from acmedryrun import api
    from acmedryrun.run_cache import RunCache

    # The directory, the twin's, the account and spare nonces: asked once per batch.
    run_cache = run_cache if run_cache is not None else RunCache()

    own_pool = None
    if connections is None:
        from acmedryrun.transport import ConnectionPool

        # Kept-alive connections to the CA for the whole batch: set up once, not per run.
        connections = own_pool = ConnectionPool(size=max(16, 2 * concurrency))
    pacer = _Pacer(pace, cancel)
    lock = threading.Lock()
    finished: list[tuple[BatchJob, Report]] = []

    def one(item: tuple[BatchJob, Options]) -> None:
        job, job_options = item
        if not pacer.wait_turn():
            return
        job_options = dataclasses.replace(for_run(job, job_options), connections=connections,
                                          run_cache=run_cache)
        try:
            report = api.run_options(list(job.identifiers), job_options, cancel=cancel)
        except Cancelled:
            return  # interrupted: it has no verdict
        waits = [p.retry_after for p in report.problems
                 if p.name == "RateLimited" and p.retry_after]
        if waits:
            pacer.hold_off(max(waits))
        with lock:
            finished.append((job, report))
            if on_report is not None:
                on_report(job, report)

    try:
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="acmedryrun-batch"
        ) as pool:
            # The first run alone finds or creates the shared account; the others then
            # only look it up (RFC 8555 section 7.3.1), never racing to create it.
            futures = [pool.submit(one, planned[0])]
            try:
                futures[0].result()
                futures += [pool.submit(one, item) for item in planned[1:]]
                for future in concurrent.futures.as_completed(futures):
                    future.result()  # a bug in a run propagates (exit 70), never a verdict
            except BaseException:  # Ctrl-C included: stop the running runs, start no more
                cancel.set()
                for f in futures:
                    f.cancel()
                raise
    finally:
        if own_pool is not None:
            own_pool.close()
    return finished


#: How many problem names a batch summary lists.
TOP_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts of a batch by verdict, and its most frequent decisive problems.

    Attributes:
        total: Lines holding a certificate (readable or not).
        likely_success: Reports with that verdict (resumed ones included).
        client_error: Likewise.
        staging_unstable: Likewise.
        unreadable_lines: Lines that could not be read or whose arguments are bad.
        not_run: Certificates that got no report (the batch was interrupted).
        resumed: Certificates whose report an earlier, interrupted batch had
            written already (``--resume``); counted in the verdicts too.
        problems: The most frequent names of decisive (fatal or error) problems,
            each with the number of reports it appears in, most frequent first.
    """

    total: int
    likely_success: int
    client_error: int
    staging_unstable: int
    unreadable_lines: int
    not_run: int
    resumed: int = 0
    problems: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, results: Sequence[tuple[BatchJob, Report]], planned: int,
           unreadable: int, resumed: Sequence[Mapping[str, Any]] = ()) -> Summary:
        """Count ``results`` of a batch that planned ``planned`` runs.

        ``resumed`` holds the JSON reports of the certificates skipped because an
        earlier batch had checked them (``planned`` counts them too).
        """
        counts = {"likely_success": 0, "client_error": 0, "staging_unstable": 0}
        names: collections.Counter[str] = collections.Counter()
        for _, report in results:
            counts[report.verdict.value] += 1
            names.update({p.name for p in report.problems if p.severity.decisive})
        for data in resumed:
            counts[data["verdict"]] += 1
            names.update({str(p["name"]) for p in data.get("problems") or ()
                          if isinstance(p, dict) and isinstance(p.get("name"), str)
                          and p.get("severity") in ("fatal", "error")})
        return cls(total=planned + unreadable, unreadable_lines=unreadable,
                   not_run=planned - len(results) - len(resumed), resumed=len(resumed),
                   problems=tuple(sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))
                                  [:TOP_PROBLEMS]), **counts)

    def to_dict(self) -> dict[str, int]:
        """The counts as JSON-ready data (``problems`` aside)."""
        return {
            "total": self.total, "likely_success": self.likely_success,
            "client_error": self.client_error, "staging_unstable": self.staging_unstable,
            "unreadable_lines": self.unreadable_lines, "not_run": self.not_run,
            "resumed": self.resumed,
        }
