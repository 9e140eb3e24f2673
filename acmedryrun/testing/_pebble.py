"""Run a throw-away Pebble ACME server and its mock DNS on loopback, for tests.

`LocalPebble` starts Let's Encrypt's test CA `pebble` together with
`pebble-challtestsrv` (used only as a programmable DNS server) on free
``127.0.0.1`` ports, with a freshly generated TLS trust anchor, and tears both
down again.  ACME client developers use it in CI to run a full issuance against
a real RFC 8555 server without touching the network; our own test-suite uses it
to exercise the dry-run flow end to end.

Why a separate process pair instead of a fake: Pebble is the reference test
implementation of RFC 8555, so bugs it finds are real protocol bugs.  Why
challtestsrv: Pebble's validation authority needs a DNS server for A/AAAA/TXT
(and CAA) lookups; challtestsrv answers with whatever the test programmed via
its management API, and by default points every name at ``127.0.0.1`` so that
http-01 and tls-alpn-01 validations reach the client's own listener on
`LocalPebble.http_port` / `LocalPebble.tls_port`.

Pebble and challtestsrv come from Debian's ``pebble`` package
(``apt-get install pebble``); the binaries can be overridden with constructor
arguments or the ``ACMEDRYRUN_PEBBLE`` / ``ACMEDRYRUN_CHALLTESTSRV`` environment
variables.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import datetime
import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acmedryrun.testing._challtestsrv import ChallTestSrvRecords

__all__ = [
    "LocalPebble",
    "LocalPebbleError",
    "ManagementAPIError",
    "PebbleNotInstalled",
    "PebbleStartError",
]

DEBIAN_PACKAGE = "pebble"
"""Debian package that ships both ``pebble`` and ``pebble-challtestsrv``."""

PEBBLE_ENV_VAR = "ACMEDRYRUN_PEBBLE"
CHALLTESTSRV_ENV_VAR = "ACMEDRYRUN_CHALLTESTSRV"

_LOOPBACK = "127.0.0.1"
# (connect, read) seconds for management calls: loopback answers in
# milliseconds, so anything slower means a wedged process, not a slow network.
_MGMT_TIMEOUT = (5.0, 10.0)
_PROBE_TIMEOUT = (0.5, 0.5)  # readiness polls retry anyway; keep each short
_STOP_GRACE_SECONDS = 5.0
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 40
_PORT_IN_USE_MARKER = "address already in use"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+=*")


class LocalPebbleError(RuntimeError):
    """Base class for every error raised by `LocalPebble`."""


class PebbleNotInstalled(LocalPebbleError):
    """A required binary (``pebble`` or ``pebble-challtestsrv``) was not found.

    Tests typically turn this into a skip; the message names the Debian package
    that provides the binary so the fix is obvious from the failure alone.
    """


class PebbleStartError(LocalPebbleError):
    """Pebble or challtestsrv exited early or did not answer within the timeout.

    The message carries the tail of both processes' logs because the reason
    (bad config, port clash, ...) is only ever printed there.
    """


class ManagementAPIError(LocalPebbleError):
    """A Pebble or challtestsrv management call failed or answered non-2xx.

    Attributes:
        url: the URL that was called.
        status_code: HTTP status, or None if no HTTP answer was received.
        body: response text (possibly empty), or the transport error text.
    """

    def __init__(self, url: str, status_code: int | None, body: str) -> None:
        self.url = url
        self.status_code = status_code
        self.body = body
        if status_code is None:
            message = f"management call to {url} failed: {body}"
        else:
            message = f"management call to {url} answered HTTP {status_code}: {body.strip()!r}"
        super().__init__(message)


def _find_binary(name: str, override: str | None, env_var: str) -> str:
    """Resolve a binary from an explicit path, an environment variable, or PATH.

    An explicit or environment-provided path that does not exist is an error
    rather than a silent fall back to PATH: a CI config that points at a
    specific build should never quietly test another one.
    """
    install_hint = f"install Debian's package '{DEBIAN_PACKAGE}' (apt-get install {DEBIAN_PACKAGE})"
    source = "argument"
    candidate = override
    if candidate is None:
        env_value = os.environ.get(env_var)
        if env_value:
            candidate = env_value
            source = f"${env_var}"
    if candidate is not None:
        resolved = shutil.which(candidate)
        if resolved is None:
            raise PebbleNotInstalled(
                f"{name} binary not found at {candidate!r} (from {source}): {install_hint}"
            )
        return resolved
    resolved = shutil.which(name)
    if resolved is None:
        raise PebbleNotInstalled(f"{name} binary not found on PATH: {install_hint}")
    return resolved


def _reserve_ports(count: int, *, dns: bool) -> tuple[list[int], int | None]:
    """Pick ``count`` distinct free TCP ports, plus one port free for both UDP and TCP.

    All sockets stay bound until every port is chosen so the kernel cannot
    hand out the same port twice; they are closed on return, which leaves a
    small window for another process to grab one (handled by retrying start).
    """
    held: list[socket.socket] = []
    try:
        tcp_ports: list[int] = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((_LOOPBACK, 0))
            tcp_ports.append(int(sock.getsockname()[1]))
        dns_port: int | None = None
        if dns:
            for _ in range(50):
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(udp)
                udp.bind((_LOOPBACK, 0))
                port = int(udp.getsockname()[1])
                tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(tcp)
                try:
                    tcp.bind((_LOOPBACK, port))
                except OSError:
                    continue
                dns_port = port
                break
            if dns_port is None:
                raise LocalPebbleError("could not find a port free for both UDP and TCP")
        return tcp_ports, dns_port
    finally:
        for sock in held:
            sock.close()


def _generate_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """Create a private CA and a server certificate for the loopback names.

    Returns ``(ca_cert_path, server_cert_path, server_key_path)``.  The CA key
    never touches the disk: nothing else should ever be signed by it.  Shape
    follows python-trio/trustme (EC P-256, constrained CA, serverAuth leaf)
    so strict verifiers (Go, OpenSSL with X509_STRICT) accept it.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(days=1)
    not_after = now + datetime.timedelta(days=365)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acmedryrun LocalPebble"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"acmedryrun LocalPebble test CA {os.urandom(4).hex()}"
            ),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "ca.pem"
    cert_path = directory / "server-cert.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    return ca_path, cert_path, key_path


