"""The scenarios ``acmedryrun chaos`` runs: staging's breakages as data.

Each `Scenario` is a list of FaultProxy fault specs (the ``ENDPOINT:KIND[:ARG]``
syntax of :mod:`acmedryrun.testing._faultproxy`), the kind of incident it
models, and what a resilient ACME client does under it: ``succeed`` (after
retrying or waiting, with one certificate) or ``fail`` (a non-zero exit, within
the time bound, without hammering).  Under every scenario a client must never
hang and never issue twice.

Waits that take a minute or an hour in production (``Retry-After: 60``, a
validation queue) are scaled down to seconds so that the whole catalog runs in
a few minutes; the description says what was scaled.

User-defined scenarios come from a TOML or JSON file (`load_scenarios`)::

    # chaos.toml
    [[scenario]]
    name = "slow-new-nonce"                 # letters, digits, '-', '_' and '.'
    description = "newNonce answers after 5 s (a cold cache after a deploy)"
    faults = ["nonce:delay:5,count=1"]      # FaultProxy specs, consulted in order
    expect = "succeed"                      # or "fail"
    time_bound = 60                         # seconds before the client counts as hung
    max_requests = { nonce = 3 }            # optional: endpoint -> most requests allowed

The same as JSON is ``{"scenario": [{"name": ..., ...}]}`` (or the bare list).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acmedryrun.errors import UsageError
from acmedryrun.testing._faultproxy import ENDPOINTS, parse_fault

__all__ = ["CATALOG", "DEFAULT_MAX_REQUESTS", "DEFAULT_TIME_BOUND", "EXPECTS", "Scenario",
           "by_name", "load_scenarios"]

#: What a resilient client does under a scenario.
EXPECTS = ("succeed", "fail")
#: Seconds a client may run under one scenario before it is killed and scored ``hung``.
DEFAULT_TIME_BOUND = 60.0
#: Requests to any one endpoint beyond which a client is hammering the CA, in any
#: scenario: a poll a second for a whole time bound, and then some.
DEFAULT_MAX_REQUESTS = 100

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_KEYS = frozenset({"name", "description", "faults", "expect", "time_bound", "max_requests"})


@dataclass(frozen=True, slots=True)
class Scenario:
    """One named breakage and what a resilient client does under it.

    Attributes:
        name: Short identifier (``--scenario NAME``, a JUnit test case name).
        description: The kind of incident it models, and what was scaled down.
        faults: FaultProxy fault specs, consulted in this order.
        expect: ``"succeed"`` (one certificate, exit 0) or ``"fail"`` (a
            non-zero exit within the time bound).
        time_bound: Seconds before the client is killed and scored ``hung``.
        max_requests: Endpoint -> most requests a resilient client sends
            there (a second finalize, a client hammering a rate limit).
        builtin: True for the catalog's own scenarios.
    """

    name: str
    description: str
    faults: tuple[str, ...]
    expect: str
    time_bound: float = DEFAULT_TIME_BOUND
    max_requests: Mapping[str, int] = field(default_factory=dict, hash=False)
    builtin: bool = True

    def __post_init__(self) -> None:
        """Validate: every fault spec parses, every value is in range."""
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"scenario name {self.name!r} is not 1-40 letters, digits,"
                             " '-', '_' or '.'")
        if self.expect not in EXPECTS:
            raise ValueError(f"expect {self.expect!r} is not one of {', '.join(EXPECTS)}")
        if isinstance(self.faults, str) or not isinstance(self.faults, Sequence):
            raise ValueError("faults must be a list of fault specs")
        for spec in self.faults:
            if not isinstance(spec, str):
                raise ValueError(f"fault {spec!r} is not a string")
            parse_fault(spec)  # ValueError naming the spec
        object.__setattr__(self, "faults", tuple(self.faults))
        bound = self.time_bound
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not 0 < bound <= 3600:
            raise ValueError(f"time_bound {bound!r} is not a number of seconds in (0, 3600]")
        object.__setattr__(self, "time_bound", float(bound))
        if not isinstance(self.max_requests, Mapping):
            raise ValueError("max_requests must map endpoint names to numbers")
        for endpoint, most in self.max_requests.items():
            if endpoint not in ENDPOINTS:
                raise ValueError(f"max_requests: unknown endpoint {endpoint!r}"
                                 f" (expected one of {', '.join(ENDPOINTS)})")
            if isinstance(most, bool) or not isinstance(most, int) or most < 0:
                raise ValueError(f"max_requests: {endpoint} = {most!r} is not a whole number")
        object.__setattr__(self, "max_requests", dict(self.max_requests))

    def limit(self, endpoint: str) -> int:
        """The most requests a resilient client sends to ``endpoint`` here."""
        return self.max_requests.get(endpoint, DEFAULT_MAX_REQUESTS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as the scorecard and ``--list`` print it)."""
        return {"name": self.name, "description": self.description, "faults": list(self.faults),
                "expect": self.expect, "time_bound": self.time_bound,
                "max_requests": dict(self.max_requests), "builtin": self.builtin}


