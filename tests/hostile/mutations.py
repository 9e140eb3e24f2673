"""The catalogue of CA misbehaviour: each :class:`Mutation` rewrites one exchange.

Classes (issue 12): ``structure``, ``types``, ``problems`` (malformed problem
documents, RFC 8555 section 6.7 / RFC 7807), ``sizes``, ``encodings``,
``headers`` (missing headers and links -- ``Location`` and the URLs inside
directory, order and authorization objects -- in hostile spellings),
``redirects``, ``slowness`` and ``certificates``.

A mutation applies to every request of its endpoint (persistent), so a client
cannot retry its way past it: what the run reports is what the client made of
the mutation.  ``transform`` returns None when the mutation has nothing to change
in this exchange (an object without the field it rewrites, a HEAD without a
body); such a request is relayed unchanged and does not count as fired.

Endpoints are FaultProxy's (``acmedryrun.testing._faultproxy.ENDPOINTS``) plus
``reference``, the production twin's directory.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hostile.certtools import CERT_MUTATORS
from hostile.proxy import Exchange, Reply

__all__ = [
    "ALL_ENDPOINTS",
    "KINDS",
    "MUTATIONS",
    "REDIRECT_MARK",
    "Mutation",
    "by_name",
    "pairs",
]

ALL_ENDPOINTS: tuple[str, ...] = (
    "directory", "nonce", "account", "order", "authz", "challenge", "finalize",
    "order_poll", "certificate", "deactivate")
KINDS: tuple[str, ...] = (
    "structure", "types", "problems", "sizes", "encodings", "headers", "redirects",
    "slowness", "certificates")

_POST = ("account", "order", "authz", "challenge", "finalize", "order_poll", "certificate",
         "deactivate")
_NONCE_CARRIERS = ("nonce", *_POST)
_JSON = ("directory", "account", "order", "authz", "challenge", "finalize", "order_poll",
         "deactivate")
#: Endpoints whose failure must fail the run (cleanup's deactivation only warns).
_ESSENTIAL = frozenset(ALL_ENDPOINTS) - {"deactivate"}

PROBLEM = "application/problem+json"
ACME = "urn:ietf:params:acme:error:"
PRODUCTION = "acme-v02.api.letsencrypt.org"
#: Depth of the nested JSON (issue 12: "JSON nested very deeply").
DEEP = 100_000
#: The huge body: 300 MB, streamed (issue 12: "a body of hundreds of MB").
HUGE_BODY = 300 * 1024 * 1024
#: The huge header: 10 MB in one field.
HUGE_HEADER = 10 * 1024 * 1024

Transform = Callable[[Exchange], Reply | None]


@dataclass(frozen=True, slots=True)
class Mutation:
    """One kind of misbehaviour, applied to every request of the chosen endpoint.

    Attributes:
        name: ``kind.what`` (``headers.link_backslash_userinfo``).
        kind: One of :data:`KINDS`.
        endpoints: Where it can apply.
        transform: Exchange -> the reply the client gets (None: nothing to change).
        forward: Send the request upstream first (False: the CA "answers" alone).
        fatal_on: Endpoints where no correct client can reach ``likely_success``
            through it (an over-size body, a production link, a redirect).
        corrupts_chain: The certificate the client gets is not the one issued.
        refusal_ok: Endpoints where ``dry_run`` raising ``UsageError`` is the
            designed answer (a directory whose links are production's:
            ``ProductionRefused``, exit 64).
    """

    name: str
    kind: str
    endpoints: tuple[str, ...]
    transform: Transform = field(repr=False)
    forward: bool = True
    fatal_on: frozenset[str] = frozenset()
    corrupts_chain: bool = False
    refusal_ok: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return self.name


# ------------------------------------------------------------------------------ helpers


def _relayed(ex: Exchange, *, body: bytes | None = None,
             headers: list[tuple[str, str]] | None = None, **kwargs: Any) -> Reply:
    """Upstream's reply with some parts replaced."""
    up = ex.upstream
    assert up is not None
    return Reply(up.status, up.reason, list(up.headers) if headers is None else headers,
                 up.body if body is None else body, **kwargs)


