"""ACME Renewal Information (RFC 9773) from production, never from staging.

:func:`ari_cert_id` and :func:`parse_renewal_info` are pure; :func:`renewal_info`
is one read-only GET through the transport.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from acmedryrun import directories
from acmedryrun.directories import Kind
from acmedryrun.production.policy import POLICIES, production_policy
from acmedryrun.production.twin import TwinUnavailable, UnavailableKind
from acmedryrun.report import Cause, Problem, Severity, Step

if TYPE_CHECKING:
    from cryptography import x509

    from acmedryrun.transport import Transport

_INFO_CAUSE: Cause | None = None  # ARI only advises: nobody's fault

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ari_cert_id_from_parts(key_identifier: bytes, serial: int) -> str:
    """The ARI certificate identifier from its two parts (RFC 9773 section 4.1).  Pure.

    ``base64url(AKI keyIdentifier) "." base64url(serial)``, both without padding; the
    serial is the DER INTEGER's content octets without tag and length, so a serial
    whose high bit is set keeps its leading zero octet.

    Raises:
        ValueError: a negative serial or an empty key identifier.
    """
    if serial < 0:
        raise ValueError("a certificate serial number is positive (RFC 5280 section 4.1.2.2)")
    if not key_identifier:
        raise ValueError("empty Authority Key Identifier keyIdentifier")
    serial_der = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    return f"{_b64url(key_identifier)}.{_b64url(serial_der)}"


def _load_certificate(cert: x509.Certificate | bytes) -> x509.Certificate:
    from cryptography import x509

    if isinstance(cert, x509.Certificate):
        return cert
    if b"-----BEGIN" in cert:
        return x509.load_pem_x509_certificate(cert)  # the first block: the leaf
    return x509.load_der_x509_certificate(cert)


def ari_cert_id(cert: x509.Certificate | bytes) -> str:
    """The ARI certificate identifier of a certificate (RFC 9773 section 4.1).  Pure.

    Args:
        cert: A ``cryptography`` certificate, or PEM (the first certificate of a
            chain: the leaf) or DER bytes.

    Raises:
        ValueError: not a certificate, or one without an Authority Key Identifier
            keyIdentifier, which RFC 9773 requires.
    """
    from cryptography import x509

    parsed = _load_certificate(cert)
    try:
        aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        aki = None
    if aki is None or not aki.key_identifier:
        raise ValueError("the certificate has no Authority Key Identifier keyIdentifier, so"
                         " it has no ARI identifier (RFC 9773 section 4.1)")
    return ari_cert_id_from_parts(aki.key_identifier, parsed.serial_number)


@dataclass(frozen=True, slots=True)
class RenewalInfo:
    """Production's renewal information for one certificate (RFC 9773 section 4.2).

    Attributes:
        cert_id: The certificate's ARI identifier: also the ``replaces`` value of a
            renewal order (RFC 9773 section 5).
        url: The renewalInfo URL asked.
        window_start: ``suggestedWindow.start``.
        window_end: ``suggestedWindow.end``.
        explanation_url: ``explanationURL``, if the CA gave one (e.g. a revocation).
        retry_after: Seconds until asking again (``Retry-After``, section 4.3).
        checked_at: When the answer was read (timezone-aware UTC).
        rate_limit_exempt: Whether production's policy exempts an order that
            ``replaces`` this certificate from rate limits; None when unknown.
    """

    cert_id: str
    url: str
    window_start: datetime
    window_end: datetime
    explanation_url: str | None
    retry_after: float | None
    checked_at: datetime
    rate_limit_exempt: bool | None

    @property
    def due(self) -> bool:
        """True when the suggested window has begun: renew now."""
        return self.checked_at >= self.window_start

    @property
    def overdue(self) -> bool:
        """True when the suggested window has passed (RFC 9773 section 4.2: renew now)."""
        return self.checked_at >= self.window_end

    @property
    def replaces(self) -> str:
        """The ``replaces`` value for the renewal's newOrder (RFC 9773 section 5)."""
        return self.cert_id


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _timestamp(value: object) -> datetime | None:
    """An RFC 3339 date-time (with an offset, any fraction) as aware UTC, or None."""
    if not isinstance(value, str):
        return None
    m = _RFC3339.match(value.strip())
    if not m:
        return None
    date, time_, frac, offset = m.groups()
    frac = (frac or "")[:7]  # Go sends nanoseconds; Python takes microseconds
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{time_}{frac}{offset}").astimezone(timezone.utc)
    except ValueError:
        return None


def parse_renewal_info(data: object, *, cert_id: str, url: str, now: datetime,
                       retry_after: float | None = None,
                       rate_limit_exempt: bool | None = None) -> RenewalInfo | TwinUnavailable:
    """Read a RenewalInfo object (RFC 9773 section 4.2).  Pure.

    ``suggestedWindow`` must have RFC 3339 ``start`` and ``end``, end after start;
    otherwise the answer is unusable (section 4.2: "clients MUST treat the window as
    invalid").

    Args:
        data: The parsed JSON body.
        cert_id: The identifier asked about.
        url: The URL asked.
        now: When it was read (aware).
        retry_after: ``Retry-After`` in seconds, if sent.
        rate_limit_exempt: See :attr:`RenewalInfo.rate_limit_exempt`.
    """
    obj: Mapping[str, Any] = data if isinstance(data, dict) else {}
    window = obj.get("suggestedWindow")
    start = _timestamp(window.get("start")) if isinstance(window, dict) else None
    end = _timestamp(window.get("end")) if isinstance(window, dict) else None
    if start is None or end is None or end <= start:
        return TwinUnavailable(url, UnavailableKind.BAD_RENEWAL_INFO,
                               f"no valid suggestedWindow in {json.dumps(data)[:200]}"
                               " (RFC 9773 section 4.2)", 200)
    explanation = obj.get("explanationURL")
    return RenewalInfo(cert_id, url, start, end,
                       explanation if isinstance(explanation, str) else None,
                       retry_after, now.astimezone(timezone.utc), rate_limit_exempt)


