"""The verdict rule of CONTRACT.md, as a table (pure, no I/O)."""

from __future__ import annotations

import itertools

import pytest

from acmedryrun.report import Cause, Confidence, Problem, Retry, Severity, Step, Verdict
from acmedryrun.verdict import decide


def p(cause: Cause, severity: Severity, confidence: Confidence = Confidence.HIGH) -> Problem:
    return Problem(name="X", cause=cause, severity=severity, step=Step.ORDER,
                   confidence=confidence)


C, S = Cause.CLIENT, Cause.STAGING
F, E, W, INFO = Severity.FATAL, Severity.ERROR, Severity.WARNING, Severity.INFO
RETRY = Retry(Step.ORDER, "http_503", 1, 1.0)


@pytest.mark.parametrize(
    ("problems", "retries", "verdict", "prod", "confidence"),
    [
        ([], [], Verdict.LIKELY_SUCCESS, True, Confidence.HIGH),
        ([p(C, INFO)], [], Verdict.LIKELY_SUCCESS, True, Confidence.HIGH),
        ([p(S, W)], [], Verdict.LIKELY_SUCCESS, True, Confidence.MEDIUM),
        ([], [RETRY], Verdict.LIKELY_SUCCESS, True, Confidence.MEDIUM),
        ([p(C, W)], [], Verdict.LIKELY_SUCCESS, True, Confidence.MEDIUM),
        ([p(C, F)], [], Verdict.CLIENT_ERROR, False, Confidence.HIGH),
        ([p(C, E, Confidence.MEDIUM)], [], Verdict.CLIENT_ERROR, False, Confidence.MEDIUM),
        ([p(S, F)], [], Verdict.STAGING_UNSTABLE, None, Confidence.HIGH),
        ([p(S, E, Confidence.LOW)], [RETRY], Verdict.STAGING_UNSTABLE, None, Confidence.LOW),
        ([p(S, F), p(C, E)], [], Verdict.CLIENT_ERROR, False, Confidence.HIGH),
        ([p(C, W), p(S, E)], [], Verdict.STAGING_UNSTABLE, None, Confidence.HIGH),
    ],
)
def test_rule(problems: list[Problem], retries: list[Retry], verdict: Verdict,
              prod: bool | None, confidence: Confidence) -> None:
    d = decide(problems, retries)
    assert (d.verdict, d.prod_likely_to_succeed, d.confidence) == (verdict, prod, confidence)


def test_no_combination_of_staging_problems_gives_client_error_or_any_failure_success() -> None:
    severities = list(Severity)
    for n in range(1, 4):
        for combo in itertools.product([C, S], severities, repeat=n):
            problems = [p(combo[i], combo[i + 1]) for i in range(0, len(combo), 2)]
            d = decide(problems)
            decisive = [x for x in problems if x.severity.decisive]
            if decisive:
                assert d.verdict is not Verdict.LIKELY_SUCCESS
            if all(x.cause is S for x in decisive):
                assert d.verdict is not Verdict.CLIENT_ERROR


def test_exit_codes() -> None:
    assert [v.exit_code for v in Verdict] == [0, 1, 2]
