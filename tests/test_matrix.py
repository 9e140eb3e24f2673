"""The end-to-end matrix: the same cases, the same verdicts, against two independent CAs.

Pebble (``pebble`` fixture, tests/conftest.py) and acme2certifier 0.46.3 (``a2c``
fixture, tests/a2c.py) implement RFC 8555 differently: Pebble validates after the
challenge POST and turns the order ``invalid`` with an ``error`` on the challenge;
acme2certifier validates *inside* the challenge POST, answers ``"status":
"invalid"`` there without any ``error`` object, marks the authorization invalid and
leaves the order ``pending`` for good.  A verdict must not depend on which of the
two a subscriber's CA resembles, so every case below expects one verdict for both.

Client faults run with ``preflight=False`` so the verdict comes from the CA's
answer, not from this machine's own self-check, and must arrive within seconds of
that answer (``FAST``), far inside the run's ``timeout``.

``both(a2c=[...], pebble=[...])`` takes marks for either CA, for a case one of them
cannot run (none today).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from a2c import LocalA2C, unused_loopback_address

import acmedryrun
from acmedryrun import Verdict
from acmedryrun.report import Cause, Confidence, Report, Step
from acmedryrun.solvers import (
    Challenge,
    DNS01Callback,
    HTTP01Standalone,
    Solver,
    TLSALPN01Standalone,
)
from acmedryrun.testing import LocalPebble

pytest_plugins = ["a2c_fixtures"]

#: acme2certifier refuses newAccount without a contact ("malformed: Contact
#: information is missing"); Pebble takes one too, so every run sends it.
EMAIL = "admin@example.com"
#: The deadline of runs whose verdict should come at once, and how soon it must come.
TIMEOUT = 8.0
FAST = 3.0

_serial = itertools.count(1)

@dataclass(frozen=True, slots=True)
class Target:
    """One CA under test, reduced to what the matrix needs of it."""

    name: str
    directory_url: str
    ca_bundle: str
    dns_resolver: str
    http_address: str
    http_port: int
    tls_address: str
    tls_port: int
    add_a: Callable[[str, Sequence[str]], None]
    set_txt: Callable[[str, str], None]
    clear_txt: Callable[[str], None]

    def http_solver(self) -> HTTP01Standalone:
        """The standalone http-01 responder where this CA's validation connects."""
        return HTTP01Standalone(port=self.http_port, address=self.http_address)

    def dns_solver(self) -> DNS01Callback:
        """dns-01 through this CA's own DNS server."""
        return DNS01Callback(self.set_txt, lambda name, _value: self.clear_txt(name))

    def run(self, names: Sequence[str], solver: Solver | None = None, **kwargs: Any) -> Report:
        """One dry run with the matrix's defaults."""
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("email", EMAIL)
        return acmedryrun.dry_run(
            list(names), directory=self.directory_url, ca_bundle=self.ca_bundle,
            dns_resolver=self.dns_resolver, solver=solver or self.http_solver(), **kwargs)


def target(ca: LocalPebble | LocalA2C, ca_bundle: str | None = None) -> Target:
    """Adapt a running LocalPebble or LocalA2C."""
    if isinstance(ca, LocalA2C):
        return Target("a2c", ca.directory_url, ca_bundle or ca.ca_bundle, ca.dns_resolver,
                      ca.http_address, ca.http_port, ca.tls_address, ca.tls_port,
                      ca.add_a, ca.set_txt, ca.clear_txt)
    # Pebble's VA dials challtestsrv's default A answer, 127.0.0.1, on its own ports.
    return Target("pebble", ca.directory_url, ca_bundle or ca.ca_bundle, ca.dns_resolver,
                  "127.0.0.1", ca.http_port, "127.0.0.1", ca.tls_port,
                  ca.add_a, ca.set_txt, ca.clear_txt)


@pytest.fixture(params=["pebble", "a2c"])
def ca(request: pytest.FixtureRequest) -> Target:
    """The suite's Pebble or its acme2certifier (both session-scoped)."""
    return target(request.getfixturevalue(request.param))


