"""A local CT search server for tests: recorded crt.sh / Cert Spotter answers on loopback.

:class:`CtServer` is a real ``http.server`` on 127.0.0.1 in a thread.  It answers
crt.sh's JSON interface (``/?q=<domain>&output=json...``) and Cert Spotter's
(``/v1/issuances?domain=<domain>[&after=<id>]``) from the bodies it was given, per
domain, and records every request.  A route can also be slow (sleeps before
answering, woken at shutdown), fail with a status, or send any bytes.

The fixtures under ``fixtures/ct/`` were recorded with their clock at :data:`ANCHOR`;
:func:`fixture` shifts every timestamp so that ANCHOR becomes ``now``, which keeps
"5 certificates in the last 30 hours" true whenever the test runs.  :func:`urllib_fetch`
is the ``fetch`` the lookups get in tests: urllib with a timeout, no proxies, and
:class:`~acmedryrun.production.ct.CtFetchError` for every failure.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from acmedryrun.production.ct import MAX_CT_BODY_BYTES, CtFetchError

FIXTURES = Path(__file__).parent / "fixtures" / "ct"
#: The moment the fixtures' timestamps are relative to (see fixtures/ct/README.md).
ANCHOR = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)

_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z)?$")
_TIME_FIELDS = ("entry_timestamp", "not_before", "not_after")


def _shift(value: str, delta: timedelta) -> str:
    match = _STAMP.match(value)
    if match is None:  # a deliberately malformed timestamp stays as it is
        return value
    try:
        moment = datetime.fromisoformat(match.group(1) + (match.group(2) or "")) + delta
    except ValueError:
        return value
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if match.group(2):
        text += f".{moment.microsecond // 1000:03d}"
    return text + (match.group(3) or "")


def shifted(rows: Any, now: datetime, anchor: datetime = ANCHOR) -> Any:
    """The rows with every timestamp moved by ``now - anchor``."""
    delta = now - anchor
    if isinstance(rows, list):
        return [shifted(row, now, anchor) for row in rows]
    if isinstance(rows, dict):
        return {key: (_shift(value, delta) if key in _TIME_FIELDS and isinstance(value, str)
                      else shifted(value, now, anchor))
                for key, value in rows.items()}
    return rows


def fixture(name: str, now: datetime | None = None) -> bytes:
    """A fixture's bytes; JSON fixtures shifted so that :data:`ANCHOR` is ``now``."""
    raw = (FIXTURES / name).read_bytes()
    if now is None or not name.endswith(".json"):
        return raw
    return json.dumps(shifted(json.loads(raw), now)).encode()


_serials = iter(range(0x3A0000, 0x3FFFFF, 17))


def crtsh_rows(names: Sequence[str], hours_ago: Sequence[float], *, now: datetime,
               issuer: str = "C=US, O=Let's Encrypt, CN=E7",
               issuer_ca_id: int = 295813) -> list[dict[str, Any]]:
    """crt.sh rows for issuances of exactly ``names`` at ``now - h`` for each h, each as
    a precertificate row and a certificate row (one serial), in the fixtures' shape:
    for tests whose names are made up at run time (a Pebble test's unique name)."""
    rows: list[dict[str, Any]] = []
    for hours in hours_ago:
        issued = now - timedelta(hours=hours)
        not_before = issued - timedelta(hours=1)  # Let's Encrypt backdates ~1 h
        serial = f"{next(_serials):036x}"
        for delay in (1.173, 3.402):
            logged = issued + timedelta(seconds=delay)
            rows.append({
                "issuer_ca_id": issuer_ca_id, "issuer_name": issuer,
                "common_name": sorted(names)[0], "name_value": "\n".join(sorted(names)),
                "id": next(_serials),
                "entry_timestamp": logged.strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{logged.microsecond // 1000:03d}",
                "not_before": not_before.strftime("%Y-%m-%dT%H:%M:%S"),
                "not_after": (not_before + timedelta(days=90, seconds=-1))
                .strftime("%Y-%m-%dT%H:%M:%S"),
                "serial_number": serial, "result_count": 2,
            })
    return rows


@dataclass(frozen=True, slots=True)
class Route:
    """How the server answers for one domain: a body, a status, a delay."""

    body: bytes = b"[]"
    status: int = 200
    delay: float = 0.0
    content_type: str = "application/json"


class CtServer:
    """crt.sh's and Cert Spotter's search interfaces on a free loopback port.

    Args:
        routes: Domain -> :class:`Route` (or bytes, served with 200).  A domain without
            a route gets ``[]``.  Cert Spotter pages after the first get ``[]``.
    """

    def __init__(self, routes: Mapping[str, Route | bytes]) -> None:
        self.routes = {d: r if isinstance(r, Route) else Route(r) for d, r in routes.items()}
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(self.path)
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                domain = (query.get("q") or query.get("domain") or [""])[0]
                route = server.routes.get(domain, Route())
                if "after" in query:
                    route = Route()
                if route.delay and server._stop.wait(route.delay):
                    return
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): what a slow source sees

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = False
        self._httpd.block_on_close = True  # server_close() joins every handler thread
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The crt.sh-style endpoint (``http://127.0.0.1:PORT/``)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def certspotter_url(self) -> str:
        """The Cert Spotter-style endpoint (``.../v1/issuances``)."""
        return f"{self.url}v1/issuances"

    def __enter__(self) -> CtServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def urllib_fetch(url: str, timeout: float) -> bytes:
    """The tests' ``fetch``: one GET with a timeout, bounded to MAX_CT_BODY_BYTES + 1."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return bytes(response.read(MAX_CT_BODY_BYTES + 1))
    except (urllib.error.URLError, OSError) as exc:
        raise CtFetchError(f"{type(exc).__name__}: {exc}") from exc
