"""Whose fault is it?  What happened -> :class:`~acmedryrun.report.Problem`.

This module is pure: it takes *observations* (plain data describing what the CA,
the network or a solver did) plus a small :class:`Context` (what else the run
knows: did staging answer earlier, what the production twin's GET showed, what
the self-check saw, how the run's time was spent) and returns data.  No I/O, no
``requests``, no ``acme.client``.  :mod:`acmedryrun.transport` turns foreign
exceptions into observations at one boundary; this module decides blame,
severity, hint and retry policy, driven by the tables below.  docs/TAXONOMY.md is
generated from these tables (:mod:`acmedryrun.taxonomy`): a new table or rule needs
its words there.

Observations::

    Observation
     +-- AcmeError          a problem document (RFC 8555 section 6.7, RFC 7807)
     +-- HttpError          a non-2xx status without a problem document
     +-- TransportError     no HTTP response at all: refused, reset, timeout, TLS
     +-- MalformedResponse  a response that is not what RFC 8555 requires
     +-- Stuck              an authorization or order that never left a state
     +-- DeadlineExceeded   the run's one overall deadline expired
     +-- SolverError        the local challenge solver could not do its part
     +-- InvalidChain       the issued chain does not parse or does not match
     +-- ProductionUrl      the CA pointed a request at a production CA's host
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

from acmedryrun.deadline import Party
from acmedryrun.report import Cause, Confidence, Problem, Severity, SolverErrorKind, Step

ACME_ERROR_PREFIX = "urn:ietf:params:acme:error:"
#: The ACMEv1 namespace, still sent by Let's Encrypt's static maintenance page.
LEGACY_PREFIX = "urn:acme:error:"
#: Types Boulder once sent under other names (Boulder PR 6877, May 2023: invalidEmail;
#: early drafts: dnssec) -> their RFC 8555 names.
LEGACY_TYPES: Mapping[str, str] = {"invalidEmail": "invalidContact", "dnssec": "dns"}

CLIENT = Cause.CLIENT
STAGING = Cause.STAGING
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True, slots=True)
class AcmeError:
    """An ACME problem document the CA sent (RFC 8555 section 6.7).

    ``type`` is the full URN or its short form (``badNonce``).
    """

    type: str
    detail: str = ""
    status: int | None = None
    subproblems: tuple[AcmeError, ...] = ()
    identifier: str | None = None
    retry_after: float | None = None
    help_url: str | None = None

    @property
    def short_type(self) -> str:
        """The type without its namespace, legacy names mapped to RFC 8555's."""
        short = self.type.removeprefix(ACME_ERROR_PREFIX).removeprefix(LEGACY_PREFIX)
        return LEGACY_TYPES.get(short, short)

    @property
    def service_busy(self) -> bool:
        """Overload shedding in front of the CA: ``rateLimited`` with HTTP 503, or whose
        detail says "Service busy" (Let's Encrypt sent it with 429 in 2022)."""
        return self.short_type == "rateLimited" and (
            self.status == 503 or "service busy" in self.detail.lower())

    @property
    def urn(self) -> str:
        """The full type URN (a non-ACME type is returned as sent)."""
        return self.type if ":" in self.type else ACME_ERROR_PREFIX + self.type


@dataclass(frozen=True, slots=True)
class HttpError:
    """A non-2xx response that carried no problem document (e.g. a load balancer's HTML)."""

    status: int
    content_type: str = ""
    body_excerpt: str = ""
    retry_after: float | None = None
    #: The ``Location`` of a redirect (3xx), which CA traffic never follows.
    location: str | None = None


class TransportKind(str, enum.Enum):
    """How a request failed before any HTTP response arrived."""

    REFUSED = "connection_refused"
    RESET = "connection_reset"
    TIMEOUT = "timeout"
    TLS_VERIFY = "tls_verify"
    TLS = "tls_handshake"
    DNS = "dns_resolution"
    OTHER = "connection_error"


@dataclass(frozen=True, slots=True)
class TransportError:
    """No HTTP response: the connection failed (the :class:`Context` says whose fault)."""

    kind: TransportKind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MalformedResponse:
    """A response that breaks RFC 8555: not JSON, no ``Replay-Nonce``, no ``Location``."""

    what: str
    detail: str = ""
    status: int | None = None


class StuckState(str, enum.Enum):
    """States an object can get stuck in past the deadline."""

    AUTHORIZATION_PENDING = "authorization_pending"
    ORDER_PROCESSING = "order_processing"
    ORDER_PENDING = "order_pending"


@dataclass(frozen=True, slots=True)
class Stuck:
    """An authorization or order that stayed in one state until the deadline."""

    state: StuckState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeadlineExceeded:
    """The one overall deadline expired (:attr:`Context.spent` says who used the time)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class SolverError:
    """The local solver could not place or remove a challenge response."""

    kind: SolverErrorKind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class InvalidChain:
    """The issued certificate chain does not parse or does not match the request."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizationInvalid:
    """An authorization went ``invalid`` and the CA said nothing about why."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """The account object's ``status`` was not ``valid`` (RFC 8555 section 7.1.2)."""

    status: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizationReused:
    """The CA handed back a valid authorization even after it was deactivated."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class ValidationFailed:
    """The CA marked a challenge or authorization ``invalid`` (RFC 8555 section 7.5.1).

    ``error`` is the challenge's (or authorization's) error object; some CAs send
    none.  Whatever the CA's habits, an invalid validation is the subscriber's unless
    the error itself says the CA broke (``serverInternal``).
    """

    error: AcmeError | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NotADirectory:
    """The directory URL answered 200 with something that is not an ACME directory."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class ProfileNotOffered:
    """The run asks for a profile the staging directory's ``meta.profiles`` does not list."""

    profile: str
    offered: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CleanupIncomplete:
    """A deactivation the CA did not carry out (``ignored``), or did not get to (``skipped``)."""

    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ProductionUrl:
    """The CA sent a request of this run towards a known production CA's host.

    The transport refused to send it (CONTRACT.md's production guard).  ``alias`` is
    the production CA's, or None for a public IP address (which cannot be told from a
    production CA's).
    """

    url: str
    alias: str | None


