"""The result of a dry run: frozen records and their JSON form (``schema_version`` 2).

Everything here is data.  Nothing in this module performs I/O or raises for a
failed run: a failure is a :class:`Problem` in :attr:`Report.problems`.
:meth:`Report.raise_for_verdict` is there for callers who prefer an exception.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

SCHEMA_VERSION = 2
#: The longest ``Problem.detail`` (what a CA sent is cut to fit, subproblems included).
MAX_DETAIL = 2000

#: The certificate key types a run can use (``key_type=``, ``--key-type``), and the
#: names :attr:`CertificateSummary.key_type` reports.
KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096")

#: The ACME challenge types a solver can answer (RFC 8555 section 8.3 and 8.4, RFC 8737),
#: for :attr:`acmedryrun.solvers.Solver.challenge_type`.  A ``Literal`` rather than an
#: enum so that a custom solver keeps writing the plain string, and mypy catches a typo
#: such as ``"dns01"``; at run time :func:`acmedryrun.dry_run` refuses one too.
ChallengeType = Literal["http-01", "dns-01", "tls-alpn-01"]
#: Every :data:`ChallengeType`, in the order above.
CHALLENGE_TYPES: tuple[ChallengeType, ...] = get_args(ChallengeType)


class Cause(str, enum.Enum):
    """Whose fault a problem is (a notice that is nobody's fault has ``cause=None``)."""

    #: The subscriber's setup or the client's request: production fails the same way.
    CLIENT = "client"
    #: The staging CA was down, slow, flaky or wrong: it says nothing about production.
    STAGING = "staging"


class Severity(str, enum.Enum):
    """How much a problem weighs.  ``fatal`` and ``error`` decide the verdict."""

    FATAL = "fatal"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def decisive(self) -> bool:
        """True for severities that decide the verdict (fatal, error)."""
        return self in (Severity.FATAL, Severity.ERROR)


class Step(str, enum.Enum):
    """The steps of an issuance, in order."""

    PREFLIGHT = "preflight"
    DIRECTORY = "directory"
    NONCE = "nonce"
    ACCOUNT = "account"
    ORDER = "order"
    AUTHORIZATION = "authorization"
    CHALLENGE = "challenge"
    FINALIZE = "finalize"
    CERTIFICATE = "certificate"
    CLEANUP = "cleanup"


class Verdict(str, enum.Enum):
    """Is a production run likely to succeed?"""

    LIKELY_SUCCESS = "likely_success"
    CLIENT_ERROR = "client_error"
    STAGING_UNSTABLE = "staging_unstable"

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this verdict (CONTRACT.md)."""
        return _EXIT_CODES[self]


_EXIT_CODES = {
    Verdict.LIKELY_SUCCESS: 0,
    Verdict.CLIENT_ERROR: 1,
    Verdict.STAGING_UNSTABLE: 2,
}


class Confidence(str, enum.Enum):
    """How sure the verdict (or one problem's blame) is."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """2 for high, 1 for medium, 0 for low: ``min()`` by rank is the weakest."""
        return {Confidence.HIGH: 2, Confidence.MEDIUM: 1, Confidence.LOW: 0}[self]


class SolverErrorKind(str, enum.Enum):
    """Why a local challenge solver failed (:class:`acmedryrun.solvers.SolverFailure`)."""

    PORT_IN_USE = "port_in_use"
    PERMISSION = "permission"
    WEBROOT = "webroot"
    HOOK_FAILED = "hook_failed"
    HOOK_TIMEOUT = "hook_timeout"
    UNSUPPORTED = "unsupported"
    NO_CHALLENGE = "no_challenge"
    OTHER = "other"


class EventKind(str, enum.Enum):
    """What an :class:`Event` reports.  A ``str`` enum: ``kind == "retry"`` still works."""

    #: A step began (:attr:`Event.step`).
    STEP_START = "step_start"
    #: A step ended (:attr:`Event.status`, :attr:`Event.duration_s`).
    STEP_END = "step_end"
    #: A problem was found (:attr:`Event.problem`).
    PROBLEM = "problem"
    #: A request is being retried (:attr:`Event.retry`).
    RETRY = "retry"
    #: With ``patience``: the next attempt of a staging_unstable run starts in
    #: :attr:`Event.duration_s` seconds (:attr:`Event.attempt` runs so far).
    WAIT = "wait"


class StepStatus(str, enum.Enum):
    """How a step ended."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that went wrong (or deserves a word), with whose fault it is.

    Attributes:
        name: A stable CamelCase name, e.g. ``ValidationConnection``.  Scripts may match on it.
        cause: ``client`` or ``staging``; None for a notice that is nobody's fault (a
            CNAME seen, the production twin not reachable from here), never on a
            ``fatal`` or ``error`` problem.
        severity: ``fatal``/``error`` decide the verdict; ``warning``/``info`` do not.
        step: The step where it happened.
        detail: What the CA, the network or the check said.
        hint: What to do about it.
        identifier: The name it concerns, if any.
        acme_type: The full ACME problem type URN, if the CA sent a problem document.
        http_status: The HTTP status of the response, if there was one.
        confidence: How sure the blame is (``malformed`` is medium: staging gets
            stricter checks first; an unknown problem type is low).
        retry_after: Seconds the CA asked us to wait, if it said.
        help_url: The ``Link: rel="help"`` the CA sent, if any.
    """

    name: str
    cause: Cause | None
    severity: Severity
    step: Step
    detail: str = ""
    hint: str = ""
    identifier: str | None = None
    acme_type: str | None = None
    http_status: int | None = None
    confidence: Confidence = Confidence.HIGH
    retry_after: float | None = None
    help_url: str | None = None

    def __post_init__(self) -> None:
        if self.cause is None and self.severity.decisive:
            # A bug in acmedryrun: every failure is somebody's (exit 70, never a verdict).
            raise ValueError(f"problem {self.name}: a {self.severity.value} problem needs a"
                             " cause")
        if self.retry_after is not None and not math.isfinite(self.retry_after):
            object.__setattr__(self, "retry_after", None)
        if len(self.detail) > MAX_DETAIL:
            object.__setattr__(self, "detail", self.detail[:MAX_DETAIL - 3] + "...")

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready data (CONTRACT.md's ``problems[]`` entry)."""
        return {
            "name": self.name,
            "cause": self.cause.value if self.cause is not None else None,
            "severity": self.severity.value,
            "step": self.step.value,
            "identifier": self.identifier,
            "acme_type": self.acme_type,
            "http_status": self.http_status,
            "detail": self.detail,
            "hint": self.hint,
            "confidence": self.confidence.value,
            "retry_after": self.retry_after,
            "help_url": self.help_url,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """Progress, for ``on_event`` callbacks (the CLI's live output uses it).

    ``kind`` is an :class:`EventKind`: ``step_start``, ``step_end``, ``problem``,
    ``retry`` or ``wait`` (with ``patience``: the next attempt starts in ``duration_s``
    seconds, after ``attempt`` runs that said staging_unstable).  Given as a string, it is
    converted; an unknown one is a ``ValueError``.
    """

    kind: EventKind
    step: Step
    status: StepStatus | None = None
    duration_s: float | None = None
    problem: Problem | None = None
    retry: Retry | None = None
    attempt: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, EventKind):
            object.__setattr__(self, "kind", EventKind(self.kind))


@dataclass(frozen=True, slots=True)
class Retry:
    """One retry the run survived or attempted.

    Attributes:
        step: The step whose request was retried.
        reason: Why, e.g. ``http_503``, ``badNonce``, ``connection_reset``.
        attempt: 1 for the first retry of that request, 2 for the second, ...
        wait_s: How long we waited before retrying.
    """

    step: Step
    reason: str
    attempt: int
    wait_s: float

    def to_dict(self) -> dict[str, Any]:
        """The retry as JSON-ready data."""
        return {
            "step": self.step.value,
            "reason": self.reason,
            "attempt": self.attempt,
            "wait_s": round(self.wait_s, 3),
        }


@dataclass(frozen=True, slots=True)
class StepResult:
    """How one step of the run ended and how long it took."""

    step: Step
    status: StepStatus
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON-ready data."""
        return {
            "step": self.step.value,
            "status": self.status.value,
            "duration_s": round(self.duration_s, 4),
        }


@dataclass(frozen=True, slots=True)
class RequestStats:
    """How many HTTP requests the run sent to the CA.

    Attributes:
        total: Every request, retries and polls included.
        polls: POST-as-GETs that re-read an authorization or order while waiting.
        retries: Requests that repeated an earlier one after a transient failure.
    """

    total: int = 0
    polls: int = 0
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready data."""
        return {"total": self.total, "polls": self.polls, "retries": self.retries}


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    """What the staging CA issued (the certificate itself is discarded)."""

    serial: str
    not_before: str
    not_after: str
    chain_length: int
    names: tuple[str, ...]
    issuer: str
    key_type: str

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "serial": self.serial,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "chain_length": self.chain_length,
            "names": list(self.names),
            "issuer": self.issuer,
            "key_type": self.key_type,
        }


@dataclass(frozen=True, slots=True)
class Validation:
    """What the run proved about one identifier today.

    Attributes:
        identifier: The identifier as ordered (``*.`` for a wildcard).
        challenge: The challenge type the CA validated it with, or None when it was
            not validated in this run.
        fresh: True when the CA validated it in this run, from this run's challenge
            response: a reused authorization never counts (certbot issue 5116).
    """

    identifier: str
    challenge: str | None = None
    fresh: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {"identifier": self.identifier, "challenge": self.challenge,
                "fresh": self.fresh}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a patient dry run (``patience=``) that came before the final one.

    Attributes:
        verdict: What that run said (staging_unstable, or the run was the last).
        problems: The names of its decisive problems.
        duration_s: How long it took.
        wait_s: How long the patience waited before it.
    """

    verdict: Verdict
    problems: tuple[str, ...] = ()
    duration_s: float = 0.0
    wait_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The attempt as JSON-ready data."""
        return {"verdict": self.verdict.value, "problems": list(self.problems),
                "duration_s": round(self.duration_s, 4), "wait_s": round(self.wait_s, 3)}


@dataclass(frozen=True, slots=True)
class ProductionTwin:
    """What comparing with the production twin's directory showed.

    Attributes:
        directory: The production directory compared with (None: no twin known).
        compared: Whether its directory could be read and compared.
        reasons: One sentence per prediction it supports (human output).
    """

    directory: str | None = None
    compared: bool = False
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready data."""
        return {"directory": self.directory, "compared": self.compared,
                "reasons": list(self.reasons)}


class DryRunFailed(Exception):
    """Raised by :meth:`Report.raise_for_verdict` when the verdict is not ``likely_success``."""

    def __init__(self, report: Report) -> None:
        first = next((p for p in report.problems if p.severity.decisive), None)
        what = f": {first.name}: {first.detail}" if first else ""
        super().__init__(f"dry run verdict {report.verdict.value}{what}")
        self.report = report


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a dry run found out.

    Attributes:
        verdict: ``likely_success``, ``client_error`` or ``staging_unstable``.
        prod_likely_to_succeed: True or False; None when staging could not tell.
        confidence: How sure the verdict is.
        directory: The staging directory URL that was used.
        identifiers: The names asked for, in order.
        problems: Every problem found, in the order found.
        retries: Every retry made.
        steps: Each step's outcome and duration.
        requests: Counts of requests sent to the CA.
        certificate: A summary of the issued certificate, if one was issued.
        account_url: The ACME account's URL (not a secret; the key never appears here).
        staging_only_features: Directory features staging offers that production does not.
        production_only_features: The reverse.
        production_twin: The comparison with production behind the prediction.
        validated: Per identifier, what the run proved today (see :class:`Validation`).
        attempts: With ``patience``, every run in order, the final one last.
        duration_s: Wall time of the whole run (with ``patience``: of every attempt and
            the waits between them).
    """

    verdict: Verdict
    prod_likely_to_succeed: bool | None
    confidence: Confidence
    directory: str
    identifiers: tuple[str, ...]
    problems: tuple[Problem, ...] = ()
    retries: tuple[Retry, ...] = ()
    steps: tuple[StepResult, ...] = ()
    requests: RequestStats = field(default_factory=RequestStats)
    certificate: CertificateSummary | None = None
    account_url: str | None = None
    staging_only_features: tuple[str, ...] = ()
    production_only_features: tuple[str, ...] = ()
    production_twin: ProductionTwin = field(default_factory=ProductionTwin)
    validated: tuple[Validation, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this report: 0, 1 or 2."""
        return self.verdict.exit_code

    @property
    def ok(self) -> bool:
        """True when the verdict is ``likely_success``."""
        return self.verdict is Verdict.LIKELY_SUCCESS

    def raise_for_verdict(self) -> None:
        """Raise :class:`DryRunFailed` unless the verdict is ``likely_success``.

        Raises:
            DryRunFailed: carrying this report as ``.report``.
        """
        if not self.ok:
            raise DryRunFailed(self)

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON document of CONTRACT.md (``schema_version`` 2)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict.value,
            "prod_likely_to_succeed": self.prod_likely_to_succeed,
            "confidence": self.confidence.value,
            "directory": self.directory,
            "identifiers": list(self.identifiers),
            "problems": [p.to_dict() for p in self.problems],
            "retries": [r.to_dict() for r in self.retries],
            "steps": [s.to_dict() for s in self.steps],
            "requests": self.requests.to_dict(),
            "certificate": self.certificate.to_dict() if self.certificate else None,
            "account_url": self.account_url,
            "staging_only_features": list(self.staging_only_features),
            "production_only_features": list(self.production_only_features),
            "production_twin": self.production_twin.to_dict(),
            "validated": [v.to_dict() for v in self.validated],
            "attempts": [a.to_dict() for a in self.attempts],
            "duration_s": round(self.duration_s, 4),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as a JSON string (never NaN or Infinity: RFC 8259 has neither)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

