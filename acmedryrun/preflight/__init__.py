"""Checks before the CA is asked: the subscriber's mistakes, found locally.

Every finding is a :class:`~acmedryrun.report.Problem` with cause ``client`` and
``step=preflight`` (the model is letsdebug's ``Problem{Name, Explanation,
Detail, Severity}``).  The checks run in ordered blocks; a decisive problem stops
the blocks after it, and each block takes the previous block's result as its
input, so nothing depends on call order:

1. **Identifier rules** (no network, :mod:`~acmedryrun.preflight.identifiers`):
   syntax, the fit of each name with the challenge type, and the known CAs'
   production policy.
2. **DNS and CAA** (:meth:`Preflight.check_names` -> :class:`NameFindings`): each
   name must exist and, for http-01 and tls-alpn-01, have an address (judged by
   :mod:`~acmedryrun.preflight.records`); the relevant CAA set is looked up
   (RFC 8659 section 3) and judged (:mod:`~acmedryrun.preflight.caa`) when the CA's
   CAA identity is known, else kept.
3. **CAA against the directory** (:meth:`Preflight.judge_caa` -> :class:`CaaFindings`):
   the kept sets against the directory's ``meta.caaIdentities``; no network.
4. **CAA accounturi** (:func:`~acmedryrun.preflight.caa.accounturi_problems`): the
   record bindings against the staging account the run got; no network.
5. **Self-check** (:mod:`~acmedryrun.preflight.selfcheck`), after the solver placed
   every response: only warnings, since the CA's own answer decides.

Certain DNS failures (NXDOMAIN, SERVFAIL, no address, CAA forbids) are fatal.  A
resolver that does not answer is a warning ("could not check DNS"), never a hang:
every query is bounded by the run's deadline and the DNS client's query lifetime.

Problem names, by block:

* identifiers: ``TrailingDot``, ``BadWildcard``, ``InvalidName``, ``NameTooLong``,
  ``NotFullyQualified``, ``DuplicateName`` (warning), ``WildcardNeedsDns01``,
  ``IpNeedsHttpOrTlsAlpn``, and with a known CA ``InternalName``, ``PublicSuffix``,
  ``ProviderSuffix`` (warning), ``TooManyLabels``, ``IpNotSupported``,
  ``IpReserved``, ``TooManyNames``;
* DNS: ``DnsNxDomain``, ``DnsDanglingCname``, ``DnsCnameLoop``, ``DnsServfail``,
  ``DnsNoAddress``, ``DnsZoneMissing``, ``DnsAaaaFailed`` (warning),
  ``DnsResolverRefused`` (warning), ``DnsResolverUnreachable`` (warning),
  ``DnsCname`` (info), ``Ipv6Preferred`` (info);
* CAA: ``CaaForbidden``, ``CaaUnknownCriticalTag``, ``CaaValidationMethod``,
  ``CaaLookupFailed``, ``CaaAccountUri`` (warning), ``CaaIdentityUnknown`` (warning),
  ``CaaAccountUriStagingOnly``, ``CaaAccountUriProductionOnly`` (warning);
* self-check (all warnings): ``SelfCheckConnectionRefused``, ``SelfCheckTimeout``,
  ``SelfCheckUnreachable``, ``SelfCheckHttpsOnly``, ``SelfCheckTlsError``,
  ``SelfCheckBadResponse``, ``SelfCheckNotFound``, ``SelfCheckHttpStatus``,
  ``SelfCheckWrongContent``, ``SelfCheckBadRedirect``, ``SelfCheckNoAddress``,
  ``SelfCheckTxtMissing``.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from acmedryrun.deadline import Deadline, Party
from acmedryrun.directories import KnownDirectory
from acmedryrun.preflight.caa import (
    CaaSet,
    caa_account_uris,
    caa_accounturi_warning,
    caa_records,
    evaluate_caa,
)
from acmedryrun.preflight.dns import DnsClient, NoAnswer, parse_resolver
from acmedryrun.preflight.identifiers import (
    Identifier,
    _problem,
    check_fit,
    check_identifiers,
    parse_identifier,
)
from acmedryrun.preflight.records import address_problems, zone_problems
from acmedryrun.preflight.selfcheck import SelfCheck, SelfCheckResult
from acmedryrun.report import Problem

__all__ = [
    "CaaFindings",
    "Identifier",
    "NameFindings",
    "Preflight",
    "SelfCheckResult",
    "accounturi_problems",
    "check_fit",
    "check_identifiers",
    "parse_identifier",
    "parse_resolver",
]

#: Names looked up at once in the DNS and CAA block.
DNS_WORKERS = 8


@dataclass(frozen=True, slots=True)
class NameFindings:
    """What the DNS and CAA block found.

    Attributes:
        problems: Its problems (a decisive one: the CA must not be asked).
        undecided_caa: CAA sets that restrict issuance but could not be judged yet,
            because the CA's CAA identity was not known before the directory.
        caa: Every relevant CAA set that was judged, by identifier.
        identities: The CAA identities they were judged against (None: unknown).
    """

    problems: tuple[Problem, ...] = ()
    undecided_caa: tuple[tuple[Identifier, CaaSet], ...] = ()
    caa: Mapping[str, tuple[Identifier, CaaSet]] = field(default_factory=dict)
    identities: tuple[str, ...] | None = None

    @property
    def decisive(self) -> bool:
        """True when a problem rules out asking the CA."""
        return any(p.severity.decisive for p in self.problems)


@dataclass(frozen=True, slots=True)
class CaaFindings:
    """CAA judged with the CA's identities: problems, and the accounturi bindings.

    ``account_uris`` maps each identifier to the ``accounturi`` of every record that
    lets the CA issue (None for a record without one), for :func:`accounturi_problems`.
    """

    problems: tuple[Problem, ...] = ()
    account_uris: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)


def accounturi_problems(caa: CaaFindings, *, staging_account_url: str | None,
                        production_url: str | None) -> list[Problem]:
    """CAA ``accounturi`` against the staging account the run got (RFC 8657).  Pure.

    Staging and production accounts differ, so a record bound to the staging
    account passes staging and fails production, and one bound to a production
    account the other way round.
    """
    found = (caa_accounturi_warning(name, list(uris), staging_account_url=staging_account_url,
                                    production_url=production_url)
             for name, uris in caa.account_uris.items())
    return [p for p in found if p is not None]


class Preflight:
    """The preflight checks of one run (blocks 2, 3 and 5; see the module docstring).

    Args:
        resolver: ``(ip, port)`` of the resolver to ask, or None for the system's.
        deadline: The run's deadline; every look-up and fetch stays within it, and
            their time is charged to :attr:`~acmedryrun.deadline.Party.PREFLIGHT`.
        known: The known directory, or None for an unknown URL (no CA policy).
        caa_identities: The CA's CAA issuer domains, if given explicitly.
        http_port: The port the CA's http-01 validation connects to (80 for every
            real CA; a local test CA such as Pebble uses another).
    """

    def __init__(self, *, resolver: tuple[str, int] | None, deadline: Deadline,
                 known: KnownDirectory | None, caa_identities: tuple[str, ...] | None,
                 http_port: int = 80) -> None:
        self.deadline = deadline
        self.known = known
        self.caa_identities = caa_identities
        self.dns = DnsClient(resolver, deadline)
        self._self_check = SelfCheck(self.dns, deadline, http_port)

    def _identities(self) -> tuple[str, ...] | None:
        if self.caa_identities:
            return self.caa_identities
        return self.known.caa_identities if self.known is not None else None

    def identifiers(self, identifiers: Sequence[Identifier], *, challenge_type: str,
                    supports_wildcard: bool, supports_ip: bool) -> list[Problem]:
        """Block 1: the identifier rules (no network)."""
        return check_identifiers(identifiers, challenge_type=challenge_type,
                                 supports_wildcard=supports_wildcard, supports_ip=supports_ip,
                                 known=self.known)

    def check_names(self, identifiers: Sequence[Identifier], *,
                    challenge_type: str) -> NameFindings:
        """Block 2: DNS and CAA for each DNS name, side by side (I/O).

        The names are independent: looked up at once, a 50-name order does not wait
        for some 250 queries one after another.
        """
        with self.deadline.charge(Party.PREFLIGHT):
            names = list({i.value: i for i in identifiers if i.type == "dns"}.values())
            identities = self._identities()
            with concurrent.futures.ThreadPoolExecutor(
                    max_workers=min(DNS_WORKERS, max(1, len(names))),
                    thread_name_prefix="acmedryrun-preflight") as pool:
                results = list(pool.map(
                    lambda i: self._check_name(i, challenge_type, identities), names))
        problems: list[Problem] = []
        undecided: list[tuple[Identifier, CaaSet]] = []
        caa: dict[str, tuple[Identifier, CaaSet]] = {}
        for result in results:
            if result is None:
                return NameFindings(tuple(problems + self._unreachable()),
                                    identities=identities)
            found, caa_set, judged = result
            problems += found
            if caa_set is not None:
                if judged:
                    caa[caa_set[0].value] = caa_set
                else:
                    undecided.append(caa_set)
        return NameFindings(tuple(problems), tuple(undecided), caa, identities)

    def _check_name(self, ident: Identifier, challenge_type: str,
                    identities: tuple[str, ...] | None
                    ) -> tuple[list[Problem], tuple[Identifier, CaaSet] | None, bool] | None:
        """One name's DNS and CAA; None when the resolver did not answer."""
        try:
            base = ident.base
            if challenge_type == "dns-01":
                # RFC 8555 section 8.4: only _acme-challenge.NAME TXT is read: no address.
                txt = self.dns.lookup(f"_acme-challenge.{base}", "TXT")
                problems = zone_problems(ident.value, txt, self.dns.label)
            else:
                a = self.dns.lookup(base, "A")
                aaaa = self.dns.lookup(base, "AAAA") if a.rcode == "NOERROR" and not a.loop \
                    else None
                problems = address_problems(ident.value, a, aaaa, self.dns.label)
            if any(p.severity.decisive for p in problems):
                return problems, None, False
            found = self._find_caa(ident)
        except NoAnswer:
            return None
        if isinstance(found, Problem):
            return [*problems, found], None, False
        if found is None:
            return problems, None, False
        judged = evaluate_caa(ident.value, found, wildcard=ident.wildcard,
                              identities=identities, challenge_type=challenge_type)
        if identities is None and not any(p.severity.decisive for p in judged):
            return problems, (ident, found), False  # judged by judge_caa
        return problems + judged, (ident, found), True

    def _find_caa(self, ident: Identifier) -> CaaSet | Problem | None:
        """RFC 8659 section 3: climb from the name towards the root (the TLD included),
        stopping at the first non-empty CAA set; each look-up follows aliases."""
        labels = ident.base.split(".")
        for i in range(len(labels)):
            name = ".".join(labels[i:])
            answer = self.dns.lookup(name, "CAA")
            if answer.rcode in ("NOERROR", "NXDOMAIN") and not answer.records:
                continue
            if answer.rcode == "NOERROR":
                return CaaSet(name, answer.cnames[-1] if answer.cnames else name,
                              caa_records(answer))
            return _problem(
                "CaaLookupFailed", ident.value, f"the CAA lookup at {name} answered"
                f" {answer.rcode} (resolver {self.dns.label})",
                "A CA refuses to issue when the CAA lookup fails (Boulder always; the"
                " Baseline Requirements 3.2.2.8 allow it only in narrow cases): fix the"
                " zone's DNS, often DNSSEC or an unreachable authoritative server.")
        return None

    def _unreachable(self) -> list[Problem]:
        return self.dns.unreachable("The DNS, CAA and self-checks were")

    def judge_caa(self, names: NameFindings, directory_meta: Mapping[str, Any], *,
                  challenge_type: str) -> CaaFindings:
        """Block 3: CAA against the directory's ``meta.caaIdentities`` (no network).

        Judges the sets :meth:`check_names` kept because no identity was known then;
        without ``caaIdentities`` each becomes a ``CaaIdentityUnknown`` warning, never
        a guess.  Also collects every judged set's ``accounturi`` bindings.
        """
        listed = directory_meta.get("caaIdentities")
        meta_ids = tuple(i for i in listed if isinstance(i, str) and i) \
            if isinstance(listed, list) else ()
        problems: list[Problem] = []
        uris: dict[str, tuple[str | None, ...]] = {}
        for ident, found in names.undecided_caa:
            problems += evaluate_caa(ident.value, found, wildcard=ident.wildcard,
                                     identities=meta_ids or None,
                                     challenge_type=challenge_type)
            if meta_ids:
                uris[ident.value] = tuple(caa_account_uris(
                    found, wildcard=ident.wildcard, identities=meta_ids,
                    challenge_type=challenge_type))
        if names.identities:
            for name, (ident, found) in names.caa.items():
                uris[name] = tuple(caa_account_uris(
                    found, wildcard=ident.wildcard, identities=names.identities,
                    challenge_type=challenge_type))
        return CaaFindings(tuple(problems), uris)

    def self_check(self, challenges: Sequence[Any]) -> SelfCheckResult:
        """Block 5: each placed challenge response, fetched from here (warnings only)."""
        return self._self_check.run(challenges)
