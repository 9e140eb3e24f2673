"""Checks before the CA is asked: the subscriber's mistakes, found locally.

Each check returns :class:`~acmedryrun.report.Problem` records (cause ``client``).
Checks run in ordered blocks; a fatal problem stops the blocks after it, and a
decisive problem stops the run before any request reaches the CA.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acmedryrun.directories import KnownDirectory
from acmedryrun.errors import UsageError
from acmedryrun.report import Cause, Problem, Severity, Step
from acmedryrun.retry import Deadline
from acmedryrun.solvers._base import Challenge

#: RFC 1035 section 2.3.4 and RFC 5890: a label is 1-63 octets, a name at most 253.
MAX_LABEL = 63
MAX_NAME = 253
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

#: Names Let's Encrypt refuses in production (and staging): internal and special-use TLDs.
INTERNAL_TLDS = frozenset({
    "local", "localhost", "internal", "test", "example", "invalid", "lan", "home", "corp",
    "intranet", "private", "onion", "home.arpa", "alt",
})

#: Per-CA production policy for the known directories (CONTRACT.md).
MAX_NAMES = {"letsencrypt": 100, "google": 100, "buypass": 5}


@dataclass(frozen=True, slots=True)
class Identifier:
    """One identifier as ordered: ``dns`` (possibly a wildcard) or ``ip`` (RFC 8738)."""

    type: str
    value: str

    @property
    def wildcard(self) -> bool:
        """True for ``*.name``."""
        return self.type == "dns" and self.value.startswith("*.")


def parse_identifier(raw: str) -> Identifier:
    """Classify a name as a DNS name or an IP address (no validation beyond that)."""
    value = raw.strip()
    try:
        return Identifier("ip", str(ipaddress.ip_address(value)))
    except ValueError:
        return Identifier("dns", value.lower())


def _problem(name: str, ident: str | None, detail: str, hint: str,
             severity: Severity = Severity.FATAL) -> Problem:
    return Problem(name=name, cause=Cause.CLIENT, severity=severity, step=Step.PREFLIGHT,
                   detail=detail, hint=hint, identifier=ident)


def check_syntax(ident: Identifier) -> list[Problem]:
    """IDNA/label syntax, length, trailing dot (RFC 1035, RFC 5890)."""
    if ident.type == "ip":
        return []
    name = ident.value
    if name.endswith("."):
        return [_problem("TrailingDot", name, f"{name!r} ends with a dot",
                         "Drop the trailing dot: ACME identifiers are written without it.")]
    base = name[2:] if ident.wildcard else name
    if "*" in base:
        return [_problem("BadWildcard", name, f"{name!r}: '*' is allowed only as the whole"
                         " leftmost label", "Write a wildcard as *.example.com.")]
    try:
        ascii_name = base.encode("idna").decode("ascii")
    except UnicodeError as exc:
        return [_problem("InvalidName", name, f"{name!r} is not a valid IDNA name: {exc}",
                         "Check the name's spelling.")]
    if len(ascii_name) > MAX_NAME:
        return [_problem("NameTooLong", name, f"{name!r} is {len(ascii_name)} octets long",
                         f"A DNS name is at most {MAX_NAME} octets.")]
    labels = ascii_name.split(".")
    if len(labels) < 2:
        return [_problem("NotFullyQualified", name, f"{name!r} has a single label",
                         "Use a fully qualified domain name such as example.com.")]
    for label in labels:
        if not _LABEL.match(label):
            return [_problem("InvalidName", name, f"{name!r}: label {label!r} is not a valid"
                             " DNS label", "Labels are 1-63 letters, digits and hyphens,"
                             " not starting or ending with a hyphen.")]
    return []


def check_identifiers(
    identifiers: Sequence[Identifier],
    *,
    challenge_type: str,
    supports_wildcard: bool,
    supports_ip: bool,
    known: KnownDirectory | None,
) -> list[Problem]:
    """Identifier rules that need no network: syntax, challenge fit, CA policy.

    The CA policy (internal TLDs, name count) applies only to the known
    directories of CONTRACT.md, never to an unknown URL such as a local Pebble.
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
        problems += check_syntax(ident)
        if ident.wildcard and not supports_wildcard:
            problems.append(_problem(
                "WildcardNeedsDns01", ident.value,
                f"{ident.value} is a wildcard but the challenge is {challenge_type}",
                "Wildcard names can only be validated with dns-01: use --dns-01-auth-hook."))
        if ident.type == "ip" and not supports_ip:
            problems.append(_problem(
                "IpNeedsHttpOrTlsAlpn", ident.value,
                f"{ident.value} is an IP address but the challenge is {challenge_type}",
                "IP identifiers (RFC 8738) validate with http-01 or tls-alpn-01 only."))
        if known is not None and ident.type == "dns":
            tld = ident.value.rsplit(".", 1)[-1]
            last_two = ".".join(ident.value.rsplit(".", 2)[-2:])
            if tld in INTERNAL_TLDS or last_two in INTERNAL_TLDS:
                problems.append(_problem(
                    "InternalName", ident.value,
                    f"{ident.value} is under a reserved or internal TLD",
                    f"{known.ca} issues only for names under public TLDs: use a public name."))
        if known is not None and ident.type == "ip" and known.ca != "letsencrypt":
            problems.append(_problem(
                "IpNotSupported", ident.value, f"{known.ca} does not issue for IP addresses",
                "Use a DNS name."))
    limit = MAX_NAMES.get(known.ca) if known else None
    if known is not None and limit is not None and len(seen) > limit:
        problems.append(_problem(
            "TooManyNames", None, f"{len(seen)} names in one certificate; {known.ca} allows"
            f" {limit}", f"Split the names over certificates of at most {limit}."))
    return problems


