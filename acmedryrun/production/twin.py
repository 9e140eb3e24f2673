"""The production twin's directory: one read-only GET through the transport (I/O).

:func:`fetch_directory` never raises for what the server does: it returns the
directory or :class:`TwinUnavailable` with the reason.  :func:`reach_of` says what
that GET shows about this machine's network (differential diagnosis of a staging
that cannot be reached); :func:`twin_unavailable_problem` makes a missing twin a
warning, never a failure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acmedryrun import classify as c
from acmedryrun.classify import Reach
from acmedryrun.deadline import TWIN_BUDGET
from acmedryrun.production.compare import BASE_ENDPOINTS
from acmedryrun.report import Cause, Problem, Severity, Step

if TYPE_CHECKING:
    from acmedryrun.transport import Transport

_INFO_CAUSE: Cause | None = None  # a twin this machine cannot read is nobody's fault

class UnavailableKind(str, enum.Enum):
    """Why the production twin could not be used."""

    UNREACHABLE = "unreachable"  #: no HTTP response (refused, reset, timeout, DNS, TLS)
    HTTP_STATUS = "http_status"  #: a response other than 200
    HTML = "html"  #: a web page, not JSON
    NOT_JSON = "not_json"  #: a body that does not parse as JSON (or is too large)
    NOT_DIRECTORY = "not_directory"  #: JSON without newNonce/newAccount/newOrder
    NO_RENEWAL_INFO = "no_renewal_info"  #: the directory has no renewalInfo (no ARI)
    STAGING_DIRECTORY = "staging_directory"  #: ARI refused: that is a staging CA
    BAD_RENEWAL_INFO = "bad_renewal_info"  #: renewalInfo answered, but not per RFC 9773


@dataclass(frozen=True, slots=True)
class TwinUnavailable:
    """The production twin (or its renewalInfo) could not be used, and why.

    Attributes:
        url: What was asked (the reference directory, or the renewalInfo URL).
        kind: The category.
        reason: A human sentence with the detail.
        http_status: The response's status, if there was a response.
    """

    url: str
    kind: UnavailableKind
    reason: str
    http_status: int | None = None
    tls_verify: bool = False  #: the connection failed TLS certificate verification


def reach_of(answer: Mapping[str, Any] | TwinUnavailable) -> Reach:
    """How far a :func:`fetch_directory` answer got.  Pure.

    A directory; a block page (HTTP 401/403/407, what a filtering or TLS-intercepting
    proxy answers in a CA's place); another HTTP answer; a TLS verification failure;
    no connection at all.
    """
    if not isinstance(answer, TwinUnavailable):
        return Reach.DIRECTORY
    if answer.kind is UnavailableKind.UNREACHABLE:
        return Reach.TLS_VERIFY if answer.tls_verify else Reach.UNREACHABLE
    if answer.http_status in c.BLOCK_STATUSES:
        return Reach.BLOCKED
    return Reach.ANSWERED


def twin_unavailable_problem(url: str, reason: str | TwinUnavailable) -> Problem:
    """The warning for a production twin that could not be compared.  Pure.

    Never a failure: the staging verdict stands; only the production comparison is
    missing.  The cause is ``staging`` because it is no fault of the subscriber's.

    Args:
        url: The reference directory URL (named in the detail).
        reason: Why, as text or as the :class:`TwinUnavailable` from
            :func:`fetch_directory`.
    """
    status = reason.http_status if isinstance(reason, TwinUnavailable) else None
    text = reason.reason if isinstance(reason, TwinUnavailable) else reason
    return Problem(
        name="ProductionTwinUnavailable", cause=_INFO_CAUSE, severity=Severity.WARNING,
        step=Step.DIRECTORY, detail=f"the production twin could not be compared: {url}: {text}",
        hint="The staging verdict stands, but what differs in production (profiles, EAB,"
        " resources, CAA identities) was not checked. Make --reference-directory the"
        " production CA's ACME directory: a JSON object with newNonce, newAccount and"
        " newOrder (RFC 8555 section 7.1.1) that this machine can reach.",
        http_status=status)


def fetch_directory(transport: Transport, url: str, *,
                    budget: float = TWIN_BUDGET) -> Mapping[str, Any] | TwinUnavailable:
    """GET a (production) directory, read-only; never raises for what the server does.

    Args:
        transport: The run's transport (the GET is a read-only look at production).
        url: The directory URL.
        budget: The most the GET may take, within the run's deadline.

    Returns:
        The directory (a JSON object with string ``newNonce``, ``newAccount`` and
        ``newOrder``, RFC 8555 section 7.1.1), or :class:`TwinUnavailable` saying why
        not: unreachable, an HTTP status, an HTML page, not JSON, JSON of another shape.
    """
    from acmedryrun.classify import RequestFailed
    from acmedryrun.transport import Purpose, Resource, describe

    try:
        resp = transport.request("GET", url, resource=Resource.DIRECTORY, budget=budget,
                                 purpose=Purpose.PRODUCTION, accept="application/json")
        html = resp.content_type in ("text/html", "application/xhtml+xml") \
            or resp.body.lstrip()[:1] == b"<"
        if resp.status != 200 or html:
            return _unavailable(url, c.HttpError(resp.status, resp.content_type,
                                                 "<html>" if html else ""), None)
        data = resp.json()
    except RequestFailed as exc:
        return _unavailable(url, exc.obs, describe(exc.__cause__) if exc.__cause__ else None)
    if not isinstance(data, dict):
        return TwinUnavailable(url, UnavailableKind.NOT_DIRECTORY,
                               f"JSON {type(data).__name__}, not an object: not an ACME"
                               " directory", resp.status)
    missing = [k for k in sorted(BASE_ENDPOINTS) if not isinstance(data.get(k), str)]
    if missing:
        return TwinUnavailable(url, UnavailableKind.NOT_DIRECTORY,
                               f"JSON without {', '.join(missing)}: not an ACME directory"
                               " (RFC 8555 section 7.1.1)", resp.status)
    return data


def _unavailable(url: str, obs: c.Observation, cause: str | None) -> TwinUnavailable:
    """The reason a GET of the twin failed, from the transport's observation."""
    if isinstance(obs, c.TransportError):
        return TwinUnavailable(url, UnavailableKind.UNREACHABLE,
                               cause or f"{obs.kind.value}: {obs.detail}",
                               tls_verify=obs.kind is c.TransportKind.TLS_VERIFY)
    if isinstance(obs, c.HttpError):
        html = obs.content_type in ("text/html", "application/xhtml+xml") \
            or obs.body_excerpt.lstrip()[:1] == "<"
        if obs.status == 200 and html:
            return TwinUnavailable(url, UnavailableKind.HTML, "an HTML page"
                                   f" ({obs.content_type or 'no Content-Type'}), not JSON", 200)
        what = " (an HTML page)" if html else ""
        return TwinUnavailable(url, UnavailableKind.HTTP_STATUS, f"HTTP {obs.status}{what}",
                               obs.status)
    if isinstance(obs, c.DeadlineExceeded):
        return TwinUnavailable(url, UnavailableKind.UNREACHABLE,
                               "the run's deadline left no time to ask")
    if isinstance(obs, c.ProductionUrl):
        return TwinUnavailable(url, UnavailableKind.UNREACHABLE, "not asked: production")
    detail = obs.detail if isinstance(obs, c.MalformedResponse) else str(obs)
    return TwinUnavailable(url, UnavailableKind.NOT_JSON, detail,
                           getattr(obs, "status", None))
