"""Serve acme2certifier's WSGI application over TLS on one loopback port.

Run by :class:`tests.a2c.LocalA2C` with the interpreter of acme2certifier's own
virtualenv (``.venv-a2c``), never imported by the test suite itself: its pins are
not ours.  acme2certifier ships a WSGI module (``acme2certifier.share.
acme2certifier_wsgi``) whose ``__main__`` serves plain HTTP on ``0.0.0.0:80``; this
script serves the same ``application`` with the standard library's ``wsgiref`` on
the address it is given, over TLS (RFC 8555 section 6.1: ACME is HTTPS only).

The server is single-threaded on purpose: acme2certifier's ``wsgi`` database
handler is one SQLite file, and one request at a time keeps it consistent.  Each
connection gets its TLS handshake and a socket timeout in the accepting loop, so a
client that connects and says nothing stalls the server for at most that timeout.

Configuration comes from ``$ACME_SRV_CONFIGFILE`` (acme2certifier's own variable),
which must be set before the WSGI module is imported: it reads it at import time.
Prints ``a2c-server listening on HOST:PORT`` once the socket is bound.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import socket
import ssl
import sys
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

_CONNECTION_TIMEOUT = 10.0  # seconds: handshake and each read of one request


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, telling the application that the request came over TLS."""

    timeout = _CONNECTION_TIMEOUT

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        # wsgiref derives wsgi.url_scheme from HTTPS (wsgiref.util.guess_scheme);
        # acme2certifier builds every URL it hands out from wsgi.url_scheme + Host.
        environ["HTTPS"] = "on"
        return environ

    def address_string(self) -> str:
        return str(self.client_address[0])


class _TLSServer(WSGIServer):
    """A WSGIServer whose accepted connections are TLS, with a bounded handshake."""

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        raw, peer = self.socket.accept()
        raw.settimeout(_CONNECTION_TIMEOUT)
        try:
            conn = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            raise  # socketserver drops the connection on OSError and keeps serving
        return conn, peer


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, import the application, serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to bind")
    parser.add_argument("--cert", required=True, help="PEM server certificate (chain)")
    parser.add_argument("--key", required=True, help="PEM private key of the certificate")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)

    # Imported only now: the module loads $ACME_SRV_CONFIGFILE and opens the
    # database at import time.
    wsgi = importlib.import_module("acme2certifier.share.acme2certifier_wsgi")
    server = _TLSServer((host, int(port)), context)
    server.set_app(wsgi.application)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"a2c-server listening on {host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    sys.exit(main())
