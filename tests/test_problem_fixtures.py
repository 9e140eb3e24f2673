"""Real problem documents, replayed through the parser and the classifier (pure, no I/O).

``tests/fixtures/problems.json`` holds 60 documents and objects that CAs really sent
(Boulder / Let's Encrypt, Pebble 2.4.0 captured on loopback, step-ca, acme2certifier,
ZeroSSL, user reports), each with its ``source``, how exact it is, where in the
conversation it came (``where``) and whose fault it is (``blame``).  Each is turned
into the observation the run builds from it -- through the same functions the run
uses: :func:`acmedryrun.acme_steps.error_observation` (and so
:func:`~acmedryrun.acme_steps.acme_error`) for an error response,
:func:`~acmedryrun.acme_steps.check_authorization` / ``check_order`` /
``check_challenge`` for an object carrying an ``error`` -- and classified at the step
its ``where`` names.  The cause must be the one the fixture states.

Where the classifier and a fixture disagreed, TAXONOMY.md and the research notes behind
the fixtures decided who is right: the ``WRONG`` rows are where the classifier was (and
now holds), the ``OVERRULED`` rows where the fixture is, each saying why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_classify import ROWS

from acmedryrun import acme_steps as acme
from acmedryrun import classify as c
from acmedryrun.classify import RequestFailed
from acmedryrun.preflight import Identifier
from acmedryrun.preflight.identifiers import public_policy
from acmedryrun.production.twin import TwinUnavailable, UnavailableKind, twin_unavailable_problem
from acmedryrun.report import Cause, Severity, Step
from acmedryrun.transport import Response
from acmedryrun.urls import parse_url

CLIENT, STAGING = Cause.CLIENT, Cause.STAGING
FIXTURES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "problems.json").read_text())
BY_ID = {f["id"]: f for f in FIXTURES}
#: Placeholder URLs in constructed fixtures (``"<url>"``) are replaced by this one.
SOME_URL = "https://ca.test/acme/chall/1"
CHALLENGE_TYPES = frozenset({"http-01", "dns-01", "tls-alpn-01"})

#: The step of the run each fixture's ``where`` names.  A POST the fixture does not
#: place ("any POST", "an unimplemented endpoint") is taken as a mid-run one: ORDER.
WHERE: Mapping[Step, tuple[str, ...]] = {
    Step.DIRECTORY: ("le-maintenance-503-legacy-prefix", "le-2015-maintenance-502-html",
                     "le-2017-akamai-error-page"),
    Step.NONCE: ("le-akamai-503-html",),
    Step.ACCOUNT: ("le-staging-500-new-account",),
    Step.ORDER: (
        "le-staging-500-new-order", "le-staging-500-new-order-2",
        "le-staging-404-new-order-botched-deploy", "le-service-busy-503", "le-service-busy-429",
        "le-429-exact-set-2025", "le-429-registered-domain-2025",
        "le-429-exact-set-2024-old-format", "boulder-429-paused", "boulder-badnonce",
        "boulder-badnonce-legacy", "boulder-500-unable-to-validate-jws",
        "boulder-account-does-not-exist", "boulder-rejected-identifier",
        "boulder-rejected-identifier-subproblems", "le-staging-parse-error-jws",
        "boulder-invalid-profile", "le-staging-profile-not-allowed",
        "stepca-not-implemented-501", "pebble-badnonce", "pebble-415",
        "pebble-rejected-identifier", "pebble-malformed-wildcard", "pebble-malformed-ip-as-dns",
    ),
    Step.AUTHORIZATION: ("le-staging-404-no-such-authorization",
                         "le-staging-405-method-not-allowed"),
    Step.CHALLENGE: (
        "boulder-challenge-serverinternal-va", "boulder-secondary-rpc-failed",
        "le-secondary-validation-unauthorized", "le-connection-timeout", "le-dns-nxdomain-txt",
        "le-caa", "boulder-conflict-double-challenge-post", "stepca-http01-connection-pending",
        "stepca-http01-mismatch-invalid", "a2c-incorrect-response", "a2c-unknown-type",
        "zerossl-processing", "pebble-bare-404", "pebble-http01-refused",
        "pebble-order-invalid-with-error", "pebble-http01-servfail", "pebble-dns01-servfail",
        "pebble-dns01-no-txt", "pebble-tlsalpn-servfail-malformed",
        "pebble-http01-wrong-content",
    ),
    Step.FINALIZE: ("le-429-legacy-v1", "boulder-no-order-for-id", "boulder-order-not-ready",
                    "boulder-caa-recheck-subproblems", "pebble-order-not-ready"),
}
STEP_OF = {fid: step for step, ids in WHERE.items() for fid in ids}

#: Fixtures whose blame is "no verdict": the run does not classify them (why, and
#: where that is proven); :func:`test_no_verdict_fixtures_parse_as_the_run_passes_over_them`
#: checks the shape the run relies on.
NO_VERDICT: Mapping[str, str] = {
    "pebble-challenge-post-pending": "progress: Pebble's challenge POST answers pending"
    " without an error; the run polls on",
    "boulder-repost-after-invalid": "an error on a re-POST is passed over"
    " (Run.await_validation); the authorization's challenge error decides",
    "pebble-repost-invalid": "an error on a re-POST is passed over (Run.await_validation);"
    " the authorization's challenge error decides",
    "pebble-order-deactivated": "the order a deactivated reused authorization leaves behind"
    " is never read again: the run orders anew (test_blame_e2e's reuse test issues after it)",
}


def stated_cause(blame: str) -> Cause | None:
    """The cause a fixture's ``blame`` states first (None: no verdict by itself)."""
    text = blame.lower()
    if text.startswith("client"):
        return CLIENT
    if text.startswith(("staging", "not the subscriber's")):
        return STAGING
    assert text.startswith(("none", "no verdict", "acmedryrun's own doing")), blame
    return None


