"""http-01 (RFC 8555 section 8.3): serve the key authorization over plain HTTP.

``HTTP01Standalone`` runs its own small responder; ``HTTP01Webroot`` writes files
under a running web server's document root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from acmedryrun.errors import UsageError
from acmedryrun.report import ChallengeType, SolverErrorKind
from acmedryrun.solvers._base import WELL_KNOWN, Challenge, Solver, SolverFailure

if TYPE_CHECKING:
    from acmedryrun.solvers._responder import _Server

__all__ = ["WELL_KNOWN", "HTTP01Standalone", "HTTP01Webroot"]


class HTTP01Standalone(Solver):
    """Answer http-01 with a built-in HTTP responder.

    Args:
        port: The port to listen on (the CA always connects to 80; a local test CA
            may use another).
        address: The address to bind; ``""`` (default) means all addresses, IPv4
            and IPv6.
    """

    challenge_type: ClassVar[ChallengeType] = "http-01"
    supports_ip: ClassVar[bool] = True
    shareable: ClassVar[bool] = True

    def __init__(self, port: int = 80, address: str = "") -> None:
        if not 0 <= port < 65536:  # 0: any free port (tests), see bound_port
            raise UsageError(f"--http-01-port: {port} is not a TCP port")
        self.port = port
        self.address = address
        self._tokens: dict[str, bytes] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # One responder may serve many concurrent runs (batch mode): open/close nest.
        self._lock = threading.Lock()
        self._users = 0

    def describe(self) -> str:
        return f"http-01 standalone on {self.address or '*'}:{self.port}"

    def open(self) -> None:
        with self._lock:
            if self._server is None:
                self._bind()
            self._users += 1

    def _bind(self) -> None:
        # The HTTP server classes cost ~10 ms to import: only a standalone run needs them.
        from acmedryrun.solvers._responder import _DualStackServer, _Handler, _Server

        handler = type("Handler", (_Handler,), {"tokens": self._tokens})
        try:
            if self.address == "" and socket.has_ipv6:
                try:
                    server: _Server = _DualStackServer(("::", self.port), handler)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise
                    server = _Server(("0.0.0.0", self.port), handler)  # noqa: S104 - "all"
            else:
                family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
                cls = _DualStackServer if family == socket.AF_INET6 else _Server
                server = cls((self.address, self.port), handler)
        except OSError as exc:
            where = f"{self.address or '*'}:{self.port}"
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"--http-01-port: {where} is already in use") from exc
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise UsageError(
                    f"--http-01-port: binding {where} is not permitted"
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                ) from exc
            raise UsageError(f"--http-01-address: cannot listen on {where}: {exc}") from exc
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01},
            name=f"acmedryrun-http01-{self.port}", daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def bound_port(self) -> int | None:
        """The port actually bound (useful with ``port=0`` in tests), or None when closed."""
        return self._server.server_address[1] if self._server else None

    def perform(self, challenge: Challenge) -> None:
        if self._server is None:
            raise SolverFailure(SolverErrorKind.OTHER, "the http-01 responder is not running")
        self._tokens[challenge.token] = challenge.key_authorization.encode("ascii")

    def cleanup(self, challenge: Challenge) -> None:
        self._tokens.pop(challenge.token, None)


class HTTP01Webroot(Solver):
    """Answer http-01 by writing files for a running web server to serve.

    The file for token T goes to ``PATH/.well-known/acme-challenge/T`` (mode
    0644); directories acmedryrun had to create are removed again on cleanup.

    Args:
        path: The web server's document root for every name of the run.
        port: The port that web server listens on (``--webroot-port``), where the
            self-check asks for the file.  A public CA always validates on port 80
            (RFC 8555 section 8.3), so anything else needs a forwarding from 80 (a
            local test CA may dial it directly).
    """

    challenge_type: ClassVar[ChallengeType] = "http-01"
    supports_ip: ClassVar[bool] = True
    shareable: ClassVar[bool] = True

    def __init__(self, path: str | os.PathLike[str], *, port: int = 80) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise UsageError(f"--webroot-port: {port!r} is not a port number (1-65535)")
        self.path = Path(path)
        self.port = port
        self._created: list[Path] = []
        # Shared by concurrent runs in batch mode: open/close nest, prepare is serialized.
        self._lock = threading.Lock()
        self._users = 0

    def describe(self) -> str:
        served = f", served on port {self.port}" if self.port != 80 else ""
        return f"http-01 webroot {self.path}{served}"

    @property
    def challenge_dir(self) -> Path:
        """Where the challenge files go."""
        return self.path / ".well-known" / "acme-challenge"

    def open(self) -> None:
        if not self.path.is_dir():
            raise UsageError(f"--webroot: {self.path} is not a directory")
        for part in (self.path / ".well-known", self.challenge_dir):
            if part.exists() and not part.is_dir():
                raise UsageError(f"--webroot: {part} exists and is not a directory")
        probe = self.path if not self.challenge_dir.exists() else self.challenge_dir
        if not os.access(probe, os.W_OK | os.X_OK):
            raise UsageError(f"--webroot: {probe} is not writable")
        with self._lock:
            self._users += 1

    def prepare(self, challenge: Challenge) -> None:
        with self._lock:
            missing = [p for p in (self.path / ".well-known", self.challenge_dir)
                       if not p.exists()]
            try:
                for directory in missing:
                    directory.mkdir(mode=0o755)
                    self._created.append(directory)
            except OSError as exc:
                raise SolverFailure(SolverErrorKind.WEBROOT,
                                    f"{self.challenge_dir}: {exc}") from exc

    def perform(self, challenge: Challenge) -> None:
        target = self.challenge_dir / challenge.token
        try:
            self.prepare(challenge)
            tmp = target.with_name(f".{challenge.token}.tmp")
            tmp.write_bytes(challenge.key_authorization.encode("ascii"))
            tmp.chmod(0o644)
            tmp.replace(target)
        except OSError as exc:
            raise SolverFailure(SolverErrorKind.WEBROOT, f"{target}: {exc}") from exc

    def cleanup(self, challenge: Challenge) -> None:
        (self.challenge_dir / challenge.token).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.challenge_dir / f".{challenge.token}.tmp").unlink()

    def close(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            # Remove only the directories this solver created, deepest first, if empty.
            for directory in reversed(self._created):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            self._created.clear()