Observation: TypeAlias = (
    AcmeError
    | HttpError
    | TransportError
    | MalformedResponse
    | Stuck
    | DeadlineExceeded
    | SolverError
    | InvalidChain
    | AuthorizationInvalid
    | AccountStatus
    | AuthorizationReused
    | ProductionUrl
    | ValidationFailed
    | NotADirectory
    | ProfileNotOffered
    | CleanupIncomplete
)


class RequestFailed(Exception):
    """A request to the CA (or to production) got no usable answer; ``obs`` says how.

    Raised by the transport and the protocol steps; the orchestrator turns it into
    a :class:`~acmedryrun.report.Problem`.  Internal: never leaves :func:`dry_run`.
    """

    def __init__(self, obs: Observation, identifier: str | None = None) -> None:
        super().__init__(str(obs))
        self.obs = obs
        self.identifier = identifier

    @property
    def retry_after(self) -> float | None:
        """Seconds the CA asked to wait, if it said."""
        value = getattr(self.obs, "retry_after", None)
        return value if isinstance(value, float | int) else None


# --------------------------------------------------------------------------- context


class Reach(str, enum.Enum):
    """How far one read-only GET of the production twin's directory got."""

    DIRECTORY = "directory"  #: a real ACME directory: the network and the trust store work
    ANSWERED = "answered"  #: another HTTP response (an error page): the network works
    BLOCKED = "blocked"  #: HTTP 401/403/407 without a problem document (a proxy's page?)
    TLS_VERIFY = "tls_verify"  #: TLS certificate verification failed
    UNREACHABLE = "unreachable"  #: no connection (refused, reset, timeout, DNS, TLS)


#: HTTP statuses a TLS-intercepting or filtering proxy answers with in the CA's place.
BLOCK_STATUSES = frozenset({401, 403, 407})


@dataclass(frozen=True, slots=True)
class Context:
    """What else the run knows when an observation is classified.

    Attributes:
        staging_answered: The staging CA answered earlier in this run: the network
            reaches it, so a later transport failure is staging's.
        reference: What one read-only GET of the production twin showed (None: no
            twin to ask, or not asked).
        known_directory: The directory came from the table of known directories,
            not typed by the user, so a 404 there cannot be a typo.
        self_check_passed: Identifiers whose challenge response the self-check
            fetched correctly from this machine (cross-examination of a CA failure).
        self_check_failed: Identifiers whose response the self-check found wrong or
            could not fetch: a CA that says "invalid" without saying why agrees.
        caa_production_account: Identifiers whose CAA records bind issuance to a
            production account only (RFC 8657): staging's ``caa`` refusal of them is
            an artefact of the staging run, not the subscriber's fault.
        account_created: This run created its account: the CA saying it does not exist
            afterwards lost it (replica lag), which is staging's.
        spent: Seconds of the run each party used (who is to blame for an expiry).
    """

    staging_answered: bool = False
    reference: Reach | None = None
    known_directory: bool = False
    self_check_passed: frozenset[str] = frozenset()
    self_check_failed: frozenset[str] = frozenset()
    caa_production_account: frozenset[str] = frozenset()
    account_created: bool = False
    spent: Mapping[Party, float] = field(default_factory=dict)


NO_CONTEXT = Context()


def needs_reference(obs: Observation, ctx: Context) -> bool:
    """Whether one GET of the production twin would decide ``obs``'s blame.

    A failure to reach staging at all (no answer this run: staging that answered
    earlier is staging's fault whatever the twin says), and an HTML 401/403/407 in
    staging's place (a proxy's block page blocks production too).
    """
    if ctx.reference is not None:
        return False
    if isinstance(obs, TransportError):
        return not ctx.staging_answered
    return isinstance(obs, HttpError) and obs.status in BLOCK_STATUSES


def deadline_party(spent: Mapping[Party, float]) -> Party:
    """The party that used most of the run's time (the CA when nothing was charged)."""
    if not spent or not any(spent.values()):
        return Party.CA
    return max(spent, key=lambda p: (spent[p], p is Party.CA))


# --------------------------------------------------------------------------- retry policy


class RetryKind(str, enum.Enum):
    """How the one retry adapter treats a failed request."""

    #: Never retried: a client fault, or something a retry cannot change.
    NONE = "none"
    #: At once, with the fresh nonce the error response carried (badNonce).
    IMMEDIATE = "immediate"
    #: Exponential backoff with jitter; Retry-After wins when larger.
    BACKOFF = "backoff"
    #: Wait only when Retry-After fits in the deadline (HTTP 429).
    RATE_LIMIT = "rate_limit"


