"""Test doubles for ACME client developers' own CI, which must not touch the network.

* :class:`LocalPebble` starts Let's Encrypt's test CA (Debian's ``pebble``) and its
  DNS/challenge test server on free loopback ports, with a generated TLS CA.
* :class:`FaultProxy` sits in front of any ACME directory and injects the faults
  staging is known for (5xx pages, resets, badNonce storms, lost responses, ...);
  :func:`parse_fault` reads the ``ENDPOINT:KIND[:ARG][,key=value...]`` specs.

Both are imported on first use, so the pytest plugin and ``import acmedryrun``
stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acmedryrun._lazy import lazy_getattr

if TYPE_CHECKING:
    from acmedryrun.testing._faultproxy import (
        Fault,
        FaultProxy,
        ProxyEvent,
        parse_fault,
        run_proxy,
    )
    from acmedryrun.testing._pebble import (
        LocalPebble,
        LocalPebbleError,
        PebbleNotInstalled,
        PebbleStartError,
    )
    from acmedryrun.testing.pytest_plugin import DryRunLocal

_LAZY = {
    "Fault": "acmedryrun.testing._faultproxy",
    "FaultProxy": "acmedryrun.testing._faultproxy",
    "ProxyEvent": "acmedryrun.testing._faultproxy",
    "parse_fault": "acmedryrun.testing._faultproxy",
    "run_proxy": "acmedryrun.testing._faultproxy",
    "LocalPebble": "acmedryrun.testing._pebble",
    "LocalPebbleError": "acmedryrun.testing._pebble",
    "DryRunLocal": "acmedryrun.testing.pytest_plugin",
    "PebbleNotInstalled": "acmedryrun.testing._pebble",
    "PebbleStartError": "acmedryrun.testing._pebble",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "DryRunLocal",
    "Fault",
    "FaultProxy",
    "LocalPebble",
    "LocalPebbleError",
    "PebbleNotInstalled",
    "PebbleStartError",
    "ProxyEvent",
    "parse_fault",
    "run_proxy",
]
