"""A hostile HTTPS reverse proxy in front of a real Pebble: one mutation, on one endpoint.

`HostileProxy` relays every request to the upstream ACME server (a
`acmedryrun.testing.LocalPebble`) with the client's own ``Host`` header, so
Pebble builds every URL it hands out (directory links, ``Location``, ``Link``,
the order's and authorization's URLs) from the proxy's address and the JWS
``url`` the client signs matches what Pebble expects -- the same trick as
`acmedryrun.testing.FaultProxy`, whose endpoint classification (`_Routes`) is
reused here.  Unlike FaultProxy, this one writes the response bytes itself,
which is what a hostile CA needs: a status line and headers of its choosing
(a 10 MB header, a ``Retry-After: ²``), a 300 MB body streamed from a generator
(never held in memory), bytes trickled one per second, or silence after the
headers.

For requests to the chosen endpoint, the armed :class:`~hostile.mutations.Mutation`
turns the exchange (request + upstream's answer) into the :class:`Reply` the
client gets; every other request is relayed unchanged.  The proxy also serves
the same directory under :attr:`HostileProxy.reference_url`, endpoint
``reference``, so a run's ``reference_directory`` (the production twin's
directory, read-only GETs) can be made hostile too.

Everything listens on 127.0.0.1; slow replies end after ``slow_cap`` seconds
(the connection is then reset) so a client that never gives up costs a bounded
amount of test time.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import shutil
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trustme

from acmedryrun.testing._faultproxy import _HOP_BY_HOP, _Routes, _Upstream

if TYPE_CHECKING:
    from hostile.mutations import Mutation

__all__ = ["REFERENCE_PATH", "Exchange", "HostileProxy", "Reply", "Served", "TlsMaterial"]

_LOOPBACK = "127.0.0.1"
#: Where the proxy serves the upstream directory again, as the "production twin".
REFERENCE_PATH = "/hostile-reference/directory"
_UPSTREAM_TIMEOUT = 30.0
_IDLE_TIMEOUT = 30.0
_HANDSHAKE_TIMEOUT = 10.0
_MAX_REQUEST_BODY = 1024 * 1024
_CHUNK = 1024 * 1024
_REQUEST_DROP = _HOP_BY_HOP | {"content-length", "accept-encoding", "expect"}
_RESPONSE_DROP = _HOP_BY_HOP | {"content-length"}


class TlsMaterial:
    """A trustme CA and a server certificate for the loopback names, plus the CA's PEM file.

    One instance can serve many proxies (issuing is the slow part); `close()`
    removes the temporary directory holding the PEM file.
    """

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("127.0.0.1", "::1", "localhost")
        self._dir = Path(tempfile.mkdtemp(prefix="acmedryrun-hostile-"))
        self.ca_bundle = str(self._dir / "hostile-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_bundle)

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the loopback certificate, HTTP/1.1 only."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_cert.configure_cert(context)
        context.set_alpn_protocols(["http/1.1"])
        return context

    def close(self) -> None:
        """Remove the PEM file.  Idempotent."""
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> TlsMaterial:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass(slots=True)
class Reply:
    """What the client gets: a status line, headers, and a body (bytes or streamed).

    Attributes:
        status: HTTP status code.
        reason: Reason phrase.
        headers: Header fields in order; values are sent as ISO-8859-1 bytes (so a
            ``²`` arrives as the one byte 0xB2, as a careless server would send it).
        body: The body, when it fits in memory.
        stream: Instead of ``body``: yields the body in pieces (a 300 MB body).
        length: The ``Content-Length`` sent with ``stream``.
        pace: ``None`` (all at once), ``"head"`` (everything at one byte a second),
            ``"body"`` (headers at once, then the body at one byte a second) or
            ``"stall"`` (headers at once, then silence until ``slow_cap``).
        content_length: False to send no ``Content-Length`` at all.
    """

    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Callable[[], Iterator[bytes]] | None = None
    length: int | None = None
    pace: str | None = None
    content_length: bool = True

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def without(self, name: str) -> list[tuple[str, str]]:
        """The headers minus every ``name`` field."""
        return [(k, v) for k, v in self.headers if k.lower() != name.lower()]


@dataclass(slots=True)
class Exchange:
    """One request to the targeted endpoint, handed to the mutation.

    Attributes:
        endpoint: The endpoint the request was classified as.
        method: The HTTP method.
        target: The request target (path and query).
        host: The client's ``Host`` header.
        body: The request body.
        upstream: Upstream's answer as a :class:`Reply` (None when the mutation
            does not forward the request).
        proxy: The proxy, for its address and a fresh nonce.
    """

    endpoint: str
    method: str
    target: str
    host: str
    body: bytes
    upstream: Reply | None
    proxy: HostileProxy

    def json(self) -> Any:
        """Upstream's body as JSON, or None when it is not JSON."""
        if self.upstream is None or not self.upstream.body:
            return None
        try:
            return json.loads(self.upstream.body)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Served:
    """What the proxy did with one request (for assertions and failure messages).

    Attributes:
        endpoint: The endpoint it was classified as.
        method: The HTTP method.
        path: The request target.
        mutated: True when the armed mutation produced the reply.
        status: The status sent (None: the connection was reset or broke first).
        body: The body sent, for certificate responses that fit in memory.
        intact: The body sent is byte for byte the one upstream sent, delivered at once.
    """

    endpoint: str
    method: str
    path: str
    mutated: bool
    status: int | None
    body: bytes | None = None
    intact: bool = False