def retry_kind(obs: Observation) -> RetryKind:
    """How to retry the request that produced ``obs`` (TAXONOMY.md, "Retry policy")."""
    if isinstance(obs, AcmeError):
        t = obs.short_type
        if t == "badNonce":
            return RetryKind.IMMEDIATE
        if t == "serverInternal":
            return RetryKind.BACKOFF
        if t == "rateLimited":
            return RetryKind.BACKOFF if obs.service_busy else RetryKind.RATE_LIMIT
        if t == "compound" and obs.subproblems and all(
                retry_kind(sub) is RetryKind.BACKOFF for sub in obs.subproblems):
            return RetryKind.BACKOFF
        if obs.status is not None and obs.status >= 500 and t not in ACME_TYPES:
            return RetryKind.BACKOFF
        return RetryKind.NONE
    if isinstance(obs, HttpError):
        if obs.status == 429:
            return RetryKind.RATE_LIMIT
        if obs.status >= 500:
            return RetryKind.BACKOFF
        return RetryKind.NONE
    if isinstance(obs, TransportError):
        return RetryKind.NONE if obs.kind is TransportKind.TLS_VERIFY else RetryKind.BACKOFF
    if isinstance(obs, MalformedResponse):
        # A URL that cannot be requested stays unusable, an oversized or oddly encoded
        # body is no accident; a cut or garbled body may come right.
        return RetryKind.NONE if obs.what in ("url", "size", "encoding") else RetryKind.BACKOFF
    return RetryKind.NONE


def retry_reason(obs: Observation) -> str:
    """A short stable label for ``report.retries[].reason``."""
    if isinstance(obs, AcmeError):
        known = obs.short_type in ACME_TYPES or obs.short_type in ("rateLimited", "compound")
        if obs.service_busy:
            return "service_busy"
        return obs.short_type if known else "acme_error"
    if isinstance(obs, HttpError):
        return f"http_{obs.status}"
    if isinstance(obs, TransportError):
        return obs.kind.value
    if isinstance(obs, MalformedResponse):
        return f"malformed_{obs.what}"
    return type(obs).__name__


# --------------------------------------------------------------------------- the tables


class Rule(NamedTuple):
    """One row of a table: the blame and the words for one kind of failure."""

    name: str
    cause: Cause
    hint: str
    confidence: Confidence = HIGH


#: Problem types that report a failed validation (the CA looked and saw something wrong).
VALIDATION_TYPES = frozenset(
    {"connection", "dns", "tls", "unauthorized", "incorrectResponse", "unknownHost"})

#: ACME problem types (short form) -> blame.  RFC 8555 section 6.7, RFC 9773
#: (alreadyReplaced), the profiles draft (invalidProfile), Boulder's extras.
ACME_TYPES: Mapping[str, Rule] = {
    # -- staging: the CA itself misbehaved
    "badNonce": Rule(
        "BadNonceStorm", STAGING,
        "The CA kept rejecting fresh nonces after every retry: staging is flaky. Retry later.",
    ),
    "serverInternal": Rule(
        "ServerInternal", STAGING,
        "The staging CA had an internal error. It says nothing about production; retry later.",
    ),
    # -- client: validation (the subscriber's DNS, firewall, web server, CAA)
    "connection": Rule(
        "ValidationConnection", CLIENT,
        "The CA could not connect to your server for the challenge: check that the name"
        " resolves to this server and that port 80 (http-01) or 443 (tls-alpn-01) is open"
        " to the internet.",
    ),
    "dns": Rule(
        "ValidationDns", CLIENT,
        "The CA's DNS lookup failed: check the name's A/AAAA/CAA/TXT records and that"
        " its authoritative servers answer (no SERVFAIL, no broken DNSSEC).",
    ),
    "tls": Rule(
        "ValidationTls", CLIENT,
        "The TLS handshake for the challenge failed: check the responder on port 443"
        " (tls-alpn-01) or the HTTPS site a redirect points to.",
    ),
    "unauthorized": Rule(
        "Unauthorized", CLIENT,
        "The CA found the wrong challenge response (or refused the account): check that"
        " the token or TXT record is served for this name, from every address it has.",
    ),
    "incorrectResponse": Rule(
        "ValidationIncorrectResponse", CLIENT,
        "The challenge response did not match what the CA expected: check that another"
        " server or a proxy does not answer in place of the solver.",
    ),
    "caa": Rule(
        "CaaForbidden", CLIENT,
        "A CAA record forbids this CA from issuing for the name: add an 'issue' (or"
        " 'issuewild') property naming the CA, or remove the record.",
    ),
    "unknownHost": Rule(
        "ValidationUnknownHost", CLIENT,
        "The CA could not resolve the name: publish an A or AAAA record for it.",
    ),
    # -- client: the request or the account
    "rejectedIdentifier": Rule(
        "RejectedIdentifier", CLIENT,
        "The CA will not issue for this name (policy, blocklist, or an internal name):"
        " production refuses it too.",
    ),
    "unsupportedIdentifier": Rule(
        "UnsupportedIdentifier", CLIENT,
        "The CA does not issue for this kind of identifier (e.g. IP addresses).",
    ),
    "badCSR": Rule(
        "BadCsr", CLIENT,
        "The CA rejected the CSR: check its names, key type and size, and signature.",
    ),
    "badPublicKey": Rule(
        "BadPublicKey", CLIENT,
        "The CA rejected a public key (account or certificate): use ec256/ec384 or RSA 2048-4096.",
    ),
    "badSignatureAlgorithm": Rule(
        "BadSignatureAlgorithm", CLIENT,
        "The CA does not accept the signature algorithm: use ES256/ES384 or RS256.",
    ),
    "invalidContact": Rule(
        "InvalidContact", CLIENT,
        "The CA rejected the contact address: use a real mailto: address on a public domain.",
    ),
    "unsupportedContact": Rule(
        "UnsupportedContact", CLIENT,
        "The CA does not support this contact URL scheme: use mailto:.",
    ),
    "externalAccountRequired": Rule(
        "ExternalAccountRequired", CLIENT,
        "The CA requires external account binding: pass --eab-kid and --eab-hmac-key from"
        " your CA account.",
    ),
    "userActionRequired": Rule(
        "UserActionRequired", CLIENT,
        "The CA needs you to act (e.g. accept new terms of service): follow the link it gave.",
    ),
    "agreementRequired": Rule(
        "AgreementRequired", CLIENT,
        "The CA requires agreeing to its terms of service.",
    ),
    "accountDoesNotExist": Rule(
        "AccountDoesNotExist", CLIENT,
        "No account exists for this key at the CA: let acmedryrun create one, or pass the"
        " right --account-key.",
    ),
    "orderNotReady": Rule(
        "OrderNotReady", CLIENT,
        "The order was finalized before all its authorizations were valid.",
    ),
    "alreadyReplaced": Rule(
        "AlreadyReplaced", CLIENT,
        "The certificate named in 'replaces' was already replaced (RFC 9773): renew from"
        " the newest certificate.",
    ),
    "invalidProfile": Rule(
        "InvalidProfile", CLIENT,
        "The CA does not offer the requested profile: pick one of the directory's"
        " meta.profiles.",
    ),
    "alreadyRevoked": Rule(
        "AlreadyRevoked", CLIENT, "The certificate is already revoked.",
    ),
    "badRevocationReason": Rule(
        "BadRevocationReason", CLIENT, "The CA does not accept this revocation reason.",
    ),
    "conflict": Rule(
        "CaConflict", STAGING,
        "The CA reported a conflict with its own state (Boulder's 409, e.g. 'already being"
        " validated'): it says nothing about production.",
        LOW,
    ),
    "malformed": Rule(
        "Malformed", CLIENT,
        "The CA rejected the request as malformed. Staging gets stricter checks before"
        " production, so production may still accept it today, but it will not for long:"
        " fix the request (or report it to your ACME client).",
        MEDIUM,
    ),
}