def _json_edit(edit: Callable[[str, dict[str, Any]], Any]) -> Transform:
    """A transform that rewrites a 2xx JSON-object body; ``edit`` returns the new JSON
    (or None: nothing to change).  Serialised with ``allow_nan`` so edits may add NaN."""

    def transform(ex: Exchange) -> Reply | None:
        data = ex.json()
        if ex.upstream is None or not 200 <= ex.upstream.status < 300 \
                or not isinstance(data, dict):
            return None
        new = edit(ex.endpoint, data)
        if new is None:
            return None
        return _relayed(ex, body=json.dumps(new).encode())

    return transform


def _body(make: Callable[[Exchange], bytes | None]) -> Transform:
    """A transform that replaces a 2xx body (never a HEAD's, which has none)."""

    def transform(ex: Exchange) -> Reply | None:
        if ex.upstream is None or ex.method == "HEAD" or not 200 <= ex.upstream.status < 300:
            return None
        body = make(ex)
        return None if body is None else _relayed(ex, body=body)

    return transform


def _problem_reply(ex: Exchange, doc: bytes, *, status: int = 500,
                   extra: Sequence[tuple[str, str]] = ()) -> Reply:
    """An error response as a CA sends it, with a fresh Replay-Nonce (RFC 8555 6.5)."""
    headers = [("Content-Type", PROBLEM), ("Cache-Control", "no-store"), *extra]
    nonce = ex.proxy.fresh_nonce(ex.host)
    if nonce:
        headers.append(("Replay-Nonce", nonce))
    return Reply(status, "Hostile", headers, doc)


def _problem(doc: dict[str, Any] | Callable[[Exchange], bytes], *, status: int = 500,
             extra: Sequence[tuple[str, str]] = ()) -> Transform:
    def transform(ex: Exchange) -> Reply:
        body = doc(ex) if callable(doc) else json.dumps(doc).encode()
        return _problem_reply(ex, body, status=status, extra=extra)

    return transform


def _deep(opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * DEEP + closer * DEEP


def _with_header(name: str, value: str, *, replace: bool = True) -> Transform:
    def transform(ex: Exchange) -> Reply | None:
        up = ex.upstream
        if up is None:
            return None
        headers = up.without(name) if replace else list(up.headers)
        return _relayed(ex, headers=[*headers, (name, value)])

    return transform


def _replace_existing_header(name: str, value: str) -> Transform:
    def transform(ex: Exchange) -> Reply | None:
        up = ex.upstream
        if up is None or up.header(name) is None:
            return None
        return _relayed(ex, headers=[*up.without(name), (name, value)])

    return transform


def _drop_header(name: str) -> Transform:
    def transform(ex: Exchange) -> Reply | None:
        up = ex.upstream
        if up is None or up.header(name) is None:
            return None
        return _relayed(ex, headers=up.without(name))

    return transform


# ------------------------------------------------------------------------------ structure

#: Fields RFC 8555 section 7.1 makes the client depend on, per endpoint.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "directory": ("newNonce", "newAccount", "newOrder"),
    "reference": ("newNonce", "newAccount", "newOrder"),
    "account": ("status",),
    "order": ("authorizations", "finalize", "status"),
    "order_poll": ("status",),
    "authz": ("challenges", "identifier", "status"),
    "challenge": ("status", "token", "url", "type"),
    "finalize": ("status",),
    "deactivate": ("status",),
}


def _drop_required(endpoint: str, data: dict[str, Any]) -> dict[str, Any] | None:
    fields = [f for f in _REQUIRED.get(endpoint, ()) if f in data]
    return {k: v for k, v in data.items() if k not in fields} if fields else None