def _s(name: str, description: str, *faults: str, expect: str = "succeed",
       time_bound: float = DEFAULT_TIME_BOUND, **max_requests: int) -> Scenario:
    return Scenario(name, description, faults, expect, time_bound, max_requests)


#: The built-in catalog, in the order ``acmedryrun chaos`` runs it.
CATALOG: tuple[Scenario, ...] = (
    _s("baseline",
       "No fault at all: the client's command works against this Pebble. If this fails, the"
       " command line is wrong and no other result means anything."),
    _s("service-busy-503",
       "Let's Encrypt shedding load: a burst of HTTP 503 'Service busy; retry later' with"
       " Retry-After on newOrder and newAccount, as during the API's overload incidents."
       " Retry after the wait.",
       "account:status:503,retry_after=1,count=1,detail=Service busy; retry later.",
       "order:status:503,retry_after=1,count=3,detail=Service busy; retry later."),
    _s("server-internal-retry-after",
       "Boulder answering serverInternal (HTTP 500) with Retry-After during a database"
       " incident; production says 60 s, scaled here to 2 s. Honour it and retry.",
       "order:status:500,type=serverInternal,retry_after=2,count=2,"
       "detail=Error creating new order :: database unavailable"),
    _s("maintenance-page",
       "A planned maintenance window: the directory itself is an HTML 503 page from the load"
       " balancer for the whole run (no problem document, no nonce). Fail cleanly: a clear"
       " error and a non-zero exit, not a traceback or a hang.",
       "directory:html:503,retry_after=1,detail=The ACME API is down for maintenance.",
       expect="fail"),
    _s("lb-502-504",
       "The load balancer in front of the CA failing one backend: HTML 502 Bad Gateway and"
       " 504 Gateway Timeout pages (not ACME problem documents) on the authorization"
       " endpoint. Retry the POST-as-GET.",
       "authz:html:502,count=1", "authz:html:504,count=1"),
    _s("connection-reset",
       "TCP connections reset mid-request (a flapping load balancer, a deploy draining"
       " connections): no HTTP answer at all for newAccount and newOrder, once each. The"
       " requests never arrived, so sending them again is safe.",
       "account:reset,count=1", "order:reset,count=1"),
    _s("lost-finalize",
       "The finalize POST took effect (the CA is issuing) but its response was lost: the"
       " connection dies after the CA committed, as when a load balancer times out a slow"
       " finalize. A second finalize is wrong (orderNotReady); read the order instead and"
       " download the certificate it names.",
       "finalize:lost,count=1", finalize=1),
    _s("bad-nonce-storm",
       "A badNonce storm: nonces from one datacenter rejected by another, or the nonce"
       " service restarted (Let's Encrypt's badNonce incidents). Every signed request is"
       " refused twice with urn:ietf:params:acme:error:badNonce, each refusal carrying a"
       " fresh Replay-Nonce; RFC 8555 section 6.5 says retry with it.",
       "account:status:400,type=badNonce,count=2",
       "order:status:400,type=badNonce,count=2",
       "authz:status:400,type=badNonce,count=2",
       "challenge:status:400,type=badNonce,count=2",
       "finalize:status:400,type=badNonce,count=2",
       finalize=3),
    _s("missing-replay-nonce",
       "Responses without a Replay-Nonce header (a CDN or proxy dropping headers, an error"
       " path that forgot it). RFC 8555 section 7.2: get a fresh one from newNonce.",
       "account:strip_nonce,count=1", "order:strip_nonce,count=1",
       "authz:strip_nonce,count=1"),
    _s("truncated-bodies",
       "Response bodies cut short (a proxy timing out mid-body; Content-Length matches the"
       " cut, so only JSON parsing notices) on an authorization and an order poll. Re-read"
       " them: POST-as-GET is safe to repeat.",
       "authz:truncated,count=1", "order_poll:truncated,count=1"),
    _s("authz-pending-a-while",
       "A validation queue backlog: after the challenge was answered, the authorization and"
       " the order stay pending (the challenge processing) for three polls before the"
       " validation lands; in production this takes minutes. Keep polling.",
       "authz:stall:pending,count=3", "order_poll:stall:pending,count=3",
       "challenge:stall:processing,count=3"),
    _s("order-processing-a-while",
       "Slow issuance after finalize (Let's Encrypt's finalize slowdowns): the order stays"
       " processing, without a certificate URL, for three polls after it became valid. Poll"
       " it (honouring Retry-After) until valid; do not finalize again.",
       "finalize:stall:processing", "order_poll:stall:processing,count=3", finalize=1),
    _s("slow-trickle",
       "An overloaded path to the CA dribbling responses out a byte at a time: the directory"
       " over 2 s, newOrder and the first authorization over 1.5 s each. Every byte arrives,"
       " so a per-read timeout never fires; wait it out.",
       "directory:trickle:2,count=1", "order:trickle:1.5,count=1",
       "authz:trickle:1.5,count=1"),
    _s("challenge-back-to-pending",
       "A challenge that reads pending again after the client answered it, with its"
       " authorization and order (a stale replica answering, a VA queue that lost the job)."
       " Keep polling, or answer the challenge again (RFC 8555 section 8.2 allows a retry);"
       " do not give up at the first pending.",
       "challenge:stall:unanswered,count=2", "authz:stall:unanswered,count=2",
       "order_poll:stall:pending,count=2"),
    _s("rate-limited-long-retry-after",
       "A rate limit (429 rateLimited, 'too many new orders recently') with Retry-After of an"
       " hour on every newOrder. Stop with a clear error and a non-zero exit: do not sleep an"
       " hour, do not hammer the endpoint.",
       "order:status:429,type=rateLimited,retry_after=3600,"
       "detail=too many new orders recently: see https://letsencrypt.org/docs/rate-limits/",
       expect="fail", time_bound=30, order=3),
)


