"""The one HTTP boundary: every byte between acmedryrun and a CA crosses here.

Nothing else in the package imports ``requests``.  The rules, written once:

* **One session per run**, ``verify=`` on every request (a ``Session``'s own
  ``verify`` loses to ``REQUESTS_CA_BUNDLE``), ``Accept-Encoding: identity``.
* **One URL parser** (:func:`acmedryrun.urls.parse_url`) for checking and for
  connecting: the canonical :attr:`~acmedryrun.urls.Url.text` is what is sent.
* **The production guard** on every URL before every request: CA traffic
  (:attr:`Purpose.CA`) never goes to a known production host unless the run
  allows production; production is only ever sent read-only GETs
  (:attr:`Purpose.PRODUCTION`).
* **No redirect is followed**: a 3xx is an answer like any other, for the caller
  to judge (CONTRACT.md: "CA traffic follows no redirect").
* **A wall-clock bound over the whole request** -- connect, TLS, headers and body
  together, not per socket read: a watchdog shuts the socket down when the
  request's time is up, so a CA that trickles one byte a second cannot hold a run
  past its deadline.
* **A size cap per kind of resource** (:data:`CAPS`), enforced while reading; a
  compressed body is inflated with the same cap.
* **Every foreign exception** (``requests``, ``urllib3``, ``http.client``,
  ``ssl``, ``socket``, URL and JSON errors of any depth) becomes a
  :class:`~acmedryrun.classify.RequestFailed` carrying an observation, with the
  original as ``__cause__``.

The self-check's fetches of a challenge response (:func:`va_get`) live here too,
with the validation authority's own policy: no certificate verification, a fixed
address, a small body.
"""

from __future__ import annotations

import contextlib
import email.utils
import enum
import heapq
import http.client
import ipaddress
import itertools
import json
import logging
import math
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from acmedryrun import classify as c
from acmedryrun import directories
from acmedryrun.classify import RequestFailed
from acmedryrun.deadline import REQUEST_BUDGET, Deadline, Party
from acmedryrun.urls import BadUrl, Url, parse_url

log = logging.getLogger("acmedryrun.http")

USER_AGENT = "acmedryrun"

#: JSON nesting deeper than this is not an ACME object (RFC 8555's are 3-4 deep).
MAX_JSON_DEPTH = 32
#: The most a ``Retry-After`` is believed (seconds): a day; more is a typo or hostile.
MAX_RETRY_AFTER = 86400.0
#: RFC 8555 section 6.5.1: a nonce is base64url; Boulder's are ~40 characters.
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,512}")
_DIGITS = re.compile(r"[0-9]{1,12}")


class Resource(str, enum.Enum):
    """What a request fetches; it decides the body-size cap."""

    DIRECTORY = "directory"
    NONCE = "nonce"
    ACCOUNT = "account"
    ORDER = "order"
    AUTHORIZATION = "authorization"
    CHALLENGE = "challenge"
    CERTIFICATE = "certificate"
    RENEWAL_INFO = "renewal_info"
    CT = "ct"


#: Body-size caps, bytes.  An error response (a problem document) is capped as its
#: resource is.  Real sizes: a directory ~1 KiB, an order of 100 names ~12 KiB, a
#: chain ~5 KiB (alternates are separate URLs), a crt.sh answer for a busy domain a
#: few MiB.
CAPS: Mapping[Resource, int] = {
    Resource.DIRECTORY: 64 * 1024,
    Resource.NONCE: 4 * 1024,
    Resource.ACCOUNT: 64 * 1024,
    Resource.ORDER: 1024 * 1024,
    Resource.AUTHORIZATION: 64 * 1024,
    Resource.CHALLENGE: 64 * 1024,
    Resource.CERTIFICATE: 1024 * 1024,
    Resource.RENEWAL_INFO: 16 * 1024,
    Resource.CT: 32 * 1024 * 1024,
}


class Purpose(str, enum.Enum):
    """Who a request is for, which decides what the production guard allows."""

    #: The staging conversation: never to a production host (unless allowed).
    CA = "ca"
    #: Read-only looks at production (its directory, renewalInfo, CT logs): GET only.
    PRODUCTION = "production"