def parse_resolver(value: str) -> tuple[str, int]:
    """Parse ``--dns-resolver HOST[:PORT]`` (IPv6 as ``[::1]:53``).

    Raises:
        UsageError: not an IP address with an optional port.
    """
    text = value.strip()
    host, port_text = text, "53"
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise UsageError(f"--dns-resolver: {value!r} is not HOST[:PORT]")
        host, port_text = text[1:end], text[end + 2:] or "53"
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--dns-resolver: {value!r} is not an IP address with an optional"
                         " port") from None
    if not 0 < port < 65536:
        raise UsageError(f"--dns-resolver: port {port} is out of range")
    return host, port


class Checks:
    """The preflight checks of one run, in ordered blocks.

    * :meth:`before_order` — identifier rules, then DNS and CAA lookups; runs
      before any request to the CA.
    * :meth:`after_directory` — evaluates the CAA records already looked up against
      the directory's ``meta.caaIdentities`` when no identity was known before; no
      network; runs before any order is created.
    * :meth:`self_check` — fetches each placed challenge response from this machine.

    A fatal problem stops the blocks after it.
    """

    def __init__(self, *, resolver: tuple[str, int] | None, deadline: Deadline,
                 known: KnownDirectory | None, caa_identities: tuple[str, ...] | None) -> None:
        self.resolver = resolver
        self.deadline = deadline
        self.known = known
        self.caa_identities = caa_identities
        self.identifiers: tuple[Identifier, ...] = ()

    def before_order(self, identifiers: Sequence[Identifier], *, challenge_type: str,
                     supports_wildcard: bool, supports_ip: bool) -> list[Problem]:
        """Identifier rules (no network), then DNS and CAA."""
        self.identifiers = tuple(identifiers)
        self.challenge_type = challenge_type
        return check_identifiers(identifiers, challenge_type=challenge_type,
                                 supports_wildcard=supports_wildcard, supports_ip=supports_ip,
                                 known=self.known)

    def after_directory(self, directory: Mapping[str, Any]) -> list[Problem]:
        """CAA against the directory's ``meta.caaIdentities`` (RFC 8555 section 9.7.6)."""
        return []

    def self_check(self, challenges: Sequence[Challenge]) -> tuple[list[Problem], frozenset[str]]:
        """Fetch each placed response from here; returns problems and the names that passed."""
        return [], frozenset()
