"""The classifier's table: every row of TAXONOMY.md, one case each (pure, no I/O)."""

from __future__ import annotations

import pytest

from acmedryrun import classify as c
from acmedryrun.deadline import Party
from acmedryrun.report import Cause, Confidence, Severity, Step

CLIENT, STAGING = Cause.CLIENT, Cause.STAGING
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW
T = c.TransportKind
R = c.Reach


def ctx(**kwargs: object) -> c.Context:
    """A classification context with only the given facts."""
    return c.Context(**kwargs)  # type: ignore[arg-type]


# (observation, step, expected name, cause, confidence, retry kind[, context])
TABLE = [
    # ACME problem documents (RFC 8555 section 6.7 and extras)
    (c.AcmeError("badNonce", status=400), Step.ORDER, "BadNonceStorm", STAGING, HIGH,
     c.RetryKind.IMMEDIATE),
    (c.AcmeError("serverInternal", status=500), Step.FINALIZE, "ServerInternal", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    (c.AcmeError("rateLimited", status=503), Step.ORDER, "ServiceBusy", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    (c.AcmeError("rateLimited", status=429, retry_after=3600), Step.ORDER, "RateLimited", CLIENT,
     HIGH, c.RetryKind.RATE_LIMIT),
    (c.AcmeError("connection"), Step.CHALLENGE, "ValidationConnection", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("dns"), Step.CHALLENGE, "ValidationDns", CLIENT, HIGH, c.RetryKind.NONE),
    (c.AcmeError("tls"), Step.CHALLENGE, "ValidationTls", CLIENT, HIGH, c.RetryKind.NONE),
    (c.AcmeError("unauthorized", status=403), Step.CHALLENGE, "Unauthorized", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("incorrectResponse"), Step.CHALLENGE, "ValidationIncorrectResponse", CLIENT,
     HIGH, c.RetryKind.NONE),
    (c.AcmeError("caa", status=403), Step.FINALIZE, "CaaForbidden", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("unknownHost"), Step.CHALLENGE, "ValidationUnknownHost", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("rejectedIdentifier", status=400), Step.ORDER, "RejectedIdentifier", CLIENT,
     HIGH, c.RetryKind.NONE),
    (c.AcmeError("unsupportedIdentifier"), Step.ORDER, "UnsupportedIdentifier", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("badCSR"), Step.FINALIZE, "BadCsr", CLIENT, HIGH, c.RetryKind.NONE),
    (c.AcmeError("badPublicKey"), Step.ACCOUNT, "BadPublicKey", CLIENT, HIGH, c.RetryKind.NONE),
    (c.AcmeError("badSignatureAlgorithm"), Step.ACCOUNT, "BadSignatureAlgorithm", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("invalidContact"), Step.ACCOUNT, "InvalidContact", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("unsupportedContact"), Step.ACCOUNT, "UnsupportedContact", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("externalAccountRequired"), Step.ACCOUNT, "ExternalAccountRequired", CLIENT,
     HIGH, c.RetryKind.NONE),
    (c.AcmeError("userActionRequired"), Step.ACCOUNT, "UserActionRequired", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("agreementRequired"), Step.ACCOUNT, "AgreementRequired", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("accountDoesNotExist"), Step.ACCOUNT, "AccountDoesNotExist", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("orderNotReady"), Step.FINALIZE, "OrderNotReady", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("alreadyReplaced"), Step.ORDER, "AlreadyReplaced", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("invalidProfile"), Step.ORDER, "InvalidProfile", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("alreadyRevoked"), Step.CLEANUP, "AlreadyRevoked", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("badRevocationReason"), Step.CLEANUP, "BadRevocationReason", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AcmeError("malformed", status=400), Step.ORDER, "Malformed", CLIENT, MEDIUM,
     c.RetryKind.NONE),
    (c.AcmeError("urn:ietf:params:acme:error:somethingNew"), Step.ORDER, "UnknownAcmeError",
     STAGING, LOW, c.RetryKind.NONE),
    (c.AcmeError("about:blank", status=500), Step.ORDER, "UnknownAcmeError", STAGING, LOW,
     c.RetryKind.BACKOFF),
    # compound: client if any subproblem is client
    (c.AcmeError("compound", subproblems=(
        c.AcmeError("serverInternal"), c.AcmeError("rejectedIdentifier", identifier="x.test"))),
     Step.ORDER, "RejectedIdentifier", CLIENT, HIGH, c.RetryKind.NONE),
    (c.AcmeError("compound", subproblems=(c.AcmeError("serverInternal"),)), Step.ORDER,
     "ServerInternal", STAGING, HIGH, c.RetryKind.BACKOFF),
    (c.AcmeError("compound"), Step.ORDER, "UnknownAcmeError", STAGING, LOW, c.RetryKind.NONE),
    # HTTP status without a problem document
    (c.HttpError(502, "text/html", "<html>Bad Gateway</html>"), Step.AUTHORIZATION,
     "ServerUnavailable", STAGING, HIGH, c.RetryKind.BACKOFF),
    (c.HttpError(503, "text/html"), Step.ORDER, "ServerUnavailable", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    (c.HttpError(504, "text/html"), Step.ORDER, "ServerUnavailable", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    (c.HttpError(500, "text/plain"), Step.ORDER, "ServerError", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    (c.HttpError(429, "text/plain", retry_after=5), Step.ORDER, "RateLimited", CLIENT, MEDIUM,
     c.RetryKind.RATE_LIMIT),
    (c.HttpError(404, "text/html"), Step.DIRECTORY, "DirectoryNotFound", CLIENT, MEDIUM,
     c.RetryKind.NONE),
    (c.HttpError(404, "text/html"), Step.AUTHORIZATION, "UnexpectedHttpStatus", STAGING, LOW,
     c.RetryKind.NONE),
    (c.HttpError(404, "text/html"), Step.DIRECTORY, "UnexpectedHttpStatus",
     STAGING, LOW, c.RetryKind.NONE, ctx(known_directory=True)),
    # transport, decided by the production twin
    (c.TransportError(T.REFUSED), Step.DIRECTORY, "StagingUnreachable",
     STAGING, HIGH, c.RetryKind.BACKOFF, ctx(reference=R.ANSWERED)),
    (c.TransportError(T.RESET), Step.FINALIZE, "StagingUnreachable", STAGING,
     HIGH, c.RetryKind.BACKOFF, ctx(reference=R.ANSWERED)),
    (c.TransportError(T.TIMEOUT), Step.DIRECTORY, "CaUnreachable", CLIENT,
     HIGH, c.RetryKind.BACKOFF, ctx(reference=R.UNREACHABLE)),
    (c.TransportError(T.DNS), Step.DIRECTORY, "CaUnreachable", CLIENT, HIGH,
     c.RetryKind.BACKOFF, ctx(reference=R.UNREACHABLE)),
    (c.TransportError(T.TLS), Step.DIRECTORY, "StagingUnreachable", STAGING,
     LOW, c.RetryKind.BACKOFF, ctx()),
    (c.TransportError(T.OTHER), Step.ORDER, "StagingUnreachable", STAGING,
     LOW, c.RetryKind.BACKOFF, ctx()),
    (c.TransportError(T.TLS_VERIFY), Step.DIRECTORY,
     "StagingCertificateInvalid", STAGING, HIGH, c.RetryKind.NONE, ctx(reference=R.ANSWERED)),
    (c.TransportError(T.TLS_VERIFY), Step.DIRECTORY,
     "StagingCertificateInvalid", STAGING, HIGH, c.RetryKind.NONE, ctx(reference=R.DIRECTORY)),
    (c.TransportError(T.TLS_VERIFY), Step.DIRECTORY, "TlsVerificationFailed", STAGING, LOW,
     c.RetryKind.NONE, ctx(reference=R.BLOCKED)),
    (c.TransportError(T.REFUSED), Step.DIRECTORY, "StagingUnreachable",
     STAGING, HIGH, c.RetryKind.BACKOFF, ctx(reference=R.DIRECTORY)),
    (c.TransportError(T.TLS_VERIFY), Step.DIRECTORY, "TrustStoreStale",
     CLIENT, HIGH, c.RetryKind.NONE, ctx(reference=R.TLS_VERIFY)),
    (c.TransportError(T.TLS_VERIFY), Step.DIRECTORY, "TlsVerificationFailed",
     STAGING, LOW, c.RetryKind.NONE, ctx()),
    (c.TransportError(T.RESET), Step.FINALIZE, "StagingUnreachable", STAGING, HIGH,
     c.RetryKind.BACKOFF, ctx(reference=R.UNREACHABLE, staging_answered=True)),
    (c.TransportError(T.TLS_VERIFY), Step.ORDER, "StagingUnreachable", STAGING, HIGH,
     c.RetryKind.NONE, ctx(reference=R.TLS_VERIFY, staging_answered=True)),
    (c.TransportError(T.TLS_VERIFY), Step.DIRECTORY, "TlsVerificationFailed", STAGING, LOW,
     c.RetryKind.NONE, ctx(reference=R.UNREACHABLE)),
    # malformed responses
    (c.MalformedResponse("json"), Step.AUTHORIZATION, "MalformedResponse", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    (c.MalformedResponse("replay_nonce"), Step.NONCE, "MalformedResponse", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    (c.MalformedResponse("location"), Step.ORDER, "MalformedResponse", STAGING, HIGH,
     c.RetryKind.BACKOFF),
    # stuck objects and deadlines
    (c.Stuck(c.StuckState.AUTHORIZATION_PENDING), Step.CHALLENGE, "AuthorizationStuckPending",
     STAGING, HIGH, c.RetryKind.NONE),
    (c.Stuck(c.StuckState.ORDER_PROCESSING), Step.FINALIZE, "OrderStuckProcessing", STAGING,
     HIGH, c.RetryKind.NONE),
    (c.Stuck(c.StuckState.ORDER_PENDING), Step.FINALIZE, "OrderStuckPending", STAGING, HIGH,
     c.RetryKind.NONE),
    (c.DeadlineExceeded(), Step.ORDER, "DeadlineExceeded", STAGING, HIGH, c.RetryKind.NONE,
     ctx(spent={Party.CA: 5.0, Party.SOLVER: 1.0})),
    (c.DeadlineExceeded(), Step.ORDER, "DeadlineExceeded", STAGING, HIGH, c.RetryKind.NONE),
    (c.DeadlineExceeded(), Step.CHALLENGE, "SolverDeadlineExceeded", CLIENT, HIGH,
     c.RetryKind.NONE, ctx(spent={Party.CA: 1.0, Party.SOLVER: 5.0})),
    (c.DeadlineExceeded(), Step.ORDER, "PreflightDeadlineExceeded", CLIENT, HIGH,
     c.RetryKind.NONE, ctx(spent={Party.PREFLIGHT: 9.0, Party.CA: 1.0})),
    # local solver errors
    *[
        (c.SolverError(kind), Step.CHALLENGE, rule.name, CLIENT, HIGH, c.RetryKind.NONE)
        for kind, rule in c.SOLVER.items()
    ],
    # the issued chain
    (c.InvalidChain("leaf key differs"), Step.CERTIFICATE, "InvalidCertificateChain", STAGING,
     HIGH, c.RetryKind.NONE),
    (c.AuthorizationInvalid("no reason"), Step.CHALLENGE, "AuthorizationInvalid", STAGING, LOW,
     c.RetryKind.NONE),
    (c.AccountStatus("deactivated"), Step.ACCOUNT, "AccountDeactivated", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AccountStatus("revoked"), Step.ACCOUNT, "AccountRevoked", CLIENT, HIGH,
     c.RetryKind.NONE),
    (c.AccountStatus("['x']"), Step.ACCOUNT, "UnexpectedAccountStatus", STAGING, LOW,
     c.RetryKind.NONE),
    (c.AuthorizationReused(), Step.AUTHORIZATION, "AuthorizationReused", STAGING, MEDIUM,
     c.RetryKind.NONE),
    # issue 13: CAA accounturi naming only the production account (RFC 8657)
    (c.AcmeError("caa", status=403), Step.FINALIZE, "CaaRefusedStagingAccount", STAGING, MEDIUM,
     c.RetryKind.NONE, ctx(caa_production_account=frozenset({"example.com"}))),
    (c.AcmeError("caa", status=403, subproblems=(
        c.AcmeError("caa", status=403, identifier="example.com"),)), Step.FINALIZE,
     "CaaRefusedStagingAccount", STAGING, MEDIUM, c.RetryKind.NONE,
     ctx(caa_production_account=frozenset({"example.com"}))),
    (c.AcmeError("caa", status=403), Step.FINALIZE, "CaaForbidden", CLIENT, HIGH,
     c.RetryKind.NONE, ctx(caa_production_account=frozenset({"other.example.com"}))),
    # issue 13: malformed 404/409 on a URL the CA handed out: it lost its own object
    (c.AcmeError("malformed", "No order for ID 4123", status=404), Step.ORDER, "CaLostObject",
     STAGING, LOW, c.RetryKind.NONE),
    (c.AcmeError("malformed", "No such authorization", status=404), Step.AUTHORIZATION,
     "CaLostObject", STAGING, LOW, c.RetryKind.NONE),
    (c.AcmeError("malformed", "Conflict", status=409), Step.CHALLENGE, "CaLostObject", STAGING,
     LOW, c.RetryKind.NONE),
    (c.AcmeError("malformed", status=404), Step.DIRECTORY, "Malformed", CLIENT, MEDIUM,
     c.RetryKind.NONE),
    # issue 13: "Service busy" is decided by its text, whatever the status
    (c.AcmeError("rateLimited", "Service busy; retry later.", status=429), Step.ORDER,
     "ServiceBusy", STAGING, HIGH, c.RetryKind.BACKOFF),
    (c.AcmeError("rateLimited", "Service busy; retry later."), Step.NONCE, "ServiceBusy",
     STAGING, HIGH, c.RetryKind.BACKOFF),
    (c.AcmeError("rateLimited", "SERVICE BUSY", status=429, retry_after=5), Step.ORDER,
     "ServiceBusy", STAGING, HIGH, c.RetryKind.BACKOFF),
    # issue 13: a deadline is the party's that used the time
    (c.DeadlineExceeded(), Step.DIRECTORY, "DeadlineExceeded", STAGING, LOW, c.RetryKind.NONE,
     ctx(spent={Party.PRODUCTION: 4.0, Party.CA: 1.0})),
    (c.DeadlineExceeded(), Step.ORDER, "DeadlineExceeded", STAGING, HIGH, c.RetryKind.NONE,
     ctx(spent={Party.PREFLIGHT: 2.0, Party.CA: 2.0})),
    # issue 13: an HTML 401/403/407 in staging's place: the production twin decides
    (c.HttpError(403, "text/html", "<html>Forbidden</html>"), Step.DIRECTORY,
     "UnexpectedHttpStatus", STAGING, HIGH, c.RetryKind.NONE, ctx(reference=R.ANSWERED)),
    (c.HttpError(403, "text/html", "<html>Forbidden</html>"), Step.DIRECTORY,
     "NetworkBlocksCa", CLIENT, HIGH, c.RetryKind.NONE, ctx(reference=R.BLOCKED)),
    (c.HttpError(407, "text/html"), Step.ORDER, "NetworkBlocksCa", CLIENT, HIGH,
     c.RetryKind.NONE, ctx(reference=R.UNREACHABLE, staging_answered=True)),
    (c.HttpError(401, "text/html"), Step.DIRECTORY, "NetworkBlocksCa", CLIENT, HIGH,
     c.RetryKind.NONE, ctx(reference=R.TLS_VERIFY)),
    (c.HttpError(403, "text/html"), Step.DIRECTORY, "UnexpectedHttpStatus", STAGING, LOW,
     c.RetryKind.NONE),
    # issue 13: legacy problem types and the ACMEv1 namespace
    (c.AcmeError("urn:ietf:params:acme:error:invalidEmail", status=400), Step.ACCOUNT,
     "InvalidContact", CLIENT, HIGH, c.RetryKind.NONE),
    (c.AcmeError("urn:acme:error:serverInternal", "down for maintenance", status=503),
     Step.DIRECTORY, "ServerInternal", STAGING, HIGH, c.RetryKind.BACKOFF),
    (c.AcmeError("urn:acme:error:rateLimited", status=429), Step.ORDER, "RateLimited", CLIENT,
     HIGH, c.RetryKind.RATE_LIMIT),
    (c.AcmeError("urn:acme:error:badNonce", status=400), Step.ORDER, "BadNonceStorm", STAGING,
     HIGH, c.RetryKind.IMMEDIATE),
    (c.AcmeError("urn:acme:error:dnssec"), Step.CHALLENGE, "ValidationDns", CLIENT, HIGH,
     c.RetryKind.NONE),
    # issue 13: a typed URL answering 200 with something that is not a directory
    (c.NotADirectory("HTTP 200 with a web page"), Step.DIRECTORY, "NotAnAcmeDirectory", CLIENT,
     HIGH, c.RetryKind.NONE),
    (c.NotADirectory("HTTP 200 with a web page"), Step.DIRECTORY, "MalformedResponse", STAGING,
     HIGH, c.RetryKind.NONE, ctx(known_directory=True)),
    # issue 13: cleanup tells the truth
    (c.CleanupIncomplete("ignored"), Step.CLEANUP, "DeactivationIgnored", STAGING, HIGH,
     c.RetryKind.NONE),
    (c.CleanupIncomplete("skipped"), Step.CLEANUP, "DeactivationSkipped", STAGING, LOW,
     c.RetryKind.NONE),
    # issue 13: validation outcomes (RFC 8555 section 7.5.1)
    (c.ValidationFailed(None), Step.CHALLENGE, "ValidationFailed", CLIENT, MEDIUM,
     c.RetryKind.NONE),
    (c.ValidationFailed(None), Step.CHALLENGE, "ValidationFailed", CLIENT, HIGH,
     c.RetryKind.NONE, ctx(self_check_failed=frozenset({"example.com"}))),
    (c.ValidationFailed(None), Step.CHALLENGE, "ValidationFailed", CLIENT, MEDIUM,
     c.RetryKind.NONE, ctx(self_check_failed=frozenset({"other.example.com"}))),
    (c.ValidationFailed(c.AcmeError("connection", status=400)), Step.CHALLENGE,
     "ValidationConnection", CLIENT, HIGH, c.RetryKind.NONE),
    (c.ValidationFailed(c.AcmeError("unknown", status=400)), Step.CHALLENGE, "ValidationFailed",
     CLIENT, MEDIUM, c.RetryKind.NONE),
    (c.ValidationFailed(c.AcmeError("malformed", "Could not resolve URL", status=400)),
     Step.CHALLENGE, "ValidationFailed", CLIENT, MEDIUM, c.RetryKind.NONE),
    (c.ValidationFailed(c.AcmeError("serverInternal", "Could not communicate with VA",
                                    status=500)),
     Step.CHALLENGE, "ServerInternal", STAGING, HIGH, c.RetryKind.NONE),
    (c.ValidationFailed(c.AcmeError("rateLimited", "Service busy; retry later.")),
     Step.CHALLENGE, "ServiceBusy", STAGING, HIGH, c.RetryKind.NONE),
    # issue 13: the run asks for a profile the staging directory does not list
    (c.ProfileNotOffered("shortlived", ("classic",)), Step.DIRECTORY, "ProfileNotOffered",
     CLIENT, HIGH, c.RetryKind.NONE),
    (c.ProfileNotOffered("shortlived"), Step.DIRECTORY, "ProfileNotOffered", CLIENT, HIGH,
     c.RetryKind.NONE),
]


ROWS = [row if len(row) == 7 else (*row, c.NO_CONTEXT) for row in TABLE]


@pytest.mark.parametrize(
    ("obs", "step", "name", "cause", "confidence", "retry", "context"), ROWS,
    ids=[f"{type(row[0]).__name__}-{row[2]}-{i}" for i, row in enumerate(ROWS)])
def test_table(  # noqa: PLR0917 - one parameter per column of the table
    obs: c.Observation, step: Step, name: str, cause: Cause, confidence: Confidence,
    retry: c.RetryKind, context: c.Context,
) -> None:
    problem = c.classify(obs, step=step, identifier="example.com", context=context)
    assert (problem.name, problem.cause, problem.confidence) == (name, cause, confidence)
    assert problem.step is step
    assert problem.hint, "every problem says what to do"
    assert c.retry_kind(obs) is retry


def test_every_acme_type_of_rfc8555_and_extras_has_a_row() -> None:
    rfc8555 = {
        "accountDoesNotExist", "alreadyRevoked", "badCSR", "badNonce", "badPublicKey",
        "badRevocationReason", "badSignatureAlgorithm", "caa", "compound", "connection", "dns",
        "externalAccountRequired", "incorrectResponse", "invalidContact", "malformed",
        "orderNotReady", "rateLimited", "rejectedIdentifier", "serverInternal", "tls",
        "unauthorized", "unsupportedContact", "unsupportedIdentifier", "userActionRequired",
    }
    extras = {"alreadyReplaced", "invalidProfile", "agreementRequired", "unknownHost"}
    covered = set(c.ACME_TYPES) | {"rateLimited", "compound"}
    assert rfc8555 | extras <= covered
    tested = {row[0].short_type for row in TABLE if isinstance(row[0], c.AcmeError)}
    assert rfc8555 | extras <= tested


def test_no_staging_row_ever_blames_the_client_when_the_twin_answers() -> None:
    for kind in c.TransportKind:
        answered = ctx(reference=R.ANSWERED)
        assert c.rule_for(c.TransportError(kind), Step.ORDER, answered).cause is STAGING


def test_problem_document_identifier_wins_and_compound_names_the_client_subproblem() -> None:
    obs = c.AcmeError("compound", detail="2 problems", subproblems=(
        c.AcmeError("serverInternal", identifier="a.example.com"),
        c.AcmeError("caa", "CAA forbids", identifier="b.example.com")))
    p = c.classify(obs, step=Step.FINALIZE, identifier="ignored.example.com")
    assert p.identifier == "b.example.com"
    assert "b.example.com: caa: CAA forbids" in p.detail


def test_rate_limit_hint_carries_retry_after_and_help_link() -> None:
    obs = c.AcmeError("rateLimited", "too many", status=429, retry_after=120,
                      help_url="https://letsencrypt.org/docs/rate-limits/")
    p = c.classify(obs, step=Step.ORDER, severity=Severity.FATAL)
    assert p.retry_after == 120
    assert p.help_url == "https://letsencrypt.org/docs/rate-limits/"
    assert "120 s" in p.hint
    assert p.severity is Severity.FATAL
    assert p.http_status == 429
    assert p.acme_type == "urn:ietf:params:acme:error:rateLimited"


def test_html_error_page_detail_is_an_excerpt() -> None:
    obs = c.HttpError(502, "text/html", "<html>\n  <body>Bad   Gateway</body></html>" + "x" * 500)
    p = c.classify(obs, step=Step.AUTHORIZATION)
    assert "HTTP 502 (text/html)" in p.detail
    assert "<body>Bad Gateway</body>" in p.detail
    assert len(p.detail) < 300