def _dns_probe(port: int, timeout: float) -> bool:
    """Return True if a DNS server on ``127.0.0.1:port`` answers an A query over UDP.

    A hand-built query keeps this readiness check free of dnspython.
    """
    query_id = int.from_bytes(os.urandom(2), "big")
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    qname = b"".join(
        bytes([len(label)]) + label for label in b"acmedryrun-probe.invalid".split(b".")
    )
    packet = header + qname + b"\x00" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (_LOOPBACK, port))
            data, _ = sock.recvfrom(4096)
        except OSError:
            return False
    return len(data) >= 12 and struct.unpack(">H", data[:2])[0] == query_id


class LocalPebble(ChallTestSrvRecords):
    """Pebble + pebble-challtestsrv on free loopback ports, as a context manager.

    Usage::

        with LocalPebble() as pebble:
            client = MyAcmeClient(pebble.directory_url, verify=pebble.ca_bundle)
            pebble.set_txt("_acme-challenge.example.com", key_authz_digest)
            ...

    Every name resolves to ``default_ipv4`` (``127.0.0.1``) unless mocked, so
    Pebble validates http-01 against ``127.0.0.1:http_port`` and tls-alpn-01
    against ``127.0.0.1:tls_port``: the client under test must listen there.
    Certificates Pebble issues chain to `roots()`, which is regenerated on
    every start.

    Constructor options map onto Pebble's knobs:

    * ``nonce_reject``: percentage of valid nonces rejected with badNonce
      (``PEBBLE_WFE_NONCEREJECT``; Pebble's own default is 5, ours is 0 so
      tests are deterministic unless they ask for retries).
    * ``va_nosleep`` / ``va_sleep_time``: Pebble's VA sleeps a random 0-15 s
      before validating unless ``PEBBLE_VA_NOSLEEP=1``; ``va_sleep_time`` sets
      the maximum instead (``PEBBLE_VA_SLEEPTIME``).
    * ``authz_reuse``: percentage of valid authorizations reused
      (``PEBBLE_AUTHZREUSE``; Pebble's default is 50, ours 0).
    * ``blocklist``: domains Pebble refuses to issue for (``domainBlocklist``).
    * ``eab_keys`` / ``eab_required``: External Account Binding HMAC keys
      (kid -> base64url key) and whether newAccount requires EAB.
    * ``always_valid``: skip validation entirely (``PEBBLE_VA_ALWAYS_VALID``).
    * ``chain_length``: number of intermediates between leaf and root
      (``PEBBLE_CHAIN_LENGTH``; Pebble's default and minimum is 1).  Only the
      issuing intermediate is served by `intermediates()`.
    * ``default_ipv4``: address challtestsrv answers for unmocked A queries.
    * ``http_port`` / ``tls_port``: where the VA connects; free ports are
      chosen at start when not given.
    * ``extra_env``: further ``PEBBLE_*`` variables, e.g.
      ``{"PEBBLE_ALTERNATE_ROOTS": "1"}``.
    * ``pebble_bin`` / ``challtestsrv_bin``: binary overrides (else the
      ``ACMEDRYRUN_PEBBLE`` / ``ACMEDRYRUN_CHALLTESTSRV`` variables, else PATH).

    All files (config, TLS material, logs) live in a private temporary
    directory that `stop()` removes; `logs()` stays readable after stop.
    """

    def __init__(
        self,
        *,
        nonce_reject: int = 0,
        va_nosleep: bool = True,
        va_sleep_time: int | None = None,
        authz_reuse: int = 0,
        blocklist: Sequence[str] = (),
        eab_keys: Mapping[str, str] | None = None,
        eab_required: bool = False,
        always_valid: bool = False,
        chain_length: int | None = None,
        default_ipv4: str = "127.0.0.1",
        http_port: int | None = None,
        tls_port: int | None = None,
        startup_timeout: float = 20.0,
        extra_env: Mapping[str, str] | None = None,
        pebble_bin: str | None = None,
        challtestsrv_bin: str | None = None,
    ) -> None:
        """Validate options; nothing is started until `start()`."""
        for name, pct in (("nonce_reject", nonce_reject), ("authz_reuse", authz_reuse)):
            if not 0 <= pct <= 100:
                raise ValueError(f"{name} must be a percentage between 0 and 100, got {pct}")
        if va_sleep_time is not None and va_sleep_time < 0:
            raise ValueError("va_sleep_time must be >= 0")
        if chain_length is not None and chain_length < 1:
            raise ValueError("chain_length must be >= 1")
        if startup_timeout <= 0:
            raise ValueError("startup_timeout must be positive")
        if isinstance(blocklist, str):
            raise TypeError("blocklist must be a sequence of domain names, not a string")
        for port_name, port in (("http_port", http_port), ("tls_port", tls_port)):
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"{port_name} must be a TCP port number, got {port}")
        try:
            ipaddress.IPv4Address(default_ipv4)
        except ValueError as exc:
            raise ValueError(f"default_ipv4 must be an IPv4 address, got {default_ipv4!r}") from exc
        keys = dict(eab_keys or {})
        for kid, key in keys.items():
            if not kid or not _BASE64URL.fullmatch(key):
                raise ValueError(f"EAB key for kid {kid!r} must be non-empty base64url")
            try:
                base64.urlsafe_b64decode(key.rstrip("=") + "=" * (-len(key.rstrip("=")) % 4))
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"EAB key for kid {kid!r} is not base64url: {exc}") from exc

        self._nonce_reject = nonce_reject
        self._va_nosleep = va_nosleep
        self._va_sleep_time = va_sleep_time
        self._authz_reuse = authz_reuse
        self._blocklist = list(blocklist)
        self._eab_keys = keys
        self._eab_required = eab_required
        self._always_valid = always_valid
        self._chain_length = chain_length
        self._default_ipv4 = default_ipv4
        self._requested_http_port = http_port
        self._requested_tls_port = tls_port
        self._startup_timeout = startup_timeout
        self._extra_env = dict(extra_env or {})
        self._pebble_bin_override = pebble_bin
        self._challtestsrv_bin_override = challtestsrv_bin

        self._lock = threading.RLock()
        self._tmpdir: Path | None = None
        self._log_handle: BinaryIO | None = None
        self._log_path: str | None = None
        self._final_logs: str | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._session: requests.Session | None = None
        self._running = False
        self._atexit_registered = False

        self._directory_url: str | None = None
        self._ca_bundle: str | None = None
        self._dns_port: int | None = None
        self._http_port: int | None = None
        self._tls_port: int | None = None
        self._management_url: str | None = None
        self._challtestsrv_url: str | None = None

    @staticmethod
    def is_installed(pebble_bin: str | None = None, challtestsrv_bin: str | None = None) -> bool:
        """True if both binaries can be found (same lookup as `start()`).

        Meant for ``pytest.mark.skipif`` in suites that should still run on
        machines without Debian's ``pebble`` package.
        """
        try:
            _find_binary("pebble", pebble_bin, PEBBLE_ENV_VAR)
            _find_binary("pebble-challtestsrv", challtestsrv_bin, CHALLTESTSRV_ENV_VAR)
        except PebbleNotInstalled:
            return False
        return True

    # ------------------------------------------------------------------ state

    def _require(self, value: Any, name: str) -> Any:
        if value is None:
            raise LocalPebbleError(
                f"LocalPebble.{name} is only known after start(); "
                "call start() or use LocalPebble as a context manager"
            )
        return value

    @property
    def running(self) -> bool:
        """True between a successful `start()` and `stop()`."""
        return self._running

    @property
    def directory_url(self) -> str:
        """ACME directory URL, ``https://127.0.0.1:PORT/dir``."""
        return str(self._require(self._directory_url, "directory_url"))

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM CA certificate that signed Pebble's HTTPS certificate.

        This is the trust anchor for the ACME API and management API, not for
        the certificates Pebble issues (see `roots()`).  Removed by `stop()`.
        """
        return str(self._require(self._ca_bundle, "ca_bundle"))

    @property
    def dns_resolver(self) -> str:
        """``127.0.0.1:PORT`` of challtestsrv's DNS server (Pebble's ``-dnsserver``)."""
        return f"{_LOOPBACK}:{self.dns_port}"

    @property
    def dns_port(self) -> int:
        """Port of challtestsrv's DNS server (UDP and TCP) on 127.0.0.1."""
        return int(self._require(self._dns_port, "dns_port"))

    @property
    def http_port(self) -> int:
        """Port Pebble's VA connects to for http-01 (config ``httpPort``)."""
        return int(self._require(self._http_port, "http_port"))

    @property
    def tls_port(self) -> int:
        """Port Pebble's VA connects to for tls-alpn-01 (config ``tlsPort``)."""
        return int(self._require(self._tls_port, "tls_port"))

    @property
    def management_url(self) -> str:
        """Base URL of Pebble's HTTPS management API, ``https://127.0.0.1:PORT``."""
        return str(self._require(self._management_url, "management_url"))

    @property
    def challtestsrv_url(self) -> str:
        """Base URL of challtestsrv's management API, ``http://127.0.0.1:PORT``."""
        return str(self._require(self._challtestsrv_url, "challtestsrv_url"))

    @property
    def pids(self) -> tuple[int, ...]:
        """PIDs of the started processes (challtestsrv, pebble); empty when stopped."""
        return tuple(proc.pid for proc in self._procs)

    @property
    def log_path(self) -> str:
        """File holding both processes' combined stdout/stderr (removed by `stop()`)."""
        return str(self._require(self._log_path, "log_path"))

    def logs(self) -> str:
        """Return the combined stdout/stderr of both processes.

        Still available after `stop()` (kept in memory) so a failing test can
        attach it to its report.
        """
        if self._final_logs is not None and not self._running:
            return self._final_logs
        if self._log_path is None:
            return ""
        try:
            return Path(self._log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return self._final_logs or ""

    def _log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        text = self.logs().rstrip("\n")
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(no output)"

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalPebble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalPebble:
        """Start challtestsrv and Pebble and wait until both answer.

        Raises `PebbleNotInstalled` when a binary is missing and
        `PebbleStartError` when the processes exit early or do not become
        ready within ``startup_timeout`` seconds.  A port lost to a race
        between choosing and binding it is retried with new ports.  On any
        failure everything already started is stopped again.
        """
        with self._lock:
            if self._running:
                raise LocalPebbleError("LocalPebble is already running")
            pebble_bin = _find_binary("pebble", self._pebble_bin_override, PEBBLE_ENV_VAR)
            challtestsrv_bin = _find_binary(
                "pebble-challtestsrv", self._challtestsrv_bin_override, CHALLTESTSRV_ENV_VAR
            )
            self._final_logs = None
            self._tmpdir = Path(tempfile.mkdtemp(prefix="acmedryrun-pebble-"))
            try:
                self._log_path = str(self._tmpdir / "processes.log")
                self._log_handle = open(  # noqa: SIM115 - lives until stop()
                    self._log_path, "ab", buffering=0
                )
                ca_path, cert_path, key_path = _generate_tls_material(self._tmpdir)
                self._ca_bundle = str(ca_path)
                session = requests.Session()
                # Never pick up REQUESTS_CA_BUNDLE / proxies from the environment:
                # the former overrides Session.verify, the latter breaks loopback.
                session.trust_env = False
                self._session = session
                if not self._atexit_registered:
                    atexit.register(self._atexit_stop)
                    self._atexit_registered = True
                deadline = time.monotonic() + self._startup_timeout
                for attempt in range(1, _START_ATTEMPTS + 1):
                    retry = self._start_attempt(
                        attempt,
                        deadline,
                        pebble_bin=pebble_bin,
                        challtestsrv_bin=challtestsrv_bin,
                        cert_path=cert_path,
                        key_path=key_path,
                    )
                    if not retry:
                        break
                    self._kill_processes()
                else:
                    raise PebbleStartError(
                        f"could not start Pebble after {_START_ATTEMPTS} attempts "
                        f"(ports kept being taken); log tail:\n{self._log_tail()}"
                    )
            except BaseException:
                self.stop()
                raise
            self._running = True
            return self

    def _start_attempt(
        self,
        attempt: int,
        deadline: float,
        *,
        pebble_bin: str,
        challtestsrv_bin: str,
        cert_path: Path,
        key_path: Path,
    ) -> bool:
        """Launch both processes once; return True if a port race calls for a retry."""
        tmpdir = self._tmpdir
        if tmpdir is None:
            raise LocalPebbleError("internal error: start attempt without a temp dir")
        wanted = 3 + (self._requested_http_port is None) + (self._requested_tls_port is None)
        ports, dns_port = _reserve_ports(wanted, dns=True)
        if dns_port is None:
            raise LocalPebbleError("internal error: no DNS port reserved")
        pebble_port, pebble_mgmt_port, ctsrv_mgmt_port = ports[0], ports[1], ports[2]
        spare = iter(ports[3:])
        http_port = self._requested_http_port or next(spare)
        tls_port = self._requested_tls_port or next(spare)
        self._dns_port = dns_port
        self._http_port = http_port
        self._tls_port = tls_port
        self._directory_url = f"https://{_LOOPBACK}:{pebble_port}/dir"
        self._management_url = f"https://{_LOOPBACK}:{pebble_mgmt_port}"
        self._challtestsrv_url = f"http://{_LOOPBACK}:{ctsrv_mgmt_port}"

        config = {
            "pebble": {
                "listenAddress": f"{_LOOPBACK}:{pebble_port}",
                "managementListenAddress": f"{_LOOPBACK}:{pebble_mgmt_port}",
                "certificate": str(cert_path),
                "privateKey": str(key_path),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": self._eab_required,
                "externalAccountMACKeys": self._eab_keys,
                "domainBlocklist": self._blocklist,
            }
        }
        config_path = tmpdir / "pebble-config.json"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

        if self._log_handle is None:
            raise LocalPebbleError("internal error: start attempt without a log file")
        self._log_handle.write(f"--- acmedryrun: start attempt {attempt} ---\n".encode())
        log_offset = len(self.logs())

        ctsrv_cmd = [
            challtestsrv_bin,
            "-dns01", f"{_LOOPBACK}:{dns_port}",
            "-http01", "",
            "-https01", "",
            "-tlsalpn01", "",
            "-management", f"{_LOOPBACK}:{ctsrv_mgmt_port}",
            "-defaultIPv4", self._default_ipv4,
            # An empty default IPv6 stops AAAA answers of ::1, which Pebble's
            # VA would otherwise prefer and dial instead of 127.0.0.1.
            "-defaultIPv6", "",
        ]  # fmt: skip
        pebble_cmd = [
            pebble_bin,
            "-config", str(config_path),
            "-dnsserver", f"{_LOOPBACK}:{dns_port}",
        ]  # fmt: skip
        self._procs.append(self._spawn(ctsrv_cmd, self._base_env()))
        self._procs.append(self._spawn(pebble_cmd, self._pebble_env()))
        return self._wait_ready(deadline, log_offset)

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start one process in its own session, logging to the shared log file."""
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            cwd=str(self._tmpdir),
            env=env,
            start_new_session=True,
        )

    @staticmethod
    def _base_env() -> dict[str, str]:
        """Inherited environment minus any stray ``PEBBLE_*`` settings."""
        return {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}

    def _pebble_env(self) -> dict[str, str]:
        """Environment for Pebble: every knob set explicitly so defaults never leak in."""
        env = self._base_env()
        env["PEBBLE_WFE_NONCEREJECT"] = str(self._nonce_reject)
        env["PEBBLE_AUTHZREUSE"] = str(self._authz_reuse)
        if self._va_nosleep:
            env["PEBBLE_VA_NOSLEEP"] = "1"
        if self._va_sleep_time is not None:
            env["PEBBLE_VA_SLEEPTIME"] = str(self._va_sleep_time)
        if self._always_valid:
            env["PEBBLE_VA_ALWAYS_VALID"] = "1"
        if self._chain_length is not None:
            env["PEBBLE_CHAIN_LENGTH"] = str(self._chain_length)
        env.update(self._extra_env)
        return env

    def _wait_ready(self, deadline: float, log_offset: int) -> bool:
        """Poll until Pebble, challtestsrv and the DNS port answer.

        Returns True when a listener could not bind its port (the caller
        retries with fresh ports); raises `PebbleStartError` on any other
        early exit or on timeout.  The log is checked as well as the exit
        status because challtestsrv 2.4.0 only *logs* bind failures of its
        DNS and management listeners and keeps running.
        """
        names = ("pebble-challtestsrv", "pebble")
        ready = {"directory": False, "challtestsrv": False, "dns": False}
        while True:
            if self._port_clash_logged(log_offset):
                return True
            for name, proc in zip(names, self._procs, strict=True):
                code = proc.poll()
                if code is not None:
                    time.sleep(0.05)  # let the last log lines land
                    if self._port_clash_logged(log_offset):
                        return True
                    raise PebbleStartError(
                        f"{name} exited early with status {code}; log tail:\n{self._log_tail()}"
                    )
            if not ready["challtestsrv"]:
                ready["challtestsrv"] = self._answers(self.challtestsrv_url + "/", verify=False)
            if not ready["dns"]:
                ready["dns"] = _dns_probe(self.dns_port, timeout=0.5)
            if not ready["directory"]:
                ready["directory"] = self._directory_answers()
            if all(ready.values()):
                return self._port_clash_logged(log_offset)
            if time.monotonic() >= deadline:
                waiting = ", ".join(k for k, v in ready.items() if not v)
                raise PebbleStartError(
                    f"Pebble did not become ready within {self._startup_timeout:g}s "
                    f"(still waiting for: {waiting}); log tail:\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _port_clash_logged(self, log_offset: int) -> bool:
        """True if a process logged a bind failure since this attempt began."""
        return _PORT_IN_USE_MARKER in self.logs()[log_offset:].lower()

    def _started_session(self) -> requests.Session:
        """The HTTP session, which exists from start() until stop()."""
        if self._session is None:
            raise LocalPebbleError("internal error: no HTTP session outside start()/stop()")
        return self._session

    def _answers(self, url: str, *, verify: bool | str) -> bool:
        """True if anything answers HTTP at ``url`` (status is irrelevant)."""
        try:
            self._started_session().get(url, timeout=_PROBE_TIMEOUT, verify=verify)
        except requests.RequestException:
            return False
        return True

    def _directory_answers(self) -> bool:
        """True once the ACME directory is served as JSON over trusted TLS."""
        try:
            resp = self._started_session().get(
                self.directory_url, timeout=_PROBE_TIMEOUT, verify=self.ca_bundle
            )
            return resp.status_code == 200 and "newNonce" in resp.json()
        except (requests.RequestException, ValueError):
            return False

    def stop(self) -> None:
        """Stop both processes and delete the temporary directory.

        Idempotent and safe after a failed start.  Each process gets SIGTERM,
        up to five seconds to exit, then SIGKILL; only the PIDs this instance
        started are signalled.
        """
        with self._lock:
            self._running = False
            self._kill_processes()
            if self._session is not None:
                self._session.close()
                self._session = None
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None
            if self._tmpdir is not None:
                self._final_logs = self.logs()
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            if self._atexit_registered:
                atexit.unregister(self._atexit_stop)
                self._atexit_registered = False

    def _kill_processes(self) -> None:
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _atexit_stop(self) -> None:
        """Interpreter-exit safety net so a forgotten instance leaves no orphans."""
        self.stop()

    # ------------------------------------------------------- management calls

    def _mgmt_session(self) -> requests.Session:
        if self._session is None or not self._running:
            raise LocalPebbleError(
                "LocalPebble is not running; call start() or use it as a context manager"
            )
        return self._session

    def _challtestsrv_post(self, endpoint: str, payload: Mapping[str, Any]) -> None:
        """POST a JSON payload to challtestsrv; raise `ManagementAPIError` unless 2xx."""
        session = self._mgmt_session()
        url = f"{self.challtestsrv_url}/{endpoint}"
        try:
            resp = session.post(url, json=dict(payload), timeout=_MGMT_TIMEOUT, verify=False)
        except requests.RequestException as exc:
            raise ManagementAPIError(url, None, str(exc)) from exc
        if not 200 <= resp.status_code < 300:
            raise ManagementAPIError(url, resp.status_code, resp.text)

    def _pebble_get(self, path: str) -> str:
        """GET text from Pebble's management API, trusting only `ca_bundle`."""
        session = self._mgmt_session()
        url = f"{self.management_url}{path}"
        try:
            resp = session.get(url, timeout=_MGMT_TIMEOUT, verify=self.ca_bundle)
        except requests.RequestException as exc:
            raise ManagementAPIError(url, None, str(exc)) from exc
        if not 200 <= resp.status_code < 300:
            raise ManagementAPIError(url, resp.status_code, resp.text)
        return resp.text

    def roots(self, index: int = 0) -> str:
        """PEM of the root that signs issued certificates (``/roots/INDEX``).

        Index 0 is the default chain; others exist with
        ``PEBBLE_ALTERNATE_ROOTS``.  Regenerated on every Pebble start.
        """
        return self._pebble_get(f"/roots/{int(index)}")

    def intermediates(self, index: int = 0) -> str:
        """PEM of the intermediate that signs issued certificates (``/intermediates/INDEX``)."""
        return self._pebble_get(f"/intermediates/{int(index)}")
