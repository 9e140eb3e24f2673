"""A throw-away acme2certifier ACME server on loopback: a second, independent CA for tests.

Every other test runs against Pebble, whose habits (asynchronous validation, an
``error`` object on every failed challenge, an order that turns ``invalid``) are not
every CA's.  `LocalA2C` runs grindsa's acme2certifier (RFC 8555 server, Python) with
its ``openssl`` CA handler, which signs certificates itself with a CA generated here,
so an end-to-end matrix can hold acmedryrun's verdicts against two implementations.

What runs, and where (everything on loopback, nothing outlives `stop`):

* acme2certifier's WSGI application, served over TLS by ``tests/a2c_server.py`` on
  ``127.0.0.1:PORT`` (a free port) with a generated TLS CA (`ca_bundle`), in
  acme2certifier's own virtualenv ``.venv-a2c`` (its dependency pins are not ours;
  ``scripts/install-a2c`` creates it, ``scripts/dev test`` calls that);
* ``pebble-challtestsrv`` (Debian's ``pebble`` package) as its programmable DNS
  server, on port 53 of a random loopback address `dns_address`.

acme2certifier 0.46.3 cannot be pointed at other ports: its ``dns_server_list`` takes
bare addresses (dnspython then asks port 53), http-01 fetches
``http://ADDRESS/.well-known/acme-challenge/TOKEN`` (port 80, RFC 8555 section 8.3)
and tls-alpn-01 connects to port 443 (RFC 8737 section 3).  So each instance claims
one random address in 127.0.0.0/8 (all of it is on ``lo`` on Linux) whose ports 53,
80 and 443 are free, serves DNS there, and answers every A query with it: the
solvers bind `http_address`:`http_port` (80) and `tls_address`:`tls_port` (443).
Binding ports below 1024 needs root (or ``CAP_NET_BIND_SERVICE``).

Usage::

    with LocalA2C() as ca:
        ca.add_a("dead.example.com", ["127.0.0.2"])
        report = acmedryrun.dry_run(
            ["www.example.com"], directory=ca.directory_url, ca_bundle=ca.ca_bundle,
            dns_resolver=ca.dns_resolver, email="admin@example.com",
            solver=HTTP01Standalone(port=ca.http_port, address=ca.http_address))

The pytest fixture ``a2c`` (session scope, in ``tests/a2c_fixtures.py``) yields one
instance; a test module loads it with ``pytest_plugins = ["a2c_fixtures"]``.
"""

from __future__ import annotations

import atexit
import configparser
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import dns.exception
import dns.message
import dns.query
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acmedryrun.testing._challtestsrv import ChallTestSrvRecords

__all__ = [
    "A2C_VERSION",
    "A2CNotInstalled",
    "A2CStartError",
    "LocalA2C",
    "LocalA2CError",
    "installed_version",
    "unused_loopback_address",
]

A2C_VERSION = "0.46.3"
"""The acme2certifier release the suite is pinned to (``scripts/install-a2c``)."""

PYTHON_ENV_VAR = "ACMEDRYRUN_A2C_PYTHON"
CHALLTESTSRV_ENV_VAR = "ACMEDRYRUN_CHALLTESTSRV"

_REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = _REPO / ".venv-a2c" / "bin" / "python"
SERVER_SCRIPT = Path(__file__).resolve().with_name("a2c_server.py")
_INSTALL_HINT = "run scripts/install-a2c (scripts/dev test does it too)"

_LOOPBACK = "127.0.0.1"
_DNS_PORT = 53     # dnspython's default: acme2certifier's dns_server_list has no ports
_HTTP_PORT = 80    # RFC 8555 section 8.3
_TLS_PORT = 443    # RFC 8737 section 3
_START_ATTEMPTS = 3
_STOP_GRACE_SECONDS = 5.0
_MGMT_TIMEOUT = (5.0, 10.0)
_PROBE_TIMEOUT = (0.5, 2.0)
_LOG_TAIL_LINES = 40
_PORT_IN_USE_MARKERS = ("address already in use", "errno 98")
# Proxies would send acme2certifier's http-01 fetches of 127.x addresses elsewhere.
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class LocalA2CError(RuntimeError):
    """Base class for every error raised by `LocalA2C`."""