def both(*, a2c: Sequence[pytest.MarkDecorator] = (),
         pebble: Sequence[pytest.MarkDecorator] = ()) -> pytest.MarkDecorator:
    """Parametrize ``ca`` over both CAs, with marks (a known bug) on either."""
    return pytest.mark.parametrize("ca", [pytest.param("pebble", marks=list(pebble)),
                                          pytest.param("a2c", marks=list(a2c))],
                                   indirect=True)


@pytest.fixture
def name() -> str:
    """A name no other test uses (authorizations and DNS records never collide)."""
    return f"m{next(_serial)}-{os.getpid()}.example.com"


def client_fault(report: Report, identifier: str) -> None:
    """A client_error about ``identifier``'s validation, reported at once."""
    assert report.verdict is Verdict.CLIENT_ERROR, report.problems
    decisive = [p for p in report.problems if p.severity.decisive]
    assert decisive, report.problems
    assert all(p.cause is Cause.CLIENT for p in decisive), decisive
    assert any(p.identifier == identifier and p.step is Step.CHALLENGE for p in decisive)
    assert report.duration_s < FAST, f"took {report.duration_s:.1f} s of {TIMEOUT:g} s"


# ------------------------------------------------------------------------ solvers


class WrongKeyAuthorization(HTTP01Standalone):
    """An http-01 responder that serves the key authorization of some other account key."""

    def perform(self, challenge: Challenge) -> None:
        wrong = f"{challenge.token}.{'A' * 43}"  # a well-formed thumbprint, not ours
        super().perform(dataclasses.replace(challenge, key_authorization=wrong))


class StopsTheCA(Solver):
    """Answers http-01 through ``inner``, but first stops the CA: an outage in mid-run."""

    challenge_type: ClassVar[str] = "http-01"

    def __init__(self, inner: HTTP01Standalone, stop_ca: Callable[[], None]) -> None:
        self.inner = inner
        self.stop_ca = stop_ca
        self.stopped = False

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def perform(self, challenge: Challenge) -> None:
        if not self.stopped:
            self.stopped = True
            self.stop_ca()
        self.inner.perform(challenge)

    def cleanup(self, challenge: Challenge) -> None:
        self.inner.cleanup(challenge)


def _no_txt(_name: str, _value: str) -> None:
    """A DNS provider hook that reports success and publishes nothing."""


# ------------------------------------------------------------------------ healthy


def test_one_name_is_issued(ca: Target, name: str) -> None:
    """A correct http-01 setup for one name: likely_success with the certificate."""
    report = ca.run([name])
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert report.certificate.names == (name,)


def test_several_names_are_issued(ca: Target, name: str) -> None:
    """Three names, one order, all validated over http-01."""
    names = [name, f"www.{name}", f"api.{name}"]
    report = ca.run(names)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert sorted(report.certificate.names) == sorted(names)


def test_wildcard_over_dns01(ca: Target, name: str) -> None:
    """``*.name`` plus ``name`` over dns-01: two TXT values at one owner name."""
    report = ca.run([f"*.{name}", name], solver=ca.dns_solver())
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert sorted(report.certificate.names) == sorted([f"*.{name}", name])


def test_tls_alpn01(ca: Target, name: str) -> None:
    """tls-alpn-01 (RFC 8737) with the built-in responder."""
    solver = TLSALPN01Standalone(port=ca.tls_port, address=ca.tls_address)
    report = ca.run([name, f"www.{name}"], solver=solver)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems


@pytest.mark.parametrize("key_type", ["ec256", "ec384", "rsa2048"])
def test_key_types(ca: Target, name: str, key_type: str) -> None:
    """Each certificate key type is issued, and the report says which it got."""
    report = ca.run([name], key_type=key_type)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert report.certificate.key_type == key_type


def test_account_is_reused(ca: Target, name: str, tmp_path: Path) -> None:
    """The same account key file twice: the second run finds the first run's account."""
    key = tmp_path / "account.pem"
    first = ca.run([name], account_key=key)
    second = ca.run([f"www.{name}"], account_key=key)
    assert first.verdict is Verdict.LIKELY_SUCCESS, first.problems
    assert second.verdict is Verdict.LIKELY_SUCCESS, second.problems
    assert first.account_url is not None
    assert second.account_url == first.account_url


# ------------------------------------------------------------------- client faults


