"""Bad input is exit 64: one line naming the input, before any request, nothing written.

Every case runs the real CLI (``python -m acmedryrun check ...``) in a subprocess, in a
temporary directory of its own, with ``--directory`` pointed at a loopback listener
that counts connections and ``--account-key`` naming a file that does not exist.
Each must exit 64 with exactly one line on stderr naming the option (or the input
file), print nothing on stdout, connect to nothing, create no account key, and leave
the directory exactly as it was.  Policy outcomes (a wildcard without dns-01, a public
suffix) are verdicts of a run, not usage errors: they are checked at the end.
"""

from __future__ import annotations

import functools
import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import cli, report_json
from counting_listener import CountingListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

import acmedryrun
from acmedryrun import UsageError
from acmedryrun.options import Options, plan
from acmedryrun.solvers import Challenge, Solver
from acmedryrun.testing import LocalPebble

NEW_KEY = "new-account-key.pem"


def _csr(key: CertificateIssuerPrivateKeyTypes, *, san: bool = True,
         name: str = "a.example.org", cn: bool = True) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)] if cn else []))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                                        critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


@functools.cache
def _input_file(name: str) -> bytes:
    """The bytes of each input file the cases name (made once per session)."""
    makers: dict[str, Callable[[], bytes]] = {
        "garbage.pem": lambda: b"this is not a certificate\n",
        "cut.pem": lambda: b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "ok.csr": lambda: _csr(ec.generate_private_key(ec.SECP256R1())),
        "no-names.csr": lambda: _csr(ec.generate_private_key(ec.SECP256R1()), san=False,
                                     cn=False),
        "ip-cn.csr": lambda: _csr(ec.generate_private_key(ec.SECP256R1()), san=False,
                                  name="192.0.2.1"),
        "dsa.csr": lambda: _csr(dsa.generate_private_key(2048)),
        "ed25519.csr": lambda: _csr(ed25519.Ed25519PrivateKey.generate()),
        "p521.csr": lambda: _csr(ec.generate_private_key(ec.SECP521R1())),
        "rsa1024.csr": lambda: _csr(rsa.generate_private_key(65537, 1024)),  # noqa: S505
        "rsa-e3.csr": lambda: _csr(rsa.generate_private_key(3, 2048)),
        "bad-name.csr": lambda: _csr(ec.generate_private_key(ec.SECP256R1()),
                                     name="a..example.org"),
        "names.txt": lambda: b"a.example.org\nb.example.org\n",
    }
    return makers[name]()


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: its mtime and a digest of its content."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(
        p.read_bytes()).hexdigest()) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    with CountingListener() as counting:
        yield counting


def _assert_bad_input(args: list[str], needle: str, tmp_path: Path,
                      listener: CountingListener, *, files: tuple[str, ...] = ()) -> str:
    """Run the CLI in ``tmp_path``; assert every promise of exit 64; return stderr."""
    for name in files:
        (tmp_path / name).write_bytes(_input_file(name))
    before = _tree(tmp_path)
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 64, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.endswith("\n")
    assert proc.stderr.startswith("acmedryrun: error: "), proc.stderr
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert listener.connections == 0, "a request was sent"
    assert not (tmp_path / NEW_KEY).exists(), "the account key was created"
    assert _tree(tmp_path) == before, "a file was written"
    return proc.stderr


LONG_LABEL = "a" * 64 + ".example.org"
LONG_NAME = ".".join(["a" * 60] * 4) + ".example.org"  # 256 octets

#: (id, -d value, what the message must say)
BAD_NAMES = [
    ("empty-label", "a..example.org", "-d: 'a..example.org': label ''"),
    ("64-octet-label", LONG_LABEL, "is not a valid DNS label"),
    ("over-253-octets", LONG_NAME, f"is {len(LONG_NAME)} octets long"),
    ("bad-a-label", "xn--zz.example.org", "label 'xn--zz' is not a valid IDNA 2008 A-label"),
    ("not-an-ipv6", "::1::2", "-d: '::1::2' is neither an IP address"),
    ("trailing-dot", "example.org.", "ends with a dot"),
    ("inner-wildcard", "a.*.example.org", "'*' is allowed only as the whole leftmost label"),
    ("glued-wildcard", "*example.org", "'*' is allowed only"),
    ("underscore", "a_b.example.org", "label 'a_b'"),
    ("leading-hyphen", "-a.example.org", "label '-a'"),
    ("all-digit-tld", "1.2.3.4.5", "the last label is all digits"),
    ("bad-unicode", "a\u2028b.example.org", "-d:"),
]


