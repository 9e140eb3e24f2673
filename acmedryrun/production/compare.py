"""Staging's directory against its production twin's, for what this run used.  Pure.

A staging CA and its production twin run the same software with different data:
features reach staging first (profiles, ARI), production may require external
account binding, CAA identities may differ.  :func:`compare_directories` says
which of those differences matter for *this* run: what the run used and
production lacks is a ``client`` error (production refuses the same request);
what is merely on offer is ``info``; differing CAA identities are a ``warning``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acmedryrun.report import Cause, Confidence, Problem, Severity, Step

#: The resources every ACME directory has (RFC 8555 section 7.1.1).
BASE_ENDPOINTS: frozenset[str] = frozenset({"newNonce", "newAccount", "newOrder"})
#: The name differs between staging and production and means nothing.
_BOULDER_RANDOM_ENTRY = "adding-random-entries-to-the-directory"

_INFO_CAUSE: Cause | None = None  # a notice here is nobody's fault


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
        name: str, cause: Cause | None, severity: Severity, step: Step, detail: str,
        hint: str, *, identifier: str | None = None,
        confidence: Confidence = Confidence.HIGH) -> Problem:
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

