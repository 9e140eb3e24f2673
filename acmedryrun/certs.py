"""Keys, CSRs and the issued chain: generate, load, check.  No network I/O."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID
from josepy.errors import DeserializationError
from josepy.jwk import JWK, JWKEC, JWKRSA

from acmedryrun.errors import UsageError
from acmedryrun.report import KEY_TYPES, CertificateSummary

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_key(key_type: str) -> PrivateKey:
    """A fresh private key of one of :data:`KEY_TYPES`."""
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type in ("rsa2048", "rsa3072", "rsa4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise UsageError(f"--key-type: {key_type!r} is not one of {', '.join(KEY_TYPES)}")


def jwk_from_private(key: PrivateKey) -> JWK:
    """The josepy JWK for an account key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return JWKEC(key=key)
    return JWKRSA(key=key)


def load_account_key(data: bytes, source: str) -> JWK:
    """Parse an account key given as PEM or as a JWK (JSON).

    Raises:
        UsageError: it is neither, or not a supported key type.
    """
    text = data.strip()
    try:
        if text.startswith(b"{"):
            jwk = JWK.from_json(json.loads(text))
            if not isinstance(jwk, JWKEC | JWKRSA) or not _is_private(jwk):
                raise UsageError(f"--account-key: {source} is not a private EC or RSA JWK")
            return jwk
        key = serialization.load_pem_private_key(text, password=None)
    except UsageError:
        raise
    except (ValueError, TypeError, KeyError, DeserializationError) as exc:
        raise UsageError(f"--account-key: {source} is not a PEM or JWK private key") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise UsageError(f"--account-key: {source}: unsupported curve {key.curve.name}")
        return JWKEC(key=key)
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key)
    raise UsageError(f"--account-key: {source} is not an EC or RSA key")