_RATE_LIMITED_CLIENT = Rule(
    "RateLimited", CLIENT,
    "A rate limit was hit. Staging's limits are far above production's, so production"
    " would refuse too: wait for the Retry-After time and reduce how often you order.",
)
_RATE_LIMITED_STAGING = Rule(
    "ServiceBusy", STAGING,
    "The staging CA is overloaded ('service busy'). It says nothing about production;"
    " retry later.",
)
_UNKNOWN_ACME_TYPE = Rule(
    "UnknownAcmeError", STAGING,
    "The CA sent a problem type acmedryrun does not know; it is not taken as your fault.",
    LOW,
)

_HTTP_UNAVAILABLE = Rule(
    "ServerUnavailable", STAGING,
    "The staging CA (or its load balancer) answered with an error page: staging is down"
    " or overloaded. It says nothing about production; retry later.",
)
_HTTP_SERVER_ERROR = Rule(
    "ServerError", STAGING,
    "The staging CA answered with a server error and no problem document. Retry later.",
)
_HTTP_RATE_LIMITED = Rule(
    "RateLimited", CLIENT,
    "HTTP 429 Too Many Requests: production's limits are lower still. Slow down.",
    MEDIUM,
)
_HTTP_NOT_FOUND_DIRECTORY = Rule(
    "DirectoryNotFound", CLIENT,
    "Nothing answers as an ACME directory at this URL: check --directory.",
    MEDIUM,
)
_HTTP_OTHER = Rule(
    "UnexpectedHttpStatus", STAGING,
    "The CA answered with an error status and no problem document (RFC 8555 requires one).",
    LOW,
)

#: (transport kind, what the production twin's directory did) -> blame.
TRANSPORT: Mapping[tuple[TransportKind, bool | None], Rule] = {
    **{
        (kind, True): Rule(
            "StagingUnreachable", STAGING,
            "The staging CA could not be reached, but the production CA could: staging is"
            " down. It says nothing about production; retry later.",
        )
        for kind in TransportKind
        if kind is not TransportKind.TLS_VERIFY
    },
    **{
        (kind, False): Rule(
            "CaUnreachable", CLIENT,
            "Neither the staging nor the production CA could be reached from this machine:"
            " check its firewall, proxy and DNS. Production would fail the same way.",
        )
        for kind in TransportKind
        if kind is not TransportKind.TLS_VERIFY
    },
    **{
        (kind, None): Rule(
            "StagingUnreachable", STAGING,
            "The CA could not be reached and there is no production twin to compare with:"
            " most likely the CA is down. Check this machine's network if it persists.",
            LOW,
        )
        for kind in TransportKind
        if kind is not TransportKind.TLS_VERIFY
    },
    (TransportKind.TLS_VERIFY, True): Rule(
        "StagingCertificateInvalid", STAGING,
        "The staging CA's TLS certificate failed verification while production's passed"
        " with the same trust store: staging's certificate is at fault.",
    ),
    (TransportKind.TLS_VERIFY, False): Rule(
        "TrustStoreStale", CLIENT,
        "TLS verification failed for staging and production alike: this machine's CA"
        " bundle is stale or wrong (check --ca-bundle, REQUESTS_CA_BUNDLE, ca-certificates).",
    ),
    (TransportKind.TLS_VERIFY, None): Rule(
        "TlsVerificationFailed", STAGING,
        "The CA's TLS certificate failed verification. If this CA uses a private root,"
        " pass it with --ca-bundle.",
        LOW,
    ),
}