class _Server(http.server.ThreadingHTTPServer):
    """Threaded HTTPS server; the TLS handshake runs in each connection's thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: HostileProxy, context: ssl.SSLContext) -> None:
        self.proxy = proxy
        self.ssl_context = context
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        super().__init__((_LOOPBACK, 0), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse lookup of the address."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = _LOOPBACK, int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.settimeout(_HANDSHAKE_TIMEOUT)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return
        with self._conn_lock:
            self._conns.add(tls)
        try:
            _Handler(tls, client_address, self)
        finally:
            with self._conn_lock:
                self._conns.discard(tls)
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is normal here; anything else is recorded as a proxy bug."""
        if not isinstance(sys.exc_info()[1], OSError):
            self.proxy.errors.append(traceback.format_exc())

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alives, trickles) so stop() is quick."""
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)


class _Reset(Exception):
    """Abort the connection with a TCP RST (slow reply past its cap, or proxy stopping)."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hostile"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    server: _Server

    def do_GET(self) -> None:
        self._relay()

    do_HEAD = do_GET
    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the proxy's record is :attr:`HostileProxy.served`."""

    def _relay(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, _MAX_REQUEST_BODY)) if length > 0 else b""
        proxy._note_request(body)
        target = self.path
        if "hostile-redirected=1" in urllib.parse.urlsplit(target).query:
            proxy._redirect_followed()
        path = urllib.parse.urlsplit(target).path
        if path == REFERENCE_PATH:
            endpoint, upstream_target = "reference", proxy._directory_target
        else:
            endpoint = proxy._routes.classify(self.command, path, body)
            upstream_target = target
        host = self.headers.get("Host") or proxy.netloc
        mutation = proxy.mutation if endpoint in proxy.endpoints else None
        upstream: Reply | None = None
        if mutation is None or mutation.forward:
            upstream = proxy._forward(self.command, upstream_target, self._headers(host), body)
            if endpoint != "reference":
                proxy._routes.learn(endpoint, _Upstream(upstream.status, upstream.reason,
                                                        upstream.headers, upstream.body))
        reply: Reply | None = None
        if mutation is not None:
            exchange = Exchange(endpoint, self.command, target, host, body, upstream, proxy)
            reply = mutation.transform(exchange)
        mutated = reply is not None
        if reply is None:
            assert upstream is not None
            reply = upstream
        else:
            proxy._fired()
        status: int | None = reply.status
        try:
            self._write(reply, proxy.slow_cap)
        except (_Reset, OSError):
            status = None
            self._reset()
        keep = endpoint == "certificate" and reply.stream is None and len(reply.body) < 1 << 20
        intact = (upstream is not None and reply.stream is None and reply.pace is None
                  and reply.body == upstream.body)
        proxy._record(Served(endpoint, self.command, target, mutated, status,
                             reply.body if keep else None, intact))

    def _headers(self, host: str) -> dict[str, str]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _REQUEST_DROP}
        headers["Host"] = host
        headers["Accept-Encoding"] = "identity"
        return headers

    def _write(self, reply: Reply, cap: float) -> None:
        no_body = self.command == "HEAD" or reply.status in (204, 304)
        lines = [f"HTTP/1.1 {reply.status} {reply.reason or 'Hostile'}\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in reply.headers]
        size = reply.length if reply.stream is not None else len(reply.body)
        if reply.content_length and not (no_body and self.command != "HEAD"):
            lines.append(f"Content-Length: {size}\r\n")
        if reply.pace is not None:
            lines.append("Connection: close\r\n")
            self.close_connection = True
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1", "replace")
        started = time.monotonic()
        stopping = self.server.proxy._stopping
        out = self.connection

        def trickle(data: bytes) -> None:
            for i in range(len(data)):
                if time.monotonic() - started > cap or stopping.is_set():
                    raise _Reset
                out.sendall(data[i:i + 1])
                if stopping.wait(1.0):
                    raise _Reset

        if reply.pace == "head":
            trickle(head + (b"" if no_body else reply.body))
            return
        out.sendall(head)
        if no_body:
            return
        if reply.pace == "body":
            trickle(reply.body)
            return
        if reply.pace == "stall":
            stopping.wait(max(0.0, cap - (time.monotonic() - started)))
            raise _Reset
        if reply.stream is None:
            out.sendall(reply.body)
            return
        for chunk in reply.stream():
            if stopping.is_set():
                raise _Reset
            out.sendall(chunk)

    def _reset(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))


