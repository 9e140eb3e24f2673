"""An HTTPS reverse proxy that makes any ACME directory misbehave like a flaky staging CA.

`FaultProxy` sits between an ACME client and an ACME server (a `LocalPebble`,
a Boulder test instance, ...) and injects, on request, the failures staging
CAs are known for: 5xx problem documents, load-balancer HTML pages, bodies
that are cut short or not JSON, a missing ``Replay-Nonce``, connection resets,
slow answers, POSTs whose response is lost after they took effect, and
authorizations or orders that never leave ``pending`` / ``processing``.  ACME
client developers use it in CI to prove their client retries what is worth
retrying and reports the rest; acmedryrun uses it to prove it blames staging,
not the subscriber, for each of these.

Why a proxy and not a mock: the client under test keeps talking real HTTPS to
a real RFC 8555 server, so only the injected fault differs from production.

How it stays transparent: the client's ``Host`` header is forwarded unchanged,
so a server that builds its URLs from the request's host (Pebble and Boulder
do) hands out directory, ``Location`` and ``Link`` URLs that point back at the
proxy, and the JWS ``url`` the client signs matches what the server expects.
No body is rewritten.  A server that ignores ``Host`` (or only answers to its
own name, like a CDN) cannot be proxied this way.

Usage::

    with LocalPebble() as pebble, FaultProxy(
        pebble.directory_url,
        upstream_ca_bundle=pebble.ca_bundle,
        faults=[parse_fault("order:status:503,retry_after=1,count=2")],
    ) as proxy:
        my_client(proxy.directory_url, verify=proxy.ca_bundle)
        assert proxy.hits("order") == 3

Endpoints
---------
Each request is classified by its path, learned from the responses the proxy
relays (the directory's ``newNonce`` / ``newAccount`` / ``newOrder`` /
``keyChange`` / ``revokeCert``, newAccount and newOrder ``Location`` headers,
the ``authorizations`` / ``finalize`` / ``certificate`` URLs of orders and the
``challenges`` of authorizations), falling back to Pebble's and Boulder's path
prefixes:

``directory`` the directory URL · ``nonce`` newNonce · ``account`` newAccount and
account URLs · ``order`` newOrder · ``order_poll`` an order URL · ``authz`` an
authorization URL · ``deactivate`` a POST to an authorization URL whose JWS
payload is ``{"status": "deactivated"}`` · ``challenge`` · ``finalize`` ·
``certificate`` · ``key_change`` · ``revoke`` · ``other`` · and ``*`` in a fault
for any of them.

Faults
------
=============== ==================================================================
kind            what the client sees
=============== ==================================================================
``status``      not forwarded; HTTP ``status`` (default 500) with an
                ``application/problem+json`` document ``{"type":
                "urn:ietf:params:acme:error:<type>", "detail", "status"}``, an
                optional ``Retry-After`` and, like a real CA, a fresh
                ``Replay-Nonce`` fetched from upstream's newNonce (so a badNonce
                fault can be retried).  Default type: ``rateLimited`` for 429,
                ``serverInternal`` for 5xx, ``malformed`` otherwise.
``html``        not forwarded; a load balancer's ``text/html`` error page, HTTP
                ``status`` (default 502), no problem document, no nonce.
``truncated``   forwarded; the body cut in half (``Content-Length`` matches the
                shorter body, so it is a syntactically truncated JSON).
``not_json``    forwarded; HTTP 200 with a ``text/plain`` body that is not JSON
                (other headers, e.g. ``Replay-Nonce`` and ``Location``, kept).
``strip_nonce`` forwarded; the ``Replay-Nonce`` header removed.
``reset``       not forwarded; the TCP connection is reset (SO_LINGER 0: a RST,
                no TLS close_notify, no HTTP response).
``delay``       ``delay`` seconds of silence, then forwarded (client timeouts).
``lost``        forwarded, so the request takes effect upstream, then reset like
                ``reset``: a POST whose response was lost.
``patch``       forwarded; ``patch`` shallow-merged into a 2xx JSON-object body
                (``{"status": "pending"}`` on ``authz`` = an authorization stuck
                pending, ``{"status": "processing"}`` on ``order_poll`` = an order
                stuck processing).  Other bodies pass unchanged.
``stall``       forwarded; a 2xx order, authorization or challenge whose
                ``status`` is further along its RFC 8555 section 7.1.6 life cycle
                than ``status`` (``pending``, ``ready`` or ``processing``) is shown
                at that earlier state, consistently: an order loses its
                ``certificate``, a challenge its ``validated`` and ``error``, and an
                authorization shown ``pending`` shows its challenges
                ``processing`` (validation under way).  ``unanswered`` is
                ``pending`` as if the client had never responded: challenges
                (and an authorization's challenges) read ``pending`` again.
                Only responses actually rewritten count towards ``count``,
                so ``order_poll:stall:processing,count=3`` is "the order stays
                ``processing`` for three polls after it became valid", however
                often the client polled before finalizing.  ``invalid`` (and every
                other final state) is never hidden.
``trickle``     forwarded; the whole response (status line, headers, body) is
                written one byte at a time, spread evenly over ``duration``
                seconds: a per-read timeout never fires, only a total one does.
=============== ==================================================================

Latency
-------
``FaultProxy(..., latency=0.025)`` puts the proxy 25 ms (one way) away from its
clients, a 50 ms round trip, so a benchmark or a timeout test sees a CA at a
realistic distance.  The model, per direction and per connection:

* each request waits ``latency`` after it was read in full, before it is
  forwarded (or a fault handles it), and each response (or reset) waits
  ``latency`` before it is written: one round trip per request/response;
* each new connection waits, after its TLS handshake and before its first
  request is read, one round trip for the TCP handshake plus the TLS
  handshake's round trips: one for TLS 1.3 (and for a resumed TLS 1.2
  session), two for a full TLS 1.2 handshake (RFC 8446 section 2, RFC 5246
  section 7.3).  The first request on a new TLS 1.3 connection therefore
  costs three round trips, every later one on that connection one;
* the proxy's own loopback exchange with upstream adds its real (small) cost
  on top; upstream (the CA) and the CA's validation traffic are not delayed.
  By default each request is a fresh connection to upstream (a TLS handshake
  on both sides, ~1-3 ms of CPU); ``upstream_keepalive=True`` keeps one
  upstream connection per client connection instead, as a CA's load balancer
  does, so a benchmark through the proxy does not measure the proxy's
  handshakes (a kept connection found closed is replaced once, transparently).

`FaultProxy.connections` lists the connections accepted (TLS version,
resumed or not, the set-up wait), ``on_connection`` is called for each.  A
``delay`` fault adds to the latency.

Faults are consulted in the order given; the first one that fires handles the
request, so at most one fault applies per request.  A fault matches a request
by endpoint; of its matching requests it lets the first ``after`` pass, then
fires with ``probability`` (drawn from ``random.Random(seed)``) until it has
fired ``count`` times (``None``: forever).  Counting is per `Fault` and
thread-safe.

Fault spec syntax (`parse_fault`, the CLI's ``--fault``)
------------------------------------------------------
::

    ENDPOINT:KIND[:ARG][,key=value...]

``ARG`` is the HTTP status for ``status`` and ``html``, the seconds for
``delay`` and ``trickle``, and the state for ``stall``; other kinds take
none.  Keys: ``count`` and ``after`` (integers >= 0), ``probability``
(0..1), ``retry_after`` (integer seconds; ``status`` and ``html``), ``type``
(problem type short name such as ``badNonce``, or a full URN; ``status``),
``detail`` (``status`` and ``html``), ``delay`` (seconds; ``delay``),
``duration`` (seconds; ``trickle``), ``status`` (for ``patch`` the JSON
``status`` value to force; for ``status``/``html``/``stall`` the same as
``ARG``).  Values are percent-decoded, so a
comma in a detail is ``%2C``.  Examples::

    order:status:503,retry_after=1,count=2
    *:status:400,type=badNonce,probability=0.3
    authz:html:502,count=1
    finalize:reset,count=1
    finalize:lost,count=1
    authz:patch,status=pending
    order_poll:patch,status=processing
    authz:not_json
    nonce:delay,delay=5
    order_poll:stall:processing,count=3
    authz:stall:unanswered,count=2
    directory:trickle:2,count=1
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import html
import http.client
import http.server
import io
import json
import logging
import math
import random
import re
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TextIO

from acmedryrun.errors import UsageError
from acmedryrun.testing._pebble import _generate_tls_material

__all__ = [
    "ENDPOINTS",
    "KINDS",
    "STALL_STATES",
    "Fault",
    "FaultProxy",
    "FaultProxyError",
    "ProxyConnection",
    "ProxyEvent",
    "parse_fault",
    "run_proxy",
]

log = logging.getLogger("acmedryrun.faultproxy")

#: Endpoint names a `Fault` can target (plus ``"*"`` for all of them).
ENDPOINTS: tuple[str, ...] = (
    "directory",
    "nonce",
    "account",
    "order",
    "order_poll",
    "authz",
    "deactivate",
    "challenge",
    "finalize",
    "certificate",
    "key_change",
    "revoke",
    "other",
)
#: Fault kinds, see the module docstring for what each does on the wire.
KINDS: tuple[str, ...] = (
    "status",
    "html",
    "truncated",
    "not_json",
    "strip_nonce",
    "reset",
    "delay",
    "lost",
    "patch",
    "stall",
    "trickle",
)
ANY_ENDPOINT = "*"

ACME_ERROR_PREFIX = "urn:ietf:params:acme:error:"
PROBLEM_CONTENT_TYPE = "application/problem+json"

_LOOPBACK = "127.0.0.1"
_UPSTREAM_TIMEOUT = 60.0
_HANDSHAKE_TIMEOUT = 10.0
# Idle keep-alive connections are dropped after this; stop() closes them earlier.
_IDLE_TIMEOUT = 30.0
_PROBE_TIMEOUT = 10.0
# start() peeks at the directory best-effort; a dead upstream must not stall it.
_START_LEARN_TIMEOUT = 3.0
_MAX_BODY = 10 * 1024 * 1024
_NOT_JSON_BODY = (
    b"upstream connect error or disconnect/reset before headers (acmedryrun FaultProxy)\n"
)

# RFC 9110 section 7.6.1 plus the pre-standard ones proxies still strip.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never relayed as received: the proxy computes framing itself, and asks
# upstream for identity encoding so faults can cut and patch plain bodies.
_REQUEST_DROP = _HOP_BY_HOP | {"content-length", "accept-encoding", "expect"}
_RESPONSE_DROP = _HOP_BY_HOP | {"content-length"}

# Directory fields that name a fixed endpoint (RFC 8555 section 7.1.1).
_DIRECTORY_FIELDS = {
    "newNonce": "nonce",
    "newAccount": "account",
    "newOrder": "order",
    "keyChange": "key_change",
    "revokeCert": "revoke",
}
# Fallbacks when a URL was not learned from a relayed response.  Pebble 2.4.0
# (wfe.go) and Boulder (wfe2); checked only after the learned URLs.
_FALLBACK_EXACT = {
    "/nonce-plz": "nonce",
    "/sign-me-up": "account",
    "/order-plz": "order",
    "/rollover-account-key": "key_change",
    "/revoke-cert": "revoke",
    "/acme/new-nonce": "nonce",
    "/acme/new-acct": "account",
    "/acme/new-order": "order",
    "/acme/key-change": "key_change",
    "/acme/revoke-cert": "revoke",
}
_FALLBACK_PREFIXES = (
    ("/my-account/", "account"),
    ("/my-order/", "order_poll"),
    ("/authZ/", "authz"),
    ("/chalZ/", "challenge"),
    ("/finalize-order/", "finalize"),
    ("/certZ/", "certificate"),
    ("/acme/acct/", "account"),
    ("/acme/order/", "order_poll"),
    ("/acme/authz-v3/", "authz"),
    ("/acme/authz/", "authz"),
    ("/acme/chall-v3/", "challenge"),
    ("/acme/chall/", "challenge"),
    ("/acme/finalize/", "finalize"),
    ("/acme/cert/", "certificate"),
)

_PROBLEM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# Which fault kinds each optional parameter applies to.
_PARAM_KINDS: dict[str, frozenset[str]] = {
    "status": frozenset({"status", "html"}),
    "problem_type": frozenset({"status"}),
    "detail": frozenset({"status", "html"}),
    "retry_after": frozenset({"status", "html"}),
    "delay": frozenset({"delay"}),
    "patch": frozenset({"patch"}),
    "stall": frozenset({"stall"}),
    "duration": frozenset({"trickle"}),
}
_DEFAULT_STATUS = {"status": 500, "html": 502}
# RFC 8555 section 7.1.6: each object's states in the order it moves through them.
# A final state other than "valid" (invalid, deactivated, expired, revoked) is
# never hidden by a stall: the client must see a failure.
_LIFECYCLES: dict[str, tuple[str, ...]] = {
    "order": ("pending", "ready", "processing", "valid"),
    "authorization": ("pending", "valid"),
    "challenge": ("pending", "processing", "valid"),
}
STALL_STATES: tuple[str, ...] = ("pending", "ready", "processing", "unanswered")


class FaultProxyError(RuntimeError):
    """`FaultProxy` was used outside its running state, or could not start."""


# --------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """One fault to inject: which requests, how often, and what the client sees.

    Args:
        endpoint: One of `ENDPOINTS`, or ``"*"`` for any request.
        kind: One of `KINDS` (see the module docstring).
        count: How many times to inject; ``None`` (default) for every time.
        probability: Chance that an eligible request gets the fault (0..1).
        after: Let the first ``after`` matching requests pass untouched.
        status: HTTP status for ``status`` (default 500) and ``html`` (502).
        problem_type: ACME problem type for ``status``: a short name such as
            ``"badNonce"`` or a full URN.  Default from ``status``.
        detail: The problem document's ``detail`` / the HTML page's text.
        retry_after: Seconds sent as ``Retry-After`` (``status``, ``html``).
        delay: Seconds to wait before forwarding (``delay``; required).
        patch: Fields merged into a 2xx JSON-object body (``patch``; required).
        stall: The earlier state shown (``stall``; required): one of
            `STALL_STATES`.
        duration: Seconds over which the response trickles out (``trickle``;
            required).

    Raises:
        ValueError: a value out of range, or a parameter for another kind.
    """

    endpoint: str
    kind: str
    count: int | None = None
    probability: float = 1.0
    after: int = 0
    status: int | None = None
    problem_type: str | None = None
    detail: str | None = None
    retry_after: int | None = None
    delay: float | None = None
    patch: Mapping[str, Any] | None = field(default=None, hash=False)
    stall: str | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        """Validate, and fill in the kind's default status."""
        if self.endpoint != ANY_ENDPOINT and self.endpoint not in ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {self.endpoint!r} "
                f"(expected '*' or one of {', '.join(ENDPOINTS)})"
            )
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if self.count is not None and (not _is_int(self.count) or self.count < 0):
            raise ValueError(f"count must be an integer >= 0 or None, got {self.count!r}")
        if not _is_int(self.after) or self.after < 0:
            raise ValueError(f"after must be an integer >= 0, got {self.after!r}")
        if not _is_number(self.probability) or not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability!r}")
        for name, kinds in _PARAM_KINDS.items():
            if getattr(self, name) is not None and self.kind not in kinds:
                allowed = " and ".join(repr(k) for k in sorted(kinds))
                raise ValueError(f"{name} applies only to kind {allowed}, not {self.kind!r}")
        if self.kind in _DEFAULT_STATUS:
            if self.status is None:
                object.__setattr__(self, "status", _DEFAULT_STATUS[self.kind])
            if not _is_int(self.status) or not 400 <= int(self.status or 0) <= 599:
                raise ValueError(
                    f"status must be an HTTP error status 400-599, got {self.status!r}"
                )
        if self.problem_type is not None and not (
            _PROBLEM_NAME.fullmatch(self.problem_type) or self.problem_type.startswith("urn:")
        ):
            raise ValueError(
                f"problem type {self.problem_type!r} is neither a short name like "
                "'badNonce' nor a URN"
            )
        if self.retry_after is not None and (not _is_int(self.retry_after) or self.retry_after < 0):
            raise ValueError(f"retry_after must be an integer >= 0, got {self.retry_after!r}")
        if self.kind == "delay" and (
            self.delay is None or not _is_number(self.delay) or self.delay < 0
        ):
            raise ValueError(f"kind 'delay' needs delay >= 0 seconds, got {self.delay!r}")
        if self.kind == "trickle" and (
            self.duration is None or not _is_number(self.duration) or self.duration < 0
        ):
            raise ValueError(
                f"kind 'trickle' needs duration >= 0 seconds, got {self.duration!r}"
            )
        if self.kind == "stall" and self.stall not in STALL_STATES:
            raise ValueError(
                f"kind 'stall' needs a state, one of {', '.join(STALL_STATES)}; "
                f"got {self.stall!r}"
            )
        if self.kind == "patch":
            if not isinstance(self.patch, Mapping) or not self.patch:
                raise ValueError("kind 'patch' needs a non-empty patch mapping")
            try:
                json.dumps(dict(self.patch))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"patch is not JSON-serializable: {exc}") from exc
            # A private copy: the caller mutating its dict must not change the fault.
            object.__setattr__(self, "patch", dict(self.patch))

    @property
    def problem_urn(self) -> str:
        """The full problem type URN a ``status`` fault sends."""
        if self.problem_type is None:
            status = self.status or 500
            if status == 429:
                short = "rateLimited"
            else:
                short = "serverInternal" if status >= 500 else "malformed"
            return ACME_ERROR_PREFIX + short
        if self.problem_type.startswith("urn:"):
            return self.problem_type
        return ACME_ERROR_PREFIX + self.problem_type

    def __str__(self) -> str:
        """A spec-like one-line description, for logs."""
        parts = [f"{self.endpoint}:{self.kind}"]
        if self.status is not None:
            parts[0] += f":{self.status}"
        if self.stall is not None:
            parts[0] += f":{self.stall}"
        for name in ("problem_type", "retry_after", "delay", "duration", "count", "after"):
            value = getattr(self, name)
            if value is not None and not (name == "after" and value == 0):
                parts.append(f"{name}={value}")
        if self.probability != 1.0:
            parts.append(f"probability={self.probability:g}")
        if self.patch:
            parts.append(f"patch={json.dumps(dict(self.patch), sort_keys=True)}")
        return ",".join(parts)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