@pytest.mark.parametrize(("name", "needle"), [c[1:] for c in BAD_NAMES],
                         ids=[c[0] for c in BAD_NAMES])
def test_a_name_that_cannot_be_a_dns_name_is_bad_input(
    name: str, needle: str, tmp_path: Path, listener: CountingListener
) -> None:
    _assert_bad_input(["check", f"--domain={name}", "--directory", listener.url,
                       "--account-key", NEW_KEY], needle, tmp_path, listener)


#: (id, extra arguments, what the message must say, input files the case needs)
BAD_OPTIONS: list[tuple[str, list[str], str, tuple[str, ...]]] = [
    ("email-no-at", ["--email", "not-an-email"], "--email: 'not-an-email' is not an email"
     " address", ()),
    ("email-no-domain", ["--email", "a@"], "--email:", ()),
    ("email-single-label", ["--email", "a@localhost"], "not a fully qualified DNS name", ()),
    ("email-bad-domain", ["--email", "a@b..example.org"], "--email:", ()),
    ("email-two", ["--email", "a@example.org,b@example.org"], "one address only", ()),
    ("email-space", ["--email", "a b@example.org"], "--email:", ()),
    ("email-mailto-only", ["--email", "mailto:"], "--email:", ()),
    ("email-double-dot", ["--email", "a..b@example.org"], "dot-atom", ()),
    ("profile-empty", ["--profile", ""], "--profile: '' is not a profile name", ()),
    ("profile-space", ["--profile", "tls server"], "--profile:", ()),
    ("profile-slash", ["--profile", "a/b"], "--profile:", ()),
    ("caa-identity-not-a-name", ["--caa-identity", "bad name"], "--caa-identity:", ()),
    ("caa-identity-ip", ["--caa-identity", "192.0.2.1"], "--caa-identity: '192.0.2.1' is"
     " not a DNS name", ()),
    ("caa-identity-wildcard", ["--caa-identity", "*.letsencrypt.org"], "--caa-identity:", ()),
    ("caa-identity-empty-label", ["--caa-identity", "letsencrypt..org"], "--caa-identity:",
     ()),
    ("renewing-garbage", ["--renewing", "garbage.pem"],
     "--renewing: garbage.pem is not a PEM or DER certificate", ("garbage.pem",)),
    ("renewing-cut-pem", ["--renewing", "cut.pem"],
     "--renewing: cut.pem is not a PEM or DER certificate", ("cut.pem",)),
    ("renewing-a-csr", ["--renewing", "ok.csr"], "--renewing: ok.csr is not a PEM or DER",
     ("ok.csr",)),
    ("key-type-with-csr", ["--csr", "ok.csr", "--key-type", "rsa2048"],
     "--key-type: rsa2048 together with --csr", ("ok.csr",)),
    ("key-type-default-spelled-with-csr", ["--csr", "ok.csr", "--key-type", "ec256"],
     "--key-type: ec256 together with --csr", ("ok.csr",)),
    ("csr-without-names", ["--csr", "no-names.csr"],
     "--csr: no-names.csr names no DNS name or IP address", ("no-names.csr",)),
    ("csr-ip-only-in-common-name", ["--csr", "ip-cn.csr"],
     "a commonName of '192.0.2.1', an IP address", ("ip-cn.csr",)),
    ("csr-dsa", ["--csr", "dsa.csr"], "--csr: dsa.csr has a DSA key", ("dsa.csr",)),
    ("csr-ed25519", ["--csr", "ed25519.csr"], "--csr: ed25519.csr has an Ed25519 key",
     ("ed25519.csr",)),
    ("csr-p521", ["--csr", "p521.csr"], "--csr: p521.csr has an ECDSA secp521r1 key",
     ("p521.csr",)),
    ("csr-rsa1024", ["--csr", "rsa1024.csr"], "--csr: rsa1024.csr has an RSA 1024-bit key",
     ("rsa1024.csr",)),
    ("csr-rsa-exponent-3", ["--csr", "rsa-e3.csr"], "exponent 3", ("rsa-e3.csr",)),
    ("csr-bad-name", ["--csr", "bad-name.csr"], "--csr: 'a..example.org'", ("bad-name.csr",)),
]