def by_name(scenarios: Sequence[Scenario]) -> dict[str, Scenario]:
    """Scenarios keyed by name, in order."""
    return {s.name: s for s in scenarios}


def load_scenarios(path: str) -> list[Scenario]:
    """Read user-defined scenarios from a TOML (``.toml``) or JSON file.

    Raises:
        UsageError: the file is unreadable, does not parse, or a scenario in it
            is invalid; one line naming the file and the scenario.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--scenarios-file: cannot read {path}: {exc.strerror or exc}") from None
    data = _parse(path, raw)
    items = data.get("scenario", data.get("scenarios")) if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"scenario", "scenarios"}:
        extra = sorted(set(data) - {"scenario", "scenarios"})[0]
        raise UsageError(f"--scenarios-file: {path}: unknown top-level key {extra!r}"
                         " (expected 'scenario')")
    if not isinstance(items, list) or not items:
        raise UsageError(f"--scenarios-file: {path}: no scenarios (expected a list under"
                         " 'scenario')")
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    for index, item in enumerate(items, 1):
        where = f"--scenarios-file: {path}: scenario {index}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: not a table/object")
        unknown = sorted(set(item) - _KEYS)
        if unknown:
            raise UsageError(f"{where}: unknown key {unknown[0]!r}"
                             f" (expected {', '.join(sorted(_KEYS))})")
        name = item.get("name")
        if isinstance(name, str):
            where += f" ({name})"
        missing = [k for k in ("name", "faults", "expect") if k not in item]
        if missing:
            raise UsageError(f"{where}: missing {missing[0]!r}")
        description = item.get("description", "user-defined scenario")
        if not isinstance(description, str):
            raise UsageError(f"{where}: description is not a string")
        try:
            scenario = Scenario(
                name=item["name"] if isinstance(item["name"], str) else repr(item["name"]),
                description=description, faults=item["faults"], expect=item["expect"],
                time_bound=item.get("time_bound", DEFAULT_TIME_BOUND),
                max_requests=item.get("max_requests", {}), builtin=False)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if scenario.name in seen:
            raise UsageError(f"{where}: name {scenario.name!r} given twice")
        seen.add(scenario.name)
        scenarios.append(scenario)
    return scenarios


def _parse(path: str, raw: bytes) -> Any:
    """TOML for a ``.toml`` file, JSON otherwise."""
    if path.lower().endswith(".toml"):
        return _parse_toml(path, raw)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--scenarios-file: {path}: not JSON: {exc}") from None


if sys.version_info >= (3, 11):
    import tomllib

    def _parse_toml(path: str, raw: bytes) -> Any:
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"--scenarios-file: {path}: not TOML: {exc}") from None

else:  # pragma: no cover - the suite runs on 3.11+

    def _parse_toml(path: str, raw: bytes) -> Any:
        raise UsageError(f"--scenarios-file: {path}: TOML needs Python 3.11; use JSON")