_SPEC_KEYS = (
    "count", "after", "probability", "retry_after", "type", "detail", "delay", "duration",
    "status",
)
_SPEC_KEY_KINDS: dict[str, frozenset[str]] = {
    "type": _PARAM_KINDS["problem_type"],
    "detail": _PARAM_KINDS["detail"],
    "retry_after": _PARAM_KINDS["retry_after"],
    "delay": _PARAM_KINDS["delay"],
    "duration": _PARAM_KINDS["duration"],
    "status": frozenset({"status", "html", "patch", "stall"}),
}


def parse_fault(spec: str) -> Fault:
    """Parse ``ENDPOINT:KIND[:ARG][,key=value...]`` (the module docstring has the syntax).

    Raises:
        ValueError: one line, ``fault 'SPEC': REASON``, naming the bad part.
    """
    try:
        return _parse_fault(spec)
    except ValueError as exc:
        raise ValueError(f"fault {spec!r}: {exc}") from None


def _parse_fault(spec: str) -> Fault:
    head, comma, tail = spec.strip().partition(",")
    parts = [p.strip() for p in head.split(":")]
    if len(parts) < 2 or not all(parts):
        raise ValueError("expected ENDPOINT:KIND[:ARG][,key=value...]")
    if len(parts) > 3:
        raise ValueError(f"too many ':'-separated parts in {head!r}")
    endpoint, kind = parts[0], parts[1]
    if endpoint != ANY_ENDPOINT and endpoint not in ENDPOINTS:
        raise ValueError(
            f"unknown endpoint {endpoint!r} (expected '*' or one of {', '.join(ENDPOINTS)})"
        )
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    kwargs: dict[str, Any] = {}
    if len(parts) == 3:
        arg = parts[2]
        if kind in _DEFAULT_STATUS:
            kwargs["status"] = _spec_int("status", arg)
        elif kind == "delay":
            kwargs["delay"] = _spec_float("delay", arg)
        elif kind == "trickle":
            kwargs["duration"] = _spec_float("duration", arg)
        elif kind == "stall":
            kwargs["stall"] = arg
        else:
            raise ValueError(f"kind {kind!r} takes no ':ARG' (got {arg!r})")
    seen: set[str] = set()
    for raw_item in tail.split(",") if comma else []:
        item = raw_item.strip()
        key, eq, raw_value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{item!r} is not key=value")
        value = urllib.parse.unquote(raw_value.strip())
        if key not in _SPEC_KEYS:
            raise ValueError(f"unknown key {key!r} (expected one of {', '.join(_SPEC_KEYS)})")
        if key in seen:
            raise ValueError(f"key {key!r} given twice")
        seen.add(key)
        kinds = _SPEC_KEY_KINDS.get(key)
        if kinds is not None and kind not in kinds:
            allowed = " and ".join(repr(k) for k in sorted(kinds))
            raise ValueError(f"key {key!r} applies only to kind {allowed}, not {kind!r}")
        if not value and key != "detail":
            raise ValueError(f"key {key!r} has an empty value")
        if key in ("count", "after", "retry_after"):
            number = _spec_int(key, value)
            if number < 0:
                raise ValueError(f"{key} must be >= 0, got {number}")
            kwargs[key] = number
        elif key == "probability":
            probability = _spec_float(key, value)
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"probability {value!r} is outside [0, 1]")
            kwargs[key] = probability
        elif key in ("delay", "duration"):
            if key in kwargs:
                raise ValueError(f"{key} given both as ':ARG' and as key")
            kwargs[key] = _spec_float(key, value)
        elif key == "type":
            kwargs["problem_type"] = value
        elif key == "detail":
            kwargs[key] = value
        elif kind == "patch":  # key == "status"
            kwargs["patch"] = {"status": value}
        elif kind == "stall":  # key == "status"
            if "stall" in kwargs:
                raise ValueError("status given both as ':ARG' and as key")
            kwargs["stall"] = value
        else:
            if "status" in kwargs:
                raise ValueError("status given both as ':ARG' and as key")
            kwargs["status"] = _spec_int("status", value)
    return Fault(endpoint, kind, **kwargs)