class A2CNotInstalled(LocalA2CError):
    """acme2certifier's virtualenv, or pebble-challtestsrv, is missing; the message says how to
    install it."""


class A2CStartError(LocalA2CError):
    """A process exited early or did not answer in time; the message has the log tail."""


# ------------------------------------------------------------------------- helpers


def _find_python(override: str | None) -> str:
    """acme2certifier's interpreter: the argument, ``$ACMEDRYRUN_A2C_PYTHON`` or .venv-a2c."""
    candidate = override or os.environ.get(PYTHON_ENV_VAR) or str(DEFAULT_PYTHON)
    resolved = shutil.which(candidate)
    if resolved is None:
        raise A2CNotInstalled(
            f"acme2certifier's Python {candidate!r} not found: {_INSTALL_HINT}")
    return resolved


def installed_version(python: str | None = None) -> str | None:
    """The acme2certifier version importable by ``python`` (None when there is none)."""
    try:
        exe = _find_python(python)
    except A2CNotInstalled:
        return None
    proc = subprocess.run(
        [exe, "-c", "from acme2certifier.acme_srv.version import __version__; print(__version__)"],
        capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _find_challtestsrv(override: str | None) -> str:
    candidate = override or os.environ.get(CHALLTESTSRV_ENV_VAR) or "pebble-challtestsrv"
    resolved = shutil.which(candidate)
    if resolved is None:
        raise A2CNotInstalled(
            f"{candidate!r} not found: install Debian's package 'pebble' (apt-get install pebble)")
    return resolved


def _random_loopback() -> str:
    """A random address of 127.0.0.0/8 outside 127.0.0.0/16 (where the usual ones live)."""
    return f"127.{1 + secrets.randbelow(254)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def _bindable(address: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((address, port))
        except PermissionError as exc:
            raise A2CStartError(
                f"cannot bind {address}:{port} ({exc}): acme2certifier validates on ports 53, 80"
                " and 443 only, which needs root or CAP_NET_BIND_SERVICE") from exc
        except OSError:
            return False
    return True


def _claim_address() -> str:
    """A loopback address whose TCP 53, 80, 443 and UDP 53 are free right now."""
    for _ in range(50):
        address = _random_loopback()
        if (_bindable(address, _DNS_PORT, socket.SOCK_DGRAM)
                and all(_bindable(address, p, socket.SOCK_STREAM)
                        for p in (_DNS_PORT, _HTTP_PORT, _TLS_PORT))):
            return address
    raise A2CStartError("no loopback address with free ports 53, 80 and 443 found")


def unused_loopback_address(*ports: int) -> str:
    """A random loopback address where nothing accepts TCP on any of ``ports``.

    For tests that point a name at an address with no server behind it: the CA's
    validation gets "connection refused" at once instead of a timeout.
    """
    for _ in range(50):
        address = _random_loopback()
        if all(_refused(address, p) for p in ports):
            return address
    raise LocalA2CError(f"no loopback address found with ports {ports} closed")


def _refused(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False


def _free_tcp_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports of 127.0.0.1 (held together while chosen)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((_LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for sock in held:
            sock.close()


def _ca(common_name: str, now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey,
                                                         x509.Certificate]:
    """A self-signed EC P-256 CA (path length 0), valid from yesterday for 30 days."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acmedryrun LocalA2C"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {secrets.token_hex(4)}"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _generate_material(directory: Path) -> dict[str, Path]:
    """The TLS trust anchor and server certificate, and the CA that signs issued certificates.

    Two CAs on purpose: `LocalA2C.ca_bundle` is only for the ACME API's TLS, the
    issuer only for what acme2certifier issues; the TLS CA's key never touches disk.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    tls_ca_key, tls_ca = _ca("acmedryrun LocalA2C TLS CA", now)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(tls_ca.subject).public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(_LOOPBACK)), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            tls_ca_key.public_key()), critical=False)
        .sign(tls_ca_key, hashes.SHA256())
    )
    issuer_key, issuer = _ca("acmedryrun LocalA2C issuing CA", now)
    paths = {
        "ca_bundle": directory / "tls-ca.pem",
        "server_cert": directory / "server-cert.pem",
        "server_key": directory / "server-key.pem",
        "issuer_cert": directory / "issuer-cert.pem",
        "issuer_key": directory / "issuer-key.pem",
    }
    paths["ca_bundle"].write_bytes(tls_ca.public_bytes(serialization.Encoding.PEM))
    paths["server_cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    _write_private(paths["server_key"], _pem_key(leaf_key))
    paths["issuer_cert"].write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    _write_private(paths["issuer_key"], _pem_key(issuer_key))
    return paths


# ------------------------------------------------------------------------- LocalA2C


class LocalA2C(ChallTestSrvRecords):
    """acme2certifier plus a programmable DNS server on loopback, started and stopped as one.

    Args:
        eab_keys: ``{kid: base64url HMAC key}``; when given, every newAccount needs a
            matching external account binding (RFC 8555 section 7.3.4), checked by
            acme2certifier's JSON-file EAB handler.  Use keys of 32 bytes or more: a
            24-byte key was refused ("invalid eab credentials") even when right.
        require_contact: acme2certifier refuses a newAccount without a contact
            (``malformed``, "Contact information is missing"); False turns that
            off (``[Account] contact_check_disable``).
        validation_timeout: Seconds acme2certifier waits on one http-01/tls-alpn-01
            fetch (``[Challenge] challenge_validation_timeout``).
        debug: acme2certifier's debug log (thousands of lines per order) into `logs`.
        python: acme2certifier's interpreter (default ``$ACMEDRYRUN_A2C_PYTHON``, else
            ``.venv-a2c/bin/python`` at the repository root).
        challtestsrv_bin: The DNS server binary (default ``$ACMEDRYRUN_CHALLTESTSRV``,
            else ``pebble-challtestsrv`` on PATH).
        startup_timeout: Seconds to wait for both processes to answer.
    """

    def __init__(
        self,
        *,
        eab_keys: Mapping[str, str] | None = None,
        require_contact: bool = True,
        validation_timeout: int = 5,
        debug: bool = False,
        python: str | None = None,
        challtestsrv_bin: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if validation_timeout < 1:
            raise ValueError("validation_timeout must be at least 1 second")
        if startup_timeout <= 0:
            raise ValueError("startup_timeout must be positive")
        self._eab_keys = dict(eab_keys or {})
        for kid, key in self._eab_keys.items():
            if not kid or not key:
                raise ValueError("EAB kids and HMAC keys must be non-empty")
        self._require_contact = require_contact
        self._validation_timeout = validation_timeout
        self._debug = debug
        self._python_override = python
        self._challtestsrv_override = challtestsrv_bin
        self._startup_timeout = startup_timeout

        self._lock = threading.RLock()
        self._tmpdir: Path | None = None
        self._paths: dict[str, Path] = {}
        self._python: str | None = None
        self._log_handle: BinaryIO | None = None
        self._log_path: Path | None = None
        self._final_logs: str | None = None
        self._dns_proc: subprocess.Popen[bytes] | None = None
        self._acme_proc: subprocess.Popen[bytes] | None = None
        self._session: requests.Session | None = None
        self._running = False
        self._atexit_registered = False
        self._address: str | None = None
        self._acme_port: int | None = None
        self._mgmt_port: int | None = None

    @staticmethod
    def is_installed(python: str | None = None) -> bool:
        """True if the pinned acme2certifier (`A2C_VERSION`) imports in its interpreter."""
        return installed_version(python) == A2C_VERSION

    # ------------------------------------------------------------------ state

    def _require(self, value: object, name: str) -> object:
        if value is None:
            raise LocalA2CError(f"LocalA2C.{name} is only known after start()")
        return value

    @property
    def running(self) -> bool:
        """True between `start` and `stop` (also while the ACME server alone is stopped)."""
        return self._running

    @property
    def server_running(self) -> bool:
        """True while the ACME server process runs (False after `stop_server`)."""
        return self._acme_proc is not None and self._acme_proc.poll() is None

    @property
    def acme_port(self) -> int:
        """The ACME server's TLS port on 127.0.0.1."""
        return int(str(self._require(self._acme_port, "acme_port")))

    @property
    def directory_url(self) -> str:
        """``https://127.0.0.1:PORT/directory``."""
        return f"https://{_LOOPBACK}:{self.acme_port}/directory"

    @property
    def ca_bundle(self) -> str:
        """PEM of the CA that signed the ACME server's TLS certificate (removed by `stop`)."""
        return str(self._require(self._paths.get("ca_bundle"), "ca_bundle"))

    @property
    def issuer_cert(self) -> str:
        """PEM path of the CA that signs the certificates acme2certifier issues."""
        return str(self._require(self._paths.get("issuer_cert"), "issuer_cert"))

    @property
    def dns_address(self) -> str:
        """The loopback address of the DNS server (port 53), also every name's default A."""
        return str(self._require(self._address, "dns_address"))

    @property
    def dns_port(self) -> int:
        """53: acme2certifier cannot ask any other port."""
        return _DNS_PORT

    @property
    def dns_resolver(self) -> str:
        """``ADDRESS:53``, for ``dns_resolver=`` (the same server acme2certifier asks)."""
        return f"{self.dns_address}:{_DNS_PORT}"

    @property
    def http_address(self) -> str:
        """Where acme2certifier's http-01 fetch connects for a name without its own A record."""
        return self.dns_address

    @property
    def http_port(self) -> int:
        """80: acme2certifier always fetches http-01 from port 80."""
        return _HTTP_PORT

    @property
    def tls_address(self) -> str:
        """Where acme2certifier's tls-alpn-01 check connects (the default A address)."""
        return self.dns_address

    @property
    def tls_port(self) -> int:
        """443: acme2certifier always connects to port 443 for tls-alpn-01."""
        return _TLS_PORT

    @property
    def management_url(self) -> str:
        """challtestsrv's management API, ``http://127.0.0.1:PORT``."""
        return f"http://{_LOOPBACK}:{self._require(self._mgmt_port, 'management_url')}"

    @property
    def pids(self) -> tuple[int, ...]:
        """PIDs of the running processes (DNS server, ACME server)."""
        return tuple(p.pid for p in (self._dns_proc, self._acme_proc)
                     if p is not None and p.poll() is None)

    @property
    def tmpdir(self) -> str:
        """The instance's temporary directory (removed by `stop`)."""
        return str(self._require(self._tmpdir, "tmpdir"))

    def logs(self) -> str:
        """Both processes' combined output; kept in memory after `stop`."""
        if self._final_logs is not None and not self._running:
            return self._final_logs
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return self._final_logs or ""

    def _log_tail(self) -> str:
        lines = self.logs().rstrip("\n").splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else "(no output)"

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalA2C:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> LocalA2C:
        """Start the DNS server and acme2certifier; return once both answer.

        Raises:
            A2CNotInstalled: acme2certifier's virtualenv or pebble-challtestsrv is missing.
            A2CStartError: a process exited early or did not answer in time (with logs).
        """
        with self._lock:
            if self._running:
                raise LocalA2CError("LocalA2C is already running")
            python = _find_python(self._python_override)
            version = installed_version(python)
            if version != A2C_VERSION:
                found = f"version {version}" if version else "no acme2certifier"
                raise A2CNotInstalled(
                    f"{python} has {found}, the suite needs acme2certifier {A2C_VERSION}:"
                    f" {_INSTALL_HINT}")
            self._python = python
            challtestsrv = _find_challtestsrv(self._challtestsrv_override)
            self._final_logs = None
            self._tmpdir = Path(tempfile.mkdtemp(prefix="acmedryrun-a2c-"))
            try:
                self._log_path = self._tmpdir / "processes.log"
                self._log_handle = open(self._log_path, "ab", buffering=0)  # noqa: SIM115
                self._paths = _generate_material(self._tmpdir)
                (self._tmpdir / "issued").mkdir()
                self._session = requests.Session()
                self._session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies stay out
                if not self._atexit_registered:
                    atexit.register(self.stop)
                    self._atexit_registered = True
                deadline = time.monotonic() + self._startup_timeout
                for attempt in range(1, _START_ATTEMPTS + 1):
                    if not self._start_attempt(attempt, challtestsrv, deadline):
                        break
                    self._kill(all_processes=True)
                else:
                    raise A2CStartError(
                        f"ports kept being taken in {_START_ATTEMPTS} attempts; log tail:\n"
                        f"{self._log_tail()}")
            except BaseException:
                self.stop()
                raise
            self._running = True
            return self

    def _start_attempt(self, attempt: int, challtestsrv: str, deadline: float) -> bool:
        """Launch both processes once; True means a port was taken and to try again."""
        assert self._tmpdir is not None
        assert self._log_handle is not None
        self._address = _claim_address()
        self._acme_port, self._mgmt_port = _free_tcp_ports(2)
        self._write_config()
        self._log_handle.write(f"--- LocalA2C: start attempt {attempt} ---\n".encode())
        offset = len(self.logs())
        self._dns_proc = self._spawn([
            challtestsrv,
            "-dns01", f"{self._address}:{_DNS_PORT}",
            "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", f"{_LOOPBACK}:{self._mgmt_port}",
            "-defaultIPv4", self._address,
            # No AAAA answers: acme2certifier would try ::1 first, where nothing listens.
            "-defaultIPv6", "",
        ])  # fmt: skip
        if self._wait(deadline, offset, dns=True):
            return True
        return self._launch_server(deadline)

    def _launch_server(self, deadline: float) -> bool:
        offset = len(self.logs())
        self._acme_proc = self._spawn([
            str(self._python), str(SERVER_SCRIPT),
            "--listen", f"{_LOOPBACK}:{self._acme_port}",
            "--cert", str(self._paths["server_cert"]),
            "--key", str(self._paths["server_key"]),
        ], a2c=True)  # fmt: skip
        return self._wait(deadline, offset, dns=False)

    def _write_config(self) -> None:
        """acme_srv.cfg (acme2certifier's INI format) for this instance."""
        assert self._tmpdir is not None
        assert self._address is not None
        tmp = self._tmpdir
        cfg = configparser.ConfigParser(interpolation=None)
        cfg["DEFAULT"] = {
            "debug": str(self._debug),
            # Bare addresses only: dnspython asks port 53 (hence the loopback address).
            "dns_server_list": json.dumps([self._address]),
        }
        cfg["Nonce"] = {"nonce_check_disable": "False"}
        cfg["Account"] = {"contact_check_disable": str(not self._require_contact)}
        cfg["CAhandler"] = {
            "handler_module": "acme2certifier.cahandlers.openssl_ca_handler",
            "issuing_ca_key": str(self._paths["issuer_key"]),
            "issuing_ca_cert": str(self._paths["issuer_cert"]),
            "issuing_ca_crl": str(tmp / "crl.pem"),
            "cert_save_path": str(tmp / "issued"),
            "cert_validity_days": "7",
        }
        cfg["DBhandler"] = {"dbfile": str(tmp / "acme_srv.db")}
        cfg["Challenge"] = {"challenge_validation_timeout": str(self._validation_timeout)}
        if self._eab_keys:
            key_file = tmp / "eab-keys.json"
            _write_private(key_file, json.dumps(self._eab_keys).encode())
            cfg["EABhandler"] = {
                "eab_handler_module": "acme2certifier.eabhandlers.json_handler",
                "key_file": str(key_file),
            }
        with open(tmp / "acme_srv.cfg", "w", encoding="utf-8") as fh:
            cfg.write(fh)

    def _env(self, a2c: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in _PROXY_VARS and not k.startswith("PYTHON")}
        if a2c:
            assert self._tmpdir is not None
            env["ACME_SRV_CONFIGFILE"] = str(self._tmpdir / "acme_srv.cfg")
        return env

    def _spawn(self, cmd: list[str], *, a2c: bool = False) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_handle, stderr=subprocess.STDOUT,
            cwd=str(self._tmpdir), env=self._env(a2c), start_new_session=True)

    def _wait(self, deadline: float, offset: int, *, dns: bool) -> bool:
        """Poll until the DNS server (``dns``) or the ACME server answers.

        True when a port was taken (the caller retries); raises on an early exit or
        timeout.  The log is read as well as the exit status: challtestsrv only logs
        a failed bind and keeps running.
        """
        proc = self._dns_proc if dns else self._acme_proc
        label = "pebble-challtestsrv" if dns else "acme2certifier"
        assert proc is not None
        while True:
            if self._port_clash(offset):
                return True
            code = proc.poll()
            if code is not None:
                time.sleep(0.05)
                if self._port_clash(offset):
                    return True
                raise A2CStartError(
                    f"{label} exited early with status {code}; log tail:\n{self._log_tail()}")
            if (self._dns_answers() and self._mgmt_answers()) if dns else self._acme_answers():
                return self._port_clash(offset)
            if time.monotonic() >= deadline:
                raise A2CStartError(
                    f"{label} did not answer within {self._startup_timeout:g}s; log tail:\n"
                    f"{self._log_tail()}")
            time.sleep(0.05)

    def _port_clash(self, offset: int) -> bool:
        text = self.logs()[offset:].lower()
        return any(marker in text for marker in _PORT_IN_USE_MARKERS)

    def _dns_answers(self) -> bool:
        query = dns.message.make_query("probe.localtest.", "A")
        try:
            dns.query.udp(query, str(self._address), port=_DNS_PORT, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return False
        return True

    def _mgmt_answers(self) -> bool:
        assert self._session is not None
        try:
            self._session.get(self.management_url + "/", timeout=_PROBE_TIMEOUT)
        except requests.RequestException:
            return False
        return True

    def _acme_answers(self) -> bool:
        assert self._session is not None
        try:
            resp = self._session.get(self.directory_url, timeout=_PROBE_TIMEOUT,
                                     verify=self.ca_bundle)
            return resp.status_code == 200 and "newNonce" in resp.json()
        except (requests.RequestException, ValueError):
            return False

    def stop_server(self) -> None:
        """Stop only the ACME server (SIGTERM, then SIGKILL): an outage in mid-run.

        DNS, the port, the database and the CAs stay, so `start_server` brings the
        same CA back with its accounts and orders.
        """
        with self._lock:
            if not self._running:
                raise LocalA2CError("LocalA2C is not running")
            self._kill(all_processes=False)

    def start_server(self) -> None:
        """Start the ACME server again on the same port after `stop_server`.

        Raises:
            A2CStartError: it did not come back (e.g. the port was taken meanwhile).
        """
        with self._lock:
            if not self._running:
                raise LocalA2CError("LocalA2C is not running; use start()")
            if self.server_running:
                return
            if self._launch_server(time.monotonic() + self._startup_timeout):
                self._kill(all_processes=False)
                raise A2CStartError(
                    f"port {self._acme_port} was taken while the server was stopped")

    def stop(self) -> None:
        """Stop both processes and delete the temporary directory.  Idempotent."""
        with self._lock:
            self._running = False
            self._kill(all_processes=True)
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
                self._paths = {}
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def _kill(self, *, all_processes: bool) -> None:
        procs = [self._acme_proc] + ([self._dns_proc] if all_processes else [])
        self._acme_proc = None
        if all_processes:
            self._dns_proc = None
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---------------------------------------------------------------- DNS records

    def _challtestsrv_post(self, endpoint: str, payload: Mapping[str, object]) -> None:
        if self._session is None or not self._running:
            raise LocalA2CError("LocalA2C is not running")
        url = f"{self.management_url}/{endpoint}"
        try:
            resp = self._session.post(url, json=dict(payload), timeout=_MGMT_TIMEOUT)
        except requests.RequestException as exc:
            raise LocalA2CError(f"DNS management call {url} failed: {exc}") from exc
        if not 200 <= resp.status_code < 300:
            raise LocalA2CError(f"DNS management call {url} answered {resp.status_code}:"
                                f" {resp.text.strip()!r}")
