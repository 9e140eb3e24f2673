"""LocalA2C itself: it starts, answers, resolves, survives an outage, and leaves nothing behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
import requests
from a2c import A2CNotInstalled, LocalA2C
from cryptography import x509

import acmedryrun
from acmedryrun import Verdict
from acmedryrun.solvers import HTTP01Standalone

pytest_plugins = ["a2c_fixtures"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _get_directory(ca: LocalA2C) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(ca.directory_url, verify=ca.ca_bundle, timeout=5)


def _ask(ca: LocalA2C, name: str, rdtype: str) -> list[str]:
    """The answer acme2certifier's resolver gets from the instance's DNS server."""
    reply = dns.query.udp(dns.message.make_query(name, rdtype), ca.dns_address,
                          port=ca.dns_port, timeout=2)
    return [rd.to_text() for rrset in reply.answer for rd in rrset
            if rrset.rdtype == dns.rdatatype.from_text(rdtype)]


def test_missing_virtualenv_names_the_install_command(tmp_path: Path) -> None:
    """No acme2certifier interpreter: a clear error before anything is started."""
    with pytest.raises(A2CNotInstalled, match="scripts/install-a2c"):
        LocalA2C(python=str(tmp_path / "no-python")).start()


def test_python_without_acme2certifier_is_not_installed() -> None:
    """An interpreter that lacks the package (ours) is refused with the version it needs."""
    with pytest.raises(A2CNotInstalled, match=r"no acme2certifier.*0\.46\.3"):
        LocalA2C(python=sys.executable).start()


def test_directory_dns_and_cleanup() -> None:
    """A fresh instance serves its directory over the generated TLS CA, answers DNS,
    issues without a contact when told to, and stop() ends both processes and
    deletes its files."""
    ca = LocalA2C(require_contact=False)
    with ca:
        pids, tmpdir = ca.pids, ca.tmpdir
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
        assert "newNonce" in _get_directory(ca).json()
        assert _ask(ca, "any.example.com", "A") == [ca.http_address]
        ca.add_a("moved.example.com", ["127.0.0.2"])
        assert _ask(ca, "moved.example.com", "A") == ["127.0.0.2"]
        ca.set_txt("_acme-challenge.x.example.com", "one")
        ca.set_txt("_acme-challenge.x.example.com", "two")
        assert sorted(_ask(ca, "_acme-challenge.x.example.com", "TXT")) == ['"one"', '"two"']
        ca.clear_txt("_acme-challenge.x.example.com")
        assert _ask(ca, "_acme-challenge.x.example.com", "TXT") == []
        report = acmedryrun.dry_run(
            ["nocontact.example.com"], directory=ca.directory_url, ca_bundle=ca.ca_bundle,
            dns_resolver=ca.dns_resolver, timeout=30,
            solver=HTTP01Standalone(port=ca.http_port, address=ca.http_address))
        assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
        issuer = x509.load_pem_x509_certificate(Path(ca.issuer_cert).read_bytes())
        assert report.certificate is not None
        assert report.certificate.issuer == issuer.subject.rfc4514_string()
        assert report.certificate.chain_length == 2
    assert not ca.running
    assert not any(_alive(pid) for pid in pids)
    assert not Path(tmpdir).exists()
    assert "a2c-server listening" in ca.logs()
    ca.stop()  # a second stop is harmless


def test_a_contact_is_required_by_default(a2c: LocalA2C) -> None:
    """acme2certifier's default: no contact e-mail, no account (``malformed``, 400)."""
    report = acmedryrun.dry_run(
        ["contact.example.com"], directory=a2c.directory_url, ca_bundle=a2c.ca_bundle,
        dns_resolver=a2c.dns_resolver, timeout=30,
        solver=HTTP01Standalone(port=a2c.http_port, address=a2c.http_address))
    assert report.verdict is Verdict.CLIENT_ERROR
    (problem,) = report.problems
    assert problem.acme_type == "urn:ietf:params:acme:error:malformed"
    assert problem.http_status == 400
    assert problem.detail == "Contact information is missing"


def test_server_outage_and_return_keep_the_accounts(a2c: LocalA2C, tmp_path: Path) -> None:
    """stop_server() refuses connections; start_server() brings back the same CA, whose
    database still knows an account made before the outage."""
    key = tmp_path / "account.pem"

    def run(name: str) -> acmedryrun.Report:
        return acmedryrun.dry_run(
            [name], directory=a2c.directory_url, ca_bundle=a2c.ca_bundle,
            dns_resolver=a2c.dns_resolver, timeout=30, email="admin@example.com",
            account_key=key,
            solver=HTTP01Standalone(port=a2c.http_port, address=a2c.http_address))

    before = run("before-outage.example.com")
    a2c.stop_server()
    try:
        assert not a2c.server_running
        with pytest.raises(requests.ConnectionError):
            _get_directory(a2c)
        assert _ask(a2c, "still.example.com", "A") == [a2c.http_address]  # DNS stays up
    finally:
        a2c.start_server()
    assert a2c.server_running
    after = run("after-outage.example.com")
    assert before.verdict is after.verdict is Verdict.LIKELY_SUCCESS, after.problems
    assert after.account_url == before.account_url