@pytest.mark.parametrize(("extra", "needle", "files"), [c[1:] for c in BAD_OPTIONS],
                         ids=[c[0] for c in BAD_OPTIONS])
def test_a_malformed_option_value_is_bad_input(
    extra: list[str], needle: str, files: tuple[str, ...], tmp_path: Path,
    listener: CountingListener,
) -> None:
    names = [] if "--csr" in extra else ["-d", "a.example.org"]
    stderr = _assert_bad_input(["check", *names, *extra, "--directory", listener.url,
                                "--account-key", NEW_KEY], needle, tmp_path, listener,
                               files=files)
    assert "asn1" not in stderr.lower()
    assert "ParseError" not in stderr


@pytest.mark.parametrize("directory", [
    "http://acme.example.org/directory",   # a public name
    "http://192.0.2.10/directory",         # a non-loopback address
    "http://[2001:db8::1]/directory",
])
def test_a_plain_http_directory_off_loopback_is_bad_input(
    directory: str, tmp_path: Path, listener: CountingListener
) -> None:
    """RFC 8555 section 6.1: HTTPS.  The listener stands in as the production twin: the
    one GET a run could make before the directory's own would be counted there."""
    stderr = _assert_bad_input(["check", "-d", "a.example.org", "--directory", directory,
                                "--reference-directory", listener.url,
                                "--account-key", NEW_KEY], "--directory:", tmp_path, listener)
    assert "RFC 8555 section 6.1 requires https" in stderr


def test_a_bad_batch_option_creates_no_account_key_and_no_output(
    tmp_path: Path, listener: CountingListener
) -> None:
    """``batch`` checks its own options before it creates the batch's account key."""
    _assert_bad_input(["batch", "names.txt", "--email", "not-an-email", "--directory",
                       listener.url, "--account-key", NEW_KEY, "--output", "out.jsonl"],
                      "--email:", tmp_path, listener, files=("names.txt",))
    assert not (tmp_path / "out.jsonl").exists()


# ------------------------------------------------------------------ the library, in process


def test_mailto_is_accepted_and_stripped_never_doubled() -> None:
    for given in ("mailto:a@example.org", "MAILTO:a@example.org", " a@example.org "):
        resolved = plan(["a.example.org"], Options(directory="https://127.0.0.1:9/d",
                                                   email=given))
        assert resolved.email == "a@example.org"
    unicode = plan(["a.example.org"], Options(directory="https://127.0.0.1:9/d",
                                              email="a@bücher.example"))
    assert unicode.email == "a@xn--bcher-kva.example"


def test_key_type_none_means_ec256_and_csr_keeps_its_own_key(tmp_path: Path) -> None:
    """``key_type`` defaults to None: ec256 without a CSR, the CSR's own key with one."""
    assert Options().key_type is None
    assert plan(["a.example.org"], Options(directory="https://127.0.0.1:9/d")).key_type \
        == "ec256"
    assert plan(["a.example.org"], Options(directory="https://127.0.0.1:9/d",
                                           key_type="rsa2048")).key_type == "rsa2048"
    csr = _input_file("ok.csr")
    assert plan([], Options(directory="https://127.0.0.1:9/d", csr=csr)).csr is not None
    with pytest.raises(UsageError, match="--key-type: ec256 together with --csr"):
        acmedryrun.dry_run([], directory="https://127.0.0.1:9/d", csr=csr, key_type="ec256")


class _Dns01Typo(Solver):
    """A custom solver whose challenge type has a typo (``dns01``)."""

    challenge_type = "dns01"  # type: ignore[assignment]  # the typo under test
    supports_wildcard = True

    def perform(self, challenge: Challenge) -> None:
        raise AssertionError("never reached")

    def cleanup(self, challenge: Challenge) -> None:
        raise AssertionError("never reached")


