"""challtestsrv's DNS mocks, for every local CA that resolves through it.

``pebble-challtestsrv`` (Debian's ``pebble`` package) answers DNS from records set over
its management API.  :class:`ChallTestSrvRecords` is that API as methods; a class that
runs a challtestsrv mixes it in and supplies ``_challtestsrv_post``
(:class:`~acmedryrun.testing.LocalPebble`, and the suite's acme2certifier harness).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ChallTestSrvRecords", "fqdn"]


def fqdn(host: str) -> str:
    """Lower-case ``host`` and give it the trailing dot challtestsrv keys TXT records on.

    challtestsrv 2.4.0 normalises A/AAAA/CAA/CNAME/SERVFAIL hosts itself but
    stores TXT records under the name exactly as given, and DNS questions
    always carry the trailing dot, so a TXT record set without it never
    matches.  Adding it everywhere keeps every helper consistent.
    """
    host = host.strip()
    if not host or host == ".":
        raise ValueError("host must be a non-empty DNS name")
    host = host.lower()
    return host if host.endswith(".") else host + "."


def _str_list(values: Sequence[str], name: str) -> list[str]:
    """Copy a non-empty sequence of strings, rejecting a bare string."""
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of strings, not a string")
    result = [str(v) for v in values]
    if not result:
        raise ValueError(f"{name} must not be empty")
    return result


class ChallTestSrvRecords:
    """The DNS helpers over challtestsrv's management API (a mixin)."""

    def _challtestsrv_post(self, endpoint: str, payload: Mapping[str, Any]) -> None:
        """POST ``payload`` to challtestsrv's ``endpoint``; raise unless it answers 2xx."""
        raise NotImplementedError

    def add_a(self, host: str, addresses: Sequence[str]) -> None:
        """Answer A queries for ``host`` with ``addresses`` (replaces earlier mocks)."""
        self._challtestsrv_post(
            "add-a", {"host": fqdn(host), "addresses": _str_list(addresses, "addresses")}
        )

    def clear_a(self, host: str) -> None:
        """Remove the A mock for ``host``; it falls back to ``default_ipv4``."""
        self._challtestsrv_post("clear-a", {"host": fqdn(host)})

    def add_aaaa(self, host: str, addresses: Sequence[str]) -> None:
        """Answer AAAA queries for ``host`` with ``addresses``."""
        self._challtestsrv_post(
            "add-aaaa", {"host": fqdn(host), "addresses": _str_list(addresses, "addresses")}
        )

    def clear_aaaa(self, host: str) -> None:
        """Remove the AAAA mock for ``host``."""
        self._challtestsrv_post("clear-aaaa", {"host": fqdn(host)})

    def add_caa(
        self, host: str, policies: Sequence[tuple[str, str]] | Sequence[Mapping[str, str]]
    ) -> None:
        """Answer CAA queries for ``host`` with ``policies``.

        Each policy is ``(tag, value)`` or ``{"tag": ..., "value": ...}``, e.g.
        ``("issue", "other-ca.example")``.  challtestsrv always sends flag 0.
        """
        normalized: list[dict[str, str]] = []
        for policy in policies:
            if isinstance(policy, Mapping):
                tag, value = str(policy["tag"]), str(policy["value"])
            else:
                tag, value = str(policy[0]), str(policy[1])
            normalized.append({"tag": tag, "value": value})
        if not normalized:
            raise ValueError("add_caa needs at least one policy; use clear_caa to remove")
        self._challtestsrv_post("add-caa", {"host": fqdn(host), "policies": normalized})

    def clear_caa(self, host: str) -> None:
        """Remove the CAA mock for ``host``."""
        self._challtestsrv_post("clear-caa", {"host": fqdn(host)})

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT record ``value`` at ``host`` (e.g. ``_acme-challenge.example.com``).

        Like challtestsrv's ``/set-txt``, repeated calls *add* values, which a
        wildcard plus base-domain order needs; `clear_txt` removes them all.
        """
        self._challtestsrv_post("set-txt", {"host": fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove every TXT value at ``host``."""
        self._challtestsrv_post("clear-txt", {"host": fqdn(host)})

    def set_servfail(self, host: str) -> None:
        """Make every query for ``host`` answer SERVFAIL, overriding other mocks."""
        self._challtestsrv_post("set-servfail", {"host": fqdn(host)})

    def clear_servfail(self, host: str) -> None:
        """Undo `set_servfail` for ``host``."""
        self._challtestsrv_post("clear-servfail", {"host": fqdn(host)})

    def set_cname(self, host: str, target: str) -> None:
        """Alias ``host`` to ``target``: queries answer with a CNAME plus target's records."""
        self._challtestsrv_post("set-cname", {"host": fqdn(host), "target": fqdn(target)})

    def clear_cname(self, host: str) -> None:
        """Remove the CNAME mock for ``host``."""
        self._challtestsrv_post("clear-cname", {"host": fqdn(host)})

    def set_default_ipv4(self, ip: str) -> None:
        """Change the address unmocked A queries answer with ("" disables A answers)."""
        if ip:
            ipaddress.IPv4Address(ip)
        self._challtestsrv_post("set-default-ipv4", {"ip": ip})

    def set_default_ipv6(self, ip: str) -> None:
        """Change the address unmocked AAAA queries answer with ("" disables, the default)."""
        if ip:
            ipaddress.IPv6Address(ip)
        self._challtestsrv_post("set-default-ipv6", {"ip": ip})
