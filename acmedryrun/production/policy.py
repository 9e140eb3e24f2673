"""The limits each known CA publishes, and what a batch would hit in production (data, pure).

Staging's limits are far higher than production's, so a batch that passes staging
can still exceed production's (TAXONOMY.md).  Registered domains come from the
whole Public Suffix List (:func:`acmedryrun.psl.registered_domain`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from acmedryrun import directories
from acmedryrun.directories import Kind, KnownDirectory
from acmedryrun.psl import registered_domain
from acmedryrun.report import Cause, Problem, Severity, Step

__all__ = ["POLICIES", "CaPolicy", "Limit", "batch_limit_warnings", "production_policy",
           "registered_domain"]


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
                problems.append(Problem(
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
                problems.append(Problem(
                    "ProductionExactSetLimit", Cause.CLIENT, Severity.WARNING, Step.ORDER,
                    f"this batch orders {count} certificates for the same names"
                    f" ({', '.join(sorted(names))}); {policy.name} production allows"
                    f" {per_set} per exact set{higher('certificates_per_exact_set')}",
                    "Order each set once: production refuses duplicates beyond this"
                    f" limit, renewals included, with no override ({policy.source})."
                    f"{ari_note}", identifier=min(names)))
    return problems

