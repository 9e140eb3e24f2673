"""The one retry adapter: tenacity, wrapped, never leaked.

Every request to the CA goes through :func:`call`.  What is retried and how is
decided by :func:`acmedryrun.classify.retry_kind` (TAXONOMY.md, "Retry policy"):

* badNonce: at once, with the fresh nonce the error response carried;
* 5xx, resets, timeouts, bodies that are not JSON: exponential backoff with
  jitter; a larger ``Retry-After`` wins;
* 429: waited out only when ``Retry-After`` fits in the deadline;
* anything the client caused: never.

All of it is bounded by the run's one overall :class:`Deadline`.  Each retry is
handed to ``on_retry`` as a frozen :class:`~acmedryrun.report.Retry` record.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from acmedryrun.classify import Observation, RetryKind, retry_kind, retry_reason
from acmedryrun.report import Retry, Step

T = TypeVar("T")

#: badNonce retries per request before the storm counts as a staging problem.
MAX_IMMEDIATE = 10
#: Attempts per request, all kinds together (the deadline usually ends it first).
MAX_ATTEMPTS = 12
#: First backoff interval and its cap, seconds.
BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0


class RequestFailed(Exception):
    """A request to the CA failed; ``obs`` says how (internal to the flow)."""

    def __init__(self, obs: Observation) -> None:
        super().__init__(str(obs))
        self.obs = obs

    @property
    def retry_after(self) -> float | None:
        """Seconds the CA asked to wait, if it said."""
        return getattr(self.obs, "retry_after", None)


class Deadline:
    """One overall deadline on the monotonic clock, optionally cancelled early.

    ``cancel`` (a :class:`threading.Event`) ends the deadline at once when set: a
    batch stopped with Ctrl-C ends its running dry runs at their next request or
    wait, and they still clean up.
    """

    def __init__(self, seconds: float, cancel: threading.Event | None = None) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._cancel = cancel or threading.Event()

    def remaining(self) -> float:
        """Seconds left, never negative; 0 once cancelled."""
        if self._cancel.is_set():
            return 0.0
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        """True once the deadline has passed or was cancelled."""
        return self.remaining() <= 0.0

    def cancel(self) -> None:
        """End the deadline now (Ctrl-C): waits wake, requests stop being sent."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """True when the run was cancelled (not merely out of time)."""
        return self._cancel.is_set()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` or until the deadline, whichever is first; wakes on cancel."""
        self._cancel.wait(min(seconds, self.remaining()))


def backoff(attempt: int, retry_after: float | None) -> float:
    """The wait before retry number ``attempt`` (1-based): full-jitter exponential.

    ``Retry-After`` wins when it is larger (RFC 8555 section 6.6, RFC 9110 section 10.2.3).
    """
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    wait = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto
    return max(wait, retry_after or 0.0)


def call(
    fn: Callable[[], T],
    *,
    step: Step,
    deadline: Deadline,
    on_retry: Callable[[Retry], None],
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Call ``fn`` and retry it on transient failures until it succeeds or must stop.

    Args:
        fn: The request (re-reading state first on a retry when the request is a
            POST that may have taken effect).
        step: The step, for the retry records.
        deadline: The run's overall deadline; no wait goes past it.
        on_retry: Receives one :class:`Retry` per retry, before its wait.
        sleep: The sleep function (default: the deadline's, which wakes on cancel).

    Returns:
        What ``fn`` returned.

    Raises:
        RequestFailed: the last failure, once retrying is pointless or out of time.
    """
    immediate = 0

    def should_retry(state: tenacity.RetryCallState) -> bool:
        nonlocal immediate
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, RequestFailed):
            return False
        kind = retry_kind(exc.obs)
        if kind is RetryKind.IMMEDIATE:
            immediate += 1
            return immediate <= MAX_IMMEDIATE
        if kind is RetryKind.RATE_LIMIT:
            ra = exc.retry_after
            return ra is not None and ra < deadline.remaining()
        return kind is RetryKind.BACKOFF

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, RequestFailed)  # noqa: S101 - should_retry guarantees it
        if retry_kind(exc.obs) is RetryKind.IMMEDIATE:
            return 0.0
        return backoff(state.attempt_number, exc.retry_after)

    def stop(state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= MAX_ATTEMPTS or state.upcoming_sleep >= deadline.remaining()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, RequestFailed)  # noqa: S101
        on_retry(Retry(step, retry_reason(exc.obs), state.attempt_number, state.upcoming_sleep))

    retrying = tenacity.Retrying(
        retry=should_retry, wait=wait, stop=stop, before_sleep=before_sleep,
        sleep=sleep or deadline.sleep, reraise=True,
    )
    return retrying(fn)
