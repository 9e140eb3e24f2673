"""tls-alpn-01 (RFC 8737): answer the CA's TLS handshake with a challenge certificate.

The CA connects to port 443 of the name, offers ALPN ``acme-tls/1`` and sends
the name as SNI (for an IP identifier, its reverse-DNS name: RFC 8738
section 6).  ``TLSALPN01Standalone`` runs a small TLS server that answers with
a self-signed certificate carrying exactly that one name and the critical
acmeIdentifier extension holding the SHA-256 digest of the key authorization
(RFC 8737 section 3).  It speaks nothing but ``acme-tls/1``.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import ipaddress
import os
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmedryrun.errors import UsageError
from acmedryrun.report import ChallengeType, SolverErrorKind
from acmedryrun.solvers._base import Challenge, Solver, SolverFailure

#: RFC 8737 section 6.2: the ALPN protocol ID of tls-alpn-01.
ACME_TLS_1 = "acme-tls/1"
#: RFC 8737 section 6.1: id-pe-acmeIdentifier.
ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")

#: How long one validation connection may take to complete its handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Concurrent connections served; more are closed at once (the CA uses a few).
MAX_CONNECTIONS = 32
#: Validity of the challenge certificates: the CA does not check it (RFC 8737
#: section 3 allows self-signed), but a sane window avoids odd parser paths.
CERT_VALIDITY = datetime.timedelta(days=7)

_TLS_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_ALPN = 16
_MAX_RECORD = 5 + 16384 + 2048
#: A fatal no_application_protocol alert (RFC 7301 section 3.2) as a raw TLS record.
_ALERT_NO_APPLICATION_PROTOCOL = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 120])


def sni_for(identifier: str, identifier_type: str) -> str:
    """The SNI the CA sends for an identifier (lower-case A-label).

    RFC 8737 section 3 for names; RFC 8738 section 6 for IP addresses, whose
    SNI is the reverse mapping name (``1.0.0.127.in-addr.arpa``, ``...ip6.arpa``).
    """
    if identifier_type == "ip":
        return ipaddress.ip_address(identifier).reverse_pointer
    return _a_label(identifier)


def _a_label(name: str) -> str:
    try:
        return name.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return name.rstrip(".").lower()


def acme_identifier_extension(digest: bytes) -> x509.UnrecognizedExtension:
    """The acmeIdentifier extension value (RFC 8737 section 3).

    ``Authorization ::= OCTET STRING (SIZE (32))``: the DER of that OCTET
    STRING (tag 0x04, length 0x20, the digest) is the extnValue's content.
    """
    if len(digest) != 32:
        raise ValueError(f"the key authorization digest has {len(digest)} octets, not 32")
    return x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, b"\x04\x20" + digest)


def challenge_certificate(key: ec.EllipticCurvePrivateKey, identifier: str,
                          identifier_type: str, digest: bytes) -> x509.Certificate:
    """A self-signed tls-alpn-01 challenge certificate (RFC 8737 section 3).

    It has exactly one subjectAltName, the dNSName (or, RFC 8738 section 6, the
    iPAddress) validated, and the critical acmeIdentifier extension with
    ``digest``, the SHA-256 of the key authorization.
    """
    san: x509.GeneralName
    if identifier_type == "ip":
        san = x509.IPAddress(ipaddress.ip_address(identifier))
    else:
        san = x509.DNSName(_a_label(identifier))
    cn = identifier if identifier_type == "ip" else _a_label(identifier)
    # A CN is at most 64 characters (RFC 5280 ub-common-name); a longer name
    # gets an empty subject, which RFC 5280 section 4.2.1.6 allows when the
    # subjectAltName is critical.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if len(cn) <= 64 \
        else x509.Name([])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([san]), critical=len(subject) == 0)
        .add_extension(acme_identifier_extension(digest), critical=True)
        .sign(key, hashes.SHA256())
    )


def _u8(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise ValueError("short")
    return data[pos]


def _u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise ValueError("short")
    value: int = struct.unpack_from("!H", data, pos)[0]
    return value


def client_hello_alpn(record: bytes) -> list[bytes] | None:
    """The ALPN protocols a TLS ClientHello record offers (RFC 8446 section 4.1.2, RFC 7301).

    Returns:
        The offered protocol IDs (empty: no ALPN extension), or None when the
        bytes are not one complete ClientHello in one record (a fragmented
        hello is legal but rare; the caller then checks after the handshake).
    """
    try:
        if _u8(record, 0) != _TLS_HANDSHAKE:
            return None
        payload = record[5:5 + _u16(record, 3)]
        if _u8(payload, 0) != _CLIENT_HELLO:
            return None
        length = int.from_bytes(payload[1:4], "big")
        body = payload[4:4 + length]
        if len(body) != length:
            return None  # the hello continues in the next record
        pos = 2 + 32                              # legacy_version, random
        pos += 1 + _u8(body, pos)                 # legacy_session_id
        pos += 2 + _u16(body, pos)                # cipher_suites
        pos += 1 + _u8(body, pos)                 # legacy_compression_methods
        if pos == len(body):
            return []                             # no extensions at all
        end = pos + 2 + _u16(body, pos)
        pos += 2
        while pos + 4 <= end:
            ext_type, ext_len = _u16(body, pos), _u16(body, pos + 2)
            pos += 4
            if ext_type == _EXT_ALPN:
                protocols: list[bytes] = []
                list_end = pos + 2 + _u16(body, pos)
                cur = pos + 2
                while cur < list_end:
                    n = _u8(body, cur)
                    protocols.append(body[cur + 1:cur + 1 + n])
                    cur += 1 + n
                return protocols
            pos += ext_len
    except ValueError:
        return None
    return []


class TLSALPN01Standalone(Solver):
    """Answer tls-alpn-01 with a built-in TLS server.

    One EC P-256 key is generated per solver; each challenge gets its own
    self-signed certificate, chosen by the SNI of the CA's handshake.  A client
    that does not offer ``acme-tls/1`` gets a fatal ``no_application_protocol``
    alert and no certificate (RFC 8737 section 6.2: the protocol is used for
    nothing else); an unknown or missing SNI gets ``unrecognized_name``.

    Args:
        port: The port to listen on (the CA always connects to 443; a local test
            CA may use another).
        address: The address to bind; ``""`` (default) means all addresses, IPv4
            and IPv6.
    """

    challenge_type: ClassVar[ChallengeType] = "tls-alpn-01"
    supports_ip: ClassVar[bool] = True  # RFC 8738 section 6
    shareable: ClassVar[bool] = True

    def __init__(self, port: int = 443, address: str = "") -> None:
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise UsageError(f"--tls-alpn-01-port: {port} is not a TCP port")
        if address:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise UsageError(
                    f"--tls-alpn-01-address: {address!r} is not an IP address") from None
        self.port = port
        self.address = address
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._lock = threading.Lock()
        # One responder may serve many concurrent runs (batch mode): open/close nest.
        self._life = threading.Lock()
        self._users = 0
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._files: dict[str, Path] = {}
        self._dir: Path | None = None
        self._key_file: Path | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._base = self._new_context()
        self._base.sni_callback = self._pick_context

    def describe(self) -> str:
        return f"tls-alpn-01 standalone on {self.address or '*'}:{self.port}"

    @property
    def bound_port(self) -> int | None:
        """The port actually bound (useful with ``port=0`` in tests), or None when closed."""
        return int(self._sock.getsockname()[1]) if self._sock is not None else None

    # -------------------------------------------------------------- lifecycle

    def open(self) -> None:
        with self._life:
            if self._sock is None:
                self._start()
            self._users += 1

    def _start(self) -> None:
        self._sock = self._bind()
        self._sock.settimeout(0.1)
        self._dir = Path(tempfile.mkdtemp(prefix="acmedryrun-tlsalpn01-"))  # mode 0700
        self._key_file = self._dir / "key.pem"
        fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self._key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"acmedryrun-tlsalpn01-"
                                        f"{self.bound_port}", daemon=True)
        self._thread.start()

    def _bind(self) -> socket.socket:
        where = f"{self.address or '*'}:{self.port}"
        try:
            if self.address == "" and socket.has_dualstack_ipv6():
                try:
                    return socket.create_server(("", self.port), family=socket.AF_INET6,
                                                dualstack_ipv6=True, backlog=64)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            return socket.create_server((self.address, self.port), family=family, backlog=64)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"--tls-alpn-01-port: {where} is already in use") from exc
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise UsageError(
                    f"--tls-alpn-01-port: binding {where} is not permitted"
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                ) from exc
            raise UsageError(f"--tls-alpn-01-address: cannot listen on {where}: {exc}") \
                from exc

    def close(self) -> None:
        with self._life:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            self._stop_serving()

    def _stop_serving(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        with self._lock:
            self._contexts.clear()
            self._files.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = self._key_file = None

    # -------------------------------------------------------------- challenges

    def perform(self, challenge: Challenge) -> None:
        if self._sock is None:
            self.open()
        directory, key_file = self._dir, self._key_file
        if directory is None or key_file is None:
            raise SolverFailure(SolverErrorKind.OTHER, "the tls-alpn-01 responder is not open")
        try:
            digest = bytes.fromhex(challenge.validation)
            cert = challenge_certificate(self._key, challenge.identifier,
                                         challenge.identifier_type, digest)
            name = sni_for(challenge.identifier, challenge.identifier_type)
        except ValueError as exc:
            raise SolverFailure(SolverErrorKind.OTHER,
                                f"tls-alpn-01 certificate for {challenge.identifier}: {exc}") \
                from exc
        cert_file = directory / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.pem"
        try:
            cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            context = self._new_context()
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise SolverFailure(SolverErrorKind.OTHER,
                                f"tls-alpn-01 certificate for {challenge.identifier}: {exc}") \
                from exc
        with self._lock:
            self._contexts[name] = context
            self._files[challenge.token] = cert_file

    def cleanup(self, challenge: Challenge) -> None:
        try:
            name = sni_for(challenge.identifier, challenge.identifier_type)
        except ValueError:
            return
        with self._lock:
            self._contexts.pop(name, None)
            cert_file = self._files.pop(challenge.token, None)
        if cert_file is not None:
            cert_file.unlink(missing_ok=True)

    # -------------------------------------------------------------- TLS server

    @staticmethod
    def _new_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # RFC 8737 section 4: TLS 1.2 or higher only.
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # The ALPN choice is made by the context SNI selected, so every context offers it.
        context.set_alpn_protocols([ACME_TLS_1])
        context.options |= ssl.OP_NO_TICKET  # acme-tls/1 carries no session to resume
        return context

    def _pick_context(self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                      _context: ssl.SSLContext) -> int | None:
        """SNI callback: swap in the challenge's context, or refuse the name."""
        with self._lock:
            context = self._contexts.get(server_name.lower()) if server_name else None
        if context is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sock.context = context
        return None

    def _serve(self) -> None:
        sock = self._sock
        while sock is not None and not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True,
                             name="acmedryrun-tlsalpn01-conn").start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(HANDSHAKE_TIMEOUT)
            hello = self._peek_hello(conn)
            if hello is not None and ACME_TLS_1.encode() not in hello:
                # RFC 7301 section 3.2 / RFC 8737 section 6.2: nothing but acme-tls/1.
                conn.sendall(_ALERT_NO_APPLICATION_PROTOCOL)
                return
            with self._base.wrap_socket(conn, server_side=True) as tls:
                if tls.selected_alpn_protocol() != ACME_TLS_1:
                    return  # a hello this server could not pre-read, without acme-tls/1
                # RFC 8737 section 6.2: the client closes right after the handshake;
                # wait for that instead of resetting a connection it may still read.
                tls.settimeout(2.0)
                with contextlib.suppress(OSError, ValueError):
                    while tls.recv(1024):
                        pass
        except (OSError, ValueError):
            pass  # a failed or aborted handshake: the CA reports what it saw
        finally:
            conn.close()
            self._slots.release()

    @staticmethod
    def _peek_hello(conn: socket.socket) -> list[bytes] | None:
        """The ALPN list of the first TLS record, read without consuming it."""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        seen = -1
        while time.monotonic() < deadline:
            data = conn.recv(_MAX_RECORD, socket.MSG_PEEK)
            if not data:
                raise ConnectionAbortedError("closed before the ClientHello")
            if len(data) >= 5 and (data[0] != _TLS_HANDSHAKE
                                   or len(data) >= 5 + _u16(data, 3)):
                return client_hello_alpn(data)
            if len(data) == seen:
                time.sleep(0.01)  # MSG_PEEK does not block while partial data waits
            seen = len(data)
        raise TimeoutError("no complete ClientHello")