class _NoChallengeType(Solver):
    """A custom solver that forgot its challenge type."""

    def perform(self, challenge: Challenge) -> None:
        raise AssertionError("never reached")

    def cleanup(self, challenge: Challenge) -> None:
        raise AssertionError("never reached")


@pytest.mark.parametrize(("solver", "needle"), [
    (_Dns01Typo(), "solver: _Dns01Typo.challenge_type is 'dns01', not one of http-01,"
     " dns-01, tls-alpn-01 (did you mean 'dns-01'?)"),
    (_NoChallengeType(), "solver: _NoChallengeType.challenge_type is None"),
])
def test_a_custom_solvers_unknown_challenge_type_is_a_usage_error_before_any_request(
    solver: Solver, needle: str, listener: CountingListener
) -> None:
    with pytest.raises(UsageError) as caught:
        acmedryrun.dry_run(["a.example.org"], directory=listener.url, solver=solver)
    assert str(caught.value).startswith(needle)
    assert listener.connections == 0
    from acmedryrun.batch import dry_run_many

    with pytest.raises(UsageError, match="challenge_type"):
        dry_run_many([["a.example.org"]], directory=listener.url, solver=solver,
                     concurrency=1)
    assert listener.connections == 0


# ------------------------------------------------------------------ against a real CA


def test_email_with_mailto_registers_with_pebble(pebble: LocalPebble, unique_name: str,
                                                 tmp_path: Path) -> None:
    """Pebble refuses a ``mailto:mailto:`` contact (invalidContact); this one goes through."""
    proc = cli("check", "-d", unique_name, "--directory", pebble.directory_url,
               "--ca-bundle", pebble.ca_bundle, "--http-01-port", str(pebble.http_port),
               "--http-01-address", "127.0.0.1", "--dns-resolver", pebble.dns_resolver,
               "--email", "mailto:hostmaster@example.org", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert report_json(proc)["verdict"] == "likely_success"


def test_csr_without_key_type_is_issued_by_pebble(pebble: LocalPebble, unique_name: str,
                                                  tmp_path: Path) -> None:
    """The new ``key_type=None`` default leaves a CSR run as it was."""
    (tmp_path / "my.csr").write_bytes(_csr(ec.generate_private_key(ec.SECP384R1()),
                                           name=unique_name))
    proc = cli("check", "--csr", "my.csr", "--directory", pebble.directory_url,
               "--ca-bundle", pebble.ca_bundle, "--http-01-port", str(pebble.http_port),
               "--http-01-address", "127.0.0.1", "--dns-resolver", pebble.dns_resolver,
               "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert report_json(proc)["certificate"]["key_type"] == "ec384"


@pytest.mark.parametrize(("name", "solver", "problem"), [
    ("*.policy.example.org", ["--http-01-address", "127.0.0.1", "--http-01-port", "FREE"],
     "WildcardNeedsDns01"),
    ("192.0.2.1", ["--dns-01-auth-hook", "/bin/true"], "IpNeedsHttpOrTlsAlpn"),
])
def test_policy_outcomes_stay_client_error_verdicts(
    name: str, solver: list[str], problem: str, tmp_path: Path, listener: CountingListener,
) -> None:
    """The line between the two: a well-formed name that the challenge type or a CA's
    policy refuses is a ``client_error`` report (exit 1) with a hint, not a usage error
    (and still no request: the CA need not be asked to find that out)."""
    with socket.socket() as s:  # the standalone responder binds a free loopback port
        s.bind(("127.0.0.1", 0))
        free = str(s.getsockname()[1])
    proc = cli("check", "-d", name, "--directory", listener.url,
               *(free if a == "FREE" else a for a in solver), "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    fatal = [p for p in report_json(proc)["problems"] if p["severity"] == "fatal"]
    assert [p["name"] for p in fatal] == [problem]
    assert fatal[0]["hint"]
    assert listener.connections == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["co.uk", "example.local", "ab--cd.example.org", "localhost"])
def test_names_a_ca_refuses_by_policy_are_not_usage_errors(name: str) -> None:
    """Public suffixes, internal TLDs, reserved labels: well-formed, so the run's
    preflight reports them (fatal for a known CA: tests/test_preflight.py)."""
    plan([name], Options(directory="https://127.0.0.1:9/d"))
