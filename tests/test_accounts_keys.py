"""Accounts, keys, CSRs and profiles against a real Pebble (issue 5)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli, cli_check, report_json, run
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import acmedryrun
from acmedryrun import Cause, UsageError, Verdict
from acmedryrun.testing import Fault, FaultProxy, LocalPebble, parse_fault

EAB_KID = "kid-1"
EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
WRONG_KEY = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH"


@pytest.fixture(scope="module")
def eab_pebble() -> Iterator[LocalPebble]:
    """A Pebble that requires external account binding, like many commercial CAs."""
    with LocalPebble(eab_required=True, eab_keys={EAB_KID: EAB_KEY, "kid-2": WRONG_KEY}) as p:
        yield p


def fatal(report: acmedryrun.Report) -> acmedryrun.Problem:
    return next(p for p in report.problems if p.severity.decisive)


def test_eab_with_the_right_kid_and_key_succeeds(eab_pebble: LocalPebble) -> None:
    report = run(eab_pebble, ["eab.example.com"], eab=(EAB_KID, EAB_KEY))
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert EAB_KEY not in report.to_json()


def test_without_eab_a_ca_requiring_it_is_client_error(eab_pebble: LocalPebble) -> None:
    report = run(eab_pebble, ["noeab.example.com"])
    assert report.verdict is Verdict.CLIENT_ERROR
    assert (fatal(report).name, fatal(report).cause) == ("ExternalAccountRequired", Cause.CLIENT)


def test_eab_with_a_wrong_hmac_key_is_client_error(eab_pebble: LocalPebble) -> None:
    report = run(eab_pebble, ["wrongeab.example.com"], eab=(EAB_KID, WRONG_KEY))
    assert report.verdict is Verdict.CLIENT_ERROR
    assert fatal(report).cause is Cause.CLIENT
    assert fatal(report).step is acmedryrun.Step.ACCOUNT


def test_eab_through_the_cli_never_prints_the_hmac_key(eab_pebble: LocalPebble) -> None:
    proc = cli_check(eab_pebble, "cli-eab.example.com",
                     extra=["--eab-kid", EAB_KID, "--eab-hmac-key", EAB_KEY, "-v"])
    assert proc.returncode == 0, proc.stderr
    assert EAB_KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("bad", ["not base64!", "abc+def/ghi=", ""])
def test_eab_hmac_key_that_is_not_base64url_is_exit_64(bad: str) -> None:
    proc = cli("check", "-d", "a.example.com", "--eab-kid", "k", "--eab-hmac-key", bad,
               "--directory", "https://127.0.0.1:9/dir")
    assert proc.returncode == 64
    assert "--eab" in proc.stderr
    assert bad not in proc.stderr or not bad, "the key itself is not echoed"


@pytest.mark.parametrize("key_type", ["ec384", "rsa2048"])
def test_key_types_issue_certificates_with_that_key(
    pebble: LocalPebble, unique_name: str, key_type: str
) -> None:
    report = run(pebble, [unique_name], key_type=key_type)
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert report.certificate.key_type == key_type


def _csr(names: list[str], key: ec.EllipticCurvePrivateKey | None = None) -> tuple[bytes, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    pub = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return csr.public_bytes(serialization.Encoding.PEM), pub


def test_the_subscribers_own_csr_is_used_and_its_names_read(
    pebble: LocalPebble, unique_name: str, tmp_path: Path
) -> None:
    names = [unique_name, f"www.{unique_name}"]
    pem, _ = _csr(names)
    path = tmp_path / "req.pem"
    path.write_bytes(pem)
    proc = cli("check", "--csr", str(path), "--directory", pebble.directory_url,
               "--ca-bundle", pebble.ca_bundle, "--http-01-port", str(pebble.http_port),
               "--http-01-address", "127.0.0.1", "--dns-resolver", pebble.dns_resolver,
               "--json")
    assert proc.returncode == 0, proc.stderr
    report = report_json(proc)
    assert sorted(report["certificate"]["names"]) == sorted(names)


def test_a_csr_with_its_name_only_in_the_common_name_is_read_and_warned_about(
    pebble: LocalPebble, unique_name: str, tmp_path: Path
) -> None:
    """RFC 8555 section 7.4 allows the commonName and Let's Encrypt accepts it: no usage
    error, the name is read from it, a warning says other CAs refuse it; Pebble is one of
    those (at finalize: unauthorized, "Order includes different number of DNSnames
    identifiers than CSR specifies"), which is the client's to fix."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, unique_name)]))
           .sign(key, hashes.SHA256()))
    path = tmp_path / "cn-only.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    proc = cli("check", "--csr", str(path), "--directory", pebble.directory_url,
               "--ca-bundle", pebble.ca_bundle, "--http-01-port", str(pebble.http_port),
               "--http-01-address", "127.0.0.1", "--dns-resolver", pebble.dns_resolver,
               "--json")
    report = report_json(proc)
    assert report["identifiers"] == [unique_name]
    warning = next(p for p in report["problems"] if p["name"] == "CsrCommonNameOnly")
    assert (warning["cause"], warning["severity"]) == ("client", "warning")
    decisive = [p for p in report["problems"] if p["severity"] in ("fatal", "error")]
    assert [(p["name"], p["cause"], p["step"]) for p in decisive] == [
        ("Unauthorized", "client", "finalize")], decisive
    assert "different number of DNSnames" in decisive[0]["detail"]
    assert proc.returncode == 1, proc.stderr