# --------------------------------------------------------------------------- responses


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 section 10.2.3), or None when unusable.

    delay-seconds must be ASCII digits (``'²'.isdigit()`` is true in Python); an
    HTTP-date in the past is 0; anything is capped at :data:`MAX_RETRY_AFTER`.
    """
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER)
    if not value.isascii() or len(value) > 64:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    try:
        delay = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    if not math.isfinite(delay):
        return None
    return min(max(0.0, delay), MAX_RETRY_AFTER)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _depth_ok(data: object) -> bool:
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return True


def parse_json(body: bytes, where: str) -> Any:
    """Decode a JSON body strictly: UTF-8, finite numbers, at most :data:`MAX_JSON_DEPTH` deep.

    Raises:
        RequestFailed: a :class:`~acmedryrun.classify.MalformedResponse`.
    """
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RequestFailed(
            c.MalformedResponse("json", f"{where}: not JSON: {_short(exc)}")) from exc
    if not _depth_ok(data):
        raise RequestFailed(c.MalformedResponse(
            "json", f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels"))
    return data


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response that passed the transport's checks (any status).

    Attributes:
        status: The HTTP status.
        headers: Header names lower-cased; repeated headers joined with ``", "``.
        body: At most the resource's cap.
        url: The URL requested (canonical).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        """One header's value, or None."""
        return self.headers.get(name.lower())

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters ("" when absent)."""
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds, or None (see :func:`parse_retry_after`)."""
        return parse_retry_after(self.header("Retry-After"))

    @property
    def nonce(self) -> str | None:
        """The ``Replay-Nonce`` if it is one (RFC 8555 section 6.5.1), else None."""
        value = self.header("Replay-Nonce")
        if value is None:
            return None
        value = value.strip()
        return value if _NONCE.fullmatch(value) and len(value) % 4 != 1 else None

    def json(self) -> Any:
        """The body as JSON (see :func:`parse_json`)."""
        return parse_json(self.body, self.url)

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; anything else is a staging fault."""
        data = self.json()
        if not isinstance(data, dict):
            raise RequestFailed(c.MalformedResponse(
                "json", f"{self.url}: a JSON {type(data).__name__}, not an object",
                self.status))
        return data

    def location(self) -> Url:
        """The ``Location`` header as a checked absolute URL.

        Raises:
            RequestFailed: missing or not a usable URL (a staging fault).
        """
        value = self.header("Location")
        if not value:
            raise RequestFailed(c.MalformedResponse(
                "location", f"{self.url}: no Location header", self.status))
        try:
            return parse_url(value.strip())
        except BadUrl as exc:
            raise RequestFailed(c.MalformedResponse(
                "location", f"{self.url}: Location {_excerpt(value)}: {exc}",
                self.status)) from exc

    def link(self, rel: str) -> str | None:
        """The first ``Link: <url>; rel="REL"`` target (RFC 8288), unchecked text."""
        for part in (self.header("Link") or "").split(","):
            if f'rel="{rel}"' in part and "<" in part and ">" in part:
                return part[part.index("<") + 1: part.index(">")]
        return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


def _excerpt(text: str, limit: int = 120) -> str:
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, cut to a readable length."""
    return f"{type(exc).__name__}: {_short(exc)}"


# --------------------------------------------------------------------------- the watchdog


class _Watch:
    """One request's time limit: the sockets it used are shut down when it is up.

    Sockets, not connections: ``http.client`` drops a connection's socket as soon as
    a response says ``Connection: close`` and reads the body through the response.
    """

    def __init__(self, end: float) -> None:
        self.end = end
        self.fired = False
        self.done = False
        self.sockets: list[Any] = []
        self.lock = threading.Lock()

    def add(self, sock: Any) -> None:
        with self.lock:
            if any(s is sock for s in self.sockets):
                return
            self.sockets.append(sock)
            fire_now = self.fired
        if fire_now:
            _shutdown(sock)

    def fire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.fired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shutdown(sock)

    def finish(self) -> None:
        with self.lock:
            self.done = True
            self.sockets.clear()