def renewal_info(transport: Transport, cert_pem: bytes,
                 production_directory: Mapping[str, Any], *, ca: str | None = None,
                 now: datetime | None = None) -> RenewalInfo | TwinUnavailable:
    """Ask production when to renew a certificate: one GET (RFC 9773 section 4.1).

    The certificate is production's; only production's ``renewalInfo`` knows it.
    Staging's must never be asked: it does not know the issuer and answers
    ``malformed`` (certbot issue 10327), and it would learn production certificate
    identifiers for nothing.  A directory whose resources live on a known staging
    host is therefore refused without a request.

    Args:
        transport: The run's transport (a read-only look at production).
        cert_pem: The certificate to renew (PEM, leaf first, or DER).
        production_directory: Production's directory, from
            :func:`acmedryrun.production.twin.fetch_directory`.
        ca: The CA whose policy says whether a replacing order is exempt from rate
            limits; default: the production CA the directory's hosts belong to.
        now: The time to judge "due" by (default: now, UTC).

    Returns:
        The renewal window and what follows from it, or :class:`TwinUnavailable`
        (no ARI in the directory, a staging directory, HTTP failure, bad answer).

    Raises:
        ValueError: ``cert_pem`` is not a certificate with an Authority Key
            Identifier.  Call :func:`ari_cert_id` up front to report it as a usage
            error before any request.
    """
    from acmedryrun.classify import RequestFailed
    from acmedryrun.deadline import TWIN_BUDGET
    from acmedryrun.transport import Resource, describe

    cert_id = ari_cert_id(cert_pem)
    base = production_directory.get("renewalInfo")
    if not isinstance(base, str) or not base:
        return TwinUnavailable("", UnavailableKind.NO_RENEWAL_INFO,
                               "production's directory has no renewalInfo: the CA does not"
                               " offer ARI (RFC 9773 section 3)")
    staging = directories.by_endpoints(production_directory, Kind.STAGING)
    if staging is not None:
        return TwinUnavailable(base, UnavailableKind.STAGING_DIRECTORY,
                               f"{staging.alias} is a staging CA: a production certificate's"
                               " ARI identifier is only sent to production (certbot issue"
                               " 10327)")
    url = f"{base.rstrip('/')}/{cert_id}"
    try:
        resp, data = transport.get_json(url, resource=Resource.RENEWAL_INFO,
                                        budget=TWIN_BUDGET)
    except RequestFailed as exc:
        obs = exc.obs
        status = getattr(obs, "status", None)
        reason = describe(exc.__cause__) if exc.__cause__ is not None else str(
            getattr(obs, "detail", "") or obs)
        if status is not None:
            reason = f"HTTP {status}"
        kind = UnavailableKind.HTTP_STATUS if status is not None else UnavailableKind.UNREACHABLE
        return TwinUnavailable(url, kind, reason, status)
    if ca is not None:
        policy = production_policy(ca)
    else:
        known = directories.by_endpoints(production_directory, Kind.PRODUCTION)
        policy = POLICIES.get(known.alias) if known else None
    return parse_renewal_info(
        data, cert_id=cert_id, url=url, now=now or datetime.now(timezone.utc),
        retry_after=resp.retry_after,
        rate_limit_exempt=policy.ari_replacements_exempt if policy else None)


def renewal_info_problem(result: RenewalInfo | TwinUnavailable) -> Problem:
    """The report's word on ARI: ``info`` with the window, or a ``warning``.  Pure.

    Never a failure: ARI only advises when to renew (RFC 9773 section 4.2).
    """
    if isinstance(result, TwinUnavailable):
        return Problem(
            name="ProductionRenewalInfoUnavailable", cause=_INFO_CAUSE,
            severity=Severity.WARNING, step=Step.DIRECTORY,
            detail=f"production's renewal information could not be read:"
            f" {result.url or 'no renewalInfo'}: {result.reason}",
            hint="Renew on your own schedule (e.g. at two thirds of the lifetime); the"
            " dry run itself is unaffected.", http_status=result.http_status)
    window = (f"{result.window_start:%Y-%m-%d %H:%M}Z to {result.window_end:%Y-%m-%d %H:%M}Z")
    if result.rate_limit_exempt:
        exempt = " An order with this replaces value is exempt from production's rate limits."
    elif result.rate_limit_exempt is False:
        exempt = " Production's rate limits still apply to it."
    else:
        exempt = ""
    explanation = f" The CA explains: {result.explanation_url}." if result.explanation_url \
        else ""
    if result.due:
        detail = f"production suggests renewing now: window {window}"
        hint = (f"Renew with newOrder replaces={result.replaces!r} against production"
                " (RFC 9773 section 5); never send it to staging.")
    else:
        detail = f"production suggests renewing between {window}; not due yet"
        hint = (f"Renew inside the window, with newOrder replaces={result.replaces!r}"
                " (RFC 9773 section 5).")
    return Problem(name="RenewalDue" if result.due else "RenewalNotDue", cause=_INFO_CAUSE,
                   severity=Severity.INFO, step=Step.DIRECTORY, detail=detail,
                   hint=hint + exempt + explanation)