_STAGING_STOPPED = Rule(
    "StagingUnreachable", STAGING,
    "The staging CA answered earlier in this run, then stopped answering: staging is"
    " flaky or down. It says nothing about production; retry later.",
)

_MALFORMED = Rule(
    "MalformedResponse", STAGING,
    "The staging CA sent a response that breaks RFC 8555. It says nothing about"
    " production; retry later.",
)

STUCK: Mapping[StuckState, Rule] = {
    StuckState.AUTHORIZATION_PENDING: Rule(
        "AuthorizationStuckPending", STAGING,
        "The challenge was answered but the CA never finished validating before the"
        " deadline: staging's validation is slow or stuck. Retry later, or raise --timeout.",
    ),
    StuckState.ORDER_PROCESSING: Rule(
        "OrderStuckProcessing", STAGING,
        "The order was finalized but the CA never issued before the deadline: staging's"
        " issuance is slow or stuck. Retry later, or raise --timeout.",
    ),
    StuckState.ORDER_PENDING: Rule(
        "OrderStuckPending", STAGING,
        "All authorizations were valid but the order never became ready.",
    ),
}

_DEADLINE: Mapping[Party, Rule] = {
    Party.CA: Rule(
        "DeadlineExceeded", STAGING,
        "The run's deadline expired while waiting on the staging CA. Retry later, or"
        " raise --timeout.",
    ),
    Party.SOLVER: Rule(
        "SolverDeadlineExceeded", CLIENT,
        "The run's deadline expired while the local solver (or its hook) was working:"
        " make it faster, or raise --timeout.",
    ),
    Party.PREFLIGHT: Rule(
        "PreflightDeadlineExceeded", CLIENT,
        "The local checks (DNS and CAA look-ups through the resolver) used up the run's"
        " deadline: point --dns-resolver at a resolver that answers quickly, or raise"
        " --timeout.",
    ),
    Party.PRODUCTION: Rule(
        "DeadlineExceeded", STAGING,
        "The run's deadline expired while reading the production twin. Retry later, or"
        " raise --timeout.",
        LOW,
    ),
}

SOLVER: Mapping[SolverErrorKind, Rule] = {
    SolverErrorKind.PORT_IN_USE: Rule(
        "SolverPortInUse", CLIENT,
        "The challenge responder's port is already in use: stop the server on it, or use"
        " --webroot (http-01) with the running server.",
    ),
    SolverErrorKind.PERMISSION: Rule(
        "SolverPermissionDenied", CLIENT,
        "The challenge responder may not bind its port (ports below 1024 need root or"
        " CAP_NET_BIND_SERVICE).",
    ),
    SolverErrorKind.WEBROOT: Rule(
        "WebrootNotWritable", CLIENT,
        "The challenge file could not be written under the webroot: check the path and"
        " its permissions.",
    ),
    SolverErrorKind.HOOK_FAILED: Rule(
        "HookFailed", CLIENT,
        "The hook script failed: run it by hand with the same CERTBOT_* environment.",
    ),
    SolverErrorKind.HOOK_TIMEOUT: Rule(
        "HookTimeout", CLIENT,
        "The hook script did not finish in time: make it faster or raise its time limit.",
    ),
    SolverErrorKind.UNSUPPORTED: Rule(
        "ChallengeUnsupported", CLIENT,
        "The solver cannot answer this identifier (wildcards need dns-01; IP addresses"
        " need http-01 or tls-alpn-01).",
    ),
    SolverErrorKind.NO_CHALLENGE: Rule(
        "NoMatchingChallenge", CLIENT,
        "The CA offered no challenge of the solver's type for this identifier: choose"
        " another challenge type.",
    ),
    SolverErrorKind.OTHER: Rule(
        "SolverFailed", CLIENT,
        "The challenge solver failed: see the detail.",
    ),
}

_INVALID_CHAIN = Rule(
    "InvalidCertificateChain", STAGING,
    "The staging CA issued a chain that does not parse or does not match the request."
    " It says nothing about production.",
)
ACCOUNT_STATUS: Mapping[str, Rule] = {
    "deactivated": Rule(
        "AccountDeactivated", CLIENT,
        "This account was deactivated (RFC 8555 section 7.3.6): use another account key, or"
        " none and let acmedryrun create an account.",
    ),
    "revoked": Rule(
        "AccountRevoked", CLIENT,
        "The CA revoked this account: use another account key, and ask the CA why.",
    ),
}
_ACCOUNT_STATUS_UNKNOWN = Rule(
    "UnexpectedAccountStatus", STAGING,
    "The CA reported an account status RFC 8555 does not define.",
    LOW,
)
_AUTHZ_REUSED = Rule(
    "AuthorizationReused", STAGING,
    "The CA kept serving a valid authorization even after it was deactivated, so this"
    " name was not validated today: staging could not test today's setup, and a"
    " production run may still fail validation. Retry later.",
    MEDIUM,
)