def _shutdown(sock: Any) -> None:
    """Shut a socket down: a read blocked on it in another thread returns at once."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that fires every :class:`_Watch` whose time is up."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, watch: _Watch) -> None:
        with self._cond:
            heapq.heappush(self._heap, (watch.end, next(self._ids), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="acmedryrun-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(60.0)
                    if not self._heap:
                        self._thread = None
                        return
                    continue
                end, _, watch = self._heap[0]
                wait = end - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            watch.fire()


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()


@contextmanager
def _watched(end: float) -> Iterator[_Watch]:
    watch = _Watch(end)
    _CURRENT.watch = watch
    _WATCHDOG.arm(watch)
    try:
        yield watch
    finally:
        watch.finish()
        _CURRENT.watch = None


def _register(conn: Any) -> None:
    """Put the connection's socket under the current request's watch (if any)."""
    watch: _Watch | None = getattr(_CURRENT, "watch", None)
    sock = getattr(conn, "sock", None)
    if watch is not None and sock is not None:
        watch.add(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _register(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)  # a kept-alive connection: connect() ran for an earlier request
        super().request(*args, **kwargs)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _register(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)  # a kept-alive connection: connect() ran for an earlier request
        super().request(*args, **kwargs)


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with watched connections and no retries of its own."""

    def __init__(self, pool_maxsize: int = 16) -> None:
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


# --------------------------------------------------------------------------- the transport


def _kind(exc: BaseException) -> c.TransportKind:
    """Name a transport exception (the one place that inspects them)."""
    text = f"{exc!r} {exc.__context__!r}".lower()
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        if "certificate_verify_failed" in text or "certificate verify failed" in text:
            return c.TransportKind.TLS_VERIFY
        return c.TransportKind.TLS
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError | socket.timeout):
        return c.TransportKind.TIMEOUT
    if isinstance(exc, requests.exceptions.ChunkedEncodingError
                  | requests.exceptions.ContentDecodingError
                  | urllib3.exceptions.ProtocolError | http.client.HTTPException):
        return c.TransportKind.RESET
    if "refused" in text:
        return c.TransportKind.REFUSED
    if "name resolution" in text or "name or service not known" in text or "getaddrinfo" in text:
        return c.TransportKind.DNS
    if any(w in text for w in ("reset", "remotedisconnected", "aborted", "broken pipe")):
        return c.TransportKind.RESET
    if "timed out" in text:
        return c.TransportKind.TIMEOUT
    return c.TransportKind.OTHER


#: Exceptions a request can end in that are the network's or the server's doing.
_FOREIGN = (requests.RequestException, urllib3.exceptions.HTTPError,
            http.client.HTTPException, OSError, ValueError)


