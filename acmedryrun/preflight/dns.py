"""DNS look-ups for the preflight checks: one resolver, each query bounded in time (I/O).

Queries go straight to the resolver (no cache), so a negative answer never
outlives one poll; CNAME chains are followed (RFC 1034 section 4.3.2); a
truncated UDP answer is retried over TCP (RFC 7766 section 5).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

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

from acmedryrun.deadline import Deadline
from acmedryrun.errors import UsageError
from acmedryrun.preflight.identifiers import _problem
from acmedryrun.preflight.records import DnsAnswer
from acmedryrun.report import Problem, Severity

#: Seconds one DNS query may take (resent every second within it), capped by the deadline.
QUERY_LIFETIME = 3.0
#: CNAME hops followed before the chain counts as a loop.
MAX_CNAME_HOPS = 8


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


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NoAnswer(Exception):
    """The resolver gave no answer at all (timeout, port unreachable, network error)."""


def _text(name: dns.name.Name) -> str:
    """A name without the final dot, lowercased; the root is ``""``."""
    return name.to_text(omit_final_dot=True).lower().strip(".")


class DnsClient:
    """Plain queries to one resolver (or the system's), each bounded in time.

    Queries are sent directly (no cache) so a negative answer never outlives one
    poll.  The first time no resolver answers, :attr:`failure` is set and every
    later query fails at once: one dead resolver costs one lifetime, not one per name.
    """

    def __init__(self, resolver: tuple[str, int] | None, deadline: Deadline) -> None:
        self.deadline = deadline
        self.failure: str | None = None
        self._reported = False
        self._caa_cache: dict[str, DnsAnswer] = {}
        self._cache_lock = threading.Lock()
        if resolver is not None:
            self.servers = [resolver]
            self.label = hostport(*resolver)
            return
        try:
            system = dns.resolver.Resolver()
            self.servers = [(str(ns), int(system.port)) for ns in system.nameservers]
        except (dns.resolver.NoResolverConfiguration, OSError):
            self.servers = []
        listed = ", ".join(hostport(h, p) for h, p in self.servers) or "none configured"
        self.label = f"the system resolver ({listed})"

    def unreachable(self, skipped: str) -> list[Problem]:
        """The one warning for a resolver that did not answer (once a run; then empty)."""
        with self._cache_lock:
            first, self._reported = not self._reported, True
        if not first:
            return []
        return [_problem(
            "DnsResolverUnreachable", None, f"could not check DNS with {self.label}:"
            f" {self.failure}", "Point --dns-resolver at a resolver this machine can reach"
            f" (or fix /etc/resolv.conf). {skipped} skipped: only the CA's own validation"
            " speaks for these names.", Severity.WARNING)]

    def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask for ``rdtype`` at ``name``, following aliases the resolver did not chase.

        CAA answers are kept for the run: the tree climbs of many names in one order
        meet at the same parents (RFC 8659 section 3), which need asking only once.

        Raises:
            NoAnswer: no resolver answered.
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
            raise NoAnswer(self.failure)
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        errors: list[str] = []
        for host, port in self.servers:
            lifetime = min(QUERY_LIFETIME, self.deadline.remaining())
            where = f"{hostport(host, port)}: " if len(self.servers) > 1 else ""
            if lifetime < 0.05:
                errors.append("the run's deadline passed")
                break
            try:
                return _exchange(query, host, port, lifetime), hostport(host, port)
            except dns.exception.Timeout:
                errors.append(f"{where}no answer within {lifetime:.1f} s")
            except ConnectionRefusedError:
                errors.append(f"{where}nothing listens there (port unreachable)")
            except OSError as exc:
                errors.append(f"{where}{exc.strerror or exc}")
            except dns.exception.DNSException as exc:
                errors.append(f"{where}unusable answer ({exc})")
        self.failure = "; ".join(errors) or "no resolver is configured (/etc/resolv.conf)"
        raise NoAnswer(self.failure)


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