def _spec_int(name: str, value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an integer") from None


def _spec_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} {value!r} must be a finite number >= 0")
    return number


# --------------------------------------------------------------------- events


@dataclass(frozen=True)
class ProxyEvent:
    """What the proxy did with one request.

    Attributes:
        endpoint: The endpoint the request was classified as (`ENDPOINTS`).
        method: The HTTP method.
        path: The request target as received (path and query).
        fault: The fault applied, or None when the request was relayed as is.
        status: The HTTP status the client got; None when the connection was
            reset instead (``reset``, ``lost``, or the client hung up first).
        upstream_status: The status upstream answered; None when the request
            was not forwarded or upstream could not be reached.
    """

    endpoint: str
    method: str
    path: str
    fault: Fault | None
    status: int | None
    upstream_status: int | None


@dataclass(frozen=True, slots=True)
class ProxyConnection:
    """One client connection the proxy accepted (see "Latency" in the module docstring).

    Attributes:
        tls_version: The negotiated protocol, e.g. ``"TLSv1.3"``.
        resumed: True when the client resumed an earlier TLS session.
        setup_delay: Seconds the connection waited, after its handshake, for
            the TCP and TLS round trips it would cost at the proxy's latency
            (0.0 without latency).
    """

    tls_version: str | None
    resumed: bool
    setup_delay: float