@dataclass(slots=True)
class Counts:
    """Requests sent, by purpose (the report counts the CA's)."""

    ca: int = 0
    production: int = 0
    answered: int = 0  #: CA responses received (any status): the network reaches it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class ConnectionPool:
    """Kept-alive connections, shared by the runs of a batch (each run has its own
    :class:`Transport`, deadline and counts; the TCP and TLS set-up is paid once per
    connection, not once per run: at 50 ms round trips that is 150 ms a run).

    Args:
        size: Connections kept per host.
    """

    def __init__(self, size: int = 16) -> None:
        self.session = requests.Session()
        adapter = _Adapter(pool_maxsize=size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})

    def close(self) -> None:
        """Close every connection."""
        self.session.close()

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transport:
    """One run's HTTP client.

    Args:
        verify: Trust anchors: a CA bundle path, or True for requests' default.
        deadline: The run's deadline: no request outlives it.
        allow_production: Permit CA traffic to a known production host.
        pool: Connections shared with other runs (a batch); default: the run's own.
    """

    def __init__(self, *, verify: str | bool, deadline: Deadline,
                 allow_production: bool = False, pool: ConnectionPool | None = None) -> None:
        self.verify = verify
        self.deadline = deadline
        self.allow_production = allow_production
        self.counts = Counts()
        self._own = pool is None
        self._pool = pool if pool is not None else ConnectionPool()
        self._session = self._pool.session

    def close(self) -> None:
        """Close the run's own connections (a shared pool stays open for the others)."""
        if self._own:
            self._pool.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the guard ---------------------------------------------------------------------

    def check_url(self, url: Url | str, *, purpose: Purpose = Purpose.CA,
                  what: str = "url") -> Url:
        """Parse ``url`` and apply the production guard, without sending anything.

        Raises:
            RequestFailed: a malformed URL, or a production host for CA traffic.
        """
        if isinstance(url, str):
            try:
                url = parse_url(url)
            except BadUrl as exc:
                raise RequestFailed(c.MalformedResponse(
                    what, f"the CA gave an unusable URL {_excerpt(str(url))}: {exc}")) from exc
        if purpose is Purpose.CA and not self.allow_production:
            known = directories.production_host(url)
            if known is not None:
                raise RequestFailed(c.ProductionUrl(url.text, known.alias))
            if url.is_ip and ipaddress.ip_address(url.host).is_global:
                # A public address cannot be told from a production CA's: a staging CA
                # is reached by its name (its certificate names it).
                raise RequestFailed(c.ProductionUrl(url.text, None))
        return url

    # -- one request -------------------------------------------------------------------

    def request(self, method: str, url: Url | str, *, resource: Resource,
                body: bytes | None = None, content_type: str | None = None,
                purpose: Purpose = Purpose.CA, budget: float = REQUEST_BUDGET,
                accept: str | None = None) -> Response:
        """Send one request and read its whole (capped) answer, any status.

        Args:
            method: ``GET``, ``HEAD`` or ``POST`` (POST only for CA traffic).
            url: A checked :class:`Url`, or text to check first.
            resource: What is fetched: decides the size cap.
            body: The request body.
            content_type: Its media type.
            purpose: CA traffic or a read-only look at production.
            budget: The most this request may take, within the run's deadline.
            accept: An ``Accept`` header.

        Raises:
            RequestFailed: no usable answer (the observation says why).
        """
        url = self.check_url(url, purpose=purpose)
        if purpose is Purpose.PRODUCTION and method != "GET":
            raise AssertionError(f"production is only ever sent GETs, not {method}")
        party = Party.CA if purpose is Purpose.CA else Party.PRODUCTION
        limit = self.deadline.budget(budget)
        if limit <= 0.01:
            raise RequestFailed(c.DeadlineExceeded(f"before {method} {url.text}"))
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        with self.counts.lock:
            if purpose is Purpose.CA:
                self.counts.ca += 1
            else:
                self.counts.production += 1
        started = time.monotonic()
        cap = CAPS[resource]
        with self.deadline.charge(party), _watched(started + limit) as watch:
            try:
                raw = self._session.request(
                    method, url.text, data=body, headers=headers, verify=self.verify,
                    timeout=(limit, limit), allow_redirects=False, stream=True)
                try:
                    content = _read(raw, cap, url.text) if method != "HEAD" else b""
                except BaseException:
                    raw.close()  # the rest of the body is unread: drop the connection
                    raise
                raw.raw.release_conn()  # read to the end: keep the connection alive
                response = Response(raw.status_code, _headers(raw.headers), content, url.text)
            except RequestFailed:
                raise
            except _FOREIGN as exc:
                took = (time.monotonic() - started) * 1000
                obs: c.Observation
                if watch.fired and self.deadline.remaining() <= 0.05:
                    # Cut at the run's deadline, not at the request's own budget.
                    obs = c.DeadlineExceeded(
                        f"no complete answer to {method} {url.text} before the run's deadline")
                elif watch.fired:
                    obs = c.TransportError(
                        c.TransportKind.TIMEOUT,
                        f"no complete answer within {limit:.1f} s ({method} {url.text})")
                else:
                    obs = c.TransportError(_kind(exc), _short(exc))
                log.debug("%s %s -> %s (%.0f ms)", method, url.text, type(obs).__name__, took)
                raise RequestFailed(obs) from exc
        if purpose is Purpose.CA:
            with self.counts.lock:
                self.counts.answered += 1
        log.debug("%s %s -> %d (%.0f ms)", method, url.text, response.status,
                  (time.monotonic() - started) * 1000)
        return response

    def get_json(self, url: Url | str, *, resource: Resource,
                 purpose: Purpose = Purpose.PRODUCTION,
                 budget: float = REQUEST_BUDGET) -> tuple[Response, Any]:
        """GET a JSON resource (read-only looks: production's directory, ARI, CT).

        Returns:
            The response (status 200) and its parsed JSON.

        Raises:
            RequestFailed: no answer, a status other than 200
                (:class:`~acmedryrun.classify.HttpError`), or a body that is not JSON.
        """
        resp = self.request("GET", url, resource=resource, purpose=purpose, budget=budget,
                            accept="application/json")
        if resp.status != 200:
            raise RequestFailed(c.HttpError(
                resp.status, resp.content_type, resp.body[:300].decode("utf-8", "replace"),
                resp.retry_after, location=resp.header("Location")))
        return resp, resp.json()