@both()
def test_dead_address_is_client_error(ca: Target, name: str) -> None:
    """The name points at an address where nothing listens: the CA cannot connect."""
    ca.add_a(name, [unused_loopback_address(ca.http_port)])
    report = ca.run([name], preflight=False, timeout=TIMEOUT)
    client_fault(report, name)


@both()
def test_wrong_key_authorization_is_client_error(ca: Target, name: str) -> None:
    """The web server answers http-01 with another key's authorization."""
    solver = WrongKeyAuthorization(port=ca.http_port, address=ca.http_address)
    report = ca.run([name], solver=solver, preflight=False, timeout=TIMEOUT)
    client_fault(report, name)


@both()
def test_wrong_key_authorization_with_preflight_is_prompt(ca: Target, name: str) -> None:
    """As above, with the default preflight: its self-check sees the wrong content too,
    the CA's refusal still ends the run at once, and the two agreeing make it certain
    (TAXONOMY: high confidence when the self-check failed the same way)."""
    solver = WrongKeyAuthorization(port=ca.http_port, address=ca.http_address)
    report = ca.run([name], solver=solver, timeout=TIMEOUT)
    client_fault(report, name)
    assert all(p.confidence is Confidence.HIGH for p in report.problems if p.severity.decisive)


@both()
def test_missing_txt_is_client_error(ca: Target, name: str) -> None:
    """A DNS hook that claims success but publishes no TXT record."""
    report = ca.run([name], solver=DNS01Callback(_no_txt, _no_txt), preflight=False,
                    timeout=TIMEOUT)
    client_fault(report, name)


# ---------------------------------------------------------------------------- EAB

EAB_KID = "kid-matrix"
EAB_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
OTHER_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@pytest.fixture(scope="module", params=["pebble", "a2c"])
def eab_ca(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A CA of either kind that requires an external account binding (RFC 8555 7.3.4)."""
    instance: LocalPebble | LocalA2C
    if request.param == "pebble":
        instance = LocalPebble(eab_keys={EAB_KID: EAB_KEY}, eab_required=True)
    else:
        instance = LocalA2C(eab_keys={EAB_KID: EAB_KEY})
    with instance:
        yield target(instance)


def test_eab_right_key_is_issued(eab_ca: Target, name: str) -> None:
    """The kid and HMAC key the CA gave out: the account is created and the run succeeds."""
    report = eab_ca.run([name], eab=(EAB_KID, EAB_KEY))
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems


def test_eab_wrong_key_is_client_error(eab_ca: Target, name: str) -> None:
    """A wrong HMAC key for the kid: the account is refused, the subscriber's fault."""
    report = eab_ca.run([name], eab=(EAB_KID, OTHER_KEY))
    assert report.verdict is Verdict.CLIENT_ERROR, report.problems
    assert [p.step for p in report.problems if p.severity.decisive] == [Step.ACCOUNT]


def test_eab_missing_is_client_error(eab_ca: Target, name: str) -> None:
    """No binding at a CA that requires one: the account is refused."""
    report = eab_ca.run([name])
    assert report.verdict is Verdict.CLIENT_ERROR, report.problems
    assert [p.step for p in report.problems if p.severity.decisive] == [Step.ACCOUNT]


# ------------------------------------------------------------------------- outage


@pytest.mark.parametrize("kind", ["pebble", "a2c"])
def test_ca_stopped_mid_run_is_staging_unstable(kind: str, name: str, tmp_path: Path) -> None:
    """The CA goes away after the order is placed: staging's fault, never the client's."""
    instance: LocalPebble | LocalA2C = LocalPebble() if kind == "pebble" else LocalA2C()
    with instance:
        # LocalPebble.stop() deletes its trust anchor; the run keeps its own copy.
        bundle = str(shutil.copy(instance.ca_bundle, tmp_path / "ca.pem"))
        ca = target(instance, ca_bundle=bundle)
        stop = instance.stop if isinstance(instance, LocalPebble) else instance.stop_server
        solver = StopsTheCA(ca.http_solver(), stop)
        report = ca.run([name], solver=solver, timeout=5)
    assert solver.stopped
    assert report.verdict is Verdict.STAGING_UNSTABLE, report.problems
    decisive = [p for p in report.problems if p.severity.decisive]
    assert decisive
    assert all(p.cause is Cause.STAGING for p in decisive)
