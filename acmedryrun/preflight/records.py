"""What the DNS answers mean for validation (pure: answers in, problems out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from acmedryrun import psl
from acmedryrun.preflight.identifiers import _problem
from acmedryrun.report import Problem, Severity


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
    records: tuple[Any, ...] = ()
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
            txt.zone.count(".") == 0 or psl.is_icann_suffix(txt.zone)):
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