def _setup_round_trips(tls_version: str | None, resumed: bool) -> int:
    """Round trips before a client can send its first request on a new connection.

    One for TCP's handshake, then TLS's: TLS 1.3's full handshake and every
    resumption take one (RFC 8446 section 2, without 0-RTT data), a full
    TLS 1.2 handshake two (RFC 5246 section 7.3).
    """
    tls = 1 if resumed or tls_version == "TLSv1.3" else 2
    return 1 + tls


@dataclass
class _Armed:
    """A fault plus its counters (guarded by the proxy's lock)."""

    fault: Fault
    seen: int = 0
    fired: int = 0


@dataclass
class _Upstream:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _UpstreamError(Exception):
    """Upstream could not be reached or answered garbage at the HTTP level."""


class _KeptUpstream:
    """One client connection's kept-alive upstream connection (``upstream_keepalive``).

    Used by that connection's handler thread only, so it needs no lock.
    """

    def __init__(self) -> None:
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


# --------------------------------------------------------------------- routes


class _Routes:
    """Endpoint classification, learned from relayed responses (thread-safe)."""

    def __init__(self, directory_path: str) -> None:
        self._directory_path = directory_path
        self._lock = threading.Lock()
        self._exact: dict[str, str] = {}
        self._nonce_path: str | None = None

    @property
    def nonce_path(self) -> str | None:
        """newNonce's path, once the directory was seen."""
        with self._lock:
            return self._nonce_path

    def classify(self, method: str, path: str, body: bytes) -> str:
        """Name the endpoint of one request."""
        if path == self._directory_path:
            return "directory"
        with self._lock:
            endpoint = self._exact.get(path)
        if endpoint is None:
            endpoint = _FALLBACK_EXACT.get(path)
        if endpoint is None:
            endpoint = next(
                (name for prefix, name in _FALLBACK_PREFIXES if path.startswith(prefix)),
                "other",
            )
        if endpoint == "authz" and method == "POST" and _is_deactivation(body):
            return "deactivate"
        return endpoint

    def learn(self, endpoint: str, resp: _Upstream) -> None:
        """Remember the URLs a successful response names."""
        if not 200 <= resp.status < 300:
            return
        location = next((v for k, v in resp.headers if k.lower() == "location"), None)
        data: Any = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            data = json.loads(resp.body) if resp.body else None
        with self._lock:
            if endpoint == "directory" and isinstance(data, dict):
                for key, name in _DIRECTORY_FIELDS.items():
                    path = _url_path(data.get(key))
                    if path is not None:
                        self._exact[path] = name
                        if name == "nonce":
                            self._nonce_path = path
            elif endpoint == "account" and location:
                self._add(location, "account")
            elif endpoint == "order" and location:
                self._add(location, "order_poll")
            if endpoint in ("order", "order_poll", "finalize") and isinstance(data, dict):
                for url in data.get("authorizations") or []:
                    self._add(url, "authz")
                self._add(data.get("finalize"), "finalize")
                self._add(data.get("certificate"), "certificate")
            if endpoint in ("authz", "deactivate") and isinstance(data, dict):
                for challenge in data.get("challenges") or []:
                    if isinstance(challenge, dict):
                        self._add(challenge.get("url"), "challenge")

    def _add(self, url: object, endpoint: str) -> None:
        path = _url_path(url)
        if path is not None and path != self._directory_path:
            self._exact.setdefault(path, endpoint)


