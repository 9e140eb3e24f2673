"""Checks before the CA is asked: the subscriber's mistakes, found locally.

Every finding is a :class:`~acmedryrun.report.Problem` with cause ``client`` and
``step=preflight``, built by one of the named constructors below (the model is
letsdebug's ``Problem{Name, Explanation, Detail, Severity}``).  The checks run in
ordered blocks, and a decisive problem stops the blocks after it:

1. **Identifier rules** (no network, :func:`check_identifiers`): syntax, the fit
   of each name with the challenge type, and — for the known CAs only, never for
   an unknown URL such as a local Pebble — the CA's production policy.
2. **DNS** (:meth:`Checks.before_order`): each name must exist and, for http-01
   and tls-alpn-01, have an address; CNAME chains are followed and reported.
3. **CAA** (RFC 8659, RFC 8657): the relevant record set must let the CA issue.
   When the CA's CAA identity is not known before the directory is read, the
   records are kept and judged by :meth:`Checks.after_directory`.
4. **Self-check** (:meth:`Checks.self_check`), after the solver placed every
   response: fetch the http-01 response from here, or wait for the dns-01 TXT
   record.  Only warnings: a machine often cannot reach itself through its public
   address (hairpin NAT), so the CA's own answer decides.

Certain DNS failures (NXDOMAIN, SERVFAIL, no address, CAA forbids) are fatal.
A resolver that does not answer is a warning ("could not check DNS"), never a
hang: every query is bounded by the run's deadline and :data:`QUERY_LIFETIME`.

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
  ``CaaLookupFailed``, ``CaaAccountUri`` (warning), ``CaaIdentityUnknown`` (warning);
* self-check (all warnings): ``SelfCheckConnectionRefused``, ``SelfCheckTimeout``,
  ``SelfCheckUnreachable``, ``SelfCheckHttpsOnly``, ``SelfCheckTlsError``,
  ``SelfCheckBadResponse``, ``SelfCheckNotFound``, ``SelfCheckHttpStatus``,
  ``SelfCheckWrongContent``, ``SelfCheckBadRedirect``, ``SelfCheckNoAddress``,
  ``SelfCheckTxtMissing``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import idna

from acmedryrun.directories import KnownDirectory
from acmedryrun.errors import UsageError
from acmedryrun.psl import ICANN_SUFFIXES, PROVIDER_SUFFIXES
from acmedryrun.report import Cause, Problem, Severity, Step
from acmedryrun.retry import Deadline
from acmedryrun.solvers._base import Challenge

# ----------------------------------------------------------------------------- limits

#: RFC 1035 section 2.3.4 and RFC 5890: a label is 1-63 octets, a name at most 253.
MAX_LABEL = 63
MAX_NAME = 253
_LABEL = re.compile(rf"^(?!-)[a-z0-9-]{{1,{MAX_LABEL}}}(?<!-)$")

#: Seconds one DNS query may take (resent every second within it), capped by the deadline.
QUERY_LIFETIME = 3.0
#: CNAME hops followed before the chain counts as a loop.
MAX_CNAME_HOPS = 8
#: Seconds for one HTTP connect or read of the self-check.
HTTP_TIMEOUT = 5.0
#: Boulder's limits for http-01 (va/http.go): redirects followed, response bytes read.
MAX_REDIRECTS = 10
MAX_BODY = 128
#: The redirect statuses the CA follows (CA/B Baseline Requirements 3.2.2.4.19).
REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
#: The port an ``https`` redirect goes to (the CA's https port).
HTTPS_PORT = 443
#: Upper bound, seconds, of the whole http-01 self-check and of the dns-01 TXT wait.
SELF_CHECK_BUDGET = 30.0
TXT_WAIT = 30.0
#: Names looked up at once in the DNS and CAA block.
DNS_WORKERS = 8
TXT_POLL = 0.5

# ----------------------------------------------------------------------------- CA policy

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

#: CAA property tags the CAs act on (RFC 8659 section 4); any other tag with the
#: critical flag makes a CA refuse.  Boulder also treats flag bit 1 as critical
#: because many zone operators set it by mistake (va/caa.go).
CAA_KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef"})
CAA_CRITICAL = 128 | 1


# ------------------------------------------------------------------------ identifiers


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
    return Problem(name=name, cause=Cause.CLIENT, severity=severity, step=Step.PREFLIGHT,
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
    if len(labels) < 2:
        return [_problem("NotFullyQualified", name, f"{name!r} has a single label",
                         "Use a fully qualified domain name such as example.com.")]
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


def _ca_policy(ident: Identifier, known: KnownDirectory) -> list[Problem]:
    """What the known CA refuses (Boulder's policy/pa.go for Let's Encrypt)."""
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
    base = ident.base
    labels = base.split(".")
    if labels[-1] in INTERNAL_TLDS or ".".join(labels[-2:]) in INTERNAL_TLDS:
        return [_problem("InternalName", value, f"{value} is under a reserved or internal TLD",
                         f"{ca} issues only for names under public TLDs: use a"
                         " public name.")]
    if base in ICANN_SUFFIXES:
        return [_problem("PublicSuffix", value, f"{base} is a public suffix (like a TLD):"
                         " nobody can own it", "Order a name under it, e.g. example."
                         f"{base}.")]
    if base in PROVIDER_SUFFIXES:
        return [_problem("ProviderSuffix", value, f"{base} is a hosting provider's public"
                         " suffix", f"Only the provider can validate {base} itself: order"
                         f" your own name under it (yours.{base}).", Severity.WARNING)]
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

    The CA policy (internal TLDs, public suffixes, name count, IP addresses)
    applies only to the known directories of CONTRACT.md, never to an unknown URL
    such as a local Pebble.

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
        if known is not None and not syntax:
            problems += _ca_policy(ident, known)
    from acmedryrun.twin import production_policy

    policy = production_policy(known.ca) if known else None
    limit = policy.names_per_certificate if policy else None
    if known is not None and limit is not None and len(seen) > limit:
        problems.append(_problem(
            "TooManyNames", None, f"{len(seen)} names in one certificate;"
            f" {CA_NAMES.get(known.ca, known.ca)} allows"
            f" {limit}", f"Split the names over certificates of at most {limit}."))
    return problems


def parse_resolver(value: str, option: str = "--dns-resolver") -> tuple[str, int]:
    """Parse ``HOST[:PORT]`` (IPv6 as ``[::1]:53`` or a bare ``::1``) of a resolver.

    The host must be an IP address: the point is to ask one specific server.

    Args:
        value: The text given.
        option: The option's name, for the error message.

    Raises:
        UsageError: not an IP address with an optional port.
    """
    text = value.strip()
    host, port_text = text, "53"
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise UsageError(f"{option}: {value!r} is not HOST[:PORT]")
        host, port_text = text[1:end], text[end + 2:] or "53"
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not an IP address with an optional"
                         " port") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"{option}: {port_text!r} is not a port (1-65535)")
    return str(address), int(port_text)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------------- DNS


class _NoAnswer(Exception):
    """The resolver gave no answer at all (timeout, port unreachable, network error)."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One lookup with its CNAME chain followed (RFC 1034 section 4.3.2).

    Attributes:
        name: The name asked for.
        rdtype: The record type asked for (``A``, ``CAA``, ...).
        rcode: The response code for the end of the chain (RFC 6604), as text.
        cnames: The alias targets followed, in order.
        records: The final record set (empty for NXDOMAIN or no data).
        zone: In a negative answer, the zone whose SOA came with it (RFC 2308).
        loop: True when the aliases loop or exceed :data:`MAX_CNAME_HOPS`.
        server: ``host:port`` of the resolver that answered.
    """

    name: str
    rdtype: str
    rcode: str
    cnames: tuple[str, ...] = ()
    records: tuple[dns.rdata.Rdata, ...] = ()
    zone: str | None = None
    loop: bool = False
    server: str = ""

    @property
    def chain(self) -> str:
        """``a -> b -> c``: the aliases from the name asked for."""
        return " -> ".join((self.name, *self.cnames))

    @property
    def texts(self) -> list[str]:
        """The final records in presentation format."""
        return [r.to_text() for r in self.records]


def _text(name: dns.name.Name) -> str:
    """A name without the final dot, lowercased; the root is ``""``."""
    return name.to_text(omit_final_dot=True).lower().strip(".")


class _Dns:
    """Plain queries to one resolver (or the system's), each bounded in time.

    Queries are sent directly (no cache) so a negative answer never outlives one
    poll.  The first time no resolver answers, :attr:`failure` is set and every
    later query fails at once: one dead resolver costs one lifetime, not one per name.
    """

    def __init__(self, resolver: tuple[str, int] | None, deadline: Deadline) -> None:
        self.deadline = deadline
        self.failure: str | None = None
        self._caa_cache: dict[str, DnsAnswer] = {}
        self._cache_lock = threading.Lock()
        if resolver is not None:
            self.servers = [resolver]
            self.label = _hostport(*resolver)
            return
        try:
            system = dns.resolver.Resolver()
            self.servers = [(str(ns), int(system.port)) for ns in system.nameservers]
        except (dns.resolver.NoResolverConfiguration, OSError):
            self.servers = []
        listed = ", ".join(_hostport(h, p) for h, p in self.servers) or "none configured"
        self.label = f"the system resolver ({listed})"

    def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask for ``rdtype`` at ``name``, following aliases the resolver did not chase.

        CAA answers are kept for the run: the tree climbs of many names in one order
        meet at the same parents (RFC 8659 section 3), which need asking only once.

        Raises:
            _NoAnswer: no resolver answered.
        """
        if rdtype != "CAA":
            return self._lookup(name, rdtype)
        key = name.lower().rstrip(".")
        with self._cache_lock:
            cached = self._caa_cache.get(key)
        if cached is None:
            cached = self._lookup(name, rdtype)
            with self._cache_lock:
                self._caa_cache[key] = cached
        return cached

    def _lookup(self, name: str, rdtype: str) -> DnsAnswer:
        want = dns.rdatatype.from_text(rdtype)
        seen = {name}
        cnames: list[str] = []
        current = name
        for _ in range(MAX_CNAME_HOPS + 1):
            msg, server = self._ask(current, want)
            rcode = dns.rcode.to_text(msg.rcode())
            walked = current
            while True:
                owner = dns.name.from_text(walked)
                found = msg.get_rrset(msg.answer, owner, dns.rdataclass.IN, want)
                if found is not None:
                    return DnsAnswer(name, rdtype, rcode, tuple(cnames), tuple(found),
                                     server=server)
                alias = msg.get_rrset(msg.answer, owner, dns.rdataclass.IN,
                                      dns.rdatatype.CNAME)
                if alias is None or want == dns.rdatatype.CNAME:
                    break
                walked = _text(alias[0].target)
                if walked in seen or len(cnames) >= MAX_CNAME_HOPS:
                    return DnsAnswer(name, rdtype, rcode, (*cnames, walked), loop=True,
                                     server=server)
                seen.add(walked)
                cnames.append(walked)
            if walked == current or rcode != "NOERROR":
                zone = next((_text(rr.name) for rr in msg.authority
                             if rr.rdtype == dns.rdatatype.SOA), None)
                return DnsAnswer(name, rdtype, rcode, tuple(cnames), zone=zone, server=server)
            # The server stopped at an alias it is not authoritative for: ask for the target.
            current = walked
        return DnsAnswer(name, rdtype, "NOERROR", tuple(cnames), loop=True)

    def _ask(self, name: str, rdtype: dns.rdatatype.RdataType) -> tuple[dns.message.Message, str]:
        if self.failure is not None:
            raise _NoAnswer(self.failure)
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        errors: list[str] = []
        for host, port in self.servers:
            lifetime = min(QUERY_LIFETIME, self.deadline.remaining())
            where = f"{_hostport(host, port)}: " if len(self.servers) > 1 else ""
            if lifetime < 0.05:
                errors.append("the run's deadline passed")
                break
            try:
                return _exchange(query, host, port, lifetime), _hostport(host, port)
            except dns.exception.Timeout:
                errors.append(f"{where}no answer within {lifetime:.1f} s")
            except ConnectionRefusedError:
                errors.append(f"{where}nothing listens there (port unreachable)")
            except OSError as exc:
                errors.append(f"{where}{exc.strerror or exc}")
            except dns.exception.DNSException as exc:
                errors.append(f"{where}unusable answer ({exc})")
        self.failure = "; ".join(errors) or "no resolver is configured (/etc/resolv.conf)"
        raise _NoAnswer(self.failure)


def _exchange(query: dns.message.Message, host: str, port: int,
              lifetime: float) -> dns.message.Message:
    """One UDP exchange (resent each second within ``lifetime``), TCP when truncated."""
    end = time.monotonic() + lifetime
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # A connected socket reports ICMP port-unreachable at once as ECONNREFUSED.
        sock.connect((host, port))
        sock.setblocking(False)  # dnspython waits with select() and its own expiration
        while True:
            left = end - time.monotonic()
            try:
                response = dns.query.udp(query, host, timeout=max(0.01, min(1.0, left)),
                                         port=port, sock=sock, ignore_unexpected=True)
                break
            except dns.exception.Timeout:
                if end - time.monotonic() <= 0.01:
                    raise
    if response.flags & dns.flags.TC:
        # RFC 7766 section 5: a truncated UDP answer is retried over TCP.
        response = dns.query.tcp(query, host, timeout=max(0.1, end - time.monotonic()),
                                 port=port)
    return response


def address_problems(ident: str, a: DnsAnswer, aaaa: DnsAnswer | None,
                     resolver: str) -> list[Problem]:
    """Judge the A and AAAA lookups of a name validated by http-01 or tls-alpn-01.

    Pure: the answers in, the problems out (fatal when certain, info otherwise).
    """
    seen = f"(resolver {resolver}, {a.rdtype} {a.chain}: {a.rcode})"
    if a.loop:
        return [_problem("DnsCnameLoop", ident, f"the aliases loop or are too long: {a.chain}"
                         f" {seen}", "Fix the CNAME records so the chain ends at a name"
                         " with an address.")]
    if a.rcode == "NXDOMAIN" and a.cnames:
        return [_problem("DnsDanglingCname", ident, f"{a.chain}: the alias target"
                         f" {a.cnames[-1]} does not exist {seen}",
                         f"Fix or remove the CNAME, or create {a.cnames[-1]}: the CA gets"
                         " the same NXDOMAIN.")]
    if a.rcode == "NXDOMAIN":
        zone = f"; zone {a.zone or '.'} says so" if a.zone is not None else ""
        return [_problem("DnsNxDomain", ident, f"{a.name} does not exist {seen}{zone}",
                         "Create an A or AAAA record for the name pointing at the server"
                         " that answers the challenge, or fix its spelling.")]
    if a.rcode == "SERVFAIL":
        return [_problem("DnsServfail", ident, f"the lookup failed with SERVFAIL {seen}",
                         "The name's DNS is broken: often a DNSSEC failure or an"
                         " unreachable authoritative server. Check it with `dig` and a"
                         " DNSSEC analyzer such as dnsviz.net; the CA's resolver fails"
                         " the same way.")]
    if a.rcode != "NOERROR":
        return [_problem("DnsResolverRefused", ident, f"could not check DNS: the resolver"
                         f" answered {a.rcode} {seen}", "Use --dns-resolver with a recursive"
                         " resolver that serves this machine.", Severity.WARNING)]
    problems: list[Problem] = []
    v6 = aaaa.texts if aaaa is not None and aaaa.rcode == "NOERROR" else []
    if aaaa is not None and aaaa.rcode != "NOERROR":
        problems.append(_problem(
            "DnsAaaaFailed", ident, f"the AAAA lookup answered {aaaa.rcode} (resolver"
            f" {resolver}) while A worked", "Fix the name's DNS for AAAA queries: a CA that"
            " cannot look up AAAA may refuse to validate.", Severity.WARNING))
    if not a.records and not v6:
        return [*problems, _problem(
            "DnsNoAddress", ident, f"{a.chain} has no A or AAAA record {seen}",
            "Add an A or AAAA record: http-01 and tls-alpn-01 connect to that address"
            " (dns-01 would need none).")]
    if a.cnames:
        problems.append(_problem(
            "DnsCname", ident, f"{a.chain} (A: {', '.join(a.texts) or 'none'})",
            "The CA follows the same aliases: the records at the end of the chain count.",
            Severity.INFO))
    if v6:
        problems.append(_problem(
            "Ipv6Preferred", ident, f"{ident} has AAAA {', '.join(v6)} and A"
            f" {', '.join(a.texts) or 'none'}",
            "Let's Encrypt connects over IPv6 first and falls back to IPv4 only when the"
            " IPv6 connection cannot be made: a server that answers differently over IPv6"
            " (another virtual host, a 404, a redirect) fails validation even when IPv4"
            " works.", Severity.INFO))
    return problems


def zone_problems(ident: str, txt: DnsAnswer, resolver: str) -> list[Problem]:
    """Judge the TXT lookup at ``_acme-challenge.NAME`` before a dns-01 challenge.

    No address is needed, only a zone that can hold the record: SERVFAIL or a
    negative answer from a TLD (the domain is not registered) are fatal.
    """
    seen = f"(resolver {resolver}, TXT {txt.chain}: {txt.rcode})"
    if txt.loop:
        return [_problem("DnsCnameLoop", ident, f"the aliases loop or are too long: "
                         f"{txt.chain} {seen}", "Fix the CNAME records.")]
    if txt.rcode == "SERVFAIL":
        return [_problem("DnsServfail", ident, f"the lookup failed with SERVFAIL {seen}",
                         "The zone's DNS is broken (often DNSSEC or an unreachable"
                         " authoritative server): the CA cannot read a TXT record there"
                         " either.")]
    if txt.rcode == "NXDOMAIN" and txt.zone is not None and not txt.cnames and (
            txt.zone.count(".") == 0 or txt.zone in ICANN_SUFFIXES):
        return [_problem("DnsZoneMissing", ident, f"no zone holds {txt.name}: the negative"
                         f" answer comes from {txt.zone or 'the root'} {seen}",
                         "Register the domain or fix the name's spelling: a TXT record"
                         " cannot be created under a name nobody delegates.")]
    if txt.rcode not in ("NOERROR", "NXDOMAIN"):
        return [_problem("DnsResolverRefused", ident, f"could not check DNS: the resolver"
                         f" answered {txt.rcode} {seen}", "Use --dns-resolver with a"
                         " recursive resolver that serves this machine.", Severity.WARNING)]
    if txt.cnames:
        return [_problem("DnsCname", ident, f"{txt.chain}", "The CA follows this alias:"
                         f" the TXT record must be published at {txt.cnames[-1]}.",
                         Severity.INFO)]
    return []


# --------------------------------------------------------------------------------- CAA


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


def _caa_records(answer: DnsAnswer) -> tuple[CaaRecord, ...]:
    return tuple(
        CaaRecord(int(r.flags), bytes(r.tag).decode("ascii", "replace").lower(),  # type: ignore[attr-defined]
                  bytes(r.value).decode("utf-8", "replace"))  # type: ignore[attr-defined]
        for r in answer.records)


# -------------------------------------------------------------------------- self-check


@dataclass(frozen=True, slots=True)
class _Fetch:
    """One address's http-01 outcome: ``name`` is None when it answered correctly."""

    address: str
    name: str | None
    detail: str
    dial: bool = False  # the connection could not be made (Boulder falls back to IPv4)


class _DialError(Exception):
    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _family(address: str) -> str:
    return "IPv6" if ":" in address else "IPv4"


def _authority(host: str, port: int, default: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default else f"{shown}:{port}"


_SELF_CHECK_HINTS = {
    "SelfCheckConnectionRefused": "Nothing accepts connections there: start the web server"
    " (or the standalone responder) on that address and port, and open the firewall.",
    "SelfCheckTimeout": "The connection or the answer timed out: check the firewall and"
    " port forwarding for that port.",
    "SelfCheckUnreachable": "This machine has no route to that address: check the"
    " address in DNS and the network (an AAAA record without working IPv6 is common).",
    "SelfCheckHttpsOnly": "Port 80 refuses but 443 accepts: http-01 always starts with"
    " plain HTTP on port 80. Serve /.well-known/acme-challenge/ on port 80 (a redirect"
    " to HTTPS is fine).",
    "SelfCheckTlsError": "The HTTPS server a redirect led to failed the TLS handshake"
    " (the CA accepts any certificate but needs TLS 1.2 or newer).",
    "SelfCheckBadResponse": "The server did not answer with valid HTTP.",
    "SelfCheckNotFound": "The web server does not serve the challenge file: check the"
    " webroot path, and that no rewrite rule or other virtual host catches"
    " /.well-known/acme-challenge/.",
    "SelfCheckHttpStatus": "The web server refused the challenge file: allow"
    " /.well-known/acme-challenge/ without authentication or IP restrictions.",
    "SelfCheckWrongContent": "Another server or virtual host answers the name, or the"
    " file is served with changes: serve the file exactly as written (the CA reads at"
    " most 127 bytes and trims only trailing whitespace).",
    "SelfCheckBadRedirect": "The CA follows at most 10 redirects (301, 302, 307, 308), only"
    " to http or https on ports 80 and 443 and to domain names, never IP addresses: fix"
    " the redirect.",
}
_HAIRPIN = (" If this machine cannot reach its own public address (hairpin NAT), this"
            " warning may be harmless: the CA's own check decides.")


class Checks:
    """The preflight checks of one run, in ordered blocks.

    * :meth:`before_order` — identifier rules, then DNS and CAA lookups; runs
      before any request to the CA.
    * :meth:`after_directory` — evaluates the CAA records already looked up against
      the directory's ``meta.caaIdentities`` when no identity was known before; no
      network; runs before any order is created.
    * :meth:`self_check` — fetches each placed challenge response from this machine.

    A fatal problem stops the blocks after it.

    Attributes:
        http_port: The port the CA's http-01 validation connects to: 80 for every
            real CA; a local test CA such as Pebble uses another.  Redirects with an
            explicit port are accepted to this port and to :data:`HTTPS_PORT`.
    """

    http_port: int = 80

    def __init__(self, *, resolver: tuple[str, int] | None, deadline: Deadline,
                 known: KnownDirectory | None, caa_identities: tuple[str, ...] | None,
                 http_port: int | None = None) -> None:
        """Set up the checks; nothing is sent until :meth:`before_order`.

        Args:
            resolver: ``(ip, port)`` of the resolver to ask, or None for the system's.
            deadline: The run's overall deadline; every lookup and fetch stays within it.
            known: The known directory, or None for an unknown URL.
            caa_identities: The CA's CAA issuer domains, if given explicitly.
            http_port: See :attr:`http_port` (default 80).
        """
        self.resolver = resolver
        self.deadline = deadline
        self.known = known
        self.caa_identities = caa_identities
        if http_port is not None:
            self.http_port = http_port
        self.identifiers: tuple[Identifier, ...] = ()
        self.challenge_type = ""
        self._dns = _Dns(resolver, deadline)
        self._caa_pending: list[tuple[Identifier, CaaSet]] = []
        #: Per name, the accounturi of each CAA record that lets the CA issue (None:
        #: a record without one), for :meth:`after_account`.
        self._account_uris: dict[str, list[str | None]] = {}
        self._lock = threading.Lock()
        self._unreachable_reported = False

    # -- block 1-3: before any request to the CA ------------------------------------

    def before_order(self, identifiers: Sequence[Identifier], *, challenge_type: str,
                     supports_wildcard: bool, supports_ip: bool) -> list[Problem]:
        """Identifier rules (no network), then DNS and CAA for each DNS name.

        Returns:
            Every problem found; a decisive one means the CA must not be asked.
        """
        self.identifiers = tuple(identifiers)
        self.challenge_type = challenge_type
        problems = check_identifiers(identifiers, challenge_type=challenge_type,
                                     supports_wildcard=supports_wildcard,
                                     supports_ip=supports_ip, known=self.known)
        if any(p.severity.decisive for p in problems):
            return problems
        names = list({i.value: i for i in identifiers if i.type == "dns"}.values())
        # The names are independent: look them up side by side (a 50-name order would
        # otherwise wait for some 250 queries one after another).
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(DNS_WORKERS, max(1, len(names))),
                thread_name_prefix="acmedryrun-preflight") as pool:
            results = list(pool.map(self._check_name_or_unreachable, names))
        for found in results:
            if found is None:
                return problems + self._unreachable()
            problems += found
        return problems

    def _check_name_or_unreachable(self, ident: Identifier) -> list[Problem] | None:
        try:
            return self._check_name(ident)
        except _NoAnswer:
            return None

    def _check_name(self, ident: Identifier) -> list[Problem]:
        base = ident.base
        if self.challenge_type == "dns-01":
            # RFC 8555 section 8.4: only _acme-challenge.NAME TXT is read; no address needed.
            txt = self._dns.lookup(f"_acme-challenge.{base}", "TXT")
            problems = zone_problems(ident.value, txt, self._dns.label)
        else:
            a = self._dns.lookup(base, "A")
            aaaa = self._dns.lookup(base, "AAAA") if a.rcode == "NOERROR" and not a.loop \
                else None
            problems = address_problems(ident.value, a, aaaa, self._dns.label)
        if any(p.severity.decisive for p in problems):
            return problems
        return problems + self._check_caa(ident)

    def _identities(self) -> tuple[str, ...] | None:
        if self.caa_identities:
            return self.caa_identities
        return self.known.caa_identities if self.known is not None else None

    def _check_caa(self, ident: Identifier) -> list[Problem]:
        found = self._find_caa(ident)
        if isinstance(found, Problem):
            return [found]
        if found is None:
            return []
        identities = self._identities()
        problems = evaluate_caa(ident.value, found, wildcard=ident.wildcard,
                                identities=identities, challenge_type=self.challenge_type)
        if identities is None and not any(p.severity.decisive for p in problems):
            self._caa_pending.append((ident, found))  # judged by after_directory
            return []
        self._note_account_uris(ident, found, identities)
        return problems

    def _note_account_uris(self, ident: Identifier, found: CaaSet,
                           identities: Sequence[str] | None) -> None:
        if identities:
            with self._lock:
                self._account_uris[ident.value] = caa_account_uris(
                    found, wildcard=ident.wildcard, identities=identities,
                    challenge_type=self.challenge_type)

    def after_account(self, account_url: str | None,
                      production_url: str | None) -> list[Problem]:
        """CAA ``accounturi`` against the staging account the run got (RFC 8657).

        Staging and production accounts differ, so a record bound to the staging
        account passes staging and fails production, and one bound to a production
        account the other way round.  Sends nothing.
        """
        from acmedryrun.twin import caa_accounturi_warning

        problems = []
        for name, uris in self._account_uris.items():
            problem = caa_accounturi_warning(name, uris, staging_account_url=account_url,
                                             production_url=production_url)
            if problem is not None:
                problems.append(problem)
        return problems

    def _find_caa(self, ident: Identifier) -> CaaSet | Problem | None:
        """RFC 8659 section 3: climb from the name towards the root (the TLD included),
        stopping at the first non-empty CAA set; each lookup follows aliases."""
        labels = ident.base.split(".")
        for i in range(len(labels)):
            name = ".".join(labels[i:])
            answer = self._dns.lookup(name, "CAA")
            if answer.rcode in ("NOERROR", "NXDOMAIN") and not answer.records:
                continue
            if answer.rcode == "NOERROR":
                return CaaSet(name, answer.cnames[-1] if answer.cnames else name,
                              _caa_records(answer))
            return _problem(
                "CaaLookupFailed", ident.value, f"the CAA lookup at {name} answered"
                f" {answer.rcode} (resolver {self._dns.label})",
                "A CA refuses to issue when the CAA lookup fails (Boulder always; the"
                " Baseline Requirements 3.2.2.8 allow it only in narrow cases): fix the"
                " zone's DNS, often DNSSEC or an unreachable authoritative server.")
        return None

    def _unreachable(self) -> list[Problem]:
        """The one warning for a resolver that did not answer (reported once)."""
        with self._lock:
            if self._unreachable_reported:
                return []
            self._unreachable_reported = True
        return [_problem(
            "DnsResolverUnreachable", None, f"could not check DNS with {self._dns.label}:"
            f" {self._dns.failure}", "Point --dns-resolver at a resolver this machine can"
            " reach (or fix /etc/resolv.conf). The DNS, CAA and self-checks were skipped:"
            " only the CA's own validation speaks for these names.", Severity.WARNING)]

    # -- after the directory: no network ---------------------------------------------

    def after_directory(self, directory: Mapping[str, Any]) -> list[Problem]:
        """CAA against the directory's ``meta.caaIdentities`` (RFC 8555 section 7.1.1).

        Judges only the CAA sets :meth:`before_order` found and kept because no
        identity was known then; sends nothing.  Without ``caaIdentities`` each
        restricting set becomes a ``CaaIdentityUnknown`` warning, never a guess.
        """
        if not self._caa_pending:
            return []
        meta = directory.get("meta")
        listed = meta.get("caaIdentities") if isinstance(meta, Mapping) else None
        identities = tuple(i for i in listed if isinstance(i, str) and i) \
            if isinstance(listed, list) else ()
        problems: list[Problem] = []
        for ident, found in self._caa_pending:
            problems += evaluate_caa(ident.value, found, wildcard=ident.wildcard,
                                     identities=identities or None,
                                     challenge_type=self.challenge_type)
            self._note_account_uris(ident, found, identities or None)
        self._caa_pending = []
        return problems

    # -- block 4: after the solver placed the responses --------------------------------

    def self_check(self, challenges: Sequence[Challenge]) -> tuple[list[Problem], frozenset[str]]:
        """Check each placed response from here, the way the CA will.

        * http-01: fetch ``/.well-known/acme-challenge/TOKEN`` from the first IPv6
          and the first IPv4 address of the name (as Boulder picks them), following
          redirects by the CA's rules, and compare the body with the key authorization.
        * dns-01: wait (at most :data:`TXT_WAIT` s, polling every :data:`TXT_POLL` s)
          until ``_acme-challenge.NAME`` TXT holds the validation at the resolver.
        * tls-alpn-01: nothing; the responder is checked by the CA only.

        Every problem is a warning: hairpin NAT and split DNS can make a correct
        setup fail from here, so the CA's answer decides.

        Returns:
            The problems, and :attr:`Challenge.domain` of each challenge that answered
            correctly over every address (used to cross-examine a CA failure).
        """
        problems: list[Problem] = []
        passed: set[str] = set()
        http01 = [ch for ch in challenges if ch.type == "http-01"]
        dns01 = [ch for ch in challenges if ch.type == "dns-01"]
        if http01:
            found, ok = self._self_check_http01(http01)
            problems += found
            passed |= ok
        if dns01:
            found, ok = self._self_check_dns01(dns01)
            problems += found
            passed |= ok
        return problems, frozenset(passed)

    def _self_check_http01(self, challenges: Sequence[Challenge]) -> tuple[list[Problem],
                                                                           set[str]]:
        end = time.monotonic() + min(self.deadline.remaining(), SELF_CHECK_BUDGET)
        workers = min(8, len(challenges))
        with concurrent.futures.ThreadPoolExecutor(workers, "acmedryrun-selfcheck") as pool:
            results = list(pool.map(lambda ch: self._http01_one(ch, end), challenges))
        problems: list[Problem] = []
        passed: set[str] = set()
        for ch, result in zip(challenges, results, strict=True):
            if result is None:
                problems += self._unreachable()
            elif isinstance(result, Problem):
                problems.append(result)
            else:
                passed.add(ch.domain)
        return problems, passed

    def _addresses(self, name: str) -> list[str]:
        """The first IPv6 and the first IPv4 address of ``name``: what Boulder tries."""
        found: list[str] = []
        for rdtype in ("AAAA", "A"):
            answer = self._dns.lookup(name, rdtype)
            if answer.records:
                found.append(answer.texts[0])
        return found

    def _http01_one(self, ch: Challenge, end: float) -> Problem | bool | None:
        """True when every address answered correctly; None when DNS did not answer."""
        ident = ch.domain
        if ch.identifier_type == "ip":
            addresses = [ch.identifier]
        else:
            try:
                addresses = self._addresses(ch.identifier)
            except _NoAnswer:
                return None
        if not addresses:
            return _problem("SelfCheckNoAddress", ident, f"{ch.identifier} has no A or AAAA"
                            f" record at {self._dns.label}", "Add an A or AAAA record.",
                            Severity.WARNING)
        fetches = [self._fetch(ch, address, end) for address in addresses]
        failed = [f for f in fetches if f.name is not None]
        if not failed:
            return True
        lines = "; ".join(f"{_family(f.address)} {f.address}: {f.detail}" for f in fetches)
        hint = _SELF_CHECK_HINTS.get(failed[0].name or "", "")
        v6 = [f for f in fetches if ":" in f.address]
        v4_ok = any(f.name is None for f in fetches if ":" not in f.address)
        if v6 and v6[0].name is not None and v4_ok:
            hint += (" IPv4 works but IPv6 does not: Let's Encrypt tries IPv6 first and falls"
                     " back to IPv4 only when the IPv6 connection cannot be made at all"
                     + (" (as here)." if v6[0].dial else ", so this fails validation."))
        return _problem(failed[0].name or "", ident, lines, hint + _HAIRPIN, Severity.WARNING)

    def _fetch(self, ch: Challenge, address: str, end: float) -> _Fetch:
        """GET the challenge URL through ``address`` and follow redirects like Boulder."""
        scheme, host, port = "http", ch.identifier, self.http_port
        path = f"/.well-known/acme-challenge/{ch.token}"
        url = f"http://{_authority(host, port, 80)}{path}"
        seen = [url]
        origin = address
        for hop in range(MAX_REDIRECTS + 1):
            where = f"GET {url}"
            try:
                status, location, body = self._get(
                    scheme=scheme, host=host, address=address, port=port, path=path, end=end)
            except _DialError as exc:
                return self._dial_failure(address, where, exc.cause, first=hop == 0, end=end)
            except ssl.SSLError as exc:
                return _Fetch(address, "SelfCheckTlsError", f"{where}: TLS failed: {exc}")
            except TimeoutError:
                return _Fetch(address, "SelfCheckTimeout", f"{where}: no answer in time")
            except (OSError, http.client.HTTPException) as exc:
                return _Fetch(address, "SelfCheckBadResponse", f"{where}: {exc!r}")
            if status in REDIRECT_STATUSES:
                if hop == MAX_REDIRECTS:
                    return _Fetch(address, "SelfCheckBadRedirect",
                                  f"{where}: more than {MAX_REDIRECTS} redirects")
                try:
                    # A Location the subscriber's server sends may be any text.
                    target = urljoin(url, location or "")
                    why = self._bad_redirect(target, location, seen, ch.identifier_type)
                    parts = urlsplit(target)
                    port = parts.port or (self.http_port if parts.scheme == "http"
                                          else HTTPS_PORT)
                except ValueError as exc:
                    why = f"not a usable URL ({exc})"
                if why:
                    return _Fetch(address, "SelfCheckBadRedirect", f"{where}: {status} to"
                                  f" {location!r}: {why}")
                scheme, host = parts.scheme, (parts.hostname or "").lower()
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                address = origin
                if host != ch.identifier.lower():
                    try:
                        choice = self._addresses(host)
                    except (_NoAnswer, dns.exception.DNSException, ValueError):
                        choice = []
                    same = [a for a in choice if (":" in a) == (":" in address)]
                    if not (same or choice):
                        return _Fetch(address, "SelfCheckBadRedirect", f"{where}: {status} to"
                                      f" {target}: {host} has no address")
                    address = (same or choice)[0]
                url = target
                seen.append(url)
                continue
            if 300 <= status < 400:
                return _Fetch(address, "SelfCheckBadRedirect", f"{where}: status {status}:"
                              " the CA follows only 301, 302, 307 and 308")
            if status == 404:
                return _Fetch(address, "SelfCheckNotFound", f"{where}: 404 Not Found")
            if status != 200:
                return _Fetch(address, "SelfCheckHttpStatus", f"{where}: HTTP {status}")
            if len(body) >= MAX_BODY:
                return _Fetch(address, "SelfCheckWrongContent", f"{where}: the response is"
                              f" {MAX_BODY} bytes or longer: {body[:60]!r}...")
            # Boulder compares after trimming trailing whitespace only (va/http.go).
            payload = body.decode("utf-8", "replace").rstrip()
            if payload != ch.key_authorization:
                return _Fetch(address, "SelfCheckWrongContent", f"{where}: got {payload!r},"
                              f" expected {ch.key_authorization!r}")
            return _Fetch(address, None, f"{where}: ok")
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _bad_redirect(self, target: str, location: str | None, seen: Sequence[str],
                      identifier_type: str) -> str | None:
        """Why the CA would not follow this redirect (Boulder va/http.go), or None."""
        if not location:
            return "no Location header"
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https"):
            return f"only http and https are followed, not {parts.scheme!r}"
        try:
            port = parts.port
        except ValueError:
            return "the port is not a number"
        if port is not None and port not in (self.http_port, HTTPS_PORT):
            return f"only ports {self.http_port} and {HTTPS_PORT} are followed, not {port}"
        host = parts.hostname or ""
        if not host:
            return "no host"
        if identifier_type == "dns":
            try:
                ipaddress.ip_address(host)
                return "redirects to IP addresses are not followed, only to domain names"
            except ValueError:
                pass
        if host.endswith(".well-known"):
            return "the host ends in .well-known: a '/' is missing in the redirect target"
        if target in seen:
            return f"redirect loop ({' -> '.join((*seen, target))})"
        return None

    def _dial_failure(self, address: str, where: str, exc: OSError, *, first: bool,
                      end: float) -> _Fetch:
        if isinstance(exc, ConnectionRefusedError):
            if first and self._accepts(address, HTTPS_PORT, end):
                return _Fetch(address, "SelfCheckHttpsOnly", f"{where}: connection refused,"
                              f" but port {HTTPS_PORT} accepts", dial=True)
            return _Fetch(address, "SelfCheckConnectionRefused", f"{where}: connection"
                          " refused", dial=True)
        if isinstance(exc, TimeoutError):
            return _Fetch(address, "SelfCheckTimeout", f"{where}: connect timed out",
                          dial=True)
        return _Fetch(address, "SelfCheckUnreachable", f"{where}: {exc.strerror or exc}",
                      dial=True)

    @staticmethod
    def _accepts(address: str, port: int, end: float) -> bool:
        timeout = min(2.0, end - time.monotonic())
        if timeout <= 0:
            return False
        try:
            socket.create_connection((address, port), timeout=timeout).close()
        except OSError:
            return False
        return True

    @staticmethod
    def _get(*, scheme: str, host: str, address: str, port: int, path: str,
             end: float) -> tuple[int, str | None, bytes]:
        """One GET of ``path`` at ``address`` with ``Host: host`` (no verification on https).

        Raises:
            _DialError: the TCP connection could not be made.
            OSError, http.client.HTTPException: it broke afterwards.
        """
        timeout = min(HTTP_TIMEOUT, end - time.monotonic())
        if timeout <= 0:
            raise TimeoutError("the self-check's time is up")
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            raise _DialError(exc) from exc
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
        try:
            if scheme == "https":
                # The CA accepts any certificate here (the subscriber has none yet)
                # but needs TLS 1.2 or newer.
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                sni = None if _is_ip(host) else host
                sock = context.wrap_socket(sock, server_hostname=sni)
            conn.sock = sock
            conn.request("GET", path, headers={
                "Host": _authority(host, port, 80 if scheme == "http" else 443),
                "Accept": "*/*", "User-Agent": "acmedryrun-self-check", "Connection": "close",
            })
            response = conn.getresponse()
            body = response.read(MAX_BODY)
            return response.status, response.getheader("Location"), body
        finally:
            conn.close()
            sock.close()

    def _self_check_dns01(self, challenges: Sequence[Challenge]) -> tuple[list[Problem],
                                                                          set[str]]:
        # Leave the CA at least half of what is left: the self-check only advises.
        end = time.monotonic() + min(self.deadline.remaining() / 2, TXT_WAIT)
        started = time.monotonic()
        pending = {ch.domain: ch for ch in challenges}
        seen: dict[str, DnsAnswer] = {}
        passed: set[str] = set()
        while pending:
            for domain, ch in list(pending.items()):
                try:
                    answer = self._dns.lookup(f"_acme-challenge.{ch.identifier}", "TXT")
                except _NoAnswer:
                    return self._unreachable(), passed
                seen[domain] = answer
                # RFC 1035 section 3.3.14: one value may be split into several strings.
                values = {b"".join(r.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
                          for r in answer.records}
                if ch.validation in values:
                    passed.add(domain)
                    del pending[domain]
            left = end - time.monotonic()
            if not pending or left <= 0:
                break
            self.deadline.sleep(min(TXT_POLL, left))
            if self.deadline.expired:
                break
        waited = time.monotonic() - started
        problems = []
        for domain, ch in pending.items():
            last = seen.get(domain)
            got = (f"{last.rcode}, values {last.texts or 'none'}"
                   + (f", via {last.chain}" if last.cnames else "")) if last else "?"
            problems.append(_problem(
                "SelfCheckTxtMissing", domain, f"after {waited:.1f} s, TXT"
                f" _acme-challenge.{ch.identifier} at {self._dns.label} does not hold"
                f" {ch.validation!r} ({got})", "Check that the DNS hook or provider"
                " published the record in the right zone. A resolver that cached an earlier"
                " 'no record' answer repeats it until the negative TTL expires: point"
                " --dns-resolver at an authoritative server to see the zone itself.",
                Severity.WARNING))
        return problems, passed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