def _add_extra(endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
    del endpoint
    return {**data, "x-hostile-extra": {"nested": [1, {"deeper": None}], "n": 1e300},
            "x-hostile-list": list(range(50))}


_BODY_ENDPOINTS = (*_JSON, "reference")
#: Endpoints whose body the client must understand to go on.
_BODY_NEEDED = frozenset({"directory", "account", "order", "authz", "order_poll"})

STRUCTURE = [
    Mutation("structure.deep_json", "structure", _BODY_ENDPOINTS,
             _body(lambda ex: _deep()), fatal_on=_BODY_NEEDED),
    Mutation("structure.deep_json_object", "structure", _BODY_ENDPOINTS,
             _body(lambda ex: b'{"a":' * DEEP + b"1" + b"}" * DEEP), fatal_on=_BODY_NEEDED),
    Mutation("structure.top_level_list", "structure", _BODY_ENDPOINTS,
             _json_edit(lambda ep, d: [d]), fatal_on=_BODY_NEEDED),
    Mutation("structure.missing_fields", "structure", _BODY_ENDPOINTS,
             _json_edit(_drop_required),
             fatal_on=frozenset({"directory", "order", "authz", "order_poll"})),
    Mutation("structure.extra_fields", "structure", _BODY_ENDPOINTS, _json_edit(_add_extra)),
]


# ------------------------------------------------------------------------------ types


def _challenges_edit(key: str, value: Any) -> Callable[[str, dict[str, Any]], Any]:
    def edit(endpoint: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if endpoint == "challenge" and key in data:
            return {**data, key: value}
        challenges = data.get("challenges")
        if not isinstance(challenges, list) or not challenges:
            return None
        return {**data, "challenges": [{**c, key: value} if isinstance(c, dict) else c
                                       for c in challenges]}

    return edit


def _identifier_number(endpoint: str, data: dict[str, Any]) -> dict[str, Any] | None:
    del endpoint
    ident = data.get("identifier")
    if not isinstance(ident, dict):
        return None
    return {**data, "identifier": {**ident, "value": 42}}


def _status_list(endpoint: str, data: dict[str, Any]) -> dict[str, Any] | None:
    del endpoint
    return {**data, "status": [data["status"]]} if "status" in data else None


def _authorizations_not_urls(endpoint: str, data: dict[str, Any]) -> dict[str, Any] | None:
    del endpoint
    if "authorizations" not in data:
        return None
    return {**data, "authorizations": ["authz-1", "ftp://127.0.0.1/authz/2", "https://"]}


def _challenges_object(endpoint: str, data: dict[str, Any]) -> dict[str, Any] | None:
    del endpoint
    challenges = data.get("challenges")
    if not isinstance(challenges, list):
        return None
    return {**data, "challenges": {str(c.get("type")): c for c in challenges
                                   if isinstance(c, dict)}}


def _embedded_error(value: Any) -> Callable[[str, dict[str, Any]], Any]:
    """An object turned ``invalid`` whose ``error`` is a staging problem with a bad field."""

    def edit(endpoint: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if "status" not in data:
            return None
        error = {"type": ACME + "serverInternal", "detail": "hostile: embedded error",
                 **value}
        new = {**data, "status": "invalid", "error": error}
        if isinstance(data.get("challenges"), list):
            new["challenges"] = [{**c, "status": "invalid", "error": error}
                                 for c in data["challenges"] if isinstance(c, dict)]
        del endpoint
        return new

    return edit


TYPES = [
    Mutation("types.token_number", "types", ("authz", "challenge"),
             _json_edit(_challenges_edit("token", 12345)), fatal_on=frozenset({"authz"})),
    Mutation("types.challenge_url_number", "types", ("authz",),
             _json_edit(_challenges_edit("url", 7)), fatal_on=frozenset({"authz"})),
    Mutation("types.identifier_value_number", "types", ("authz",),
             _json_edit(_identifier_number), fatal_on=frozenset({"authz"})),
    Mutation("types.status_list", "types", ("account", "order", "authz", "challenge",
                                            "finalize", "order_poll", "deactivate"),
             _json_edit(_status_list),
             fatal_on=frozenset({"account", "order", "authz", "order_poll"})),
    Mutation("types.authorizations_not_urls", "types", ("order", "order_poll", "finalize"),
             _json_edit(_authorizations_not_urls), fatal_on=frozenset({"order"})),
    Mutation("types.challenges_object", "types", ("authz",),
             _json_edit(_challenges_object), fatal_on=frozenset({"authz"})),
    Mutation("types.error_status_infinity", "types", ("authz", "order_poll"),
             _json_edit(_embedded_error({"status": float("inf")})),
             fatal_on=frozenset({"authz", "order_poll"})),
    Mutation("types.error_subproblems_number", "types", ("authz", "order_poll"),
             _json_edit(_embedded_error({"subproblems": 7})),
             fatal_on=frozenset({"authz", "order_poll"})),
]


# ------------------------------------------------------------------------------ problems

_SERVER_INTERNAL = ACME + "serverInternal"


def _echo_request(ex: Exchange) -> bytes:
    """A problem whose detail quotes the signed request, as some CAs' 400s do."""
    quoted = ex.body.decode("utf-8", "replace")
    return json.dumps({"type": _SERVER_INTERNAL, "status": 500,
                       "detail": f"cannot process request {quoted}"}).encode()


PROBLEMS = [
    Mutation("problems.subproblems_object", "problems", ALL_ENDPOINTS,
             _problem({"type": _SERVER_INTERNAL, "detail": "hostile", "status": 500,
                       "subproblems": {"a": {"type": ACME + "dns"}}}), forward=False),
    Mutation("problems.subproblems_number", "problems", ALL_ENDPOINTS,
             _problem({"type": _SERVER_INTERNAL, "detail": "hostile", "status": 500,
                       "subproblems": 7}), forward=False),
    Mutation("problems.subproblem_identifier_number", "problems", ALL_ENDPOINTS,
             _problem({"type": ACME + "compound", "detail": "hostile", "status": 500,
                       "subproblems": [{"type": _SERVER_INTERNAL, "detail": "x",
                                        "identifier": {"type": "dns", "value": 42}}]}),
             forward=False),
    Mutation("problems.identifier_value_number", "problems", ALL_ENDPOINTS,
             _problem({"type": _SERVER_INTERNAL, "detail": "hostile", "status": 500,
                       "identifier": {"type": "dns", "value": 42}}), forward=False),
    Mutation("problems.deep_json", "problems", ALL_ENDPOINTS,
             _problem(lambda ex: b'{"type":"' + _SERVER_INTERNAL.encode()
                      + b'","status":500,"detail":' + _deep() + b"}"), forward=False),
    Mutation("problems.detail_echoes_request", "problems", _POST,
             _problem(_echo_request), forward=False),
]


# ------------------------------------------------------------------------------ sizes


def _huge_body(ex: Exchange) -> Reply | None:
    up = ex.upstream
    if up is None or ex.method == "HEAD" or not 200 <= up.status < 300:
        return None
    padding = b" " * (1024 * 1024)

    def stream() -> Iterator[bytes]:
        # Valid JSON (and valid PEM) followed by whitespace: only a size cap refuses it.
        yield up.body
        for _ in range(HUGE_BODY // len(padding)):
            yield padding

    return _relayed(ex, stream=stream, length=len(up.body) + HUGE_BODY)


#: A response the run cannot do without: over a size cap it must fail the run.  (A
#: finalize or challenge answer may be replaced by re-reading the order or challenge.)
_SIZE_FATAL = _BODY_NEEDED | {"certificate"}

SIZES = [
    Mutation("sizes.huge_body", "sizes", (*_JSON, "certificate", "reference"), _huge_body,
             fatal_on=_SIZE_FATAL),
    Mutation("sizes.huge_header", "sizes", (*ALL_ENDPOINTS, "reference"),
             _with_header("X-Hostile-Padding", "a" * HUGE_HEADER, replace=False),
             fatal_on=_SIZE_FATAL | {"nonce"}),
]


# ------------------------------------------------------------------------------ encodings

#: ``Retry-After`` values no RFC 9110 section 10.2.3 parser should accept (or trust).
RETRY_AFTER = {
    "superscript_two": "\u00b2",
    "negative": "-1",
    "float_overflow": "1e309",
    "far_future_date": "Fri, 31 Dec 9999 23:59:59 GMT",
    "four_hundred_nines": "9" * 400,
}


def _content_type_lie(ex: Exchange) -> Reply | None:
    up = ex.upstream
    if up is None:
        return None
    lie = "application/json" if ex.endpoint == "certificate" else "text/html; charset=utf-8"
    return _relayed(ex, headers=[*up.without("Content-Type"), ("Content-Type", lie)])


def _invalid_utf8(ex: Exchange) -> bytes | None:
    body = ex.upstream.body.rstrip() if ex.upstream is not None else b""
    if not body.endswith(b"}"):
        return None
    return body[:-1] + b',"x-hostile":"\xff\xfe\xc3"}'


ENCODINGS = [
    Mutation("encodings.nonce_not_base64url", "encodings", _NONCE_CARRIERS,
             _replace_existing_header("Replay-Nonce", "hostile!nonce*x")),
    *(Mutation(f"encodings.retry_after_{label}", "encodings", (*ALL_ENDPOINTS, "reference"),
               _with_header("Retry-After", value)) for label, value in RETRY_AFTER.items()),
    *(Mutation(f"encodings.retry_after_{label}_on_503", "encodings",
               (*ALL_ENDPOINTS, "reference"),
               _problem({"type": _SERVER_INTERNAL, "detail": "hostile: try later",
                         "status": 503}, status=503, extra=[("Retry-After", value)]),
               forward=False) for label, value in RETRY_AFTER.items()),
    Mutation("encodings.content_type_lie", "encodings", (*ALL_ENDPOINTS, "reference"),
             _content_type_lie),
    Mutation("encodings.invalid_utf8", "encodings", _BODY_ENDPOINTS, _body(_invalid_utf8)),
]


# ------------------------------------------------------------------------------ headers


def _spellings(port: int) -> dict[str, Callable[[str], str]]:
    """Hostile spellings of a URL's scheme and authority; the path is kept."""
    long_label = "a" * 64
    return {
        "production": lambda p: f"https://{PRODUCTION}{p}",
        "production_http": lambda p: f"http://{PRODUCTION}{p}",
        "backslash_userinfo": lambda p: f"https://{PRODUCTION}\\@127.0.0.1:{port}{p}",
        "userinfo": lambda p: f"https://acme:secret@127.0.0.1:{port}{p}",
        "empty_label": lambda p: f"https://ca..hostile.invalid{p}",
        "long_label": lambda p: f"https://{long_label}.hostile.invalid{p}",
        "percent_encoded_host": lambda p: f"https://acme%2Dv02.api.letsencrypt.org{p}",
        "trailing_dot": lambda p: f"https://{PRODUCTION}.{p}",
        "uppercase": lambda p: f"https://{PRODUCTION.upper()}{p}",
        "ip_literal": lambda p: f"https://172.65.32.248{p}",
        "relative": lambda p: p,
    }


_LINK_FIELDS: dict[str, tuple[str, ...]] = {
    "directory": ("newNonce", "newAccount", "newOrder"),
    "order": ("authorizations", "finalize"),
    "order_poll": ("finalize", "certificate"),
    "authz": ("challenges",),
}


def _respell(spelling: str) -> Transform:
    """Rewrite the links of this endpoint: ``Location`` and the URLs in its JSON."""

    def path_of(url: str) -> str:
        split = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(("", "", split.path, split.query, ""))

    def transform(ex: Exchange) -> Reply | None:
        up = ex.upstream
        if up is None or not 200 <= up.status < 300:
            return None
        spell = _spellings(ex.proxy.port)[spelling]
        changed = False
        headers = list(up.headers)
        location = up.header("Location")
        if location and ex.endpoint in ("account", "order"):
            headers = [*up.without("Location"), ("Location", spell(path_of(location)))]
            changed = True
        data = ex.json()
        body = up.body
        if isinstance(data, dict):
            for key in _LINK_FIELDS.get(ex.endpoint, ()):
                value = data.get(key)
                if isinstance(value, str):
                    data[key] = spell(path_of(value))
                elif key == "authorizations" and isinstance(value, list):
                    data[key] = [spell(path_of(v)) for v in value if isinstance(v, str)]
                elif key == "challenges" and isinstance(value, list):
                    data[key] = [{**c, "url": spell(path_of(c["url"]))} for c in value
                                 if isinstance(c, dict) and isinstance(c.get("url"), str)]
                else:
                    continue
                changed = True
            body = json.dumps(data).encode()
        return _relayed(ex, body=body, headers=headers) if changed else None

    return transform


_LINK_ENDPOINTS = ("directory", "account", "order", "order_poll", "authz")
_LINK_FATAL = frozenset({"directory", "account", "order", "order_poll", "authz"})

HEADERS = [
    Mutation("headers.missing_location", "headers", ("account", "order"),
             _drop_header("Location"), fatal_on=frozenset({"account", "order"})),
    Mutation("headers.missing_replay_nonce", "headers", _NONCE_CARRIERS,
             _drop_header("Replay-Nonce"), fatal_on=frozenset({"nonce"})),
    *(Mutation(f"headers.link_{spelling}", "headers", _LINK_ENDPOINTS, _respell(spelling),
               fatal_on=frozenset() if spelling == "relative" else _LINK_FATAL,
               refusal_ok=frozenset({"directory"}))
      for spelling in _spellings(0)),
]


# ------------------------------------------------------------------------------ redirects

#: Where each endpoint lives at Let's Encrypt production (Boulder's paths).
_PRODUCTION_PATHS = {
    "directory": "/directory", "nonce": "/acme/new-nonce", "account": "/acme/new-acct",
    "order": "/acme/new-order", "authz": "/acme/authz-v3/1", "challenge": "/acme/chall-v3/1/x",
    "finalize": "/acme/finalize/1/1", "order_poll": "/acme/order/1/1",
    "certificate": "/acme/cert/1", "deactivate": "/acme/authz-v3/1",
}


#: Query marker on every redirect target: a request carrying it followed a redirect.
REDIRECT_MARK = "hostile-redirected=1"


def _redirect(status: int, where: Callable[[Exchange], str]) -> Transform:
    def transform(ex: Exchange) -> Reply:
        target = where(ex)
        target += ("&" if "?" in target else "?") + REDIRECT_MARK
        return Reply(status, "Moved", [("Location", target), ("Content-Length", "0")],
                     content_length=False)

    return transform


def _to_production(scheme: str = "https") -> Callable[[Exchange], str]:
    return lambda ex: f"{scheme}://{PRODUCTION}{_PRODUCTION_PATHS[ex.endpoint]}"


REDIRECTS = [
    *(Mutation(f"redirects.{code}_to_production", "redirects", ALL_ENDPOINTS,
               _redirect(code, _to_production()), forward=False, fatal_on=_ESSENTIAL)
      for code in (301, 302, 307, 308)),
    Mutation("redirects.308_to_production_http", "redirects", ALL_ENDPOINTS,
             _redirect(308, _to_production("http")), forward=False, fatal_on=_ESSENTIAL),
    Mutation("redirects.307_backslash_userinfo", "redirects", ALL_ENDPOINTS,
             _redirect(307, lambda ex: f"https://{PRODUCTION}\\@127.0.0.1:{ex.proxy.port}"
                                       f"{urllib.parse.urlsplit(ex.target).path}"),
             forward=False, fatal_on=_ESSENTIAL),
    Mutation("redirects.302_malformed_url", "redirects", ALL_ENDPOINTS,
             _redirect(302, lambda ex: "https://ca..hostile.invalid/acme"), forward=False,
             fatal_on=_ESSENTIAL),
]


# ------------------------------------------------------------------------------ slowness


_WITH_BODY = (*(e for e in ALL_ENDPOINTS if e != "nonce"), "reference")  # newNonce: HEAD


def _paced(pace: str) -> Transform:
    def transform(ex: Exchange) -> Reply | None:
        if ex.upstream is None or (pace != "head" and ex.method == "HEAD"):
            return None
        return _relayed(ex, pace=pace)

    return transform


SLOWNESS = [
    Mutation("slowness.trickle_head", "slowness", (*ALL_ENDPOINTS, "reference"),
             _paced("head")),
    Mutation("slowness.trickle_body", "slowness", _WITH_BODY, _paced("body")),
    Mutation("slowness.stall_after_headers", "slowness", _WITH_BODY, _paced("stall")),
]


# ------------------------------------------------------------------------------ certificates


def _corrupt(fn: Callable[[bytes], bytes]) -> Transform:
    def transform(ex: Exchange) -> Reply | None:
        up = ex.upstream
        if up is None or up.status != 200 or b"-----BEGIN CERTIFICATE-----" not in up.body:
            return None
        return _relayed(ex, body=fn(up.body))

    return transform


CERTIFICATES = [
    Mutation(f"certificates.{name}", "certificates", ("certificate",), _corrupt(fn),
             corrupts_chain=True, fatal_on=frozenset({"certificate"}))
    for name, fn in CERT_MUTATORS.items()
]


MUTATIONS: tuple[Mutation, ...] = (
    *STRUCTURE, *TYPES, *PROBLEMS, *SIZES, *ENCODINGS, *HEADERS, *REDIRECTS, *SLOWNESS,
    *CERTIFICATES)

_BY_NAME = {m.name: m for m in MUTATIONS}


def by_name(name: str) -> Mutation:
    """The mutation called ``name`` (KeyError for an unknown one)."""
    return _BY_NAME[name]


def pairs(kinds: Sequence[str] = KINDS) -> list[tuple[Mutation, str]]:
    """Every (mutation, endpoint) of the given classes, in catalogue order."""
    return [(m, e) for m in MUTATIONS if m.kind in kinds for e in m.endpoints]
