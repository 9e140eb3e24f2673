"""The Public Suffix List (https://publicsuffix.org/list/), through ``publicsuffixlist``.

Shared by the preflight identifier rules (Boulder refuses a name that is an ICANN
suffix) and the rate-limit estimates (a certificate counts against its registered
domain).  The package ships the whole list; it is loaded on first use (about 30 ms),
only on the paths that need it.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList


@functools.cache
def _lists() -> tuple[PublicSuffixList, PublicSuffixList]:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(only_icann=True), PublicSuffixList()


def _clean(name: str) -> str:
    return name.strip().lower().rstrip(".").removeprefix("*.")


def is_icann_suffix(name: str) -> bool:
    """True when ``name`` is itself a suffix of the list's ICANN section (``co.uk``)."""
    name = _clean(name)
    icann, _ = _lists()
    return "." in name and icann.publicsuffix(name, accept_unknown=False) == name


def is_private_suffix(name: str) -> bool:
    """True when ``name`` is a suffix of the list's private section (``github.io``)."""
    name = _clean(name)
    icann, full = _lists()
    return (full.publicsuffix(name, accept_unknown=False) == name
            and icann.publicsuffix(name, accept_unknown=False) != name)


def registered_domain(name: str) -> str:
    """The registered domain a name counts against for rate limits.

    Let's Encrypt counts by the registrable domain of the whole list (private
    section included: ``me.github.io`` is its own).  A wildcard counts as its base
    name; a name that is itself a suffix counts as itself.  An IPv4 address is its
    own registered domain and an IPv6 address counts as its /64, as Let's Encrypt's
    rate-limit page says.
    """
    name = _clean(name)
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)
    _, full = _lists()
    return full.privatesuffix(name) or name