def _is_private(jwk: JWK) -> bool:
    return hasattr(jwk.key, "private_bytes")


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write a new key file, mode 0600 whatever the umask, atomically; never overwrite one.

    Raises:
        UsageError: the file exists already or cannot be created.
    """
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # The umask narrows os.open's mode (077 keeps 0600, 777 makes it 0000):
            # fchmod is not subject to it.
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if path appeared meanwhile: never clobber a key
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode != 0o600:
            raise OSError(0, f"it came out mode {mode:04o}, not 0600")
    except OSError as exc:
        raise UsageError(f"--account-key: cannot create {path}: {exc.strerror}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CsrInfo:
    """A CSR to finalize with, and what the issued certificate must match."""

    der: bytes
    public_key: CertificatePublicKeyTypes
    names: tuple[str, ...]
    #: The names are in the subject's commonName only, not in a subjectAltName.
    common_name_only: bool = False

    @property
    def public_der(self) -> bytes:
        """The public key as SubjectPublicKeyInfo DER, for comparisons."""
        return self.public_key.public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)


def make_csr(names: tuple[str, ...], key: CertificateIssuerPrivateKeyTypes) -> CsrInfo:
    """A CSR for ``names`` (DNS names and IP addresses) signed by ``key``."""
    sans: list[x509.GeneralName] = []
    for name in names:
        ip = _ip(name)
        sans.append(x509.IPAddress(ip) if ip else x509.DNSName(name))
    first_dns = next((n for n in names if _ip(n) is None and len(n) <= 64), None)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, first_dns)] if first_dns else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    csr = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(
        key, hashes.SHA256())
    return CsrInfo(csr.public_bytes(serialization.Encoding.DER), csr.public_key(), names)


#: The certificate keys the known CAs sign: exactly Let's Encrypt's CP/CPS (Boulder's
#: ``goodkey.LetsEncryptCPS``: RSA 2048, 3072 and 4096 bits with exponent 65537, ECDSA
#: P-256 and P-384), which are also what ``--key-type`` makes (:data:`KEY_TYPES`).
CSR_KEY_TYPES = frozenset(KEY_TYPES)


def check_csr_key(key: CertificatePublicKeyTypes, source: str) -> None:
    """A CSR's key must be one the CA signs: else finalize fails with ``badCSR``.

    Raises:
        UsageError: DSA, Ed25519, Ed448, another curve or RSA size, or an RSA
            exponent other than 65537.
    """
    kind = key_type_of(key)
    if isinstance(key, rsa.RSAPublicKey) and key.public_numbers().e != 65537:
        raise UsageError(f"--csr: {source} has an RSA key with exponent"
                         f" {key.public_numbers().e}: CAs sign only exponent 65537 (Let's"
                         " Encrypt's CP/CPS)")
    if kind not in CSR_KEY_TYPES:
        if isinstance(key, rsa.RSAPublicKey):
            what = f"an RSA {key.key_size}-bit"
        elif isinstance(key, ec.EllipticCurvePublicKey):
            what = f"an ECDSA {key.curve.name}"
        else:
            name = type(key).__name__.removeprefix("_").replace("PublicKey", "")
            what = f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"
        raise UsageError(f"--csr: {source} has {what} key: Let's Encrypt and the other"
                         " known CAs sign RSA 2048/3072/4096 and ECDSA P-256/P-384 keys only"
                         " (make the CSR with one of those, or drop --csr)")


def load_csr(data: bytes, source: str) -> CsrInfo:
    """Parse the subscriber's CSR (PEM or DER) and read its names.

    The names are its subjectAltName's DNS names and IP addresses.  A CSR without a
    subjectAltName may name one DNS name in its commonName: RFC 8555 section 7.4 allows
    it and Let's Encrypt accepts it (Boulder's ``identifier.FromCSR`` reads the
    commonName and puts it in the certificate's subjectAltName), but other CAs, Pebble
    among them, refuse it at finalize; :attr:`CsrInfo.common_name_only` says so, for a
    warning.  Its key must be one the CA signs (:func:`check_csr_key`).

    Raises:
        UsageError: it does not parse, is not signed by its own key, names no DNS name
            or IP address (an IP address only in the commonName included: RFC 8738
            puts it in the subjectAltName), or has a key the CA would refuse.
    """
    try:
        csr = (x509.load_pem_x509_csr(data) if b"-----BEGIN" in data
               else x509.load_der_x509_csr(data))
    except ValueError as exc:
        raise UsageError(f"--csr: {source} is not a PEM or DER certificate request") from exc
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature, x509.UnsupportedGeneralNameType):
        valid = False
    if not valid:
        raise UsageError(f"--csr: {source} is not signed by its own key")
    names: list[str] = []
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    common_name_only = False
    if not names:
        cn = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if len(cn) != 1 or _is_ip(cn[0]):
            where = f" (a commonName of {cn[0]!r}, an IP address)" if len(cn) == 1 else (
                f" ({len(cn)} commonNames)" if cn else "")
            raise UsageError(f"--csr: {source} names no DNS name or IP address in a"
                             f" subjectAltName{where}: put the names in a subjectAltName"
                             " extension (openssl req -addext subjectAltName=DNS:...)")
        names, common_name_only = cn, True
    check_csr_key(csr.public_key(), source)
    return CsrInfo(csr.public_bytes(serialization.Encoding.DER), csr.public_key(),
                   tuple(dict.fromkeys(n.lower() for n in names)), common_name_only)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _names_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


class ChainError(ValueError):
    """The issued chain is not what RFC 8555 section 7.4.2 says a CA sends."""


#: One PEM block (RFC 7468 section 2): label, base64 body, the same label to close it.
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]{1,64})-----[ \t]*\r?\n([A-Za-z0-9+/=\s]*?)-----END \1-----")
#: The most certificates one chain may hold (Let's Encrypt's have 2 or 3).
MAX_CHAIN = 10


def parse_chain(pem: bytes) -> list[x509.Certificate]:
    """Parse ``application/pem-certificate-chain`` strictly (RFC 8555 section 7.4.2).

    Every PEM block complete, nothing but ``CERTIFICATE`` blocks and whitespace,
    base64 that decodes, DER that parses, extensions without duplicates and a public
    key of a known algorithm.  (``load_pem_x509_certificates`` drops a cut-off last
    block and skips other blocks silently.)

    Raises:
        ChainError: what is wrong, for the report.
    """
    if not pem.isascii():
        raise ChainError("the certificate response is not ASCII text")
    chain: list[x509.Certificate] = []
    at = 0
    for match in _PEM_BLOCK.finditer(pem):
        if pem[at:match.start()].strip():
            raise ChainError(f"text outside the PEM blocks at byte {at}")
        at = match.end()
        label = match.group(1).decode()
        if label != "CERTIFICATE":
            raise ChainError(f"a {label} block: a certificate chain holds certificates only")
        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
            cert = x509.load_der_x509_certificate(der)
            cert.extensions  # noqa: B018 - parse them now: a duplicate raises here
            cert.public_key()
        except (ValueError, TypeError, binascii.Error, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType, UnsupportedAlgorithm) as exc:
            raise ChainError(f"certificate {len(chain) + 1} does not parse:"
                             f" {type(exc).__name__}: {exc}") from exc
        chain.append(cert)
        if len(chain) > MAX_CHAIN:
            raise ChainError(f"more than {MAX_CHAIN} certificates")
    if pem[at:].strip():
        raise ChainError("a PEM block that is cut off or text after the last block")
    if not chain:
        raise ChainError("the certificate response holds no certificate")
    return chain


def verify_chain(pem: bytes, csr: CsrInfo) -> str | None:
    """Check the issued chain; return what is wrong, or None when it is right.

    The chain must parse strictly (:func:`parse_chain`), its leaf must carry the
    CSR's public key and exactly the ordered names, and each certificate must be
    signed by the next one.
    """
    try:
        chain = parse_chain(pem)
    except ChainError as exc:
        return str(exc)
    leaf = chain[0]
    leaf_key = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf_key != csr.public_der:
        return "the certificate's public key is not the CSR's"
    got, want = sorted(set(_names_of(leaf))), sorted({n.lower() for n in csr.names})
    if got != want:
        return f"the certificate names {got}, the order asked for {want}"
    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            return (f"{child.subject.rfc4514_string()} is not issued by "
                    f"{parent.subject.rfc4514_string()}: {exc or 'bad signature'}")
    return None


def summarize(pem: bytes) -> CertificateSummary | None:
    """A summary of the issued chain for the report, or None if it does not parse."""
    try:
        chain = parse_chain(pem)
    except ChainError:
        return None
    leaf = chain[0]
    return CertificateSummary(
        serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc.isoformat(),
        not_after=leaf.not_valid_after_utc.isoformat(),
        chain_length=len(chain),
        names=tuple(_names_of(leaf)),
        issuer=leaf.issuer.rfc4514_string(),
        key_type=key_type_of(leaf.public_key()),
    )


def key_type_of(key: CertificatePublicKeyTypes) -> str:
    """``ec256``, ``ec384``, ``rsa2048``, ... for a public key (``other`` if neither)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec{key.curve.key_size}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    return "other"
