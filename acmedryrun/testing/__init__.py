"""Test doubles for ACME client developers' own CI, which must not touch the network.

* :class:`LocalPebble` starts Let's Encrypt's test CA (Debian's ``pebble``) and its
  DNS/challenge test server on free loopback ports, with a generated TLS CA.
* :class:`FaultProxy` sits in front of any ACME directory and injects the faults
  staging is known for (5xx pages, resets, badNonce storms, lost responses, ...).
"""

from __future__ import annotations

from acmedryrun.testing._pebble import LocalPebble, PebbleNotInstalled, PebbleStartError

__all__ = ["LocalPebble", "PebbleNotInstalled", "PebbleStartError"]