def _headers(raw: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in raw.items()}


def _read(raw: requests.Response, cap: int, where: str) -> bytes:
    """Read the body, at most ``cap`` bytes after any Content-Encoding is undone."""
    encoding = (raw.headers.get("Content-Encoding") or "identity").strip().lower()
    inflate: Any = None
    if encoding in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflate = zlib.decompressobj()
    elif encoding not in ("identity", ""):
        raise RequestFailed(c.MalformedResponse(
            "encoding", f"{where}: Content-Encoding {_excerpt(encoding, 40)} was not asked"
            " for", raw.status_code))
    declared = raw.headers.get("Content-Length")
    if declared and declared.strip().isdigit() and inflate is None and int(declared) > cap:
        raise _too_large(where, cap, raw.status_code)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = raw.raw.read(64 * 1024, decode_content=False)
        if not chunk:
            break
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, cap + 1 - size)
            except zlib.error as exc:
                raise RequestFailed(c.MalformedResponse(
                    "encoding", f"{where}: {encoding} body does not inflate: {exc}",
                    raw.status_code)) from exc
            if inflate.unconsumed_tail:
                raise _too_large(where, cap, raw.status_code)
        size += len(chunk)
        if size > cap:
            raise _too_large(where, cap, raw.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(where: str, cap: int, status: int) -> RequestFailed:
    return RequestFailed(c.MalformedResponse(
        "size", f"{where}: the body is larger than {cap // 1024} KiB", status))


# --------------------------------------------------------------------------- self-check GETs


class VaFailure(Exception):
    """A validation-style fetch failed; ``kind`` is ``dial``, ``tls``, ``timeout`` or ``http``.

    ``cause`` is the underlying error (for a failed dial, the ``OSError``).
    """

    def __init__(self, kind: str, detail: str, cause: BaseException | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.cause = cause


def va_accepts(address: str, port: int, timeout: float) -> bool:
    """Whether ``address:port`` accepts a TCP connection within ``timeout`` seconds."""
    if timeout <= 0:
        return False
    try:
        socket.create_connection((address, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def va_get(*, scheme: str, host: str, address: str, port: int, path: str, end: float,
           max_body: int, host_header: str) -> tuple[int, str | None, bytes]:
    """One GET of ``path`` at ``address:port`` with ``Host: host_header``, as a CA's VA does.

    No certificate verification on https (the subscriber has no certificate yet),
    TLS 1.2 or newer, at most ``max_body`` bytes read, everything done by ``end``
    (monotonic).  Redirects are the caller's to follow.

    Returns:
        The status, the ``Location`` header, and the body (at most ``max_body`` bytes).

    Raises:
        VaFailure: the connection could not be made (``dial``), TLS failed
            (``tls``), time ran out (``timeout``), or the answer was not HTTP (``http``).
    """
    timeout = end - time.monotonic()
    if timeout <= 0:
        raise VaFailure("timeout", "the self-check's time is up")
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except TimeoutError as exc:
        raise VaFailure("dial", "connect timed out", exc) from exc
    except OSError as exc:
        raise VaFailure("dial", exc.strerror or str(exc), exc) from exc
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    with _watched(end):
        try:
            if scheme == "https":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                sni = None if _is_ip(host) else host
                sock = context.wrap_socket(sock, server_hostname=sni)
            conn.sock = sock
            _register(conn)
            conn.request("GET", path, headers={
                "Host": host_header, "Accept": "*/*", "User-Agent": "acmedryrun-self-check",
                "Connection": "close",
            })
            response = conn.getresponse()
            body = response.read(max_body)
            return response.status, response.getheader("Location"), body
        except ssl.SSLError as exc:
            raise VaFailure("tls", f"TLS failed: {exc}", exc) from exc
        except TimeoutError as exc:
            raise VaFailure("timeout", "no answer in time", exc) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if time.monotonic() >= end:
                raise VaFailure("timeout", "no complete answer in time", exc) from exc
            raise VaFailure("http", repr(exc), exc) from exc
        finally:
            conn.close()
            sock.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
