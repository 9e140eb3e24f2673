"""The one retry adapter: tenacity, wrapped, never leaked.

Every request to the CA goes through :func:`call`.  What is retried and how is
decided by :func:`acmedryrun.classify.retry_kind` (TAXONOMY.md, "Retry policy"):

* badNonce: at once, with the fresh nonce the error response carried;
* 5xx, resets, timeouts, bodies that are not JSON: exponential backoff with
  jitter; a larger ``Retry-After`` wins;
* 429: waited out only when ``Retry-After`` fits in the deadline;
* anything the client caused: never.

All of it is bounded by the run's one overall
:class:`~acmedryrun.deadline.Deadline`, and the waits are charged to the CA.  Each
retry is handed to ``on_retry`` as a frozen :class:`~acmedryrun.report.Retry`
record.  :func:`set_testing` turns the backoff off for test suites.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

import tenacity

from acmedryrun.classify import RequestFailed, RetryKind, retry_kind, retry_reason
from acmedryrun.deadline import Deadline, Party
from acmedryrun.report import Retry, Step

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "MAX_ATTEMPTS", "MAX_IMMEDIATE", "RequestFailed",
           "backoff", "call", "is_testing", "set_testing"]

T = TypeVar("T")

#: badNonce retries per request before the storm counts as a staging problem.
MAX_IMMEDIATE = 10
#: Attempts per request, all kinds together (the deadline usually ends it first).
MAX_ATTEMPTS = 12
#: First backoff interval and its cap, seconds.
BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0


_testing = False


def set_testing(testing: bool) -> None:
    """Turn retry backoff off (``True``) for test suites, as stamina's ``set_testing``.

    Retries still happen, with the same records and the same attempt limits, but
    their waits are 0 s unless the CA's ``Retry-After`` asks for more; a test that
    proves a retry then does not also prove the sleeping.
    """
    global _testing  # noqa: PLW0603 - one process-wide switch, like stamina's
    _testing = bool(testing)


def is_testing() -> bool:
    """Whether :func:`set_testing` turned backoff off."""
    return _testing


def backoff(attempt: int, retry_after: float | None) -> float:
    """The wait before retry number ``attempt`` (1-based): full-jitter exponential.

    ``Retry-After`` wins when it is larger (RFC 8555 section 6.6, RFC 9110 section 10.2.3).
    """
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    wait = 0.0 if _testing else random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter
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

    def charged_sleep(seconds: float) -> None:
        with deadline.charge(Party.CA):
            deadline.sleep(seconds)

    retrying = tenacity.Retrying(
        retry=should_retry, wait=wait, stop=stop, before_sleep=before_sleep,
        sleep=sleep or charged_sleep, reraise=True,
    )
    return retrying(fn)
