"""Testing an ACME client's dry run in CI, offline, with acmedryrun's pytest fixtures.

With acmedryrun installed the fixtures need no import and no conftest.py (its
``pytest11`` entry point loads them); you need Debian's ``pebble`` package::

    apt-get install pebble
    pytest examples/pytest_fixture_test.py

``local_pebble`` is a real RFC 8555 CA on loopback whose DNS answers 127.0.0.1
for every name, ``fault_proxy`` makes it misbehave like a staging CA on a bad
day, and ``dry_run_local`` is ``acmedryrun.dry_run`` aimed at ``local_pebble``.
The last tests drive the ``--dry-run`` of the example client next to this file
(``client_backend.py``), as you would drive your own client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import client_backend  # examples/client_backend.py: pytest puts this directory on sys.path

import acmedryrun
from acmedryrun.testing import parse_fault

if TYPE_CHECKING:
    from acmedryrun.testing import FaultProxy, LocalPebble
    from acmedryrun.testing.pytest_plugin import DryRunLocal


def test_a_correct_setup_is_likely_to_succeed(dry_run_local: DryRunLocal) -> None:
    report = dry_run_local(["www.example.com", "example.com"])
    assert report.verdict is acmedryrun.Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert set(report.certificate.names) == {"www.example.com", "example.com"}


def test_an_a_record_pointing_nowhere_is_the_subscribers_fault(
    dry_run_local: DryRunLocal, local_pebble: LocalPebble
) -> None:
    local_pebble.add_a("old.example.com", ["127.0.0.2"])  # nothing listens there
    report = dry_run_local(["old.example.com"])
    assert report.verdict is acmedryrun.Verdict.CLIENT_ERROR
    assert report.prod_likely_to_succeed is False
    # Warnings (e.g. the local self-check could not reach 127.0.0.2 either) come
    # first; the decisive problem is the CA's own failed validation.
    decisive = [p for p in report.problems if p.severity.decisive]
    assert [(p.name, p.cause) for p in decisive] == [
        ("ValidationConnection", acmedryrun.Cause.CLIENT)]


def test_a_staging_outage_is_not_blamed_on_the_subscriber(
    dry_run_local: DryRunLocal, fault_proxy: FaultProxy
) -> None:
    # Retry-After beyond the deadline: acmedryrun gives up at once instead of waiting.
    fault_proxy.add_fault(parse_fault("order:status:503,retry_after=60"))
    report = dry_run_local(["www.example.com"], directory=fault_proxy.directory_url,
                           ca_bundle=fault_proxy.ca_bundle, timeout=10)
    assert report.verdict is acmedryrun.Verdict.STAGING_UNSTABLE
    assert report.prod_likely_to_succeed is None
    assert all(p.cause is acmedryrun.Cause.STAGING for p in report.problems
               if p.severity.decisive)


def test_a_survived_staging_hiccup_still_succeeds(
    dry_run_local: DryRunLocal, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add_fault(parse_fault("authz:html:502,count=1"))
    report = dry_run_local(["www.example.com"], directory=fault_proxy.directory_url,
                           ca_bundle=fault_proxy.ca_bundle)
    assert report.verdict is acmedryrun.Verdict.LIKELY_SUCCESS, report.problems
    assert report.retries[0].reason == "http_502"
    assert fault_proxy.hits("authz") >= 2


def _client_args(pebble: LocalPebble, directory: str, ca_bundle: str, *names: str) -> list[str]:
    args = ["--dry-run", "--server", directory, "--ca-bundle", ca_bundle,
            "--http-port", str(pebble.http_port), "--listen", "127.0.0.1",
            "--dns-resolver", pebble.dns_resolver, "--timeout", "10"]
    for name in names:
        args += ["-d", name]
    return args


def test_our_dry_run_exits_0_when_the_setup_works(local_pebble: LocalPebble) -> None:
    args = _client_args(local_pebble, local_pebble.directory_url, local_pebble.ca_bundle,
                        "www.example.com")
    assert client_backend.main(args) == 0


def test_our_dry_run_exits_2_when_staging_is_down(
    local_pebble: LocalPebble, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add_fault(parse_fault("order:status:503,retry_after=60"))
    args = _client_args(local_pebble, fault_proxy.directory_url, fault_proxy.ca_bundle,
                        "www.example.com")
    assert client_backend.main(args) == 2