@dataclass(frozen=True)
class Case:
    """One replay: a fixture, the context the run would have, the cause expected."""

    fixture: str
    cause: Cause
    context: c.Context = c.NO_CONTEXT
    status: int | None = None  #: for a fixture whose HTTP status was not reported
    label: str = "as sent"
    identifier: str = "example.com"  #: the name the run knows, when the object names none


def _headers(fx: Mapping[str, Any]) -> dict[str, str]:
    """The fixture's headers, lower-cased, without the values its source did not give."""
    return {k.lower(): str(v) for k, v in fx["headers"].items() if not str(v).startswith("<")}


def observation(fx: Mapping[str, Any], status: int | None = None
                ) -> tuple[c.Observation, str | None]:
    """The observation the run builds from ``fx``, and the identifier it knows.

    An HTTP error response goes through ``error_observation`` (as ``AcmeClient.post``
    does); an authorization, order or challenge object through the record checks, its
    error then taken the way the orchestrator takes it (RFC 8555 section 7.5.1).
    """
    body, http_status = fx["body"], status or fx["status"]
    if isinstance(body, str) or http_status >= 300:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return acme.error_observation(Response(http_status, _headers(fx), raw, SOME_URL)), None
    if "challenges" in body:  # an authorization: Run._invalid / Authorization.failure
        authz = acme.check_authorization(parse_url(SOME_URL), body)
        failure = authz.failure()
        error = failure if isinstance(failure, c.AcmeError) else None
        return c.ValidationFailed(error, f"{authz.domain}: invalid"), authz.domain
    if "authorizations" in body:  # an order: Run.await_validation
        order = acme.check_order(parse_url(SOME_URL), body)
        assert order.status == "invalid", fx["id"]
        ident = body["identifiers"][0]["value"]
        return c.ValidationFailed(order.error, "the order became invalid"), ident
    if body.get("type") in CHALLENGE_TYPES:  # a challenge object
        url = body["url"] if str(body.get("url", "")).startswith("https://") else SOME_URL
        challenge = acme.check_challenge(parse_url(url), {**body, "url": url})
        if challenge.status == "invalid" or challenge.error is not None:
            # Invalid at once (Run._invalid), or pending with an error at the deadline
            # (Run.await_validation's stuck()).
            return c.ValidationFailed(challenge.error, "the challenge failed"), None
        assert challenge.status == "processing", fx["id"]
        return c.Stuck(c.StuckState.AUTHORIZATION_PENDING, "still processing"), None
    # A bare error object: a challenge's (or an authorization's) ``error``.
    return c.ValidationFailed(acme.acme_error(body, None), "the validation failed"), None