class HostileProxy:
    """An HTTPS proxy on 127.0.0.1 in front of ``upstream`` that applies one mutation.

    Args:
        upstream: The upstream directory URL (a LocalPebble's ``directory_url``).
        upstream_ca_bundle: PEM trust anchors for upstream's TLS.
        mutation: The mutation to apply, or None to relay everything (a baseline).
        endpoints: Which endpoints it applies to (e.g. ``("order",)``).
        tls: Shared TLS material; default a fresh trustme CA owned by this proxy.
        slow_cap: Seconds after which a slow reply (trickle, stall) is reset.

    Attributes:
        served: What happened to each request, in order.
        fired: How many replies the mutation produced.
        followed_redirects: Requests that came back to the proxy by following one of
            its redirects (their target carries ``hostile-redirected=1``).
        signatures: How often the client sent each JWS ``signature`` (to prove none
            leaks into the report, and that no signed request is ever sent twice).
        errors: Tracebacks of proxy bugs (must stay empty).
    """

    def __init__(self, upstream: str, *, upstream_ca_bundle: str,
                 mutation: Mutation | None = None, endpoints: Sequence[str] = (),
                 tls: TlsMaterial | None = None, slow_cap: float = 10.0) -> None:
        split = urllib.parse.urlsplit(upstream)
        if split.scheme != "https" or split.hostname is None:
            raise ValueError(f"upstream {upstream!r} is not an https URL")
        self.upstream = upstream
        self._upstream_host = split.hostname
        self._upstream_port = split.port or 443
        self._directory_target = split.path or "/"
        self._upstream_context = ssl.create_default_context(cafile=upstream_ca_bundle)
        self.mutation = mutation
        self.endpoints = frozenset(endpoints)
        self.slow_cap = slow_cap
        self._own_tls = tls is None
        self._tls = tls or TlsMaterial()
        self._routes = _Routes(self._directory_target)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.served: list[Served] = []
        self.fired = 0
        self.followed_redirects = 0
        self.signatures: Counter[str] = Counter()
        self.errors: list[str] = []

    # -- addresses -----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._server is None:
            raise RuntimeError("HostileProxy is not running")
        return int(self._server.server_address[1])

    @property
    def netloc(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{_LOOPBACK}:{self.port}"

    @property
    def directory_url(self) -> str:
        """The directory URL the client uses."""
        return f"https://{self.netloc}{self._directory_target}"

    @property
    def reference_url(self) -> str:
        """The same directory again, as the endpoint ``reference`` (a production twin)."""
        return f"https://{self.netloc}{REFERENCE_PATH}"

    @property
    def ca_bundle(self) -> str:
        """The PEM file the client must trust for the proxy's TLS."""
        return self._tls.ca_bundle

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> HostileProxy:
        """Listen and serve in a background thread; returns self."""
        self._server = _Server(self, self._tls.server_context())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"hostile-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake and drop every connection, remove owned files.  Idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)
        if self._own_tls:
            self._tls.close()

    def __enter__(self) -> HostileProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what happened ---------------------------------------------------------------

    def certificates(self) -> list[Served]:
        """Every successful reply to the certificate endpoint, in order."""
        with self._lock:
            return [s for s in self.served if s.endpoint == "certificate" and s.status == 200]

    def hits(self, endpoint: str) -> int:
        """How many requests to ``endpoint`` the proxy saw."""
        with self._lock:
            return sum(1 for s in self.served if s.endpoint == endpoint)

    # -- used by the handler and the mutations ----------------------------------------

    def _record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)

    def _redirect_followed(self) -> None:
        with self._lock:
            self.followed_redirects += 1

    def _fired(self) -> None:
        with self._lock:
            self.fired += 1

    def _note_request(self, body: bytes) -> None:
        """Remember the JWS signature of a signed request (RFC 7515 section 7.2.1)."""
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return
        if isinstance(data, dict) and isinstance(data.get("signature"), str):
            with self._lock:
                self.signatures[data["signature"]] += 1

    def _forward(self, method: str, target: str, headers: dict[str, str],
                 body: bytes) -> Reply:
        """One request upstream on a fresh connection; a failure is a 502 reply."""
        conn = http.client.HTTPSConnection(self._upstream_host, self._upstream_port,
                                           timeout=_UPSTREAM_TIMEOUT,
                                           context=self._upstream_context)
        try:
            conn.request(method, target, body=body if method == "POST" else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            return Reply(502, "Bad Gateway", [("Content-Type", "text/plain")],
                         f"hostile proxy: upstream failed: {exc}\n".encode())
        finally:
            conn.close()
        kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _RESPONSE_DROP]
        return Reply(resp.status, resp.reason, kept, data)

    def fresh_nonce(self, host: str) -> str | None:
        """A valid ``Replay-Nonce`` from upstream's newNonce, for synthesized replies."""
        path = self._routes.nonce_path or "/nonce-plz"
        reply = self._forward("HEAD", path, {"Host": host}, b"")
        return reply.header("Replay-Nonce")