def _url_path(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    path = urllib.parse.urlsplit(url).path
    return path or None


def _is_deactivation(body: bytes) -> bool:
    """True for a JWS whose payload is ``{"status": "deactivated"}`` (RFC 8555 7.5.2)."""
    try:
        jws = json.loads(body)
        payload = jws.get("payload") if isinstance(jws, dict) else None
        if not isinstance(payload, str) or not payload:
            return False
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and decoded.get("status") == "deactivated"


# --------------------------------------------------------------------- server


class _Server(http.server.ThreadingHTTPServer):
    """Threaded HTTP server doing the TLS handshake per connection thread.

    Wrapping the listening socket instead would run every handshake in the
    accept loop, where one stalled client blocks all others.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], proxy: FaultProxy, context: ssl.SSLContext
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.proxy = proxy
        self.ssl_context = context
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (getfqdn)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.settimeout(_HANDSHAKE_TIMEOUT)
        # Responses go out in one write (see _Handler._send); NODELAY as well,
        # so a trickle's bytes and a reset's RST are never held back by Nagle.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        with self._conn_lock:
            self._conns.add(tls)
        try:
            if self.proxy._connection_setup(tls):
                _Handler(tls, client_address, self)
        finally:
            with self._conn_lock:
                self._conns.discard(tls)
            # After a reset fault SO_LINGER is 0, so this close sends the RST.
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log quietly when a client went away; loudly for anything else (a bug)."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("connection from %s ended: %s", client_address, sys.exc_info()[1])
        else:
            log.error("FaultProxy failed serving %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alives, delays) so stop() is quick."""
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Relays one connection's requests, applying at most one fault to each."""

    protocol_version = "HTTP/1.1"
    server_version = "acmedryrun-faultproxy"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    server: _Server
    #: With ``upstream_keepalive``: this client connection's upstream connection.
    _kept: _KeptUpstream | None = None

    def setup(self) -> None:
        super().setup()
        if self.server.proxy._upstream_keepalive:
            self._kept = _KeptUpstream()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._kept is not None:
                self._kept.close()

    def do_GET(self) -> None:
        self._relay()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET
    do_PATCH = do_GET
    do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # The body of the proxy ----------------------------------------------------

    def _relay(self) -> None:
        proxy = self.server.proxy
        method = self.command
        try:
            body = self._read_body()
        except ValueError as exc:
            proxy._one_way()
            self.close_connection = True
            self._send(400, [("Content-Type", "text/plain")], f"{exc}\n".encode())
            return
        if proxy._one_way():  # the request's trip to the CA
            self.close_connection = True  # stopped on the way: no answer
            return
        target = self._target()
        path = urllib.parse.urlsplit(target).path
        endpoint = proxy._routes.classify(method, path, body)
        fault = proxy._select(endpoint)
        kind = fault.kind if fault is not None else None

        def record(status: int | None, upstream_status: int | None = None) -> None:
            proxy._record(ProxyEvent(endpoint, method, target, fault, status, upstream_status))

        if fault is not None:
            log.info("%s %s (%s): injecting %s", method, target, endpoint, fault)
        if kind == "reset":
            record(None)
            self._reset()
            return
        if kind == "status" and fault is not None:
            status, headers, payload = proxy._problem_response(fault, self._host())
            record(status)
            self._send(status, headers, payload)
            return
        if kind == "html" and fault is not None:
            status, headers, payload = _html_response(fault)
            record(status)
            self._send(status, headers, payload)
            return
        if kind == "delay" and fault is not None and proxy._stopping.wait(fault.delay or 0.0):
            record(None)
            self._reset()
            return

        try:
            upstream = proxy._forward(method, target, self._upstream_headers(), body,
                                      kept=self._kept)
        except _UpstreamError as exc:
            if kind == "lost":
                record(None)
                self._reset()
                return
            status, headers, payload = _bad_gateway(str(exc))
            record(status)
            self._send(status, headers, payload)
            return
        proxy._routes.learn(endpoint, upstream)
        if kind == "lost":
            record(None, upstream.status)
            self._reset()
            return

        status, reason = upstream.status, upstream.reason
        headers = [(k, v) for k, v in upstream.headers if k.lower() not in _RESPONSE_DROP]
        payload = upstream.body
        head_length = next(
            (v for k, v in upstream.headers if k.lower() == "content-length"), None
        )
        if kind == "truncated":
            payload = payload[: len(payload) // 2]
            head_length = None
        elif kind == "not_json":
            status, reason = 200, "OK"
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
            payload, head_length = _NOT_JSON_BODY, None
        elif kind == "strip_nonce":
            headers = [(k, v) for k, v in headers if k.lower() != "replay-nonce"]
        elif kind == "patch" and fault is not None and fault.patch:
            patched = _patch_json(payload, status, fault.patch)
            if patched is not None:
                payload, head_length = patched, None
        elif kind == "stall" and fault is not None and fault.stall:
            stalled = _stall_json(payload, status, fault.stall)
            if stalled is None:
                # Nothing to hide in this response: it does not count as a firing.
                proxy._release(fault)
                fault = None
            else:
                payload, head_length = stalled, None
        record(status, upstream.status)
        trickle = fault.duration if kind == "trickle" and fault is not None else None
        self._send(status, headers, payload, reason=reason, head_length=head_length,
                   trickle=trickle)

    def _target(self) -> str:
        """The request target in origin form (an absolute-form target is reduced)."""
        if self.path.startswith("/"):
            return self.path
        split = urllib.parse.urlsplit(self.path)
        return urllib.parse.urlunsplit(("", "", split.path or "/", split.query, ""))

    def _host(self) -> str:
        return self.headers.get("Host") or self.server.proxy._netloc

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ValueError(f"bad Content-Length {length!r}") from None
        if not 0 <= size <= _MAX_BODY:
            raise ValueError(f"Content-Length {size} out of range")
        return self.rfile.read(size)

    def _upstream_headers(self) -> dict[str, str]:
        connection_tokens = {
            token.strip().lower()
            for token in self.headers.get("Connection", "").split(",")
            if token.strip()
        }
        merged: dict[str, tuple[str, str]] = {}  # lower-case name -> (name, value)
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in _REQUEST_DROP or lower in connection_tokens:
                continue
            # RFC 9110 section 5.3: a repeated field is joined with ", ".
            joined = f"{merged[lower][1]}, {value}" if lower in merged else value
            merged[lower] = (name, joined)
        headers = dict(merged.values())
        if "host" not in merged:
            headers["Host"] = self.server.proxy._netloc
        headers["Accept-Encoding"] = "identity"
        return headers

    def _send(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        reason: str | None = None,
        head_length: str | None = None,
        trickle: float | None = None,
    ) -> None:
        """Write one response: head and body in a single write, or trickled byte by byte.

        One write (one TLS record for a small response) rather than
        ``end_headers()`` then the body: two small writes are exactly what
        Nagle's algorithm holds back until the peer's delayed ACK (~40 ms).
        """
        self.server.proxy._one_way()  # the response's trip back (latency)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        self.send_response_only(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", head_length or str(len(body)))
        elif not no_body:
            self.send_header("Content-Length", str(len(body)))
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        self._headers_buffer: list[bytes] = []
        data = b"".join(buffered) + b"\r\n" + (b"" if no_body else body)
        try:
            if trickle is None:
                self.wfile.write(data)
            else:
                self._trickle(data, trickle)
            self.wfile.flush()
        except OSError as exc:  # the client gave up (e.g. after its timeout)
            log.debug("client %s went away: %s", self.address_string(), exc)
            self.close_connection = True

    def _trickle(self, data: bytes, duration: float) -> None:
        """Write ``data`` a byte at a time, evenly over ``duration`` seconds.

        Paced against the monotonic clock, so the total stays ``duration``
        however long each write takes; `FaultProxy.stop` ends it at once.
        """
        stopping = self.server.proxy._stopping
        interval = duration / max(1, len(data))
        started = time.monotonic()
        for index in range(len(data)):
            self.wfile.write(data[index : index + 1])
            wait = started + (index + 1) * interval - time.monotonic()
            if wait > 0 and stopping.wait(wait):
                raise ConnectionAbortedError("FaultProxy stopped during a trickle")

    def _reset(self) -> None:
        """Abort the connection with a TCP RST and no HTTP response."""
        self.server.proxy._one_way()  # the RST's trip back (latency)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )


def _read_chunked(rfile: io.BufferedIOBase) -> bytes:
    """Decode a chunked request body (RFC 9112 section 7.1)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ValueError(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass  # trailers are dropped
            return b"".join(chunks)
        total += size
        if total > _MAX_BODY:
            raise ValueError("chunked body too large")
        chunks.append(rfile.read(size))
        rfile.readline(8)


def _date_header() -> tuple[str, str]:
    return ("Date", email.utils.formatdate(usegmt=True))


def _html_response(fault: Fault) -> tuple[int, list[tuple[str, str]], bytes]:
    """A load balancer's error page (nginx's shape): HTML, no problem document."""
    status = fault.status or 502
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    title = html.escape(f"{status} {phrase}")
    extra = f"<p>{html.escape(fault.detail)}</p>\r\n" if fault.detail else ""
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n{extra}<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    headers = [_date_header(), ("Content-Type", "text/html"), ("Server", "nginx")]
    if fault.retry_after is not None:
        headers.append(("Retry-After", str(fault.retry_after)))
    return status, headers, page


def _bad_gateway(reason: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """What a real reverse proxy answers when upstream is unreachable."""
    body = f"acmedryrun FaultProxy: upstream unreachable: {reason}\n".encode()
    return 502, [_date_header(), ("Content-Type", "text/plain; charset=utf-8")], body


def _object_kind(data: Mapping[str, Any]) -> str | None:
    """Which RFC 8555 object a JSON body is (section 7.1.3, 7.1.4, 8), by its fields."""
    if "finalize" in data or "authorizations" in data:
        return "order"
    if "identifier" in data and "challenges" in data:
        return "authorization"
    if "token" in data or ("type" in data and "url" in data):
        return "challenge"
    return None


def _stall_object(data: dict[str, Any], kind: str, state: str) -> bool:
    """Show ``data`` (an object of ``kind``) at ``state``; True if anything changed.

    ``unanswered`` is ``pending`` as if the client had never responded: an
    authorization's challenges read ``pending`` too, where plain ``pending``
    shows them ``processing`` (the validation still under way, section 7.1.6).
    """
    shown = "pending" if state == "unanswered" else state
    lifecycle = _LIFECYCLES[kind]
    current = data.get("status")
    if shown not in lifecycle or current not in lifecycle:
        return False
    if lifecycle.index(current) <= lifecycle.index(shown):
        return False
    data["status"] = shown
    if kind == "order":
        data.pop("certificate", None)  # section 7.1.3: present once the order is valid
    elif kind == "challenge":
        data.pop("validated", None)  # section 8: only on a valid challenge
        data.pop("error", None)
    else:
        inner = "pending" if state == "unanswered" else "processing"
        for challenge in data.get("challenges") or []:
            if isinstance(challenge, dict):
                _stall_object(challenge, "challenge", inner)
    return True


def _stall_json(body: bytes, status: int, state: str) -> bytes | None:
    """``body`` shown at the earlier ``state``, or None when there is nothing to hide."""
    if not 200 <= status < 300:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    kind = _object_kind(data)
    if kind is None or not _stall_object(data, kind, state):
        return None
    return json.dumps(data, indent=3).encode()


def _patch_json(body: bytes, status: int, patch: Mapping[str, Any]) -> bytes | None:
    """``body`` with ``patch`` merged in, or None when it is not a 2xx JSON object."""
    if not 200 <= status < 300:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    data.update(patch)
    return json.dumps(data, indent=3).encode()


# --------------------------------------------------------------------- proxy


class FaultProxy:
    """HTTPS reverse proxy in front of an ACME directory that injects faults.

    Args:
        upstream: The upstream directory URL (``https://host:port/dir``).
        upstream_ca_bundle: PEM trust anchors for upstream's TLS; None uses the
            system's default store (``REQUESTS_CA_BUNDLE`` is not consulted).
        faults: Initial faults (`add_fault` adds more while running).
        seed: Seed for the probability draws, for reproducible runs.
        host: Address to listen on (default ``127.0.0.1``).
        port: Port to listen on (default 0: a free one).
        certfile, keyfile: The proxy's own TLS certificate and key.  Default: a
            fresh private CA and a certificate for 127.0.0.1, ::1 and
            localhost, written to a temporary directory that `stop()` removes.
        ca_bundle: With ``certfile``: the PEM clients must trust (default
            ``certfile`` itself, for a self-signed certificate).
        upstream_timeout: Seconds to wait for upstream per request.
        on_event: Called (from a handler thread) with each `ProxyEvent`.
        latency: One-way delay in seconds between the clients and the proxy
            (default 0.0: none); a round trip is twice that.  See "Latency"
            in the module docstring for what a request and a new connection
            cost.
        on_connection: Called (from the connection's thread, after its set-up
            wait) with each `ProxyConnection`.
        upstream_keepalive: Keep one upstream connection per client connection
            (default False: a fresh upstream connection per request).

    Raises:
        ValueError: ``upstream`` is not an http(s) URL, or an option is bad.
    """

    def __init__(
        self,
        upstream: str,
        *,
        upstream_ca_bundle: str | None = None,
        faults: Sequence[Fault] = (),
        seed: int | None = None,
        host: str = _LOOPBACK,
        port: int = 0,
        certfile: str | None = None,
        keyfile: str | None = None,
        ca_bundle: str | None = None,
        upstream_timeout: float = _UPSTREAM_TIMEOUT,
        on_event: Callable[[ProxyEvent], None] | None = None,
        latency: float = 0.0,
        on_connection: Callable[[ProxyConnection], None] | None = None,
        upstream_keepalive: bool = False,
    ) -> None:
        split = urllib.parse.urlsplit(upstream)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"upstream {upstream!r} is not an http(s) URL")
        try:
            split.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"upstream {upstream!r}: {exc}") from None
        if not 0 <= port < 65536:
            raise ValueError(f"port must be 0-65535, got {port}")
        if keyfile is not None and certfile is None:
            raise ValueError("keyfile needs certfile")
        if ca_bundle is not None and certfile is None:
            raise ValueError("ca_bundle is only meaningful with certfile")
        if not upstream_timeout > 0:
            raise ValueError("upstream_timeout must be positive")
        if not _is_number(latency) or latency < 0:
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {latency!r}")
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"faults must be Fault instances, got {fault!r}")
        self._upstream = upstream
        self._upstream_split = split
        self._upstream_ca_bundle = upstream_ca_bundle
        self._upstream_timeout = float(upstream_timeout)
        self._directory_target = urllib.parse.urlunsplit(
            ("", "", split.path or "/", split.query, "")
        )
        self._host = host
        self._requested_port = port
        self._certfile = certfile
        self._keyfile = keyfile
        self._given_ca_bundle = ca_bundle
        self._on_event = on_event
        self._latency = float(latency)
        self._on_connection = on_connection
        self._upstream_keepalive = bool(upstream_keepalive)
        self._connections: list[ProxyConnection] = []

        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._armed = [_Armed(f) for f in faults]
        self._rng = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._events: list[ProxyEvent] = []
        self._routes = _Routes(split.path or "/")
        self._stopping = threading.Event()
        self._upstream_context: ssl.SSLContext | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None
        self._ca_bundle: str | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"FaultProxy({self._upstream!r} via {where}, {len(self.faults)} fault(s))"

    # -- state ------------------------------------------------------------------

    @property
    def upstream(self) -> str:
        """The upstream directory URL."""
        return self._upstream

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._port is None:
            raise FaultProxyError("FaultProxy.port is only known after start()")
        return self._port

    @property
    def url(self) -> str:
        """The proxy's base URL, ``https://127.0.0.1:PORT``."""
        return f"https://{self._netloc}"

    @property
    def directory_url(self) -> str:
        """The directory URL clients use: the proxy's URL plus upstream's path."""
        return self.url + self._directory_target

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM that clients must trust for the proxy's TLS."""
        if self._ca_bundle is None:
            raise FaultProxyError("FaultProxy.ca_bundle is only known after start()")
        return self._ca_bundle

    @property
    def _netloc(self) -> str:
        host = self._host
        if host in ("", "0.0.0.0"):  # noqa: S104 - mapping a wildcard bind to a dialable address
            host = _LOOPBACK
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults currently armed, in the order they are consulted."""
        with self._lock:
            return tuple(a.fault for a in self._armed)

    @property
    def latency(self) -> float:
        """The one-way delay in seconds (a round trip is twice that)."""
        return self._latency

    @property
    def connections(self) -> list[ProxyConnection]:
        """A snapshot of the client connections accepted so far, in order."""
        with self._lock:
            return list(self._connections)

    @property
    def events(self) -> list[ProxyEvent]:
        """A snapshot of what the proxy did with each request so far, in order."""
        with self._lock:
            return list(self._events)

    def hits(self, endpoint: str = ANY_ENDPOINT) -> int:
        """How many requests to ``endpoint`` (``"*"``: any) the proxy has seen."""
        if endpoint != ANY_ENDPOINT and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            return sum(1 for e in self._events if endpoint in (ANY_ENDPOINT, e.endpoint))

    def add_fault(self, fault: Fault) -> None:
        """Arm one more fault (consulted after the ones already armed)."""
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {fault!r}")
        with self._lock:
            self._armed.append(_Armed(fault))

    def clear_faults(self) -> None:
        """Disarm every fault; requests are relayed unchanged from now on."""
        with self._lock:
            self._armed.clear()

    def clear_events(self) -> None:
        """Forget the events recorded so far (`hits` counts from zero again)."""
        with self._lock:
            self._events.clear()

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        """Listen and serve in a background thread; returns self.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
            FaultProxyError: already running.
        """
        with self._lifecycle:
            if self._server is not None:
                raise FaultProxyError("FaultProxy is already running")
            try:
                self._start()
            except BaseException:
                self._teardown()
                raise
        return self

    def _start(self) -> None:
        keyfile: str | None
        if self._certfile is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="acmedryrun-faultproxy-"))
            ca_path, cert_path, key_path = _generate_tls_material(self._tmpdir)
            certfile, keyfile = str(cert_path), str(key_path)
            self._ca_bundle = str(ca_path)
        else:
            certfile, keyfile = self._certfile, self._keyfile
            self._ca_bundle = self._given_ca_bundle or self._certfile
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        context.set_alpn_protocols(["http/1.1"])
        self._upstream_context = _client_context(self._upstream_ca_bundle)
        self._stopping.clear()
        server = _Server((self._host, self._requested_port), self, context)
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"acmedryrun-faultproxy-{self._port}",
            daemon=True,
        )
        self._thread.start()
        # Best effort: learn the directory's URLs now, so requests are classified
        # right even before a client fetched the directory through the proxy.
        with contextlib.suppress(_UpstreamError):
            self._learn_directory(self._netloc, timeout=_START_LEARN_TIMEOUT)

    def stop(self) -> None:
        """Stop serving, drop open connections and remove generated files.  Idempotent."""
        with self._lifecycle:
            self._teardown()

    def _teardown(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- internals used by the handler --------------------------------------------

    def _select(self, endpoint: str) -> Fault | None:
        """The fault that fires for this request, counting it; None to relay as is."""
        with self._lock:
            for armed in self._armed:
                fault = armed.fault
                if fault.endpoint not in (ANY_ENDPOINT, endpoint):
                    continue
                armed.seen += 1
                if armed.seen <= fault.after:
                    continue
                if fault.count is not None and armed.fired >= fault.count:
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                armed.fired += 1
                return fault
        return None

    def _release(self, fault: Fault) -> None:
        """Take back one firing of ``fault``: it turned out to have nothing to change."""
        with self._lock:
            for armed in self._armed:
                if armed.fault is fault and armed.fired > 0:
                    armed.fired -= 1
                    return

    def _one_way(self) -> bool:
        """Wait one direction's latency; True when the proxy stopped meanwhile."""
        return self._latency > 0 and self._stopping.wait(self._latency)

    def _connection_setup(self, tls: ssl.SSLSocket) -> bool:
        """Make a new connection cost its TCP and TLS round trips, and record it.

        Returns False when the proxy stopped meanwhile: the connection is not served.
        """
        version, resumed = tls.version(), bool(tls.session_reused)
        delay = _setup_round_trips(version, resumed) * 2 * self._latency
        if delay > 0 and self._stopping.wait(delay):
            return False
        connection = ProxyConnection(version, resumed, delay)
        with self._lock:
            self._connections.append(connection)
        if self._on_connection is not None:
            self._on_connection(connection)
        return True

    def _record(self, event: ProxyEvent) -> None:
        with self._lock:
            self._events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def _forward(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float | None = None,
        kept: _KeptUpstream | None = None,
    ) -> _Upstream:
        """Send one request upstream and read it all.

        A fresh connection each time, or ``kept``'s connection (opened on first
        use, kept while upstream keeps it alive).  A kept connection that fails
        before any response (upstream closed it while idle) is replaced by a
        fresh one, once.
        """
        reused = kept is not None and kept.conn is not None
        conn = kept.conn if kept is not None and kept.conn is not None else None
        if conn is None:
            conn = self._upstream_connection(timeout or self._upstream_timeout)
        send_body = body if body or method in ("POST", "PUT", "PATCH") else None
        keep = False
        try:
            if conn.sock is None:
                _connect_nodelay(conn)
            conn.request(method, target, body=send_body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
            keep = kept is not None and not resp.will_close
            return _Upstream(resp.status, resp.reason, resp.getheaders(), data)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            if reused and kept is not None:
                kept.conn = None
                conn.close()
                return self._forward(method, target, headers, body, kept=kept)
            raise _UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if keep and kept is not None:
                kept.conn = conn
            else:
                if kept is not None and kept.conn is conn:
                    kept.conn = None
                conn.close()

    def _upstream_connection(self, seconds: float) -> http.client.HTTPConnection:
        """A new, not yet connected, connection to upstream."""
        split = self._upstream_split
        host = split.hostname or _LOOPBACK
        if split.scheme == "https":
            return http.client.HTTPSConnection(
                host, split.port, timeout=seconds, context=self._upstream_context
            )
        return http.client.HTTPConnection(host, split.port, timeout=seconds)

    def _learn_directory(self, host: str, *, timeout: float | None = None) -> None:
        resp = self._forward(
            "GET",
            self._directory_target,
            {"Host": host, "Accept": "application/json"},
            b"",
            timeout=timeout,
        )
        self._routes.learn("directory", resp)

    def _fresh_nonce(self, host: str) -> str | None:
        """A Replay-Nonce from upstream's newNonce, for synthesized error responses."""
        try:
            if self._routes.nonce_path is None:
                self._learn_directory(host)
            path = self._routes.nonce_path
            if path is None:
                return None
            resp = self._forward("HEAD", path, {"Host": host}, b"")
        except _UpstreamError as exc:
            log.debug("no fresh nonce from upstream: %s", exc)
            return None
        return next((v for k, v in resp.headers if k.lower() == "replay-nonce"), None)

    def _problem_response(
        self, fault: Fault, host: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """An ACME error response (RFC 8555 section 6.7) as a real CA sends it."""
        status = fault.status or 500
        detail = fault.detail or f"acmedryrun FaultProxy injected HTTP {status}"
        document = {"type": fault.problem_urn, "detail": detail, "status": status}
        headers = [
            _date_header(),
            ("Content-Type", PROBLEM_CONTENT_TYPE),
            ("Cache-Control", "no-store"),
            ("Link", f'<https://{host}{self._directory_target}>;rel="index"'),
        ]
        nonce = self._fresh_nonce(host)
        if nonce:
            headers.append(("Replay-Nonce", nonce))
        if fault.retry_after is not None:
            headers.append(("Retry-After", str(fault.retry_after)))
        return status, headers, json.dumps(document, indent=2).encode()


def _connect_nodelay(conn: http.client.HTTPConnection) -> None:
    """Connect, with TCP_NODELAY.

    CPython's http.client sets TCP_NODELAY in connect() already; set here as
    well so a request's head and body, which it sends in two writes, never
    wait for upstream's delayed ACK whatever the version.
    """
    conn.connect()
    with contextlib.suppress(OSError, AttributeError):
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _client_context(cafile: str | None) -> ssl.SSLContext:
    """TLS context for talking to upstream: ``cafile`` or the system's trust store."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    return context


# --------------------------------------------------------------------- CLI


def _probe_upstream(upstream: str, cafile: str | None) -> str | None:
    """One GET of the upstream directory; the reason it is unusable, or None."""
    split = urllib.parse.urlsplit(upstream)
    if split.scheme not in ("http", "https") or not split.hostname:
        return "not an http(s) URL"
    conn: http.client.HTTPConnection
    try:
        if split.scheme == "https":
            conn = http.client.HTTPSConnection(
                split.hostname, split.port, timeout=_PROBE_TIMEOUT, context=_client_context(cafile)
            )
        else:
            conn = http.client.HTTPConnection(split.hostname, split.port, timeout=_PROBE_TIMEOUT)
        target = urllib.parse.urlunsplit(("", "", split.path or "/", split.query, ""))
        try:
            conn.request("GET", target, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"cannot reach it ({type(exc).__name__}: {exc})"
    if resp.status != 200:
        return f"not an ACME directory (HTTP {resp.status})"
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "not an ACME directory (the answer is not JSON)"
    if not isinstance(data, dict) or not isinstance(data.get("newNonce"), str):
        return "not an ACME directory (no newNonce in it)"
    return None


def run_proxy(
    upstream: str,
    faults: Sequence[str],
    *,
    port: int = 0,
    host: str = _LOOPBACK,
    upstream_ca_bundle: str | None = None,
    seed: int | None = None,
    verbose: bool = False,
    stderr: TextIO | None = None,
) -> int:
    """Body of ``acmedryrun proxy``: serve a `FaultProxy` until Ctrl-C or SIGTERM.

    Prints one line with the proxy's directory URL and CA bundle to ``stderr``
    (and, with ``verbose``, one line per request).  Returns 0.

    Raises:
        UsageError: a fault spec does not parse, the CA bundle is unreadable,
            upstream does not answer as an ACME directory, or the address
            cannot be bound.
    """
    out = stderr if stderr is not None else sys.stderr
    parsed: list[Fault] = []
    for spec in faults:
        try:
            parsed.append(parse_fault(spec))
        except ValueError as exc:
            raise UsageError(f"--fault: {exc}") from None
    if upstream_ca_bundle is not None and not Path(upstream_ca_bundle).is_file():
        raise UsageError(f"--upstream-ca-bundle: {upstream_ca_bundle} is not a readable file")
    if not 0 <= port < 65536:
        raise UsageError(f"--port: {port} is not a TCP port")
    reason = _probe_upstream(upstream, upstream_ca_bundle)
    if reason is not None:
        raise UsageError(f"--upstream: {upstream}: {reason}")

    def show(event: ProxyEvent) -> None:
        what = f"fault {event.fault}" if event.fault is not None else "relayed"
        answer = "reset" if event.status is None else str(event.status)
        print(f"{event.method} {event.path} [{event.endpoint}] {what} -> {answer}",
              file=out, flush=True)

    try:
        proxy = FaultProxy(
            upstream,
            upstream_ca_bundle=upstream_ca_bundle,
            faults=parsed,
            seed=seed,
            host=host,
            port=port,
            on_event=show if verbose else None,
        )
    except ValueError as exc:
        raise UsageError(f"--upstream: {exc}") from None
    try:
        proxy.start()
    except OSError as exc:
        raise UsageError(f"--host/--port: cannot listen on {host}:{port}: {exc}") from None
    stop = threading.Event()
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        if in_main:
            previous = signal.signal(signal.SIGTERM, on_sigterm)
        print(
            f"acmedryrun proxy: directory {proxy.directory_url} "
            f"(trust {proxy.ca_bundle}), faults: {len(parsed)}; Ctrl-C to stop",
            file=out,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        proxy.stop()
    return 0

