"""Corrupt an issued PEM chain the ways a broken or hostile CA could.

Two tools: PEM surgery (cut the last block, add a block that is not a
certificate, garble bytes) and DER surgery on the leaf's ``TBSCertificate``
(RFC 5280 section 4.1) for what ``cryptography``'s builder refuses to make: a
duplicate extension (section 4.2: "A certificate MUST NOT include more than one
instance of a particular extension") and a public key of an algorithm nobody
knows.  Certificates re-made with the builder (other names, another key type,
another signer) are signed by a throw-away key, which is the point of "not
signed by the next".  Also :func:`strict_chain_problem`, the harness's own
oracle for "a valid chain for exactly the ordered names".
"""

from __future__ import annotations

import base64
import itertools
import os
import re
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448

__all__ = [
    "CERT_MUTATORS",
    "strict_chain_problem",
]

_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)\r?\n-----END \1-----\r?\n?", re.DOTALL)
_SAN_OID = b"\x06\x03\x55\x1d\x11"  # 2.5.29.17, subjectAltName


# ------------------------------------------------------------------------------ PEM


def _blocks(pem: bytes) -> list[tuple[bytes, bytes]]:
    """(label, DER) of every complete PEM block."""
    return [(m.group(1), base64.b64decode(m.group(2))) for m in _BLOCK.finditer(pem)]


def _pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {label}-----\n".encode() + b"\n".join(lines)
            + f"\n-----END {label}-----\n".encode())


def _certs(pem: bytes) -> list[bytes]:
    return [der for label, der in _blocks(pem) if label == b"CERTIFICATE"]


