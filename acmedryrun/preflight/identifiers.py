"""Identifier rules that need no network: syntax, challenge fit, the CA's policy.  Pure.

RFC 1035 section 2.3.1 and RFC 5890/5891 for names, RFC 8738 for IP addresses,
RFC 8555 section 7.1.3 for wildcards, and for the known public CAs their
production policy (Boulder's ``policy/pa.go`` for Let's Encrypt).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import idna

from acmedryrun import psl
from acmedryrun.directories import KnownDirectory
from acmedryrun.report import Cause, Problem, Severity, Step

#: RFC 1035 section 2.3.4 and RFC 5890: a label is 1-63 octets, a name at most 253.
MAX_LABEL = 63
MAX_NAME = 253
_LABEL = re.compile(rf"^(?!-)[a-z0-9-]{{1,{MAX_LABEL}}}(?<!-)$")

#: Names Let's Encrypt refuses in production (and staging): internal and special-use
#: TLDs (RFC 6761, RFC 6762 ``.local``, RFC 8375 ``home.arpa``, RFC 9476 ``.alt``).
INTERNAL_TLDS = frozenset({
    "local", "localhost", "internal", "test", "example", "invalid", "lan", "home", "corp",
    "intranet", "private", "onion", "home.arpa", "alt",
})


#: How the messages name each CA.
CA_NAMES = {"letsencrypt": "Let's Encrypt", "google": "Google Trust Services",
            "buypass": "Buypass"}
#: Boulder's policy (policy/pa.go): at most 10 labels in a name.
MAX_LABELS = {"letsencrypt": 10}

@dataclass(frozen=True, slots=True)
class Identifier:
    """One identifier as ordered: ``dns`` (possibly a wildcard) or ``ip`` (RFC 8738)."""

    type: str
    value: str

    @property
    def wildcard(self) -> bool:
        """True for ``*.name``."""
        return self.type == "dns" and self.value.startswith("*.")

    @property
    def base(self) -> str:
        """The name without a wildcard's ``*.`` (what DNS and CAA are checked at)."""
        return self.value[2:] if self.wildcard else self.value


def parse_identifier(raw: str) -> Identifier:
    """Classify a name as a DNS name or an IP address, in the form ACME sends.

    RFC 8555 section 7.1.4 requires A-labels, so an internationalized name is
    converted with IDNA 2008 (``bücher.example`` -> ``xn--bcher-kva.example``).  A
    name that does not convert stays as given (lowercased) for
    :func:`check_syntax` to report; nothing else is validated here.
    """
    value = raw.strip()
    try:
        return Identifier("ip", str(ipaddress.ip_address(value)))
    except ValueError:
        pass
    name = value.lower()
    if not name.isascii():
        prefix = "*." if name.startswith("*.") else ""
        with contextlib.suppress(idna.IDNAError, UnicodeError):
            name = prefix + idna.encode(name[len(prefix):], uts46=True).decode("ascii")
    return Identifier("dns", name)


def _problem(name: str, ident: str | None, detail: str, hint: str,
             severity: Severity = Severity.FATAL) -> Problem:
    """A preflight finding: the subscriber's, except an ``info`` notice (nobody's fault)."""
    cause = None if severity is Severity.INFO else Cause.CLIENT
    return Problem(name=name, cause=cause, severity=severity, step=Step.PREFLIGHT,
                   detail=detail, hint=hint, identifier=ident)


def check_syntax(ident: Identifier) -> list[Problem]:
    """IDNA/label syntax, length, trailing dot (RFC 1035 section 2.3.1, RFC 5890/5891).

    Returns at most one problem: the first rule the name breaks.
    """
    if ident.type == "ip":
        return []
    name = ident.value
    if name.endswith("."):
        return [_problem("TrailingDot", name, f"{name!r} ends with a dot",
                         "Drop the trailing dot: ACME identifiers are written without it.")]
    base = ident.base
    if "*" in base:
        return [_problem("BadWildcard", name, f"{name!r}: '*' is allowed only as the whole"
                         " leftmost label", "Write a wildcard as *.example.com.")]
    if not base.isascii():
        try:
            idna.encode(base, uts46=True)
            why = "it is not in A-label form"
        except (idna.IDNAError, UnicodeError) as exc:
            why = str(exc)
        return [_problem("InvalidName", name, f"{name!r} is not a valid IDNA 2008 name: {why}",
                         "Check the name's spelling (RFC 5891).")]
    if len(name) > MAX_NAME:
        return [_problem("NameTooLong", name, f"{name!r} is {len(name)} octets long",
                         f"A DNS name is at most {MAX_NAME} octets.")]
    labels = base.split(".")
    for label in labels:
        if not _LABEL.match(label):
            return [_problem("InvalidName", name, f"{name!r}: label {label!r} is not a valid"
                             " DNS label", "Labels are 1-63 letters, digits and hyphens,"
                             " not starting or ending with a hyphen.")]
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as exc:
                return [_problem("InvalidName", name, f"{name!r}: label {label!r} is not a"
                                 f" valid IDNA 2008 A-label: {exc}",
                                 "Convert the Unicode name with an IDNA 2008 tool again.")]
    if labels[-1].isdigit():
        # RFC 3696 section 2: a TLD is never all-numeric (and this is no IP address).
        return [_problem("InvalidName", name, f"{name!r}: the last label is all digits",
                         "Use a DNS name under a real TLD, or a valid IP address.")]
    return []