#: A blame whose first clause is conditional: the cause without the condition.
UNCONDITIONAL: Mapping[str, Cause] = {
    "zerossl-processing": STAGING,  # "client (medium) when the self-check failed; else staging"
}


def _base_cases() -> list[Case]:
    wrong = {case.fixture for case in _wrong_cases() if case.label == "as sent"}
    cases = []
    for fx in FIXTURES:
        cause = UNCONDITIONAL.get(fx["id"], stated_cause(fx["blame"]))
        if cause is None or fx["id"] in wrong:
            continue
        if fx["status"] is None:
            # Not reported: replayed at each status such a CDN page comes with.
            cases += [Case(fx["id"], cause, status=s, label=f"HTTP {s}") for s in (500, 503)]
        else:
            cases.append(Case(fx["id"], cause))
    return cases


#: The conditions some fixtures name ("... unless preflight saw ...").
PRODUCTION_ONLY = c.Context(caa_production_account=frozenset(
    {"a.example.com", "b.example.com", "test-acme2.domain.ext"}))
CONDITIONAL = [
    Case("boulder-caa-recheck-subproblems", STAGING, PRODUCTION_ONLY,
         label="both names' CAA bind a production account"),
    Case("stepca-http01-connection-pending", CLIENT,
         c.Context(self_check_failed=frozenset({"example.com"})),
         label="the self-check failed too"),
]

#: Where the classifier was wrong (decided against TAXONOMY.md and the notes); fixed.
WRONG = [
    pytest.param(
        Case("le-caa", STAGING, PRODUCTION_ONLY, identifier="test-acme2.domain.ext",
             label="the name's CAA binds only a production account")),
    pytest.param(
        Case("boulder-caa-recheck-subproblems", CLIENT,
             c.Context(caa_production_account=frozenset({"a.example.com"})),
             label="only a.example.com's CAA binds a production account")),
    pytest.param(
        Case("stepca-not-implemented-501", STAGING)),
]

#: A fixture's condition that TAXONOMY.md answers the other way (the fixture is wrong).
OVERRULED = [
    Case("zerossl-processing", STAGING, c.Context(self_check_failed=frozenset({"example.com"})),
         label="self-check failed; fixture says client (medium), TAXONOMY says staging"),
]


def _wrong_cases() -> list[Case]:
    return [case for param in WRONG for case in param.values if isinstance(case, Case)]


def _case_id(case: Case) -> str:
    return f"{case.fixture}[{case.label}]"


def _classify(case: Case) -> tuple[str, Cause | None]:
    fx = BY_ID[case.fixture]
    obs, ident = observation(fx, case.status)
    problem = c.classify(obs, step=STEP_OF[case.fixture], identifier=ident or case.identifier,
                         severity=Severity.FATAL, context=case.context)
    return problem.name, problem.cause


def test_every_fixture_is_placed_and_replayed_or_explained() -> None:
    ids = [f["id"] for f in FIXTURES]
    assert len(ids) == len(set(ids)) == 60
    assert all({"source", "exactness", "blame", "where"} <= set(f) for f in FIXTURES)
    placed = [fid for step_ids in WHERE.values() for fid in step_ids]
    assert len(placed) == len(set(placed)), "each fixture has one step"
    assert set(placed) | set(NO_VERDICT) == set(ids)
    assert not set(placed) & set(NO_VERDICT)
    no_verdict = {f["id"] for f in FIXTURES if stated_cause(f["blame"]) is None}
    assert no_verdict == set(NO_VERDICT) | {"boulder-conflict-double-challenge-post"}


@pytest.mark.parametrize("case", _base_cases() + CONDITIONAL + OVERRULED, ids=_case_id)
def test_fixture_blame(case: Case) -> None:
    """The cause the fixture states (its first clause, or its named condition)."""
    name, cause = _classify(case)
    assert cause is case.cause, f"{case.fixture}: {name}, {cause}; fixture: " \
        f"{BY_ID[case.fixture]['blame']}"