_AUTHZ_INVALID = Rule(
    "AuthorizationInvalid", STAGING,
    "The CA handed out an authorization that was not pending or valid before any"
    " challenge was answered.",
    LOW,
)
_VALIDATION_FAILED = Rule(
    "ValidationFailed", CLIENT,
    "The CA marked the validation invalid (without an error acmedryrun knows): check"
    " that the challenge response is served for this name from everywhere the CA looks"
    " (DNS, firewall, the web server or hook).",
    MEDIUM,
)
_NOT_A_DIRECTORY = Rule(
    "NotAnAcmeDirectory", CLIENT,
    "The URL answers, but not with an ACME directory (a JSON object with newNonce,"
    " newAccount and newOrder, RFC 8555 section 7.1.1): check --directory.",
)
_PROFILE_NOT_OFFERED = Rule(
    "ProfileNotOffered", CLIENT,
    "The CA's directory does not list this profile (meta.profiles,"
    " draft-ietf-acme-profiles): its newOrder would refuse it or silently issue another"
    " kind of certificate. Request one of the listed profiles, or none.",
)
_CA_LOST_OBJECT = Rule(
    "CaLostObject", STAGING,
    "The CA answered 'not found' for a URL it handed out itself (an order, authorization,"
    " challenge or certificate): its replicas lag or a deploy went wrong. It says nothing"
    " about production; retry later.",
    LOW,
)
_CA_LOST_ACCOUNT = Rule(
    "CaLostAccount", STAGING,
    "The CA said the account this run created a moment ago does not exist: its"
    " replicas lag behind. It says nothing about production; retry later.",
    LOW,
)
_SERVER_STATUS = Rule(
    "ServerErrorStatus", STAGING,
    "The CA answered with a server error status (5xx), whatever its problem type says:"
    " the CA failed, not the request (step-ca answers 'not implemented' this way).",
    LOW,
)
_CAA_STAGING_ACCOUNT = Rule(
    "CaaRefusedStagingAccount", STAGING,
    "Staging refused because the CAA records bind issuance to the production account"
    " (accounturi, RFC 8657), which a staging run cannot use: production would issue to"
    " that account. Make sure it is the one that will order.",
    MEDIUM,
)
_HTTP_BLOCKED = Rule(
    "NetworkBlocksCa", CLIENT,
    "An HTML 401/403/407 came back from staging and production alike: a proxy or filter"
    " on this machine's network answers in the CA's place. Allow the CA's hosts, or run"
    " where the network reaches them; production fails the same way.",
)
_HTTP_BLOCKED_STAGING = Rule(
    "UnexpectedHttpStatus", STAGING,
    "Staging refused with an HTTP status and no problem document, while production's"
    " directory answered: staging is at fault.",
)
CLEANUP: Mapping[str, Rule] = {
    "ignored": Rule(
        "DeactivationIgnored", STAGING,
        "The CA answered the deactivation but kept the authorization: the next dry run may"
        " be served this reused authorization, which proves nothing about its day.",
    ),
    "skipped": Rule(
        "DeactivationSkipped", STAGING,
        "The run's time was up before this run's authorizations were deactivated: the next"
        " dry run may be served them reused.",
        LOW,
    ),
}


# --------------------------------------------------------------------------- classify


_PRODUCTION_URL = Rule(
    "CaPointedAtProduction", STAGING,
    "The staging CA sent this run towards a production CA's host (a link, Location or"
    " redirect); acmedryrun never sends staging traffic there. Staging is broken or"
    " hostile; report it to the CA.",
)
_HTTP_REDIRECT = Rule(
    "UnexpectedRedirect", STAGING,
    "The CA answered with a redirect, which ACME traffic never follows (RFC 8555 names"
    " every URL itself). It says nothing about production.",
    LOW,
)
_HTTP_REDIRECT_DIRECTORY = Rule(
    "DirectoryRedirected", CLIENT,
    "The directory URL redirects elsewhere: pass the URL it points to as --directory"
    " (ACME clients follow no redirects).",
    MEDIUM,
)


def _reference_ok(kind: TransportKind, reach: Reach | None) -> bool | None:
    """What the twin's GET says about a transport failure (TAXONOMY.md).

    Any HTTP answer clears this machine's network (True); only the same kind of
    failure convicts it (False): for a TLS verification failure, the twin failing
    verification too; for anything else, the twin unreachable too.
    """
    if reach is None:
        return None
    if kind is TransportKind.TLS_VERIFY:
        # A directory or an error page came over verified TLS: the trust store works.  A
        # block page says only that something filters this machine: undecided.
        return {Reach.DIRECTORY: True, Reach.ANSWERED: True,
                Reach.TLS_VERIFY: False}.get(reach)
    return reach is not Reach.UNREACHABLE