def public_policy(ident: Identifier, known: KnownDirectory | None) -> list[Problem]:
    """What every public CA refuses: single-label names, internal TLDs, public suffixes.

    For a known public CA these are fatal (production refuses them).  An unknown
    directory may be a private CA that issues such names, so there they are warnings.
    """
    if ident.type == "ip":
        return []
    value, base = ident.value, ident.base
    ca = CA_NAMES.get(known.ca, known.ca) if known is not None else "A public CA"
    severity = Severity.FATAL if known is not None else Severity.WARNING
    private = "" if known is not None else (
        " An internal CA may issue it; a public CA (and so its production) refuses it.")
    labels = base.split(".")
    if len(labels) < 2:
        return [_problem("NotFullyQualified", value, f"{value!r} has a single label",
                         "Use a fully qualified domain name such as example.com."
                         + private, severity)]
    if labels[-1] in INTERNAL_TLDS or ".".join(labels[-2:]) in INTERNAL_TLDS:
        return [_problem("InternalName", value, f"{value} is under a reserved or internal TLD",
                         f"{ca} issues only for names under public TLDs: use a"
                         " public name." + private, severity)]
    if psl.is_icann_suffix(base):
        return [_problem("PublicSuffix", value, f"{base} is a public suffix (like a TLD):"
                         " nobody can own it", "Order a name under it, e.g. example."
                         f"{base}." + private, severity)]
    if psl.is_private_suffix(base):
        return [_problem("ProviderSuffix", value, f"{base} is a hosting provider's public"
                         " suffix", f"Only the provider can validate {base} itself: order"
                         f" your own name under it (yours.{base}).", Severity.WARNING)]
    return []


def _ca_policy(ident: Identifier, known: KnownDirectory) -> list[Problem]:
    """What the known CA refuses besides :func:`public_policy` (Boulder's policy/pa.go)."""
    value = ident.value
    ca = CA_NAMES.get(known.ca, known.ca)
    if ident.type == "ip":
        if known.ca != "letsencrypt":
            return [_problem("IpNotSupported", value,
                             f"{ca} does not issue for IP addresses", "Use a DNS name.")]
        if not ipaddress.ip_address(value).is_global:
            return [_problem("IpReserved", value, f"{value} is a private or reserved address",
                             f"{ca} issues only for public IP addresses.")]
        return []
    labels = ident.base.split(".")
    limit = MAX_LABELS.get(known.ca)
    if limit is not None and len(labels) > limit:
        return [_problem("TooManyLabels", value, f"{value} has {len(labels)} labels;"
                         f" {ca} allows {limit}", "Use a shorter name.")]
    for label in labels:
        if label[2:4] == "--" and not label.startswith("xn--"):
            # RFC 5890 section 2.3.1: "??--" labels are reserved (R-LDH); only xn-- is valid.
            return [_problem("InvalidName", value, f"{value}: label {label!r} is in a"
                             " reserved format (hyphens in positions 3 and 4)",
                             f"{ca} refuses such labels: rename it.")]
    return []


def check_fit(identifiers: Sequence[Identifier], *, challenge_type: str,
              supports_wildcard: bool, supports_ip: bool) -> list[Problem]:
    """Can the solver's challenge type validate these identifiers at all?

    This runs even with preflight off: a wildcard over http-01 can never be
    validated, and the CA need not be asked to find that out.
    """
    problems: list[Problem] = []
    for ident in identifiers:
        if ident.wildcard and not supports_wildcard:
            problems.append(_problem(
                "WildcardNeedsDns01", ident.value,
                f"{ident.value} is a wildcard but the challenge is {challenge_type}",
                "Wildcard names can only be validated with dns-01 (RFC 8555 section 7.1.3):"
                " use --dns-01-auth-hook."))
        if ident.type == "ip" and not supports_ip:
            problems.append(_problem(
                "IpNeedsHttpOrTlsAlpn", ident.value,
                f"{ident.value} is an IP address but the challenge is {challenge_type}",
                "IP identifiers (RFC 8738) validate with http-01 or tls-alpn-01 only."))
    return problems


def check_identifiers(
    identifiers: Sequence[Identifier],
    *,
    challenge_type: str,
    supports_wildcard: bool,
    supports_ip: bool,
    known: KnownDirectory | None,
) -> list[Problem]:
    """Identifier rules that need no network: syntax, challenge fit, CA policy.

    The public CAs' rules (single-label names, internal TLDs, public suffixes) are
    fatal for the known directories of CONTRACT.md and warnings for an unknown URL,
    which may be a private CA that issues such names; the rest of a CA's policy (name
    count, IP addresses, label count) applies to the known directories only.

    Args:
        identifiers: The identifiers, in order.
        challenge_type: The solver's challenge type, for the messages.
        supports_wildcard: Whether the solver can validate ``*.name`` (dns-01 only).
        supports_ip: Whether it can validate IP identifiers (RFC 8738: http-01 and
            tls-alpn-01).
        known: The known directory, or None for an unknown URL.

    Returns:
        The problems, in identifier order.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    for ident in identifiers:
        if ident.value in seen:
            problems.append(_problem(
                "DuplicateName", ident.value, f"{ident.value} is listed twice",
                "List each name once.", Severity.WARNING))
            continue
        seen.add(ident.value)
        syntax = check_syntax(ident)
        problems += syntax
        problems += check_fit([ident], challenge_type=challenge_type,
                              supports_wildcard=supports_wildcard, supports_ip=supports_ip)
        if not syntax:
            found = public_policy(ident, known)
            if known is not None and not any(p.severity.decisive for p in found):
                found += _ca_policy(ident, known)
            problems += found
    from acmedryrun.production.policy import production_policy

    policy = production_policy(known.ca) if known else None
    limit = policy.names_per_certificate if policy else None
    if known is not None and limit is not None and len(seen) > limit:
        problems.append(_problem(
            "TooManyNames", None, f"{len(seen)} names in one certificate;"
            f" {CA_NAMES.get(known.ca, known.ca)} allows"
            f" {limit}", f"Split the names over certificates of at most {limit}."))
    return problems