@pytest.mark.parametrize("case", WRONG, ids=_case_id)
def test_fixture_blame_the_classifier_gets_wrong(case: Case) -> None:
    name, cause = _classify(case)
    assert cause is case.cause, f"{case.fixture}: {name}, {cause}"


def test_conflict_on_a_repost_would_be_staging_low_if_it_surfaced() -> None:
    """boulder-conflict-double-challenge-post: no verdict when it answers a re-POST (the
    run passes over it); if a run ever reported it, staging, low (the fixture's words)."""
    name, cause = _classify(Case("boulder-conflict-double-challenge-post", STAGING))
    assert (name, cause) == ("CaConflict", STAGING)


def test_no_verdict_fixtures_parse_as_the_run_passes_over_them() -> None:
    pending = BY_ID["pebble-challenge-post-pending"]["body"]
    challenge = acme.check_challenge(parse_url(pending["url"]), pending)
    assert (challenge.status, challenge.error) == ("pending", None)
    for fid in ("boulder-repost-after-invalid", "pebble-repost-invalid"):
        obs, _ = observation(BY_ID[fid])
        assert isinstance(obs, c.AcmeError)
        assert (obs.short_type, obs.status) == ("malformed", 400)
        assert c.retry_kind(obs) is c.RetryKind.NONE
    deactivated = BY_ID["pebble-order-deactivated"]["body"]
    with pytest.raises(RequestFailed):  # not an RFC 8555 order status: never to be read
        acme.check_order(parse_url(SOME_URL), deactivated)
    assert set(NO_VERDICT) <= set(BY_ID)


def test_legacy_namespace_and_status_less_documents_keep_what_they_say() -> None:
    """le-maintenance-503-legacy-prefix has no ``status`` member and the ACMEv1 prefix;
    le-service-busy-503 has no ``status`` member: the HTTP status fills it in."""
    obs, _ = observation(BY_ID["le-maintenance-503-legacy-prefix"])
    assert isinstance(obs, c.AcmeError)
    assert (obs.short_type, obs.status, obs.urn) == (
        "serverInternal", 503, "urn:acme:error:serverInternal")
    busy, _ = observation(BY_ID["le-service-busy-503"])
    assert isinstance(busy, c.AcmeError)
    assert busy.service_busy
    assert busy.status == 503
    limited, _ = observation(BY_ID["le-429-exact-set-2025"])
    assert isinstance(limited, c.AcmeError)
    assert not limited.service_busy


# ------------------------------------------- issue 13: pure checks outside the classifier


def test_the_classifier_never_leaves_a_problem_without_a_cause() -> None:
    """CONTRACT.md: a fatal or error problem always carries client or staging; only
    notices made elsewhere (preflight, the twin) may say null.  Every row of the
    classifier's table in tests/test_classify.py, at both severities."""
    rows: list[tuple[Any, ...]] = ROWS
    for obs, step, *_rest, context in rows:
        for severity in (Severity.FATAL, Severity.ERROR):
            problem = c.classify(obs, step=step, severity=severity, context=context)
            assert problem.cause in (CLIENT, STAGING), (obs, problem)


def test_an_unreadable_production_twin_is_a_notice_nobody_is_to_blame_for() -> None:
    reason = TwinUnavailable("https://127.0.0.1:9/dir", UnavailableKind.UNREACHABLE,
                             "connection refused")
    notice = twin_unavailable_problem("https://127.0.0.1:9/dir", reason)
    assert (notice.severity, notice.cause) == (Severity.WARNING, None)
    assert notice.to_dict()["cause"] is None


@pytest.mark.parametrize(("known", "severity"), [(None, Severity.WARNING),
                                                 ("letsencrypt-staging", Severity.FATAL)])
def test_single_label_names_are_fatal_only_for_a_known_public_ca(
    known: str | None, severity: Severity
) -> None:
    from acmedryrun import directories

    ca = directories.by_alias(known) if known else None
    (found,) = public_policy(Identifier("dns", "nodot"), ca)
    assert (found.name, found.severity, found.cause) == ("NotFullyQualified", severity, CLIENT)