def rule_for(obs: Observation, step: Step, ctx: Context = NO_CONTEXT,
             identifier: str | None = None) -> Rule:
    """The table row that decides ``obs`` (exposed for the table tests)."""
    if isinstance(obs, AcmeError):
        if _caa_artefact(obs, identifier, ctx):
            return _CAA_STAGING_ACCOUNT
        if (obs.short_type == "accountDoesNotExist" and ctx.account_created
                and step is not Step.ACCOUNT):
            return _CA_LOST_ACCOUNT
        return _acme_rule(obs, step)
    if isinstance(obs, ValidationFailed):
        return _validation_rule(obs, step, ctx, identifier)
    if isinstance(obs, HttpError):
        if obs.status == 429:
            return _HTTP_RATE_LIMITED
        if obs.status in (502, 503, 504):
            return _HTTP_UNAVAILABLE
        if obs.status >= 500:
            return _HTTP_SERVER_ERROR
        if 300 <= obs.status < 400:
            if step is Step.DIRECTORY and not ctx.known_directory:
                return _HTTP_REDIRECT_DIRECTORY
            return _HTTP_REDIRECT
        if obs.status == 404 and step is Step.DIRECTORY and not ctx.known_directory:
            return _HTTP_NOT_FOUND_DIRECTORY
        if obs.status in BLOCK_STATUSES and ctx.reference is not None:
            if ctx.reference in (Reach.BLOCKED, Reach.UNREACHABLE, Reach.TLS_VERIFY):
                return _HTTP_BLOCKED
            return _HTTP_BLOCKED_STAGING
        return _HTTP_OTHER
    if isinstance(obs, TransportError):
        if ctx.staging_answered:
            return _STAGING_STOPPED
        return TRANSPORT[(obs.kind, _reference_ok(obs.kind, ctx.reference))]
    if isinstance(obs, MalformedResponse):
        return _MALFORMED
    if isinstance(obs, NotADirectory):
        return _MALFORMED if ctx.known_directory else _NOT_A_DIRECTORY
    if isinstance(obs, Stuck):
        return STUCK[obs.state]
    if isinstance(obs, DeadlineExceeded):
        return _DEADLINE[deadline_party(ctx.spent)]
    if isinstance(obs, SolverError):
        return SOLVER[obs.kind]
    if isinstance(obs, InvalidChain):
        return _INVALID_CHAIN
    if isinstance(obs, AccountStatus):
        return ACCOUNT_STATUS.get(obs.status, _ACCOUNT_STATUS_UNKNOWN)
    if isinstance(obs, AuthorizationReused):
        return _AUTHZ_REUSED
    if isinstance(obs, ProductionUrl):
        return _PRODUCTION_URL
    if isinstance(obs, ProfileNotOffered):
        return _PROFILE_NOT_OFFERED
    if isinstance(obs, CleanupIncomplete):
        return CLEANUP.get(obs.kind, CLEANUP["skipped"])
    return _AUTHZ_INVALID


def _caa_artefact(err: AcmeError, identifier: str | None, ctx: Context) -> bool:
    """A ``caa`` refusal of names whose CAA binds issuance to the production account only.

    RFC 8657: the staging run's account is never the one such a record names, so
    staging refuses what production would issue.  Every name refused must be such a
    name: a subproblem for another name is a real refusal.
    """
    if not ctx.caa_production_account:
        return False
    caa = [sub for sub in err.subproblems if sub.short_type == "caa"]
    if err.short_type != "caa" and not caa:
        return False
    if err.subproblems:
        names = {sub.identifier for sub in err.subproblems}
        return None not in names and names <= ctx.caa_production_account
    if identifier is not None:
        return identifier in ctx.caa_production_account
    return True  # a refusal naming no name, while a CAA record names production's account


#: Errors inside a failed validation that are the CA's own breakage, not a verdict on
#: the subscriber's setup (Boulder: "Could not communicate with VA", "During secondary
#: validation: Secondary validation RPC failed" are serverInternal).
_CA_SIDE_TYPES = frozenset({"serverInternal", "badNonce", "conflict"})


def _validation_rule(obs: ValidationFailed, step: Step, ctx: Context,
                     identifier: str | None) -> Rule:
    """A failed validation: the subscriber's, unless its error says the CA broke.

    RFC 8555 section 7.5.1: an invalid challenge or authorization carries the client's
    validation error.  Without an error object it is still a failed validation
    (medium; high when this machine's self-check failed the same way).  An error of
    a type the table does not know (acme2certifier's ``unknown``, Pebble's
    ``malformed`` "Could not resolve URL") is a validation failure too.
    """
    err = obs.error
    if err is not None and _caa_artefact(err, identifier, ctx):
        return _CAA_STAGING_ACCOUNT
    if err is None:
        if identifier is not None and identifier in ctx.self_check_failed:
            return _VALIDATION_FAILED._replace(confidence=HIGH)
        return _VALIDATION_FAILED
    if err.short_type in _CA_SIDE_TYPES or err.service_busy:
        return _acme_rule(err, step)
    rule = ACME_TYPES.get(err.short_type)
    if rule is not None and rule.cause is CLIENT and err.short_type != "malformed":
        return rule
    return _VALIDATION_FAILED


def _acme_rule(err: AcmeError, step: Step = Step.ORDER) -> Rule:
    t = err.short_type
    if t == "rateLimited":
        return _RATE_LIMITED_STAGING if err.service_busy else _RATE_LIMITED_CLIENT
    if t == "compound" or (err.subproblems and t not in ACME_TYPES):
        # Classified by the subproblems: client if any is (Boulder puts them on
        # rejectedIdentifier and caa too, with their own types).
        rules = [_acme_rule(sub, step) for sub in err.subproblems]
        client = [r for r in rules if r.cause is CLIENT]
        if client:
            return client[0]
        if rules:
            return rules[0]
        return _UNKNOWN_ACME_TYPE
    if t == "malformed" and err.status in (404, 409) and step is not Step.DIRECTORY:
        # "No order for ID 4123" from newOrder after a botched deploy (boulder#3431),
        # "No such authorization" from replica lag: the CA lost its own object.
        return _CA_LOST_OBJECT
    rule = ACME_TYPES.get(t, _UNKNOWN_ACME_TYPE)
    if rule.cause is CLIENT and err.status is not None and err.status >= 500:
        return _SERVER_STATUS  # a client-side type with a server-error status: the CA broke
    return rule


