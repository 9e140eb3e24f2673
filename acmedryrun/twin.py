"""The production twin: what a staging run cannot see about production.

A staging CA and its production twin run the same software with different data:
features reach staging first (profiles, ARI), production may require external
account binding, CAA identities may differ, and production's rate limits are far
lower.  This module says which of those differences matter for *this* run, and how.

* :func:`compare_directories` (pure): both directories (RFC 8555 section 7.1.1) side
  by side against :class:`UsedFeatures`.  What the run used and production lacks is a
  ``client`` error: production refuses the same request.  What is merely on offer is
  ``info``; differing CAA identities are a ``warning``.
* :func:`fetch_directory` (I/O, one GET): the production directory, or
  :class:`TwinUnavailable` with the reason.  :func:`twin_unavailable_problem` makes
  that a warning, never a failure: the staging verdict stands.
* :data:`POLICIES`, :func:`batch_limit_warnings`, :func:`caa_accounturi_warning`
  (pure): the limits known CAs publish, and what production would refuse in a batch
  or in CAA records that staging accepted.
* :func:`production_by_endpoints` (pure): a directory whose endpoints live on a known
  production CA's host is production, whatever URL it was reached through.
* :func:`ari_cert_id` (pure) and :func:`renewal_info` (I/O, one GET): ACME Renewal
  Information (RFC 9773) from production, never from staging.

Nothing here POSTs anything: production only ever sees GETs of its directory and of
its ``renewalInfo`` resource.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from acmedryrun import directories
from acmedryrun.directories import Kind, KnownDirectory
from acmedryrun.psl import ICANN_SUFFIXES
from acmedryrun.report import Cause, Confidence, Problem, Severity, Step

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "BASE_ENDPOINTS",
    "KNOWN_ENDPOINTS",
    "MAX_BODY_BYTES",
    "POLICIES",
    "TWO_LABEL_SUFFIXES",
    "CaPolicy",
    "Limit",
    "RenewalInfo",
    "TwinComparison",
    "TwinUnavailable",
    "UnavailableKind",
    "UsedFeatures",
    "ari_cert_id",
    "ari_cert_id_from_parts",
    "batch_limit_warnings",
    "caa_accounturi_warning",
    "compare_directories",
    "fetch_directory",
    "parse_renewal_info",
    "production_by_endpoints",
    "production_policy",
    "registered_domain",
    "renewal_info",
    "renewal_info_problem",
    "twin_unavailable_problem",
]

#: The resources every ACME directory has (RFC 8555 section 7.1.1).
BASE_ENDPOINTS: frozenset[str] = frozenset({"newNonce", "newAccount", "newOrder"})
#: The directory resources compared: RFC 8555 section 7.1.1 plus ``renewalInfo``
#: (RFC 9773 section 3).  Other keys are compared too, except Boulder's random entry.
KNOWN_ENDPOINTS: tuple[str, ...] = (
    "newNonce", "newAccount", "newOrder", "newAuthz", "revokeCert", "keyChange", "renewalInfo",
)
#: Boulder adds a directory key with a random name whose value links here, so that
#: clients do not hard-code the key set (its wfe's ``randomDirKeyExplanationLink``).
#: The name differs between staging and production and means nothing.
_BOULDER_RANDOM_ENTRY = "adding-random-entries-to-the-directory"

#: A directory document is small; anything larger is not one.
MAX_BODY_BYTES = 256 * 1024

_INFO_CAUSE = Cause.STAGING  # an info or warning here is no failure of the subscriber's


# --------------------------------------------------------------------------- comparing


@dataclass(frozen=True, slots=True, kw_only=True)
class UsedFeatures:
    """What the staging run used, so the comparison can tell "used" from "on offer".

    Attributes:
        challenge_type: ``http-01``, ``dns-01`` or ``tls-alpn-01``.  Directories do
            not advertise challenge types (RFC 8555 section 7.1.1), so it only shapes
            the reasons; it is here so one record describes the run.
        profile: The profile sent with newOrder (draft-ietf-acme-profiles), if any.
        eab: Whether newAccount carried an external account binding (RFC 8555
            section 7.3.4).
        endpoints: The directory resources the run used: :data:`BASE_ENDPOINTS`, plus
            ``renewalInfo`` when it asked for ARI, ``newAuthz`` for pre-authorization.
    """

    challenge_type: str
    profile: str | None = None
    eab: bool = False
    endpoints: frozenset[str] = BASE_ENDPOINTS


@dataclass(frozen=True, slots=True)
class TwinComparison:
    """How the production directory differs from staging's, and what follows.

    Attributes:
        staging_only_features: Stable names of what only staging offers, sorted:
            ``endpoint:<name>``, ``profile:<name>``, ``caaIdentity:<domain>``,
            ``meta.externalAccountRequired``.  For ``Report.staging_only_features``.
        production_only_features: The same for what only production offers.
        problems: ``client`` errors for what the run used and production lacks;
            ``info`` for features merely on offer; a ``warning`` for CAA identities.
        reasons: One human sentence per prediction, for the CLI.
    """

    staging_only_features: tuple[str, ...] = ()
    production_only_features: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def production_blocked(self) -> bool:
        """True when a difference means production refuses what staging accepted."""
        return any(p.severity.decisive for p in self.problems)


def _endpoints(directory: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: value for name, value in directory.items()
        if name != "meta" and isinstance(value, str) and _BOULDER_RANDOM_ENTRY not in value
    }


def _meta(directory: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = directory.get("meta")
    return meta if isinstance(meta, Mapping) else {}


def _profiles(meta: Mapping[str, Any]) -> dict[str, str]:
    """``meta.profiles``: profile name -> description (draft-ietf-acme-profiles section 3)."""
    profiles = meta.get("profiles")
    if isinstance(profiles, Mapping):
        return {str(k): str(v) for k, v in profiles.items()}
    if isinstance(profiles, list):  # not the draft's shape, but unambiguous
        return {p: "" for p in profiles if isinstance(p, str)}
    return {}


def _caa_identities(meta: Mapping[str, Any]) -> frozenset[str]:
    listed = meta.get("caaIdentities")
    if not isinstance(listed, list):
        return frozenset()
    return frozenset(i.strip().lower().rstrip(".") for i in listed if isinstance(i, str) and i)


def _eab_required(meta: Mapping[str, Any]) -> bool:
    return meta.get("externalAccountRequired") is True


def _problem(  # noqa: PLR0917 - Problem's own field order; each call reads as one record
        name: str, cause: Cause, severity: Severity, step: Step, detail: str, hint: str, *,
        identifier: str | None = None, confidence: Confidence = Confidence.HIGH) -> Problem:
    return Problem(name=name, cause=cause, severity=severity, step=step, detail=detail,
                   hint=hint, identifier=identifier, confidence=confidence)


def _listing(items: Sequence[str] | frozenset[str], none: str = "none") -> str:
    return ", ".join(sorted(items)) or none


def compare_directories(
    staging: Mapping[str, Any],
    production: Mapping[str, Any] | None,
    *,
    used: UsedFeatures,
) -> TwinComparison:
    """Compare staging's directory with its production twin's, for this run.  Pure.

    Compared: the resources (every key but ``meta``, RFC 8555 section 7.1.1, and
    ``renewalInfo``, RFC 9773 section 3) and ``meta``'s ``profiles``
    (draft-ietf-acme-profiles), ``caaIdentities``, ``externalAccountRequired``,
    ``termsOfService`` and ``website``.

    Rules:

    * the run requested a profile production does not offer -> ``client`` error
      ``ProfileNotInProduction`` (step ``order``): production's newOrder refuses it
      (``invalidProfile``) or ignores it and issues something else;
    * the run used a resource production lacks -> ``client`` error
      ``EndpointNotInProduction`` (step ``directory``);
    * production requires EAB and the run used none -> ``client`` error
      ``ProductionRequiresEab`` (step ``account``);
    * a feature only one side offers, not used -> ``info`` (``StagingOnlyFeature``,
      ``ProductionOnlyFeature``): not a failure;
    * staging honours a CAA identity production does not -> ``warning``
      ``CaaIdentitiesDiffer``: a CAA record naming only that identity passes staging
      and stops production (RFC 8659 section 4.2);
    * terms of service differ -> ``info`` ``TermsOfServiceDiffer``.

    Args:
        staging: The staging directory as fetched.
        production: The production directory, or None when there is none to compare.
        used: What the run used.

    Returns:
        The differences, the problems they cause and a reason for each prediction.
    """
    if production is None:
        return TwinComparison(reasons=(
            "No production directory to compare with: features that differ in production"
            " were not checked.",))
    s_end, p_end = _endpoints(staging), _endpoints(production)
    s_meta, p_meta = _meta(staging), _meta(production)
    s_prof, p_prof = _profiles(s_meta), _profiles(p_meta)
    s_caa, p_caa = _caa_identities(s_meta), _caa_identities(p_meta)
    s_eab, p_eab = _eab_required(s_meta), _eab_required(p_meta)

    staging_only = sorted(
        [f"endpoint:{n}" for n in s_end.keys() - p_end.keys()]
        + [f"profile:{n}" for n in s_prof.keys() - p_prof.keys()]
        + [f"caaIdentity:{i}" for i in s_caa - p_caa]
        + (["meta.externalAccountRequired"] if s_eab and not p_eab else []))
    production_only = sorted(
        [f"endpoint:{n}" for n in p_end.keys() - s_end.keys()]
        + [f"profile:{n}" for n in p_prof.keys() - s_prof.keys()]
        + [f"caaIdentity:{i}" for i in p_caa - s_caa]
        + (["meta.externalAccountRequired"] if p_eab and not s_eab else []))

    problems: list[Problem] = []
    reasons: list[str] = []
    handled: set[str] = set()  # features already reported by a rule above the infos

    if used.profile is not None:
        handled.add(f"profile:{used.profile}")
        if used.profile in p_prof:
            reasons.append(f"Production offers the profile {used.profile!r} this run used.")
        else:
            offered = (f"production offers {_listing(list(p_prof))}" if p_prof
                       else "production's directory lists no meta.profiles")
            problems.append(_problem(
                "ProfileNotInProduction", Cause.CLIENT, Severity.ERROR, Step.ORDER,
                f"this run requested the profile {used.profile!r}; {offered}",
                f"Production's newOrder would refuse the profile {used.profile!r}"
                " (invalidProfile) or ignore it and issue another kind of certificate:"
                " profiles reach staging first. Request one of production's profiles,"
                " or none for the CA's default (draft-ietf-acme-profiles)."))
            reasons.append(f"Production would not honour the profile {used.profile!r}:"
                           f" {offered}.")

    for name in sorted(used.endpoints):
        handled.add(f"endpoint:{name}")
        if name in p_end:
            continue
        problems.append(_problem(
            "EndpointNotInProduction", Cause.CLIENT, Severity.ERROR, Step.DIRECTORY,
            f"this run used the directory resource {name!r}; production's directory has"
            f" none (it has {_listing(list(p_end))})",
            f"Production does not offer {name}: a client that relies on it fails there."
            " Make its use optional, as RFC 8555 section 7.1.1 and RFC 9773 section 3"
            " expect of clients."))
        reasons.append(f"Production lacks the {name} resource this run used.")

    if p_eab:
        handled.add("meta.externalAccountRequired")
        if not used.eab:
            problems.append(_problem(
                "ProductionRequiresEab", Cause.CLIENT, Severity.ERROR, Step.ACCOUNT,
                "production's directory says meta.externalAccountRequired: true, and this"
                " run created its account without an external account binding",
                "Production's newAccount would fail with externalAccountRequired (RFC 8555"
                " section 7.3.4): get EAB credentials for production from the CA and pass"
                " --eab-kid/--eab-hmac-key (eab= in Python)."))
            reasons.append("Production requires external account binding and this run used"
                           " none.")
        else:
            problems.append(_problem(
                "ProductionEabCredentials", _INFO_CAUSE, Severity.INFO, Step.ACCOUNT,
                "production requires external account binding too",
                "EAB credentials belong to one environment: production needs its own kid"
                " and HMAC key, not staging's."))
            reasons.append("Production requires external account binding, which this run"
                           " used; production takes its own credentials.")

    for feature in staging_only:
        if feature in handled or feature.startswith("caaIdentity:"):
            continue
        problems.append(_problem(
            "StagingOnlyFeature", _INFO_CAUSE, Severity.INFO, Step.DIRECTORY,
            f"only staging offers {feature}; this run did not use it",
            "Not a failure: features reach staging before production. Do not depend on"
            " it in production yet."))
    for feature in production_only:
        if feature in handled or feature.startswith("caaIdentity:"):
            continue
        problems.append(_problem(
            "ProductionOnlyFeature", _INFO_CAUSE, Severity.INFO, Step.DIRECTORY,
            f"only production offers {feature}",
            "Not a failure: this dry run could not exercise it on staging."))

    if p_caa and s_caa - p_caa:  # what only staging honours can pass staging alone
        problems.append(_problem(
            "CaaIdentitiesDiffer", Cause.CLIENT, Severity.WARNING, Step.DIRECTORY,
            f"staging's meta.caaIdentities are {_listing(s_caa)}; production's are"
            f" {_listing(p_caa)}",
            f"A CAA record naming only {_listing(s_caa - p_caa)} lets staging issue and"
            f" stops production: make your CAA issue records name {_listing(p_caa)}"
            " (RFC 8659 section 4.2)."))
        reasons.append("Staging and production honour different CAA identities.")

    s_tos, p_tos = s_meta.get("termsOfService"), p_meta.get("termsOfService")
    if isinstance(s_tos, str) and isinstance(p_tos, str) and s_tos != p_tos:
        problems.append(_problem(
            "TermsOfServiceDiffer", _INFO_CAUSE, Severity.INFO, Step.ACCOUNT,
            f"staging's terms of service are {s_tos}; production's are {p_tos}",
            "Read production's terms before agreeing to them there."))
    s_web, p_web = s_meta.get("website"), p_meta.get("website")
    if isinstance(s_web, str) and isinstance(p_web, str) and s_web != p_web:
        reasons.append(f"Staging's website is {s_web}; production's is {p_web}.")

    if not any(p.severity.decisive for p in problems):
        reasons.insert(0, f"Production's directory offers everything this {used.challenge_type}"
                          " run used.")
    return TwinComparison(tuple(staging_only), tuple(production_only), tuple(problems),
                          tuple(reasons))


# ----------------------------------------------------------------------------- fetching


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


class Reach(str, enum.Enum):
    """How far one GET of the twin got: for differential diagnosis of transport faults."""

    ANSWERED = "answered"  #: any HTTP response, even an error page: the network works
    TLS_VERIFY = "tls_verify"  #: TLS certificate verification failed
    UNREACHABLE = "unreachable"  #: no connection (refused, reset, timeout, DNS, TLS)


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


@dataclass(frozen=True, slots=True)
class _Fetched:
    data: Any
    status: int
    headers: Mapping[str, str]


def _get_json(url: str, *, verify: str | bool, timeout: float) -> _Fetched | TwinUnavailable:
    """One GET that must answer 200 with JSON; every failure becomes TwinUnavailable."""
    import requests

    from acmedryrun.flow import USER_AGENT

    try:
        # verify= per request: a Session's own verify loses to REQUESTS_CA_BUNDLE.
        with requests.get(url, verify=verify, timeout=timeout, stream=True,
                          headers={"User-Agent": USER_AGENT, "Accept": "application/json"}
                          ) as resp:
            body = b""
            for chunk in resp.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    break
            status, headers = resp.status_code, resp.headers
    except requests.RequestException as exc:
        from acmedryrun.classify import TransportKind
        from acmedryrun.flow import describe, transport_kind

        return TwinUnavailable(url, UnavailableKind.UNREACHABLE, describe(exc),
                               tls_verify=transport_kind(exc) is TransportKind.TLS_VERIFY)
    ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
    html = ctype in ("text/html", "application/xhtml+xml") or body.lstrip()[:1] == b"<"
    if status != 200:
        what = " (an HTML page)" if html else ""
        return TwinUnavailable(url, UnavailableKind.HTTP_STATUS,
                               f"HTTP {status}{what}", status)
    if html:
        return TwinUnavailable(url, UnavailableKind.HTML,
                               f"an HTML page ({ctype or 'no Content-Type'}), not JSON", status)
    if len(body) > MAX_BODY_BYTES:
        return TwinUnavailable(url, UnavailableKind.NOT_JSON,
                               f"a body larger than {MAX_BODY_BYTES // 1024} KiB", status)
    try:
        data = json.loads(body)
    except ValueError as exc:
        return TwinUnavailable(url, UnavailableKind.NOT_JSON, f"not JSON: {exc}", status)
    return _Fetched(data, status, headers)


def fetch_directory(url: str, *, verify: str | bool,
                    timeout: float) -> Mapping[str, Any] | TwinUnavailable:
    """GET a (production) directory, read-only; never raises for what the server does.

    Args:
        url: The directory URL.
        verify: ``requests``' verify: a CA bundle path, or True/False.  Passed per
            request, since a ``REQUESTS_CA_BUNDLE`` in the environment beats a
            Session's own setting.
        timeout: Seconds for connecting and for each read.

    Returns:
        The directory (a JSON object with string ``newNonce``, ``newAccount`` and
        ``newOrder``, RFC 8555 section 7.1.1), or :class:`TwinUnavailable` saying why
        not: unreachable, an HTTP status, an HTML page, not JSON, JSON of another shape.
    """
    got = _get_json(url, verify=verify, timeout=timeout)
    if isinstance(got, TwinUnavailable):
        return got
    if not isinstance(got.data, dict):
        return TwinUnavailable(url, UnavailableKind.NOT_DIRECTORY,
                               f"JSON {type(got.data).__name__}, not an object: not an ACME"
                               " directory", got.status)
    missing = [k for k in sorted(BASE_ENDPOINTS) if not isinstance(got.data.get(k), str)]
    if missing:
        return TwinUnavailable(url, UnavailableKind.NOT_DIRECTORY,
                               f"JSON without {', '.join(missing)}: not an ACME directory"
                               " (RFC 8555 section 7.1.1)", got.status)
    return dict(got.data)


def reach_of(answer: Mapping[str, Any] | TwinUnavailable) -> Reach:
    """How far a :func:`fetch_directory` answer got.  Pure."""
    if not isinstance(answer, TwinUnavailable) or answer.kind is not UnavailableKind.UNREACHABLE:
        return Reach.ANSWERED
    return Reach.TLS_VERIFY if answer.tls_verify else Reach.UNREACHABLE


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


# -------------------------------------------------------------------------- safety guard


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def _hosts_by_kind() -> dict[Kind, dict[str, KnownDirectory]]:
    hosts: dict[Kind, dict[str, KnownDirectory]] = {kind: {} for kind in Kind}
    for known in directories.KNOWN:
        host = _host(known.url)
        if host:
            hosts[known.kind][host] = known
    return hosts


_BY_HOST = _hosts_by_kind()


def _known_by_endpoints(directory: Mapping[str, Any], kind: Kind) -> KnownDirectory | None:
    for name in KNOWN_ENDPOINTS:
        value = directory.get(name)
        if isinstance(value, str):
            host = _host(value)
            if host and host in _BY_HOST[kind]:
                return _BY_HOST[kind][host]
    return None


def production_by_endpoints(directory: Mapping[str, Any]) -> KnownDirectory | None:
    """The known production CA whose host serves this directory's resources.  Pure.

    A directory reached through another URL (a proxy, a mirror, a typo'd alias) is
    still production when its ``newNonce``, ``newAccount``, ``newOrder`` or other
    resources live on a production CA's host (e.g. ``acme-v02.api.letsencrypt.org``):
    a dry run there would count against real rate limits and issue a trusted
    certificate.  Only hosts are compared (case and a trailing dot ignored).

    Returns:
        The production :class:`~acmedryrun.directories.KnownDirectory`, or None.
    """
    return _known_by_endpoints(directory, Kind.PRODUCTION)


# ---------------------------------------------------------------------- policy and limits


@dataclass(frozen=True, slots=True)
class Limit:
    """One published limit: ``count`` per ``window`` (a phrase such as ``3 hours``)."""

    count: int
    window: str

    def __str__(self) -> str:
        return f"{self.count:,} per {self.window}"


@dataclass(frozen=True, slots=True)
class CaPolicy:
    """The limits one CA environment publishes (None: not published or not found).

    Attributes:
        alias: The directory alias (:mod:`acmedryrun.directories`).
        name: The CA's name for people.
        new_orders_per_account: New orders one account may create.
        certificates_per_registered_domain: Certificates per registered domain.
        certificates_per_exact_set: Certificates per exact set of names (duplicates).
        authorization_failures_per_identifier: Failed authorizations per name per account.
        names_per_certificate: Names one certificate may carry.
        ari_replacements_exempt: Whether an order that ``replaces`` a certificate
            through ARI (RFC 9773 section 5) inside its window is exempt from limits.
        source: Where the figures come from.
    """

    alias: str
    name: str
    new_orders_per_account: Limit | None
    certificates_per_registered_domain: Limit | None
    certificates_per_exact_set: Limit | None
    authorization_failures_per_identifier: Limit | None
    names_per_certificate: int | None
    ari_replacements_exempt: bool
    source: str


#: Published limits of the known CAs, by directory alias.
#:
#: * Let's Encrypt production: https://letsencrypt.org/docs/rate-limits/ (last updated
#:   2025-04-01): "Up to 300 new orders can be created by a single account every 3
#:   hours"; "Up to 50 certificates can be issued per registered domain every 7 days";
#:   "Up to 5 certificates can be issued per exact same set of hostnames every 7
#:   days"; "Up to 5 authorization failures per hostname can be incurred by one account
#:   every hour"; "A single certificate can include up to 100 hostnames"; and "Renewals
#:   coordinated by ARI offer the unique benefit of being exempt from all rate limits"
#:   (an order with ``replaces`` sharing a name with a certificate not yet replaced).
#: * Let's Encrypt staging: https://letsencrypt.org/docs/staging-environment/ (last
#:   updated 2025-11-25): New Orders per Account 1500 per 3 hours; New Certificates per
#:   Registered Domain 30000 (the page says "per second", evidently meaning per week);
#:   per Exact Set 30000 per week; Authorization Failures per Hostname per Account 200
#:   per hour.  Names per certificate: the production figure (the page keeps the rest).
#: * Buypass Go SSL production: https://community.buypass.com/t/m2r5cj/rate-limits: 20
#:   certificates per registered domain per week, 5 duplicates per week, 5 failed
#:   validations per account per hostname per hour; no new-orders or names figure found.
#: * Google Trust Services: no published per-account or per-domain figures were found;
#:   left out rather than guessed.  Buypass staging: none published; left out.
POLICIES: Mapping[str, CaPolicy] = {
    "letsencrypt": CaPolicy(
        "letsencrypt", "Let's Encrypt",
        new_orders_per_account=Limit(300, "3 hours"),
        certificates_per_registered_domain=Limit(50, "7 days"),
        certificates_per_exact_set=Limit(5, "7 days"),
        authorization_failures_per_identifier=Limit(5, "hour"),
        names_per_certificate=100,
        ari_replacements_exempt=True,
        source="https://letsencrypt.org/docs/rate-limits/"),
    "letsencrypt-staging": CaPolicy(
        "letsencrypt-staging", "Let's Encrypt staging",
        new_orders_per_account=Limit(1500, "3 hours"),
        certificates_per_registered_domain=Limit(30000, "7 days"),
        certificates_per_exact_set=Limit(30000, "7 days"),
        authorization_failures_per_identifier=Limit(200, "hour"),
        names_per_certificate=100,
        ari_replacements_exempt=True,
        source="https://letsencrypt.org/docs/staging-environment/"),
    "buypass": CaPolicy(
        "buypass", "Buypass",
        new_orders_per_account=None,
        certificates_per_registered_domain=Limit(20, "week"),
        certificates_per_exact_set=Limit(5, "week"),
        authorization_failures_per_identifier=Limit(5, "hour"),
        # Buypass Go SSL certificates carry at most 5 names (its product terms; the
        # rate-limit page does not repeat the figure).
        names_per_certificate=5,
        ari_replacements_exempt=False,
        source="https://community.buypass.com/t/m2r5cj/rate-limits"),
}


def _production_known(ca: str) -> KnownDirectory | None:
    known = directories.by_alias(ca)
    if known is None:
        return next((d for d in directories.KNOWN
                     if d.ca == ca and d.kind is Kind.PRODUCTION), None)
    return directories.twin_of(known) if known.kind is Kind.STAGING else known


def production_policy(ca: str) -> CaPolicy | None:
    """The production policy for a CA name (``letsencrypt``) or any alias of it.

    A staging alias (``letsencrypt-staging``) gives its production twin's policy:
    that is the one a batch must fit.
    """
    known = _production_known(ca)
    return POLICIES.get(known.alias) if known else None


def _staging_policy(production_alias: str) -> CaPolicy | None:
    for d in directories.KNOWN:
        if d.kind is Kind.STAGING and d.twin == production_alias and d.alias in POLICIES:
            return POLICIES[d.alias]
    return None


#: Two-label public suffixes under which a registered domain has three labels.
TWO_LABEL_SUFFIXES = frozenset(s for s in ICANN_SUFFIXES if s.count(".") == 1)


def registered_domain(name: str) -> str:
    """The registered domain a name counts against, by a simple heuristic.  Pure.

    CAs use the whole Public Suffix List; this uses the last two labels, or the last
    three under a two-label public suffix in :data:`TWO_LABEL_SUFFIXES` (``co.uk``).
    A miss groups names less finely than the CA would, so a warning can come late,
    never wrongly early for names under ordinary TLDs.  A wildcard counts as its base
    name.  An IPv4 address is its own registered domain and an IPv6 address counts as
    its /64, as Let's Encrypt's rate-limit page says.
    """
    name = name.strip().lower().rstrip(".")
    name = name.removeprefix("*.")
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)
    labels = name.split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in TWO_LABEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _name_set(names: Sequence[str]) -> frozenset[str]:
    return frozenset(n.strip().lower().rstrip(".") for n in names if n.strip())


def batch_limit_warnings(identifier_sets: Sequence[Sequence[str]], ca: str, *,
                         ari_renewal: bool = False) -> list[Problem]:
    """What production would refuse if this batch ran there on one account.  Pure.

    Staging's limits are far higher than production's, so a batch that passes staging
    can still exceed production's (TAXONOMY.md).  Checked against
    :func:`production_policy`: new orders per account (one order per set), certificates
    per registered domain (:func:`registered_domain`; a certificate counts once per
    registered domain it names), certificates per exact set of names, and names per
    certificate.  Renewals of existing certificates may be exempt from some of these;
    the batch alone cannot tell, so the hints say so.

    Args:
        identifier_sets: One entry per order: its names.
        ca: A CA name (``letsencrypt``) or a directory alias, staging or production.
        ari_renewal: Every order replaces a certificate through ARI (RFC 9773 section
            5); where the CA exempts such orders, nothing is reported.

    Returns:
        ``warning`` problems (``client``: the batch is the subscriber's) for limits the
        batch exceeds, and an ``error`` for a set with more names than production
        allows on one certificate.  Empty for a CA without a known policy.
    """
    policy = production_policy(ca)
    if policy is None or (ari_renewal and policy.ari_replacements_exempt):
        return []
    staging = _staging_policy(policy.alias)
    sets = [_name_set(s) for s in identifier_sets]
    ari_note = (" Orders that replace a certificate through ARI (RFC 9773 section 5) are"
                f" exempt from {policy.name}'s limits." if policy.ari_replacements_exempt
                else "")

    def higher(limit: str) -> str:
        value = getattr(staging, limit) if staging else None
        return f" (staging allows {value})" if value else ""

    problems: list[Problem] = []
    names_cap = policy.names_per_certificate
    if names_cap is not None:
        for names in sorted({s for s in sets if len(s) > names_cap}, key=sorted):
            problems.append(_problem(
                "ProductionNamesPerCertificate", Cause.CLIENT, Severity.ERROR, Step.ORDER,
                f"an order names {len(names)} identifiers; {policy.name} production allows"
                f" {names_cap} per certificate",
                f"Split these names across certificates of at most {names_cap} names"
                f" ({policy.source}).", identifier=min(names)))
    orders = policy.new_orders_per_account
    if orders is not None and len(sets) > orders.count:
        problems.append(_problem(
            "ProductionNewOrdersLimit", Cause.CLIENT, Severity.WARNING, Step.ORDER,
            f"this batch creates {len(sets)} orders; {policy.name} production allows"
            f" {orders} new orders per account{higher('new_orders_per_account')}",
            "In production, spread the batch over time or request an override"
            f" ({policy.source}). Renewals with the exact same names do not count"
            f" against this limit.{ari_note}"))
    per_domain = policy.certificates_per_registered_domain
    if per_domain is not None:
        counts = Counter(rd for s in sets for rd in {registered_domain(n) for n in s})
        for domain, count in sorted(counts.items()):
            if count > per_domain.count:
                problems.append(_problem(
                    "ProductionRegisteredDomainLimit", Cause.CLIENT, Severity.WARNING,
                    Step.ORDER, f"this batch orders {count} certificates under {domain};"
                    f" {policy.name} production allows {per_domain} per registered domain"
                    f"{higher('certificates_per_registered_domain')}",
                    "Combine names into fewer certificates, spread the batch over the"
                    f" week, or request an override ({policy.source}). Renewals with the"
                    f" exact same names do not count against this limit.{ari_note}",
                    identifier=domain))
    per_set = policy.certificates_per_exact_set
    if per_set is not None:
        for names, count in sorted(Counter(sets).items(), key=lambda kv: sorted(kv[0])):
            if count > per_set.count:
                problems.append(_problem(
                    "ProductionExactSetLimit", Cause.CLIENT, Severity.WARNING, Step.ORDER,
                    f"this batch orders {count} certificates for the same names"
                    f" ({', '.join(sorted(names))}); {policy.name} production allows"
                    f" {per_set} per exact set{higher('certificates_per_exact_set')}",
                    "Order each set once: production refuses duplicates beyond this"
                    f" limit, renewals included, with no override ({policy.source})."
                    f"{ari_note}", identifier=min(names)))
    return problems


def caa_accounturi_warning(identifier: str, accounturis: Sequence[str | None], *,
                           staging_account_url: str | None,
                           production_url: str | None) -> Problem | None:
    """Does CAA ``accounturi`` (RFC 8657 section 3) treat staging and production alike?  Pure.

    ACME accounts belong to one environment: the staging run's account is never the
    one production issues for.  So a CAA record bound to an account decides staging
    and production differently:

    * every record names an account on staging's host -> ``client`` error
      ``CaaAccountUriStagingOnly``: staging may issue, production never will;
    * no record names the staging account, and one names an account on production's
      host -> ``warning`` ``CaaAccountUriProductionOnly`` (cause ``staging``): staging
      is refused (or would be) for a reason production does not share.

    Args:
        identifier: The name the CAA set applies to.
        accounturis: For each CAA issue/issuewild record that names this CA (and
            permits the run's validation method), its ``accounturi``; None for a
            record without one, which permits any account.
        staging_account_url: The staging run's account URL, if the run got one.
        production_url: The production directory URL (its host is where production
            account URLs live).

    Returns:
        The problem, or None when both environments are treated alike (or it cannot
        be told).
    """
    if not accounturis or any(u is None for u in accounturis):
        return None
    uris = sorted({u.strip() for u in accounturis if u is not None})
    staging_host = _host(staging_account_url) if staging_account_url else None
    production_host = _host(production_url) if production_url else None
    on_production = [u for u in uris if production_host and _host(u) == production_host]
    if staging_account_url and staging_account_url.strip() in uris:
        if all(_host(u) == staging_host for u in uris) and staging_host != production_host:
            return _problem(
                "CaaAccountUriStagingOnly", Cause.CLIENT, Severity.ERROR, Step.PREFLIGHT,
                f"the CAA records of {identifier} bind issuance to {', '.join(uris)}, all"
                " staging accounts",
                "Production issues only to a production account, which these records do"
                " not name: add a record whose accounturi is the production account's URL"
                " (RFC 8657 section 3; accounts are per environment).",
                identifier=identifier)
        return None
    if on_production:
        return _problem(
            "CaaAccountUriProductionOnly", _INFO_CAUSE, Severity.WARNING, Step.PREFLIGHT,
            f"the CAA records of {identifier} bind issuance to {', '.join(on_production)},"
            " a production account the staging run could not use",
            "A staging refusal for CAA says nothing about production here: the record"
            " names the production account (RFC 8657 section 3). Make sure it is the"
            " account that will order the certificate.",
            identifier=identifier, confidence=Confidence.MEDIUM)
    return None


# ------------------------------------------------------------------------------- ARI


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


def renewal_info(cert_pem: bytes, production_directory: Mapping[str, Any], *,
                 verify: str | bool, timeout: float, ca: str | None = None,
                 now: datetime | None = None) -> RenewalInfo | TwinUnavailable:
    """Ask production when to renew a certificate: one GET (RFC 9773 section 4.1).

    The certificate is production's; only production's ``renewalInfo`` knows it.
    Staging's must never be asked: it does not know the issuer and answers
    ``malformed`` (certbot issue 10327), and it would learn production certificate
    identifiers for nothing.  A directory whose resources live on a known staging
    host is therefore refused without a request.

    Args:
        cert_pem: The certificate to renew (PEM, leaf first, or DER).
        production_directory: Production's directory, from :func:`fetch_directory`.
        verify: ``requests``' verify, per request.
        timeout: Seconds for connecting and for each read.
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
    from acmedryrun.flow import parse_retry_after

    cert_id = ari_cert_id(cert_pem)
    base = production_directory.get("renewalInfo")
    if not isinstance(base, str) or not base:
        return TwinUnavailable("", UnavailableKind.NO_RENEWAL_INFO,
                               "production's directory has no renewalInfo: the CA does not"
                               " offer ARI (RFC 9773 section 3)")
    staging = _known_by_endpoints(production_directory, Kind.STAGING)
    if staging is not None:
        return TwinUnavailable(base, UnavailableKind.STAGING_DIRECTORY,
                               f"{staging.alias} is a staging CA: a production certificate's"
                               " ARI identifier is only sent to production (certbot issue"
                               " 10327)")
    url = f"{base.rstrip('/')}/{cert_id}"
    got = _get_json(url, verify=verify, timeout=timeout)
    if isinstance(got, TwinUnavailable):
        return got
    if ca is not None:
        policy = production_policy(ca)
    else:
        known = production_by_endpoints(production_directory)
        policy = POLICIES.get(known.alias) if known else None
    return parse_renewal_info(
        got.data, cert_id=cert_id, url=url, now=now or datetime.now(timezone.utc),
        retry_after=parse_retry_after(got.headers.get("Retry-After")),
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
