"""CAA (RFC 8659) and its account and method bindings (RFC 8657).  Pure.

The DNS look-ups are :mod:`acmedryrun.preflight.dns`'s; here the record sets are
judged: may this CA issue for this name, with this challenge type, to which account?
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from acmedryrun.preflight.identifiers import _problem
from acmedryrun.preflight.records import DnsAnswer
from acmedryrun.report import Cause, Confidence, Problem, Severity, Step
from acmedryrun.urls import BadUrl, parse_url

#: CAA property tags the CAs act on (RFC 8659 section 4); any other tag with the
#: critical flag makes a CA refuse.  Boulder also treats flag bit 1 as critical
#: because many zone operators set it by mistake (va/caa.go).
CAA_KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef"})
CAA_CRITICAL = 128 | 1

@dataclass(frozen=True, slots=True)
class CaaRecord:
    """One CAA property (RFC 8659 section 4.1): flags, tag (lowercased) and value."""

    flags: int
    tag: str
    value: str

    def __str__(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


@dataclass(frozen=True, slots=True)
class CaaSet:
    """The relevant CAA record set of a name (RFC 8659 section 3).

    Attributes:
        name: Where the tree climb found it (the name itself or an ancestor).
        owner: Where the records live (differs from ``name`` behind a CNAME).
        records: The properties.
    """

    name: str
    owner: str
    records: tuple[CaaRecord, ...]

    def describe(self) -> str:
        """``CAA at example.com: 0 issue "ca.example"; ...``."""
        via = f" (via CNAME {self.owner})" if self.owner != self.name else ""
        return f"CAA at {self.name}{via}: {'; '.join(map(str, self.records))}"


_CAA_TAG = re.compile(r"^[A-Za-z0-9]+(?:-*[A-Za-z0-9]+)*$")
_CAA_VALUE = re.compile(r"^[\x21-\x3a\x3c-\x7e]*$")


def parse_caa_value(value: str) -> tuple[str, dict[str, str]] | None:
    """Split an ``issue``/``issuewild`` value into issuer domain and parameters.

    RFC 8659 section 4.2: ``issuer-domain-name *(";" tag "=" value)``, spaces and
    tabs allowed around each part.  An empty domain (``";"``) authorizes nobody.

    Returns:
        ``(domain, parameters)`` with the domain lowercased, or None when the
        value is malformed (the CA then ignores the record, as Boulder does).
    """
    parts = value.split(";")
    domain = parts[0].strip(" \t").lower().rstrip(".")
    params: dict[str, str] = {}
    rest = [p for p in parts[1:] if p.strip(" \t")] if len(parts) == 2 else parts[1:]
    for part in rest:
        tag, eq, val = part.partition("=")
        tag, val = tag.strip(" \t"), val.strip(" \t")
        if not eq or not _CAA_TAG.match(tag) or not _CAA_VALUE.match(val):
            return None
        params[tag.lower()] = val
    return domain, params


def evaluate_caa(ident: str, caa: CaaSet, *, wildcard: bool,
                 identities: Sequence[str] | None, challenge_type: str) -> list[Problem]:
    """Does the relevant CAA set let the CA issue for ``ident``?  Pure.

    RFC 8659 section 4: an unknown property with the critical flag forbids
    issuance; a wildcard uses ``issuewild`` when any is present, else ``issue``; no
    relevant property means no restriction; otherwise a property must name one of
    ``identities``.  RFC 8657: its ``validationmethods`` must list the challenge
    type, and an ``accounturi`` binds it to one account (which differs between
    staging and production, so it is a warning).

    Args:
        ident: The identifier as ordered (``*.example.com`` for a wildcard).
        caa: The relevant record set.
        wildcard: Whether ``ident`` is a wildcard.
        identities: The CA's issuer domains, or None when unknown.
        challenge_type: The challenge type of this run.

    Returns:
        The problems; empty when the CA may issue.
    """
    critical = [r for r in caa.records
                if r.tag not in CAA_KNOWN_TAGS and r.flags & CAA_CRITICAL]
    if critical:
        return [_problem("CaaUnknownCriticalTag", ident, f"{caa.describe()}; critical and"
                         f" unknown to the CA: {'; '.join(map(str, critical))}",
                         "Remove these records or clear their critical flag (128): a CA"
                         " must not issue when it does not understand a critical property"
                         " (RFC 8659 section 4.1).")]
    wild = [r for r in caa.records if r.tag == "issuewild"]
    tag = "issuewild" if wildcard and wild else "issue"
    relevant = [r for r in caa.records if r.tag == tag]
    if not relevant:
        return []
    if identities is None:
        return [_problem("CaaIdentityUnknown", ident, f"{caa.describe()}; the CA's CAA"
                         " identity is unknown (no meta.caaIdentities in its directory)",
                         "Pass --caa-identity with the CA's issuer domain so these records"
                         " can be checked before the CA is asked.", Severity.WARNING)]
    ids = {i.lower().rstrip(".") for i in identities}
    parsed = [(r, parse_caa_value(r.value)) for r in relevant]
    named = [(r, p[1]) for r, p in parsed if p is not None and p[0] in ids]
    malformed = [r for r, p in parsed if p is None]
    first = sorted(ids)[0] if ids else "your CA"
    if not named:
        note = (f"; malformed, so ignored: {'; '.join(map(str, malformed))}"
                if malformed else "")
        return [_problem("CaaForbidden", ident, f"{caa.describe()}; none of the {tag}"
                         f" records names the CA ({', '.join(sorted(ids))}){note}",
                         f'Add `{caa.name}. CAA 0 {tag} "{first}"` next to the records of'
                         " your other CAs, or remove the CAA records (RFC 8659 section"
                         " 4.2).")]
    methods_ok = [(r, p) for r, p in named if "validationmethods" not in p
                  or challenge_type in p["validationmethods"].split(",")]
    if not methods_ok:
        allowed = sorted({m for _, p in named for m in p["validationmethods"].split(",")})
        return [_problem("CaaValidationMethod", ident, f"{caa.describe()}; the CA may issue"
                         f" only with validationmethods {', '.join(allowed)}, and this run"
                         f" uses {challenge_type}", f"Add {challenge_type} to the"
                         " record's validationmethods, or answer with an allowed method"
                         " (RFC 8657 section 4).")]
    if all("accounturi" in p for _, p in methods_ok):
        uris = sorted({p["accounturi"] for _, p in methods_ok})
        return [_problem("CaaAccountUri", ident, f"{caa.describe()}; issuance is bound to"
                         f" account {', '.join(uris)}", "accounturi (RFC 8657 section 3)"
                         " binds issuance to one ACME account, and staging and production"
                         " accounts have different URIs: this staging run passes or fails"
                         " CAA independently of production. Make sure a record names the"
                         " production account that will order the certificate.",
                         Severity.WARNING)]
    return []


def caa_account_uris(caa: CaaSet, *, wildcard: bool, identities: Sequence[str],
                     challenge_type: str) -> list[str | None]:
    """The ``accounturi`` of each record that lets the CA issue here (None: any account).

    Only records that name the CA and allow the run's validation method count
    (RFC 8657 sections 3 and 4).  Pure.
    """
    tag = "issuewild" if wildcard and any(r.tag == "issuewild" for r in caa.records) \
        else "issue"
    ids = {i.lower().rstrip(".") for i in identities}
    uris: list[str | None] = []
    for record in caa.records:
        parsed = parse_caa_value(record.value) if record.tag == tag else None
        if parsed is None or parsed[0] not in ids:
            continue
        params = parsed[1]
        if "validationmethods" in params and \
                challenge_type not in params["validationmethods"].split(","):
            continue
        uris.append(params.get("accounturi"))
    return uris


def caa_records(answer: DnsAnswer) -> tuple[CaaRecord, ...]:
    return tuple(
        CaaRecord(int(r.flags), bytes(r.tag).decode("ascii", "replace").lower(),
                  bytes(r.value).decode("utf-8", "replace"))
        for r in answer.records)


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return parse_url(url.strip()).host
    except BadUrl:
        return None


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
            return Problem(
                name="CaaAccountUriStagingOnly", cause=Cause.CLIENT, severity=Severity.ERROR,
                step=Step.PREFLIGHT, identifier=identifier,
                detail=f"the CAA records of {identifier} bind issuance to {', '.join(uris)},"
                " all staging accounts",
                hint="Production issues only to a production account, which these records"
                " do not name: add a record whose accounturi is the production account's"
                " URL (RFC 8657 section 3; accounts are per environment).")
        return None
    if on_production:
        return Problem(
            name="CaaAccountUriProductionOnly", cause=None, severity=Severity.WARNING,
            step=Step.PREFLIGHT, identifier=identifier, confidence=Confidence.MEDIUM,
            detail=f"the CAA records of {identifier} bind issuance to"
            f" {', '.join(on_production)}, a production account the staging run could not"
            " use",
            hint="A staging refusal for CAA says nothing about production here: the record"
            " names the production account (RFC 8657 section 3). Make sure it is the"
            " account that will order the certificate.")
    return None