def last_block_cut(pem: bytes) -> bytes:
    """The chain with its last PEM block cut in the middle (no END line)."""
    start = pem.rfind(b"-----BEGIN")
    end = pem.find(b"-----END", start)
    return pem[: start + (end - start) // 2]


def extra_block(pem: bytes) -> bytes:
    """The chain plus a PEM block that is not a certificate."""
    return pem.rstrip(b"\n") + b"\n" + _pem(os.urandom(96), "X509 CRL")


def garbage_block(pem: bytes) -> bytes:
    """The chain plus a CERTIFICATE block whose content is random bytes."""
    return pem.rstrip(b"\n") + b"\n" + _pem(os.urandom(300))


def invalid_utf8(pem: bytes) -> bytes:
    """The chain with two bytes that are not UTF-8 (nor ASCII) inside the leaf's base64."""
    start = pem.find(b"\n", pem.find(b"-----BEGIN")) + 1
    middle = start + 40
    return pem[:middle] + b"\xff\xfe" + pem[middle:]


def empty(pem: bytes) -> bytes:
    """No chain at all."""
    del pem
    return b""


# ------------------------------------------------------------------------------ DER


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at ``pos`` (X.690 section 8.1)."""
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        return tag, pos, pos + first
    count = first & 0x7F
    length = int.from_bytes(data[pos:pos + count], "big")
    return tag, pos + count, pos + count + length


def _children(data: bytes) -> list[bytes]:
    """The raw child elements of the constructed element ``data``."""
    _, start, end = _tlv(data, 0)
    out = []
    pos = start
    while pos < end:
        _, content, stop = _tlv(data, pos)
        del content
        out.append(data[pos:stop])
        pos = stop
    return out


def _encode(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _oid(dotted: str) -> bytes:
    """DER of an OBJECT IDENTIFIER (X.690 section 8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(reversed(chunk))
    return _encode(0x06, bytes(out))


def _rewrite_tbs(cert_der: bytes, edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """The certificate with its TBSCertificate's children edited (signature kept as is)."""
    tbs, alg, sig = _children(cert_der)
    new_tbs = _encode(0x30, b"".join(edit(_children(tbs))))
    return _encode(0x30, new_tbs + alg + sig)


def _duplicate_san(children: list[bytes]) -> list[bytes]:
    out = []
    for child in children:
        if child[0] != 0xA3:  # [3] EXPLICIT Extensions
            out.append(child)
            continue
        (seq,) = _children(child)
        exts = _children(seq)
        dup = next(e for e in exts if _SAN_OID in e)
        out.append(_encode(0xA3, _encode(0x30, b"".join([*exts, dup]))))
    return out


def _unknown_key(children: list[bytes]) -> list[bytes]:
    # TBSCertificate: [0] version, serial, signature, issuer, validity, subject, SPKI, ...
    spki = _encode(0x30, _encode(0x30, _oid("1.3.6.1.4.1.55555.7.1"))
                   + _encode(0x03, b"\x00" + os.urandom(64)))
    return [*children[:6], spki, *children[7:]]


def _replace_leaf(pem: bytes, leaf_der: bytes) -> bytes:
    certs = _certs(pem)
    return b"".join(_pem(der) for der in [leaf_der, *certs[1:]])


def leaf_duplicate_extension(pem: bytes) -> bytes:
    """The chain whose leaf carries its subjectAltName extension twice."""
    return _replace_leaf(pem, _rewrite_tbs(_certs(pem)[0], _duplicate_san))


def leaf_unknown_key_algorithm(pem: bytes) -> bytes:
    """The chain whose leaf's public key is of an algorithm (OID) no library knows."""
    return _replace_leaf(pem, _rewrite_tbs(_certs(pem)[0], _unknown_key))


def _rebuild(pem: bytes, *, names: Sequence[str] | None = None,
             key: ed448.Ed448PublicKey | None = None) -> bytes:
    """The leaf re-made (other names or key), signed by a throw-away P-256 key."""
    leaf = x509.load_der_x509_certificate(_certs(pem)[0])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if names is not None:
        sans = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
    builder = (x509.CertificateBuilder()
               .subject_name(leaf.subject).issuer_name(leaf.issuer)
               .public_key(key if key is not None else leaf.public_key())
               .serial_number(leaf.serial_number)
               .not_valid_before(leaf.not_valid_before_utc)
               .not_valid_after(leaf.not_valid_after_utc)
               .add_extension(sans, critical=False))
    signer = ec.generate_private_key(ec.SECP256R1())
    made = builder.sign(signer, hashes.SHA256())
    return _replace_leaf(pem, made.public_bytes(serialization.Encoding.DER))


def leaf_wrong_names(pem: bytes) -> bytes:
    """The chain whose leaf names other domains than the ordered ones."""
    return _rebuild(pem, names=["wrong-name.example.net", "another.example.net"])


def leaf_ed448_key(pem: bytes) -> bytes:
    """The chain whose leaf carries an Ed448 key (not the CSR's)."""
    return _rebuild(pem, key=ed448.Ed448PrivateKey.generate().public_key())


def chain_not_signed_by_next(pem: bytes) -> bytes:
    """The chain whose leaf (right names, right key) is signed by some other key."""
    return _rebuild(pem)


#: Name -> corruption, for :mod:`hostile.mutations`.
CERT_MUTATORS: dict[str, Callable[[bytes], bytes]] = {
    "last_block_cut": last_block_cut,
    "extra_non_certificate_block": extra_block,
    "garbage_certificate_block": garbage_block,
    "invalid_utf8": invalid_utf8,
    "empty": empty,
    "leaf_duplicate_extension": leaf_duplicate_extension,
    "leaf_unknown_key_algorithm": leaf_unknown_key_algorithm,
    "leaf_ed448_key": leaf_ed448_key,
    "leaf_wrong_names": leaf_wrong_names,
    "chain_not_signed_by_next": chain_not_signed_by_next,
}


# ------------------------------------------------------------------------------ oracle


def strict_chain_problem(body: bytes, names: Sequence[str]) -> str | None:
    """What is wrong with ``body`` as an RFC 8555 section 7.4.2 chain for ``names``, or None.

    Strict: ASCII only, nothing but complete ``CERTIFICATE`` blocks and whitespace,
    every certificate parses (extensions included), the leaf names exactly
    ``names``, and each certificate is signed by the next.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return "not ASCII"
    blocks = list(_BLOCK.finditer(body))
    if not blocks:
        return "no PEM block"
    if _BLOCK.sub(b"", body).strip() or text.count("-----BEGIN") != len(blocks):
        return "an incomplete PEM block or text outside the blocks"
    if any(m.group(1) != b"CERTIFICATE" for m in blocks):
        return "a PEM block that is not a certificate"
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(m.group(2))) for m in blocks]
        for cert in chain:
            _ = cert.extensions, cert.public_key()
        san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        got = sorted({n.lower() for n in san.get_values_for_type(x509.DNSName)})
        if got != sorted({n.lower() for n in names}):
            return f"the leaf names {got}, not {sorted(names)}"
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
    except Exception as exc:  # noqa: BLE001 - the oracle judges, it must not crash
        return f"{type(exc).__name__}: {exc}"
    return None
