"""The limits and issuer names each known CA publishes, as data with sources.  Pure.

A staging run cannot show production's rate limits: they are orders of magnitude
lower than staging's.  This module holds what each known production CA publishes
about them, where it says so and when that was checked, and the few rules needed to
apply them to data:

* :class:`Limit` and :class:`CaPolicy`: one CA environment's published figures.
  Counting from Certificate Transparency needs more than the figures: keyword fields
  with defaults (refill algorithm, issuer names, renewal rules).
* :data:`POLICIES` and :func:`production_policy`: the figures by directory alias.
* :func:`registered_domain` (from :mod:`acmedryrun.psl`): the key the per-domain
  limit counts under (the Public Suffix List's registrable domain, private suffixes
  included, as Boulder's ``coveringIdentifier``; an IPv4 address; an IPv6 /64).
* :func:`batch_limit_warnings`: what production would refuse if a batch ran there on
  one account.
* :func:`issuer_organization` and :meth:`CaPolicy.issued`: which certificates in a
  CT log a CA issued, by the issuer's organization rather than its CN, so that a new
  intermediate (Let's Encrypt rotates them yearly) keeps matching.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from acmedryrun import directories
from acmedryrun.directories import Kind, KnownDirectory
from acmedryrun.psl import registered_domain
from acmedryrun.report import Cause, Problem, Severity, Step

__all__ = [
    "POLICIES",
    "CaPolicy",
    "Limit",
    "Refill",
    "batch_limit_warnings",
    "issuer_organization",
    "production_policy",
    "registered_domain",
]


class Refill(str, enum.Enum):
    """How a limit's capacity comes back after it was used.

    ``token-bucket``: capacity refills steadily, one unit every ``period / count``
    (Let's Encrypt: "Limits are calculated, per request, using a token bucket
    algorithm"; Boulder implements it as GCRA, ``ratelimits/gcra.go``).  Five
    certificates issued at once free one slot 33.6 hours later, not 7 days later.

    ``sliding-window``: a unit comes back ``period`` after it was used.  The literal
    reading of "N per week" where a CA says nothing more; it is the stricter of the
    two, so an unknown algorithm is read this way.
    """

    TOKEN_BUCKET = "token-bucket"  # noqa: S105 - a name of an algorithm, not a secret
    SLIDING_WINDOW = "sliding-window"


_PHRASES = {
    "hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1),
}
_PHRASE = re.compile(r"^(?:(\d+)\s+)?(hour|day|week)s?$")


@dataclass(frozen=True, slots=True)
class Limit:
    """One published limit: ``count`` per ``window`` (a phrase such as ``3 hours``).

    Attributes:
        count: How many the window allows (also the burst: what may be used at once).
        window: The window as the CA words it, for people.
        period: The window as a duration; None reads it from ``window``.
        refill: How used capacity comes back (:class:`Refill`).
        help_url: The CA's documentation of this very limit.
    """

    count: int
    window: str
    period: timedelta | None = None
    refill: Refill = Refill.SLIDING_WINDOW
    help_url: str | None = None

    def __str__(self) -> str:
        return f"{self.count:,} per {self.window}"

    @property
    def duration(self) -> timedelta:
        """The window as a duration (``period``, else parsed from ``window``).

        Raises:
            ValueError: ``period`` is None and ``window`` is no phrase like ``7 days``,
                ``3 hours`` or ``week``.
        """
        if self.period is not None:
            return self.period
        match = _PHRASE.match(self.window.strip().lower())
        if match is None:
            raise ValueError(f"cannot read a duration from the window {self.window!r}")
        return int(match.group(1) or 1) * _PHRASES[match.group(2)]

    @property
    def interval(self) -> timedelta:
        """The time one unit takes to refill under a token bucket (``period / count``)."""
        return self.duration / self.count


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
            through ARI (RFC 9773 section 5) is exempt from every limit.
        source: Where the figures come from.
        checked: When the figures were last compared with the source (ISO date), and
            which revision of it.
        issuer_organizations: The issuer ``O=`` values of this CA's certificates in
            CT logs, compared case-insensitively and exactly (so that ``(STAGING)
            Let's Encrypt`` is not ``Let's Encrypt``).  Empty: the CA's certificates
            cannot be told apart in CT.
        issuer_cn_excluded: Words that mark an issuer CN with a matching organization
            as not this environment's (a test CA under the same organization).
        renewals_exempt_from_domain_limit: Whether an order for exactly the names of
            an earlier certificate skips (and does not spend) the per-registered-domain
            limit (a "non-ARI renewal").
        renewal_lookback: How far back that earlier certificate may have been issued.
        not_before_backdate: How far the CA backdates ``notBefore`` before the moment
            of issuance; an issuance time read from ``notBefore`` adds it back.
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
    checked: str = ""
    issuer_organizations: tuple[str, ...] = ()
    issuer_cn_excluded: tuple[str, ...] = ()
    renewals_exempt_from_domain_limit: bool = False
    renewal_lookback: timedelta | None = None
    not_before_backdate: timedelta = timedelta(0)

    @property
    def ct_checkable(self) -> bool:
        """True when CT can tell this CA's certificates and a CT-countable limit is known."""
        return bool(self.issuer_organizations) and (
            self.certificates_per_exact_set is not None
            or self.certificates_per_registered_domain is not None)

    def issued(self, issuer_dn: str) -> bool:
        """Whether a certificate whose issuer DN is ``issuer_dn`` is this CA's.  Pure.

        Matched on the issuer's organization (``O=``), not its CN: CAs add
        intermediates (Let's Encrypt's R10-R14 and E5-E9 of 2024, then YR1/YE1 in
        2026) and the organization stays.
        """
        organization = issuer_organization(issuer_dn)
        if organization is None:
            return False
        if organization.casefold() not in {o.casefold() for o in self.issuer_organizations}:
            return False
        cn = _dn_attributes(issuer_dn).get("CN", "").casefold()
        return not any(word.casefold() in cn for word in self.issuer_cn_excluded)


# Attribute short names that start a new RDN in the one-line DN form crt.sh and Cert
# Spotter print ("C=US, O=Let's Encrypt, CN=R10").  Splitting only before these keeps
# a value that contains ", " (an organization such as "Example, Inc.") whole.
_RDN_START = re.compile(
    r",\s*(?=(?:C|O|OU|CN|L|ST|DC|UID|serialNumber|emailAddress|organizationIdentifier"
    r"|street|postalCode|[0-9]+(?:\.[0-9]+)+)=)")
_MAX_DN = 1024


def _dn_attributes(dn: str) -> dict[str, str]:
    if len(dn) > _MAX_DN:
        return {}
    attributes: dict[str, str] = {}
    for rdn in _RDN_START.split(dn.strip()):
        key, sep, value = rdn.partition("=")
        if sep and key.strip() and key.strip() not in attributes:
            attributes[key.strip()] = value.strip()
    return attributes


def issuer_organization(dn: str) -> str | None:
    """The ``O=`` value of a one-line DN such as ``C=US, O=Let's Encrypt, CN=R10``.  Pure.

    Returns:
        The organization, or None when the DN names none (or is over 1,024 characters).
    """
    return _dn_attributes(dn).get("O") or None


# ------------------------------------------------------------------------- the data

_LE_DOCS = "https://letsencrypt.org/docs/rate-limits/"
_LE_CHECKED = ("2026-12-03, against the page's revision 'Last updated: June 12, 2025'"
               " and Boulder's wfe2/wfe.go (NewOrder) and ratelimits/")

#: Published limits of the known CAs, by directory alias.
#:
#: * Let's Encrypt production: https://letsencrypt.org/docs/rate-limits/ ("Last
#:   updated: June 12, 2025"): "Up to 300 new orders can be created by a single account
#:   every 3 hours"; "Up to 50 certificates can be issued per registered domain (or
#:   IPv4 address, or IPv6 /64 range) every 7 days ... refills at a rate of 1
#:   certificate every 202 minutes"; "Up to 5 certificates can be issued per exact same
#:   set of identifiers every 7 days ... refills at a rate of 1 certificate every 34
#:   hours" ("We do not offer overrides for this limit"); "Up to 5 authorization
#:   failures per identifier can be incurred by one account every hour"; "A single
#:   certificate can include up to 100 identifiers"; "Limits are calculated, per
#:   request, using a token bucket algorithm".  Renewals ("Limit Exemptions for
#:   Renewals"): an order that names the certificate it replaces through ARI, shares an
#:   identifier with it, and replaces a certificate not replaced before "will not be
#:   subject to any rate limits"; an order for "the exact same set of identifiers" as
#:   an earlier certificate is a non-ARI renewal, "exempt from the New Orders per
#:   Account and New Certificates per Registered Domain rate limits" but "still subject
#:   to Authorization Failures per Identifier per Account and New Certificates per
#:   Exact Set of Identifiers".  Boulder's wfe2 looks for that earlier certificate in
#:   the last 120 days (``FQDNSetTimestampsForWindow``, ``Window: 120 * 24h``), and its
#:   RA does not spend the per-domain limit for a renewal (``countCertificateIssued``).
#:   Let's Encrypt backdates ``notBefore`` by about an hour: crt.sh rows show
#:   ``not_before`` 05:00:16 for ``entry_timestamp`` 06:00:17.
#: * Let's Encrypt staging: https://letsencrypt.org/docs/staging-environment/ (as read
#:   by acmedryrun.twin, last updated 2025-11-25; not re-read here): New Orders per
#:   Account 1500 per 3 hours; New Certificates per Registered Domain 30000; per Exact
#:   Set 30000 per week; Authorization Failures per Hostname per Account 200 per hour.
#: * Buypass Go SSL production: https://community.buypass.com/t/m2r5cj/rate-limits (as
#:   read by acmedryrun.twin; not re-read here): 20 certificates per registered domain
#:   per week, 5 duplicates per week, 5 failed validations per account per hostname per
#:   hour; no new-orders figure, no refill algorithm, no renewal exemption found, so
#:   the windows are read as sliding (the stricter reading).
#: * Google Trust Services: no published per-account or per-domain figures were found;
#:   "unknown", left out rather than guessed.  Its issuer organizations are listed so
#:   that CT rows can be attributed.  Buypass staging: none published; left out.
POLICIES: Mapping[str, CaPolicy] = {
    "letsencrypt": CaPolicy(
        "letsencrypt", "Let's Encrypt",
        new_orders_per_account=Limit(
            300, "3 hours", timedelta(hours=3), Refill.TOKEN_BUCKET,
            f"{_LE_DOCS}#new-orders-per-account"),
        certificates_per_registered_domain=Limit(
            50, "7 days", timedelta(days=7), Refill.TOKEN_BUCKET,
            f"{_LE_DOCS}#new-certificates-per-registered-domain"),
        certificates_per_exact_set=Limit(
            5, "7 days", timedelta(days=7), Refill.TOKEN_BUCKET,
            f"{_LE_DOCS}#new-certificates-per-exact-set-of-identifiers"),
        authorization_failures_per_identifier=Limit(
            5, "hour", timedelta(hours=1), Refill.TOKEN_BUCKET,
            f"{_LE_DOCS}#authorization-failures-per-identifier-per-account"),
        names_per_certificate=100,
        ari_replacements_exempt=True,
        source=_LE_DOCS,
        checked=_LE_CHECKED,
        # The intermediates of 2024 (R10-R14, E5-E9) and the 2026 generation seen in CT
        # (YR1, YE1, ...) all carry O=Let's Encrypt; staging's is "(STAGING) Let's
        # Encrypt" and does not match.
        issuer_organizations=("Let's Encrypt",),
        renewals_exempt_from_domain_limit=True,
        renewal_lookback=timedelta(days=120),
        not_before_backdate=timedelta(hours=1)),
    "letsencrypt-staging": CaPolicy(
        "letsencrypt-staging", "Let's Encrypt staging",
        new_orders_per_account=Limit(1500, "3 hours", timedelta(hours=3),
                                     Refill.TOKEN_BUCKET),
        certificates_per_registered_domain=Limit(30000, "7 days", timedelta(days=7),
                                                 Refill.TOKEN_BUCKET),
        certificates_per_exact_set=Limit(30000, "7 days", timedelta(days=7),
                                         Refill.TOKEN_BUCKET),
        authorization_failures_per_identifier=Limit(200, "hour", timedelta(hours=1),
                                                    Refill.TOKEN_BUCKET),
        names_per_certificate=100,
        ari_replacements_exempt=True,
        source="https://letsencrypt.org/docs/staging-environment/",
        checked="2025-11-25 (acmedryrun.twin's reading)",
        issuer_organizations=("(STAGING) Let's Encrypt",),
        renewals_exempt_from_domain_limit=True,
        renewal_lookback=timedelta(days=120),
        not_before_backdate=timedelta(hours=1)),
    "buypass": CaPolicy(
        "buypass", "Buypass",
        new_orders_per_account=None,
        certificates_per_registered_domain=Limit(20, "week", timedelta(weeks=1)),
        certificates_per_exact_set=Limit(5, "week", timedelta(weeks=1)),
        authorization_failures_per_identifier=Limit(5, "hour", timedelta(hours=1)),
        # Buypass Go SSL certificates carry at most 5 names (its product terms).
        names_per_certificate=5,
        ari_replacements_exempt=False,
        source="https://community.buypass.com/t/m2r5cj/rate-limits",
        checked="acmedryrun.twin's reading; not re-read (no live web in this session)",
        # Go SSL is issued by "C=NO, O=Buypass AS-983163327, CN=Buypass Class 2 CA 5";
        # Buypass's test CAs share the organization and carry "Test4" in their CN.
        issuer_organizations=("Buypass AS-983163327",),
        issuer_cn_excluded=("Test4",)),
    "google": CaPolicy(
        "google", "Google Trust Services",
        new_orders_per_account=None,
        certificates_per_registered_domain=None,
        certificates_per_exact_set=None,
        authorization_failures_per_identifier=None,
        names_per_certificate=None,
        ari_replacements_exempt=False,
        source="unknown: no published per-account or per-domain limits were found",
        checked="2026-12-03",
        # "C=US, O=Google Trust Services, CN=WR1" (also WE1, WR2, ...), earlier
        # "C=US, O=Google Trust Services LLC, CN=GTS CA 1P5".
        issuer_organizations=("Google Trust Services", "Google Trust Services LLC")),
}


def _production_known(ca: str) -> KnownDirectory | None:
    known = directories.by_alias(ca)
    if known is None:
        return next((d for d in directories.KNOWN
                     if d.ca == ca and d.kind is Kind.PRODUCTION), None)
    return directories.twin_of(known) if known.kind is Kind.STAGING else known


def production_policy(ca: str) -> CaPolicy | None:
    """The production policy for a CA name (``letsencrypt``) or any alias of it.  Pure.

    A staging alias (``letsencrypt-staging``) gives its production twin's policy: that
    is the one a production order must fit.  ``--production-policy CA`` takes these
    names.

    Returns:
        The policy, or None for a name no known directory has.
    """
    known = _production_known(ca)
    return POLICIES.get(known.alias) if known else None


def _staging_policy(production_alias: str) -> CaPolicy | None:
    for d in directories.KNOWN:
        if d.kind is Kind.STAGING and d.twin == production_alias and d.alias in POLICIES:
            return POLICIES[d.alias]
    return None



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
            problems.append(Problem(
                "ProductionNamesPerCertificate", Cause.CLIENT, Severity.ERROR, Step.ORDER,
                f"an order names {len(names)} identifiers; {policy.name} production allows"
                f" {names_cap} per certificate",
                f"Split these names across certificates of at most {names_cap} names"
                f" ({policy.source}).", identifier=min(names)))
    orders = policy.new_orders_per_account
    if orders is not None and len(sets) > orders.count:
        problems.append(Problem(
            "BatchNewOrdersLimit", Cause.CLIENT, Severity.WARNING, Step.ORDER,
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
                problems.append(Problem(
                    "BatchRegisteredDomainLimit", Cause.CLIENT, Severity.WARNING,
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
                problems.append(Problem(
                    "BatchExactSetLimit", Cause.CLIENT, Severity.WARNING, Step.ORDER,
                    f"this batch orders {count} certificates for the same names"
                    f" ({', '.join(sorted(names))}); {policy.name} production allows"
                    f" {per_set} per exact set{higher('certificates_per_exact_set')}",
                    "Order each set once: production refuses duplicates beyond this"
                    f" limit, renewals included, with no override ({policy.source})."
                    f"{ari_note}", identifier=min(names)))
    return problems

