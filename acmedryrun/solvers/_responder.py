"""The standalone http-01 responder's HTTP server (imported when one is started)."""

from __future__ import annotations

import contextlib
import http.server
import socket

from acmedryrun.solvers._base import WELL_KNOWN


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "acmedryrun"
    sys_version = ""
    tokens: dict[str, bytes]  # set per server class in HTTP01Standalone.open()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self.tokens.get(path[len(WELL_KNOWN):]) if path.startswith(WELL_KNOWN) else None
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A CA validates every name of an order at once, from several perspectives: the
    # default listen backlog of 5 drops SYNs, and a dropped SYN costs a 1 s retransmit.
    request_queue_size = 128


class _DualStackServer(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        # Accept IPv4 too on "::" (RFC 3493 IPV6_V6ONLY), as "all addresses" promises.
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
