"""pytest fixtures for testing an ACME client against a local Pebble, offline.

Installed with acmedryrun as the ``pytest11`` entry point ``acmedryrun``, so the
fixtures are available in any test suite without an import.  Disable them with
``-p no:acmedryrun``; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, load them with
``-p acmedryrun``.  (``-p acmedryrun.testing.pytest_plugin`` works only while
autoloading is off or acmedryrun is not installed: pluggy refuses one module
registered under two names.)

``local_pebble``
    One :class:`~acmedryrun.testing.LocalPebble` for the whole session, with the
    deterministic defaults: no badNonce rejection, no validation sleep, no
    authorization reuse.  Every name resolves to 127.0.0.1 through its DNS
    (``local_pebble.dns_resolver``); programme others with ``add_a``, ``set_txt``,
    ``add_caa``...  Skipped when Debian's ``pebble`` package is missing, unless
    the ``CI`` environment variable is set: CI must not go green by skipping.
``fault_proxy``
    A fresh :class:`~acmedryrun.testing.FaultProxy` in front of ``local_pebble``
    for each test, seeded for reproducible probabilities and with no faults armed:
    ``fault_proxy.add_fault(parse_fault("order:status:503,count=2"))`` (with
    ``from acmedryrun.testing import parse_fault``).  Point
    the client under test at ``fault_proxy.directory_url`` and trust
    ``fault_proxy.ca_bundle``.
``dry_run_local``
    :func:`acmedryrun.dry_run` with everything pointed at ``local_pebble``:
    ``dry_run_local(["www.example.com"])`` returns the report.  Any keyword
    overrides a default, e.g. ``directory=fault_proxy.directory_url,
    ca_bundle=fault_proxy.ca_bundle`` to go through the proxy.

pytest loads this module for every run of every suite in an environment where
acmedryrun is installed, so it imports nothing heavy: Pebble, the proxy and
acmedryrun itself are imported inside the fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from acmedryrun.report import Report
    from acmedryrun.testing._faultproxy import FaultProxy
    from acmedryrun.testing._pebble import LocalPebble

__all__ = ["DryRunLocal", "dry_run_local", "fault_proxy", "local_pebble"]

#: Seconds ``dry_run_local`` allows a run by default: Pebble answers in well under
#: one, so a run that takes this long is hung, not slow.
DEFAULT_TIMEOUT = 60.0

#: Seed of ``fault_proxy``'s probability draws, so ``probability=0.3`` faults
#: fire on the same requests in every run.
FAULT_PROXY_SEED = 0


class DryRunLocal(Protocol):
    """The type of the ``dry_run_local`` fixture, for annotating tests."""

    def __call__(self, identifiers: Sequence[str], **options: Any) -> Report:
        """Run :func:`acmedryrun.dry_run` against ``local_pebble``; options override defaults."""


@pytest.fixture(scope="session")
def local_pebble() -> Iterator[LocalPebble]:
    """A Pebble + mock DNS on loopback for the session, deterministic settings."""
    from acmedryrun.testing._pebble import LocalPebble, PebbleNotInstalled

    pebble = LocalPebble(nonce_reject=0, va_nosleep=True, authz_reuse=0)
    try:
        pebble.start()
    except PebbleNotInstalled as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield pebble
    finally:
        pebble.stop()


@pytest.fixture
def fault_proxy(local_pebble: LocalPebble) -> Iterator[FaultProxy]:
    """A FaultProxy in front of ``local_pebble``, no faults armed, fresh for each test."""
    from acmedryrun.testing._faultproxy import FaultProxy

    with FaultProxy(local_pebble.directory_url, upstream_ca_bundle=local_pebble.ca_bundle,
                    seed=FAULT_PROXY_SEED) as proxy:
        yield proxy


@pytest.fixture
def dry_run_local(local_pebble: LocalPebble) -> DryRunLocal:
    """``acmedryrun.dry_run`` pointed at ``local_pebble``.

    Defaults: ``directory`` and ``ca_bundle`` of the Pebble, its DNS as
    ``dns_resolver``, a standalone http-01 responder on 127.0.0.1 at the port
    Pebble validates (``local_pebble.http_port``), and a 60 s ``timeout``.
    Passing ``directory`` without ``ca_bundle`` drops the Pebble's bundle too,
    since it would not be the right trust anchor for another server.
    """
    import acmedryrun
    from acmedryrun.solvers import HTTP01Standalone

    def run(identifiers: Sequence[str], **options: Any) -> Report:
        if "directory" not in options:
            options["directory"] = local_pebble.directory_url
            options.setdefault("ca_bundle", local_pebble.ca_bundle)
        options.setdefault("dns_resolver", local_pebble.dns_resolver)
        options.setdefault("timeout", DEFAULT_TIMEOUT)
        if options.get("solver") is None:
            options["solver"] = HTTP01Standalone(port=local_pebble.http_port,
                                                 address="127.0.0.1")
        return acmedryrun.dry_run(list(identifiers), **options)

    return run
