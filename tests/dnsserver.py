"""A tiny authoritative DNS server on 127.0.0.1 for the preflight tests.

pebble-challtestsrv answers every A query with its default address and never
says NXDOMAIN, so the cases that need a name to be missing (NXDOMAIN, no address,
a dangling CNAME, an unknown critical CAA tag) are served by this one instead:
dnspython's message parsing over a UDP socket, in a thread.

Zone semantics, kept close to a real authoritative server:

* a name with records answers them; a CNAME is answered for any other type and,
  when its target lies in the zone, chased within the answer (RFC 1034 section
  4.3.2 step 3a) — so an in-zone alias to nothing is NXDOMAIN with the CNAME, and
  an alias out of the zone is answered without chasing;
* the apex, empty non-terminals and ancestors of the zone answer NOERROR, no data;
* any other name is NXDOMAIN, with the SOA of the zone (or the root, outside it).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class TinyDns:
    """Serve ``records`` for ``zone`` on a free UDP port of 127.0.0.1.

    Args:
        records: name -> [(type, rdata text)], e.g. ``{"a.example.com": [("A",
            "127.0.0.1")], "c.example.com": [("CNAME", "a.example.com.")]}``.
        zone: The zone this server is authoritative for.
        servfail: Names answered with SERVFAIL, whatever the type.
    """

    def __init__(self, records: Mapping[str, Sequence[tuple[str, str]]] | None = None, *,
                 zone: str = "example.com", servfail: Iterable[str] = ()) -> None:
        self.zone = zone.lower().rstrip(".")
        self.records = {k.lower().rstrip("."): list(v) for k, v in (records or {}).items()}
        self.servfail = {n.lower().rstrip(".") for n in servfail}
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tiny-dns", daemon=True)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, for ``dns_resolver=``."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TinyDns:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except Exception:  # noqa: BLE001, S112 - a garbage packet is dropped, as servers do
                continue
            try:
                self._sock.sendto(self.answer(query).to_wire(), peer)
            except OSError:
                return

    def _in_zone(self, name: str) -> bool:
        return name == self.zone or name.endswith("." + self.zone)

    def _exists(self, name: str) -> bool:
        """The name has records, or is the apex, an empty non-terminal or a zone ancestor."""
        return (name in self.records or name == self.zone
                or self.zone.endswith("." + name)
                or any(k.endswith("." + name) for k in self.records))

    def _soa(self, name: str) -> dns.rrset.RRset:
        zone = self.zone if self._in_zone(name) else ""
        owner = dns.name.from_text(zone) if zone else dns.name.root
        return dns.rrset.from_text(owner, 60, "IN", "SOA",
                                   f"ns.{zone or 'root'}. hostmaster.{zone or 'root'}."
                                   " 1 3600 600 86400 60")

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The response to ``query`` (see the module docstring)."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        question = query.question[0]
        qtype = question.rdtype
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append((name, dns.rdatatype.to_text(qtype)))
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        for _ in range(8):
            recs = self.records.get(name)
            if recs is None:
                if not self._exists(name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._soa(name))
                return response
            aliases = [r for r in recs if r[0].upper() == "CNAME"]
            if aliases and qtype != dns.rdatatype.CNAME:
                response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "CNAME",
                                                           aliases[0][1]))
                target = aliases[0][1].lower().rstrip(".")
                if not self._in_zone(target):
                    return response  # not ours to chase: the resolver asks again
                name = target
                continue
            matching = [text for rtype, text in recs
                        if dns.rdatatype.from_text(rtype) == qtype]
            if matching:
                response.answer.append(dns.rrset.from_text_list(
                    name + ".", 60, "IN", dns.rdatatype.to_text(qtype), matching))
            else:
                response.authority.append(self._soa(name))
            return response
        return response


class BlackHole:
    """A UDP port that receives and never answers: a resolver that times out."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def closed_udp_port() -> int:
    """A UDP port on 127.0.0.1 nothing listens on (ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


__all__ = ["BlackHole", "TinyDns", "closed_udp_port"]
