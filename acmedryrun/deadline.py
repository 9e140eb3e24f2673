"""One overall deadline per run, on the monotonic clock, with per-party time accounting.

Every wait in a run — a request, a poll, a backoff, a hook, a DNS query — asks the
run's :class:`Deadline` how long it may take, and charges the time it took to the
:class:`Party` that used it.  When the deadline expires, :attr:`Deadline.spent` says
who used it up (TAXONOMY.md: "the deadline expired — the party that used the
time"): preflight and the solver are the subscriber's side, the CA is staging's.

A deadline can be cancelled (Ctrl-C, ``cancel=``): :meth:`remaining` drops to 0,
sleeps wake at once, and the run stops at its next request or wait.

This module imports nothing but the standard library, so solvers may depend on it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: Named budgets, seconds: the most one kind of wait may take of what is left.
#: One request to the CA (connect, headers and body together).
REQUEST_BUDGET = 30.0
#: One read-only GET of the production twin (directory, renewalInfo).
TWIN_BUDGET = 10.0
#: The whole http-01 self-check, and the dns-01 self-check's TXT wait.
SELF_CHECK_BUDGET = 30.0
#: The most of what is left the dns-01 self-check may wait: it only advises, so the CA
#: keeps at least the rest.
SELF_CHECK_SHARE = 0.5
#: After the run's deadline, the most the cleanup of every challenge may still take
#: (one budget for all of them, hooks included): within the 2 s CONTRACT.md allows
#: past the deadline, with room for the killing and the report.
CLEANUP_GRACE = 1.5
#: After a cancel (Ctrl-C), the most the cleanup may take: the caller is waiting.
CANCEL_GRACE = 1.0


class Party(str, enum.Enum):
    """Who a stretch of the run's time was spent on."""

    PREFLIGHT = "preflight"  #: local checks: DNS lookups, CAA, the resolver
    SOLVER = "solver"  #: placing and removing challenge responses (hooks included)
    CA = "ca"  #: requests to the staging CA and waits for it (polls, backoff)
    PRODUCTION = "production"  #: read-only GETs of the production twin, CT look-ups

    @property
    def subscriber_side(self) -> bool:
        """True for the parties on the subscriber's side (preflight, solver)."""
        return self in (Party.PREFLIGHT, Party.SOLVER)


class Deadline:
    """One overall deadline, optionally cancelled early, that accounts time by party.

    Args:
        seconds: Seconds from now.
        cancel: An event that, when set (from any thread), ends the deadline at once.
        end: The absolute end on :func:`time.monotonic` (instead of ``seconds``).
    """

    def __init__(self, seconds: float, cancel: threading.Event | None = None, *,
                 end: float | None = None) -> None:
        now = time.monotonic()
        self.seconds = float(seconds)
        self.end = end if end is not None else now + self.seconds
        self._cancel = cancel if cancel is not None else threading.Event()
        self._lock = threading.Lock()
        self._spent: dict[Party, float] = dict.fromkeys(Party, 0.0)
        self._active: dict[Party, int] = dict.fromkeys(Party, 0)
        self._since: dict[Party, float] = {}
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.2f}, cancelled={self.cancelled})"

    # -- the clock --------------------------------------------------------------------

    def remaining(self) -> float:
        """Seconds left, never negative; 0 once cancelled."""
        if self._cancel.is_set():
            return 0.0
        return max(0.0, self.end - time.monotonic())

    def budget(self, seconds: float) -> float:
        """``seconds``, or what is left when that is less (a named budget, bounded)."""
        return min(seconds, self.remaining())

    @property
    def expired(self) -> bool:
        """True once the deadline has passed or was cancelled."""
        return self.remaining() <= 0.0

    def cancel(self) -> None:
        """End the deadline now: waits wake, requests stop being sent."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """True when the run was cancelled (not merely out of time)."""
        return self._cancel.is_set()

    @property
    def cancel_event(self) -> threading.Event:
        """The event that cancels this deadline (shared with sub-deadlines)."""
        return self._cancel

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` or until the deadline, whichever is first; wakes on cancel."""
        wait = min(seconds, self.remaining())
        if wait > 0:
            self._cancel.wait(wait)

    def within(self, seconds: float) -> Deadline:
        """A deadline ending ``seconds`` from now, or at this one's end if that is sooner.

        It shares this deadline's cancel and charges its time here.
        """
        sub = Deadline(seconds, self._cancel, end=min(self.end, time.monotonic() + seconds))
        sub._share_accounts(self)
        return sub

    def for_cleanup(self, grace: float = CLEANUP_GRACE) -> Deadline:
        """The one budget for cleaning up: until this deadline's end plus ``grace``.

        It is not cancelled by this deadline's cancel (a cancelled run still removes
        what it placed, within ``grace`` of the cancel); a run past its deadline gets
        what is left of the grace, possibly nothing.
        """
        if self.cancelled:
            grace = min(grace, CANCEL_GRACE)
            end = time.monotonic()
        else:
            end = self.end
        sub = Deadline(grace, end=end + grace)
        sub._share_accounts(self)
        return sub

    # -- who used the time --------------------------------------------------------------

    def _share_accounts(self, other: Deadline) -> None:
        self._lock = other._lock
        self._spent = other._spent
        self._active = other._active
        self._since = other._since
        self._local = other._local

    @contextmanager
    def charge(self, party: Party) -> Iterator[None]:
        """Account the wall time of the ``with`` body to ``party``.

        Nested charges in one thread count for the innermost party only; concurrent
        charges of one party (parallel requests) count their union once.
        """
        stack: list[Party] = getattr(self._local, "stack", None) or []
        self._local.stack = stack
        outer = stack[-1] if stack else None
        if outer is not None:
            self._stop(outer)
        self._start(party)
        stack.append(party)
        try:
            yield
        finally:
            stack.pop()
            self._stop(party)
            if outer is not None:
                self._start(outer)

    def _start(self, party: Party) -> None:
        with self._lock:
            if self._active[party] == 0:
                self._since[party] = time.monotonic()
            self._active[party] += 1

    def _stop(self, party: Party) -> None:
        with self._lock:
            self._active[party] -= 1
            if self._active[party] == 0:
                self._spent[party] += time.monotonic() - self._since.pop(party)

    @property
    def spent(self) -> Mapping[Party, float]:
        """Seconds charged to each party so far (running charges included)."""
        now = time.monotonic()
        with self._lock:
            return {p: s + (now - self._since[p] if p in self._since else 0.0)
                    for p, s in self._spent.items()}