def _detail(obs: Observation) -> str:
    if isinstance(obs, AcmeError):
        if obs.subproblems:
            subs = "; ".join(
                f"{s.identifier + ': ' if s.identifier else ''}{s.short_type}: {s.detail}"
                for s in obs.subproblems
            )
            return f"{obs.detail} [{subs}]" if obs.detail else subs
        return obs.detail or obs.short_type
    if isinstance(obs, HttpError):
        excerpt = " ".join(obs.body_excerpt.split())[:200]
        ctype = obs.content_type or "no content type"
        if 300 <= obs.status < 400:
            target = (obs.location or "nowhere")[:200]
            return f"HTTP {obs.status} redirect to {target!r}, not followed"
        return f"HTTP {obs.status} ({ctype}) without a problem document: {excerpt}".rstrip(": ")
    if isinstance(obs, TransportError):
        return f"{obs.kind.value}: {obs.detail}" if obs.detail else obs.kind.value
    if isinstance(obs, MalformedResponse):
        return f"{obs.what}: {obs.detail}" if obs.detail else obs.what
    if isinstance(obs, AccountStatus):
        return obs.detail or f"the account's status is {obs.status!r}"
    if isinstance(obs, ProductionUrl):
        if obs.alias is None:
            return (f"not sent: {obs.url} names a public IP address, which cannot be told"
                    " from a production CA's")
        return f"not sent: {obs.url} is {obs.alias}'s production CA"
    if isinstance(obs, ValidationFailed):
        if obs.error is not None:
            inner = _detail(obs.error)
            return f"{obs.detail}: {inner}" if obs.detail else inner
        return obs.detail or "the CA marked the validation invalid without an error"
    if isinstance(obs, ProfileNotOffered):
        listed = ", ".join(obs.offered) if obs.offered else "no meta.profiles at all"
        return f"this run requests the profile {obs.profile!r}; the directory lists {listed}"
    if isinstance(obs, DeadlineExceeded):
        return obs.detail or "the run's deadline expired"
    return obs.detail


def _status(obs: Observation) -> int | None:
    if isinstance(obs, AcmeError | HttpError | MalformedResponse):
        return obs.status
    if isinstance(obs, ValidationFailed) and obs.error is not None:
        return obs.error.status
    return None


def _compound_identifier(err: AcmeError) -> str | None:
    if err.identifier or not err.subproblems:
        return err.identifier
    client = [s for s in err.subproblems if _acme_rule(s).cause is CLIENT]
    return (client or list(err.subproblems))[0].identifier


def classify(
    obs: Observation,
    *,
    step: Step,
    identifier: str | None = None,
    severity: Severity = Severity.ERROR,
    context: Context = NO_CONTEXT,
) -> Problem:
    """Turn one observation into a :class:`Problem` with its blame.

    Args:
        obs: What happened.
        step: The step it happened in.
        identifier: The name it concerns, when the caller knows it (the problem
            document's own ``identifier`` wins).
        severity: ``error`` by default; the orchestrator passes ``fatal`` where the
            run stops.
        context: What else the run knows (differential diagnosis, the self-check,
            the time each party used).

    Returns:
        The problem, with ``cause``, a stable ``name``, a ``hint`` and ``confidence``.
    """
    err = obs.error if isinstance(obs, ValidationFailed) else obs
    ident = identifier
    if isinstance(err, AcmeError):
        ident = _compound_identifier(err) or identifier
    rule = rule_for(obs, step, context, ident)
    acme_type = err.urn if isinstance(err, AcmeError) and err.type else None
    retry_after = err.retry_after if isinstance(err, AcmeError | HttpError) else None
    help_url = err.help_url if isinstance(err, AcmeError) else None
    hint = rule.hint
    if isinstance(err, AcmeError) and err.short_type == "rateLimited" and retry_after:
        hint = f"{hint} The CA asked to wait {retry_after:.0f} s."
    if (isinstance(obs, ValidationFailed) or (
            isinstance(err, AcmeError) and err.short_type in VALIDATION_TYPES)) \
            and rule.cause is CLIENT and ident is not None \
            and ident in context.self_check_passed:
        # Cross-examination: it worked from here, so only the CA's vantage points
        # meet the obstacle.
        hint = (f"{hint} The self-check from this machine reached {ident} and got the"
                " right answer: the difference is in what the CA sees (firewall,"
                " geo-blocking, split DNS, IPv6 vs IPv4).")
    return Problem(
        name=rule.name,
        cause=rule.cause,
        severity=severity,
        step=step,
        detail=_detail(obs),
        hint=hint,
        identifier=ident,
        acme_type=acme_type,
        http_status=_status(obs),
        confidence=rule.confidence,
        retry_after=retry_after,
        help_url=help_url,
    )


def survived_retries_warning(count: int, step: Step) -> Problem:
    """The warning added when a run went through only after retrying staging faults.

    Args:
        count: How many retries the run made.
        step: The step of the first retry.
    """
    return Problem(
        name="StagingUnstable",
        cause=STAGING,
        severity=Severity.WARNING,
        step=step,
        detail=f"the run succeeded after {count} retr{'y' if count == 1 else 'ies'} of"
        " transient staging faults",
        hint="Staging was flaky but the run went through; production is likely fine.",
        confidence=MEDIUM,
    )