def test_csr_names_that_disagree_with_d_are_a_usage_error(tmp_path: Path) -> None:
    pem, _ = _csr(["a.example.com"])
    path = tmp_path / "req.pem"
    path.write_bytes(pem)
    proc = cli("check", "--csr", str(path), "-d", "b.example.com",
               "--directory", "https://127.0.0.1:9/dir")
    assert proc.returncode == 64
    assert "do not match the CSR" in proc.stderr


def test_csr_that_does_not_parse_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "req.pem"
    path.write_text("-----BEGIN CERTIFICATE REQUEST-----\nnope\n"
                    "-----END CERTIFICATE REQUEST-----\n")
    proc = cli("check", "--csr", str(path), "--directory", "https://127.0.0.1:9/dir")
    assert proc.returncode == 64
    assert "--csr" in proc.stderr


def test_csr_not_signed_by_its_key_is_a_usage_error() -> None:
    pem, _ = _csr(["a.example.com"])
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    tampered = der[:-8] + bytes(8)  # break the signature
    with pytest.raises(UsageError, match=r"not signed by its own key|does not parse|not a PEM"):
        acmedryrun.dry_run([], directory="https://127.0.0.1:9/dir", csr=tampered)


def test_jwk_account_key_is_accepted_and_reused(
    pebble: LocalPebble, unique_name: str, tmp_path: Path
) -> None:
    from josepy.jwk import JWKEC

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "account.jwk"
    path.write_text(json.dumps(JWKEC(key=key).to_json()))
    first = run(pebble, [unique_name], account_key=path)
    second = run(pebble, [unique_name], account_key=path)
    assert first.verdict is Verdict.LIKELY_SUCCESS, first.problems
    assert first.account_url == second.account_url


def test_new_account_key_file_is_0600(pebble: LocalPebble, unique_name: str,
                                      tmp_path: Path) -> None:
    path = tmp_path / "new.pem"
    proc = cli_check(pebble, unique_name, extra=["--account-key", str(path)])
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() not in proc.stdout + proc.stderr


def test_email_becomes_the_accounts_contact(pebble: LocalPebble, unique_name: str) -> None:
    report = run(pebble, [unique_name], email="admin@example.com")
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems


@pytest.mark.parametrize("preflight", [True, False])
def test_wildcard_with_http01_is_client_error_without_contacting_the_ca(preflight: bool) -> None:
    report = acmedryrun.dry_run(["*.example.com"], directory="https://127.0.0.1:9/dir",
                                solver=acmedryrun.solvers.HTTP01Webroot("/"), timeout=5,
                                preflight=preflight)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert fatal(report).name == "WildcardNeedsDns01"
    assert report.requests.total == 0


def test_unknown_profile_answered_with_invalid_profile_is_client_error(
    pebble: LocalPebble, unique_name: str
) -> None:
    """Pebble 2.4.0 has no profiles: the proxy lists one in meta and answers newOrder as a
    CA with profiles does when it refuses it."""
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle, faults=[
            Fault("directory", "patch", patch={"meta": {"profiles": {"nonexistent": "x"}}}),
            parse_fault("order:status:400,type=invalidProfile,detail=unknown profile")]) as px:
        report = acmedryrun.dry_run(
            [unique_name], directory=px.directory_url, ca_bundle=px.ca_bundle,
            solver=acmedryrun.solvers.HTTP01Standalone(port=pebble.http_port,
                                                       address="127.0.0.1"),
            dns_resolver=pebble.dns_resolver, profile="nonexistent", timeout=10)
    assert report.verdict is Verdict.CLIENT_ERROR
    assert fatal(report).name == "InvalidProfile"


def test_a_profile_the_staging_directory_does_not_list_is_a_client_error_before_any_order(
    pebble: LocalPebble, unique_name: str
) -> None:
    """Asked for a profile staging's meta.profiles does not list: client_error, no order
    created (the CA would refuse it, or silently issue something else)."""
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle, faults=[
            Fault("directory", "patch", patch={"meta": {"profiles": {"classic": "x"}}})]) as px:
        report = acmedryrun.dry_run(
            [unique_name], directory=px.directory_url, ca_bundle=px.ca_bundle,
            solver=acmedryrun.solvers.HTTP01Standalone(port=pebble.http_port,
                                                       address="127.0.0.1"),
            dns_resolver=pebble.dns_resolver, profile="shortlived", timeout=10)
        orders = px.hits("order")
    problem = fatal(report)
    assert (report.verdict, problem.name, problem.cause) == (
        Verdict.CLIENT_ERROR, "ProfileNotOffered", Cause.CLIENT)
    assert "'shortlived'" in problem.detail
    assert "classic" in problem.detail
    assert orders == 0


def test_a_broken_key_given_as_text_is_a_usage_error_that_never_echoes_it() -> None:
    secret = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSECRETSECRETSECRET"
    text = f"Bag Attributes\n    localKeyID: 01\n-----BEGIN PRIVATE KEY-----\n{secret}\n" \
           "-----END PRIVATE KEY-----\n"
    with pytest.raises(UsageError) as info:
        acmedryrun.dry_run(["a.example.com"], directory="https://127.0.0.1:9/dir",
                           account_key=text, solver=acmedryrun.solvers.HTTP01Webroot("/tmp"))
    assert "--account-key" in str(info.value)
    assert secret not in str(info.value)
    assert "SECRET" not in repr(info.value)
