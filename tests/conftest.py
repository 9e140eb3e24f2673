"""Shared fixtures: one real Pebble for the suite, deterministic settings.

``PEBBLE_VA_NOSLEEP=1`` and ``PEBBLE_WFE_NONCEREJECT=0`` (LocalPebble's
defaults) keep the main suite deterministic; resilience tests start their own
Pebbles with other values on purpose.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import acmedryrun
import acmedryrun.api
import acmedryrun.retry
from acmedryrun.report import Report
from acmedryrun.schema import validate_report
from acmedryrun.solvers import HTTP01Standalone, Solver
from acmedryrun.testing import LocalPebble

_names = itertools.count(1)

# Every run in the suite stays on loopback: a test that forgets dns_resolver gets a
# closed loopback port (a preflight warning), never the machine's real resolver.
os.environ["ACMEDRYRUN_DNS_RESOLVER"] = "127.0.0.1:9"
# Retry backoff off (stamina's set_testing): retries still happen and are recorded, but
# waiting between them proves nothing here.  Tests of the waits turn it back on.
acmedryrun.retry.set_testing(True)


@pytest.fixture(autouse=True)
def _every_report_matches_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever calls dry_run() in a test (directly, via batch, via an example run in
    process), its report is validated against the shipped JSON Schema."""
    real = acmedryrun.api.run_options

    def checked(*args: Any, **kwargs: Any) -> Report:
        report = real(*args, **kwargs)
        validate_report(report.to_dict())
        return report

    monkeypatch.setattr(acmedryrun.api, "run_options", checked)


@pytest.fixture(scope="session")
def pebble() -> Iterator[LocalPebble]:
    """The suite's Pebble: no nonce rejection, no validation sleep, no authz reuse."""
    with LocalPebble() as p:
        yield p


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses (so authorizations and DNS records never collide)."""
    return f"t{next(_names)}-{os.getpid()}.example.com"


def http_solver(p: LocalPebble) -> HTTP01Standalone:
    """The standalone http-01 responder where this Pebble's VA connects."""
    return HTTP01Standalone(port=p.http_port, address="127.0.0.1")


def run(p: LocalPebble, names: Sequence[str], solver: Solver | None = None,
        **kwargs: Any) -> Report:
    """One dry run against ``p`` with the suite's defaults."""
    kwargs.setdefault("timeout", 60)
    kwargs.setdefault("dns_resolver", p.dns_resolver)
    return acmedryrun.dry_run(list(names), directory=p.directory_url, ca_bundle=p.ca_bundle,
                              solver=solver or http_solver(p), **kwargs)


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (``python -m acmedryrun``)."""
    return subprocess.run(
        [sys.executable, "-m", "acmedryrun", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
        cwd=cwd, check=False,
    )


def cli_check(
    p: LocalPebble, *names: str, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """``acmedryrun check --json`` against ``p`` with the standalone responder."""
    args = ["check", "--directory", p.directory_url, "--ca-bundle", p.ca_bundle,
            "--http-01-port", str(p.http_port), "--http-01-address", "127.0.0.1",
            "--dns-resolver", p.dns_resolver, "--timeout", "60", "--json"]
    for n in names:
        args += ["-d", n]
    return cli(*args, *extra)


def report_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report a ``--json`` run printed on stdout."""
    data: dict[str, Any] = json.loads(proc.stdout)
    validate_report(data)  # the CLI's JSON matches the shipped schema in every test
    return data
