"""Problems -> verdict.  Pure: CONTRACT.md's rule and nothing else.

* any ``client`` problem of severity fatal/error -> ``client_error``;
* else any ``staging`` problem of severity fatal/error -> ``staging_unstable``;
* else ``likely_success``.

Warnings and survived retries lower ``confidence``, never the verdict.  A staging
problem can therefore never produce ``client_error``, and any decisive problem
rules out ``likely_success``.

The prediction: ``likely_success`` -> production likely succeeds; ``client_error`` ->
it does not; ``staging_unstable`` -> it does (confidence medium) when every identifier
was freshly validated today before the staging fault and no client problem was found
(the subscriber's part is proven; what failed is the CA's own machinery), else staging
could not tell (None).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from acmedryrun.report import Cause, Confidence, Problem, Retry, Severity, Verdict


class Decision(NamedTuple):
    """The verdict with what follows from it."""

    verdict: Verdict
    prod_likely_to_succeed: bool | None
    confidence: Confidence


def _weakest(problems: Iterable[Problem], start: Confidence = Confidence.HIGH) -> Confidence:
    return min((p.confidence for p in problems), key=lambda c: c.rank, default=start)


def decide(problems: Iterable[Problem], retries: Iterable[Retry] = (), *,
           validated: bool = False) -> Decision:
    """Apply the verdict rule and the prediction rule.

    Args:
        problems: Every problem of the run.
        retries: Every retry of the run (survived retries lower confidence).
        validated: Every identifier was freshly validated in this run (a reused
            authorization never counts).

    Returns:
        The verdict, ``prod_likely_to_succeed`` (None when staging could not tell)
        and the confidence.
    """
    problems = tuple(problems)
    decisive = [p for p in problems if p.severity.decisive]
    client = [p for p in decisive if p.cause is Cause.CLIENT]
    if client:
        return Decision(Verdict.CLIENT_ERROR, False, _weakest(client))
    staging = [p for p in decisive if p.cause is Cause.STAGING]
    if staging:
        if validated:
            return Decision(Verdict.STAGING_UNSTABLE, True, Confidence.MEDIUM)
        return Decision(Verdict.STAGING_UNSTABLE, None, _weakest(staging))
    confidence = Confidence.HIGH
    if any(p.severity is Severity.WARNING for p in problems) or any(True for _ in retries):
        confidence = Confidence.MEDIUM
    return Decision(Verdict.LIKELY_SUCCESS, True, confidence)
