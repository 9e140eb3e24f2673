"""Production's rate limits, predicted from Certificate Transparency.

A staging success can still hide a production refusal: production's limits are far
lower (Let's Encrypt: 5 certificates per exact set of names and 50 per registered
domain, per 7 days).  Every certificate a public CA issues is logged in CT (RFC 6962,
RFC 9162), so what the CA has already issued for the run's names can be counted
before production is asked, the way Let's Debug does it.

Three layers, each usable alone:

* :func:`predict_rate_limits` (pure): the run's names, one :class:`CtAnswer` per
  registered domain, the CA's :class:`~acmedryrun.production.policy.CaPolicy` and
  ``now`` -> a :class:`CtForecast` (problems, numbers, sentences).
* :func:`lookup` (I/O through an injected ``fetch``): one registered domain's
  certificates from crt.sh's JSON interface or Cert Spotter's API, every byte
  checked: bounded size and JSON depth, types checked, timestamps parsed strictly as
  UTC; a malformed row is skipped, a malformed response is "no answer".
* :class:`CtCache`: one lookup per (CT URL, registered domain), shared by the runs of
  a batch or a certbot command; thread-safe.

:func:`check_rate_limits` strings them together.  Nothing here imports an HTTP
library: the caller passes ``fetch(url, timeout) -> bytes`` (the transport's bounded
GET), which raises :class:`CtFetchError` when it gets no body.  ``urllib.parse`` only
builds query strings.

How the limits are counted (Let's Encrypt's page and Boulder, see
:data:`~acmedryrun.production.policy.POLICIES`):

* Only certificates whose issuer organization is the CA's count (not another CA's,
  not its staging's).  A precertificate and its certificate are one issuance:
  crt.sh rows are merged by (issuer, serial), Cert Spotter's issuances are already one.
* The exact set is the set of DNS names and IP addresses, case and order ignored.
  Every issuance spends the exact-set limit, renewals included.
* A non-ARI renewal (an order for exactly the names of a certificate issued in the
  policy's ``renewal_lookback``, 120 days for Let's Encrypt) skips and does not spend
  the per-registered-domain limit; so an earlier issuance counts there only if no
  earlier certificate for its exact set is in CT.  An ARI replacement
  (``ari_replacement=True``) is exempt from every limit.
* A token-bucket limit is replayed as GCRA (Boulder's ``ratelimits``): capacity
  refills one unit every ``period / count``; a sliding window frees a unit
  ``period`` after it was used.  "Frees up" is when one more order would pass.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from acmedryrun.options import DEFAULT_CT_URL
from acmedryrun.production.policy import CaPolicy, Limit, Refill, registered_domain
from acmedryrun.report import Cause, Confidence, Problem, Severity, Step

__all__ = [
    "DEFAULT_CT_URL",
    "DEFAULT_TIMEOUT",
    "MAX_CT_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "CtAnswer",
    "CtCache",
    "CtEntry",
    "CtFetchError",
    "CtForecast",
    "Fetch",
    "LimitUsage",
    "SourceKind",
    "check_rate_limits",
    "lookup",
    "normalize_name",
    "parse_response",
    "predict_rate_limits",
    "query_url",
    "source_kind",
]

#: Seconds one GET of the CT source may take; crt.sh often needs 5-20 s.
DEFAULT_TIMEOUT = 20.0
#: A CT answer larger than this is no answer (about 20,000 crt.sh rows).
MAX_CT_BODY_BYTES = 8 * 1024 * 1024
#: Nesting allowed in a CT answer: crt.sh is an array of flat objects (2), Cert
#: Spotter's issuances hold an ``issuer`` object and a ``dns_names`` array (3).
MAX_JSON_DEPTH = 4
_MAX_ROWS = 50_000
_MAX_NAMES_PER_ROW = 1_000
_MAX_NAME_VALUE = 256 * 1024
_MAX_STRING = 1_024
_MAX_PAGES = 5

#: ``fetch(url, timeout) -> bytes``: one bounded GET; raises :class:`CtFetchError`.
Fetch = Callable[[str, float], bytes]


class CtFetchError(Exception):
    """The CT source gave no body: unreachable, timed out, an HTTP error, too large.

    The injected ``fetch`` raises it (keeping the transport's exception as
    ``__cause__``); :func:`lookup` turns it into an unanswered :class:`CtAnswer`.
    """


class _Malformed(ValueError):
    """A CT response that is not the JSON shape its source documents."""


class SourceKind(str, enum.Enum):
    """Which CT search interface a URL speaks."""

    #: crt.sh: ``GET /?q=<name>&output=json`` -> ``[{"issuer_name", "name_value", ...}]``.
    CRTSH = "crt.sh"
    #: Cert Spotter: ``GET /v1/issuances?domain=<name>&expand=...`` -> issuances.
    CERTSPOTTER = "certspotter"


def source_kind(url: str) -> SourceKind:
    """The interface a CT search URL speaks: Cert Spotter's by its path, else crt.sh's.

    A URL whose path ends in ``/issuances`` (``https://api.certspotter.com/v1/issuances``,
    or a local stand-in serving that path) is Cert Spotter's; anything else (crt.sh, a
    mirror, a test server) is read as crt.sh's JSON interface.
    """
    path = urlsplit(url).path.rstrip("/")
    return SourceKind.CERTSPOTTER if path.endswith("/issuances") else SourceKind.CRTSH


# ------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class CtEntry:
    """One issuance seen in CT (a precertificate and its certificate are one entry).

    Attributes:
        source_id: The source's id of it (crt.sh's smallest row id, Cert Spotter's id).
        serial: The serial number in lowercase hex without leading zeros (None from
            Cert Spotter, which does not return it).
        issuer: The issuer DN as the source prints it (``C=US, O=Let's Encrypt, CN=R10``).
        names: The DNS names (lowercase, A-labels, wildcards kept) and IP addresses.
        logged: The earliest CT log entry time (crt.sh's ``entry_timestamp``), UTC; the
            closest public record of the moment of issuance.  None if not given.
        not_before: The certificate's ``notBefore``, UTC.
        not_after: The certificate's ``notAfter``, UTC.
    """

    source_id: str
    serial: str | None
    issuer: str
    names: frozenset[str]
    logged: datetime | None
    not_before: datetime
    not_after: datetime

    def issued(self, backdate: timedelta = timedelta(0)) -> datetime:
        """When it was issued: the log time, else ``notBefore`` plus the CA's backdate."""
        return self.logged if self.logged is not None else self.not_before + backdate


@dataclass(frozen=True, slots=True)
class CtAnswer:
    """What one CT source said about one registered domain.

    Attributes:
        query: The registered domain (or IPv4 address) asked about.
        url: The URL asked (the first page's).
        entries: The issuances found, every CA's; None when there was no answer.
        reason: Why there was no answer (None when there was one).
        skipped_rows: Rows left out as malformed.
        duration_s: Wall time of the lookup.
    """

    query: str
    url: str
    entries: tuple[CtEntry, ...] | None
    reason: str | None = None
    skipped_rows: int = 0
    duration_s: float = 0.0

    @property
    def answered(self) -> bool:
        """True when the source answered with a usable list (possibly empty)."""
        return self.entries is not None


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """Where one production limit stands for this run's next order, by CT.

    Attributes:
        limit: ``certificates_per_exact_set`` or ``certificates_per_registered_domain``.
        key: The exact set (names joined by ``,``, sorted) or the registered domain.
        allowed: The limit's count per window.
        window: The window as the CA words it.
        counted: Issuances counted against it in the last window.
        capacity: How many more orders production would accept now (0: refused).
        frees_at: When one more would be accepted, if none is now (UTC).
        exempt: The next order is exempt from this limit (a renewal the CA exempts);
            ``capacity`` is then what it would be otherwise.
    """

    limit: str
    key: str
    allowed: int
    window: str
    counted: int
    capacity: int
    frees_at: datetime | None = None
    exempt: bool = False


@dataclass(frozen=True, slots=True)
class CtForecast:
    """What CT says production's rate limits will do with this run's next order.

    Attributes:
        problems: ``client`` errors and warnings for limits reached or near; ``info``
            notices for registered domains the CT source did not answer about.
        usages: The numbers behind them, one per limit and key checked.
        reasons: One sentence per conclusion, for the human output.
        checked: True when at least one limit could be checked against CT.
    """

    problems: tuple[Problem, ...] = ()
    usages: tuple[LimitUsage, ...] = ()
    reasons: tuple[str, ...] = ()
    checked: bool = False

    @property
    def production_refuses(self) -> bool:
        """True when a limit is reached that production enforces on this order."""
        return any(p.severity.decisive for p in self.problems)


# --------------------------------------------------------------------- the parsing

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]00:00)?")
_SERIAL = re.compile(r"[0-9a-fA-F]{1,128}")
_DNS_NAME = re.compile(
    r"(?:\*\.)?(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _timestamp(value: object) -> datetime:
    """A CT timestamp, UTC: ``2025-10-24T18:07:24.655`` (crt.sh: no zone, UTC) or
    ``2026-08-02T23:38:02Z`` (Cert Spotter).  Any other offset is refused."""
    if not isinstance(value, str):
        raise _Malformed("a timestamp is not a string")
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise _Malformed(f"not a UTC timestamp: {value[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone.utc)
    except ValueError as exc:
        raise _Malformed(f"not a date: {value[:40]!r}") from exc


def _string(value: object, limit: int = _MAX_STRING) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _Malformed("a string field is missing, not a string or too long")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Malformed("an id is not a non-negative integer")
    return value


def normalize_name(name: str) -> str | None:
    """A DNS name or IP address in the form CT and the CA compare: lowercase, no
    trailing dot, A-labels (IDNA 2008, UTS 46), IPs in their canonical text.  None for
    anything else (an email address, free text, an empty line).  Pure."""
    name = name.strip().rstrip(".")
    if not name or len(name) > 255:
        return None
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    if not name.isascii():
        import idna

        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    name = name.lower()
    return name if _DNS_NAME.fullmatch(name) else None


def _names(lines: Iterable[object]) -> frozenset[str]:
    names: set[str] = set()
    for count, line in enumerate(lines, start=1):
        if count > _MAX_NAMES_PER_ROW:
            raise _Malformed("more names in one row than a certificate carries")
        if not isinstance(line, str):
            raise _Malformed("a name is not a string")
        name = normalize_name(line)
        if name is not None:
            names.add(name)
    if not names:
        raise _Malformed("no DNS name or IP address in the row")
    return frozenset(names)


def _check_depth(data: object, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit``.  The decoder itself stops at the
    interpreter's recursion limit (RecursionError, caught by the caller); this keeps
    the accepted shape to what the sources document, whatever an unknown key holds."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children: Iterable[object]
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise _Malformed(f"JSON nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))


def _rows(body: bytes) -> list[Any]:
    if len(body) > MAX_CT_BODY_BYTES:
        raise _Malformed(f"answer larger than {MAX_CT_BODY_BYTES:,} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except RecursionError as exc:
        raise _Malformed(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Malformed(f"not JSON: {exc}") from exc
    _check_depth(data, MAX_JSON_DEPTH)
    if not isinstance(data, list):
        raise _Malformed("not a JSON array")
    if len(data) > _MAX_ROWS:
        raise _Malformed(f"more than {_MAX_ROWS:,} rows")
    return data


def _crtsh_row(row: object) -> CtEntry:
    """One crt.sh row: ``issuer_ca_id``, ``issuer_name``, ``common_name``,
    ``name_value`` (newline-separated identities), ``id``, ``entry_timestamp``,
    ``not_before``, ``not_after``, ``serial_number`` (and ``result_count``)."""
    if not isinstance(row, dict):
        raise _Malformed("a row is not an object")
    issuer = _string(row.get("issuer_name"))
    serial = _string(row.get("serial_number"), 128)
    if not _SERIAL.fullmatch(serial):
        raise _Malformed("a serial number is not hex")
    row_id = _integer(row.get("id"))
    if row.get("issuer_ca_id") is not None:
        _integer(row.get("issuer_ca_id"))
    lines: list[object] = list(_string(row.get("name_value"), _MAX_NAME_VALUE).split("\n"))
    common_name = row.get("common_name")
    if common_name is not None:
        lines.append(_string(common_name))
    logged = row.get("entry_timestamp")
    not_before = _timestamp(row.get("not_before"))
    not_after = _timestamp(row.get("not_after"))
    if not_after < not_before:
        raise _Malformed("notAfter before notBefore")
    return CtEntry(
        source_id=str(row_id), serial=serial.lower().lstrip("0") or "0", issuer=issuer,
        names=_names(lines), logged=None if logged is None else _timestamp(logged),
        not_before=not_before, not_after=not_after)


def _certspotter_row(row: object) -> CtEntry:
    """One Cert Spotter issuance with ``expand=dns_names&expand=issuer``: ``id``,
    ``dns_names``, ``issuer.name``, ``not_before``, ``not_after`` (and hashes)."""
    if not isinstance(row, dict):
        raise _Malformed("an issuance is not an object")
    issuance_id = _string(row.get("id"), 40)
    if not issuance_id.isdigit():
        raise _Malformed("an issuance id is not decimal")
    issuer = row.get("issuer")
    if not isinstance(issuer, dict):
        raise _Malformed("no issuer object (expand=issuer)")
    dns_names = row.get("dns_names")
    if not isinstance(dns_names, list):
        raise _Malformed("no dns_names list (expand=dns_names)")
    not_before = _timestamp(row.get("not_before"))
    not_after = _timestamp(row.get("not_after"))
    if not_after < not_before:
        raise _Malformed("notAfter before notBefore")
    return CtEntry(
        source_id=issuance_id, serial=None, issuer=_string(issuer.get("name")),
        names=_names(dns_names), logged=None, not_before=not_before, not_after=not_after)


def _merge(entries: Iterable[CtEntry]) -> list[CtEntry]:
    """One entry per issuance: crt.sh lists a precertificate and its certificate as two
    rows with one serial (``deduplicate=Y`` does not always fold them)."""
    merged: dict[tuple[str, str], CtEntry] = {}
    for entry in entries:
        key = _key(entry)
        seen = merged.get(key)
        if seen is None:
            merged[key] = entry
            continue
        times = [t for t in (seen.logged, entry.logged) if t is not None]
        merged[key] = CtEntry(
            source_id=min(seen.source_id, entry.source_id, key=lambda s: (len(s), s)),
            serial=seen.serial, issuer=seen.issuer, names=seen.names | entry.names,
            logged=min(times) if times else None,
            not_before=min(seen.not_before, entry.not_before),
            not_after=max(seen.not_after, entry.not_after))
    return list(merged.values())


def parse_response(body: bytes, kind: SourceKind) -> tuple[list[CtEntry], int]:
    """The issuances in one CT answer, and how many rows were skipped.  Pure.

    Args:
        body: The response body, untrusted.
        kind: The interface that produced it.

    Returns:
        The entries, precertificate/certificate pairs merged, and the count of
        malformed rows left out.

    Raises:
        ValueError: the answer as a whole is malformed: over
            :data:`MAX_CT_BODY_BYTES`, nested deeper than :data:`MAX_JSON_DEPTH`, not
            UTF-8 JSON, not an array, or rows of which none is well formed.
    """
    rows = _rows(body)
    parse = _crtsh_row if kind is SourceKind.CRTSH else _certspotter_row
    entries: list[CtEntry] = []
    skipped = 0
    for row in rows:
        try:
            entries.append(parse(row))
        except _Malformed:
            skipped += 1
    if rows and not entries:
        raise _Malformed(f"none of {len(rows)} rows is well formed")
    return _merge(entries), skipped


# ---------------------------------------------------------------------- the lookup


def _query_term(key: str) -> str | None:
    """What to search CT for: the registered domain, or an IPv4 address.  A /64 key
    (IPv6) has no search term: neither source searches by range."""
    return None if "/" in key else key


def query_url(base: str, term: str, kind: SourceKind, *, after: str | None = None) -> str:
    """The search URL for one registered domain.  Pure.

    crt.sh: ``?q=<term>&output=json&exclude=expired&deduplicate=Y``.  ``q`` matches
    every identity containing the term, subdomains included, so one query per
    registered domain finds the exact sets and the per-domain count; names outside
    the domain are filtered afterwards.  ``exclude=expired`` keeps the answer small
    (a certificate issued in the last 7 days has not expired, except a 6-day one
    issued more than 160 hours ago).  Cert Spotter:
    ``?domain=<term>&include_subdomains=true&expand=dns_names&expand=issuer``
    (unexpired issuances only), then ``&after=<id>`` for the next page.
    """
    if kind is SourceKind.CRTSH:
        params: list[tuple[str, str]] = [
            ("q", term), ("output", "json"), ("exclude", "expired"), ("deduplicate", "Y")]
    else:
        params = [("domain", term), ("include_subdomains", "true"),
                  ("expand", "dns_names"), ("expand", "issuer")]
        if after is not None:
            params.append(("after", after))
    return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"


def lookup(key: str, *, fetch: Fetch, url: str = DEFAULT_CT_URL,
           timeout: float = DEFAULT_TIMEOUT) -> CtAnswer:
    """Every unexpired certificate CT knows under one registered domain.  I/O via ``fetch``.

    Args:
        key: A registered domain (:func:`~acmedryrun.production.policy.registered_domain`).
        fetch: One bounded GET; raises :class:`CtFetchError` for no body.
        url: The CT search endpoint; :func:`source_kind` tells its interface.
        timeout: Seconds each GET may take.

    Returns:
        The answer; when the source failed or answered something malformed, an
        unanswered :class:`CtAnswer` with the reason.  It never raises for what the
        source did: an exception from ``fetch`` other than :class:`CtFetchError` is a
        bug of the caller's and propagates.
    """
    started = time.monotonic()
    kind = source_kind(url)
    term = _query_term(key)
    if term is None:
        return CtAnswer(key, url, None, "CT sources cannot be searched by IPv6 range")
    first = query_url(url, term, kind)

    def unanswered(reason: str, skipped: int = 0) -> CtAnswer:
        return CtAnswer(key, first, None, reason, skipped, time.monotonic() - started)

    entries: list[CtEntry] = []
    skipped = 0
    after: str | None = None
    for _page in range(_MAX_PAGES if kind is SourceKind.CERTSPOTTER else 1):
        page_url = query_url(url, term, kind, after=after)
        try:
            body = fetch(page_url, timeout)
            if not isinstance(body, bytes):
                return unanswered("the fetch returned no bytes")
            page, page_skipped = parse_response(body, kind)
        except CtFetchError as exc:
            return unanswered(str(exc) or type(exc).__name__, skipped)
        except ValueError as exc:
            return unanswered(f"malformed answer: {exc}", skipped)
        entries.extend(page)
        skipped += page_skipped
        if kind is SourceKind.CRTSH or not page:
            break
        after = max((e.source_id for e in page), key=lambda s: (len(s), s))
    else:
        return unanswered(f"more than {_MAX_PAGES} pages of issuances", skipped)
    return CtAnswer(key, first, tuple(_merge(entries)), None, skipped,
                    time.monotonic() - started)


class CtCache:
    """One CT lookup per (CT URL, registered domain), shared by many runs; thread-safe.

    A batch or ``acmedryrun certbot`` makes one and passes it to every run: the first
    run to ask about a registered domain looks it up, concurrent runs asking the same
    wait for that answer instead of asking again, later runs get it at once.  An
    unanswered lookup is kept too, so a CT source that is down costs one timeout per
    registered domain, not one per run.  Answers hold every CA's certificates and no
    ``now``, so runs with different policies and clocks share them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], CtAnswer] = {}
        self._pending: dict[tuple[str, str], threading.Event] = {}
        self._lookups = 0

    @property
    def lookups(self) -> int:
        """How many lookups this cache has made (each one or more GETs)."""
        with self._lock:
            return self._lookups

    def get(self, key: str, *, url: str = DEFAULT_CT_URL) -> CtAnswer | None:
        """The answer already held for ``key`` at ``url``, if any."""
        with self._lock:
            return self._answers.get((url, key))

    def lookup(self, key: str, *, fetch: Fetch, url: str = DEFAULT_CT_URL,
               timeout: float = DEFAULT_TIMEOUT) -> CtAnswer:
        """:func:`lookup`, at most once per ``(url, key)`` for this cache's life."""
        slot = (url, key)
        while True:
            with self._lock:
                if slot in self._answers:
                    return self._answers[slot]
                event = self._pending.get(slot)
                mine = event is None
                if event is None:
                    event = self._pending[slot] = threading.Event()
                    self._lookups += 1
            if not mine:
                event.wait()
                continue  # the answer, or (the owner was interrupted) our turn to ask
            try:
                answer = lookup(key, fetch=fetch, url=url, timeout=timeout)
            except BaseException:
                with self._lock:
                    del self._pending[slot]
                event.set()
                raise
            with self._lock:
                self._answers[slot] = answer
                del self._pending[slot]
            event.set()
            return answer


# ------------------------------------------------------------------ the prediction

#: A notice is nobody's fault (``cause: null`` in the report).
_NOTICE_CAUSE: Cause | None = None


def _notice(name: str, detail: str, hint: str, *, identifier: str | None = None) -> Problem:
    """An ``info`` problem that is nobody's fault (see :data:`_NOTICE_CAUSE`)."""
    return Problem(name=name, cause=_NOTICE_CAUSE, severity=Severity.INFO, step=Step.ORDER,
                   detail=detail, hint=hint, identifier=identifier)


def _client(name: str, severity: Severity, detail: str, hint: str, *, identifier: str,
            help_url: str | None) -> Problem:
    return Problem(name=name, cause=Cause.CLIENT, severity=severity, step=Step.ORDER,
                   detail=detail, hint=hint, identifier=identifier,
                   confidence=Confidence.HIGH, help_url=help_url)


def _at(moment: datetime) -> str:
    """A moment for people, rounded up to the minute so "until" is never early."""
    moment = moment.astimezone(timezone.utc)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: timedelta) -> str:
    minutes = max(int(-(-delta.total_seconds() // 60)), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n} {unit}{'s' if n != 1 else ''}"
             for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute")) if n]
    return " ".join(parts[:2]) or "a minute"


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} minutes"


@dataclass(frozen=True, slots=True)
class _Bucket:
    counted: int
    capacity: int
    frees_at: datetime | None
    after_capacity: datetime | None  # when one more frees after the remaining are used


def _bucket(spends: Sequence[datetime], limit: Limit, now: datetime) -> _Bucket:
    """Replay a limit over the issuances that spent it.  Pure.

    Token bucket, as Boulder's GCRA (``ratelimits/gcra.go``): each spend at ``t`` moves
    the theoretical arrival time to ``max(TAT, t) + T`` with ``T = period / count``;
    an order at ``now`` passes while ``max(TAT, now) + T - now <= period``.  So the
    capacity now is ``floor((period - max(TAT - now, 0)) / T)`` and, at 0, one more
    passes at ``TAT + T - period``.  (One Boulder revision rounds the residual to the
    nearest unit, which admits an order up to ``T / 2`` earlier; the date given here
    is the later, documented one.)  Sliding window: units spent in the last period.
    """
    period = limit.duration
    recent = sorted(min(t, now) for t in spends)
    counted = sum(1 for t in recent if t > now - period)
    if limit.refill is Refill.TOKEN_BUCKET:
        step = limit.interval
        tat: datetime | None = None
        for moment in recent:
            tat = (moment if tat is None or moment > tat else tat) + step
        ahead = max(tat - now, timedelta(0)) if tat is not None else timedelta(0)
        capacity = min(max((period - ahead) // step, 0), limit.count)
        base = max(tat, now) if tat is not None else now
        frees_at = None if capacity else base + step - period
        return _Bucket(counted, capacity, frees_at, base + step * capacity + step - period)
    window = [t for t in recent if t > now - period]
    capacity = max(limit.count - len(window), 0)
    if not capacity:  # one frees when all but count - 1 of the window have left it
        return _Bucket(counted, 0, window[len(window) - limit.count] + period, None)
    return _Bucket(counted, capacity, None, (window[0] if window else now) + period)


def _near(limit: Limit, capacity: int) -> bool:
    """One left of 5; 5 or fewer left of 50 (a tenth, at least one)."""
    return capacity <= max(1, limit.count // 10)


def _union(answers: Iterable[CtAnswer]) -> list[CtEntry]:
    seen: dict[tuple[str, str], CtEntry] = {}
    for answer in answers:
        for entry in answer.entries or ():
            seen.setdefault(_key(entry), entry)
    return list(seen.values())


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True)
class _Run:
    """What both limit checks need to know about the run and the CT view."""

    policy: CaPolicy
    now: datetime
    names: frozenset[str]
    ours: list[CtEntry]  # the CA's issuances, merged across the answers
    source: str  # the CT source's host, for the sentences

    @property
    def label(self) -> str:
        return ", ".join(sorted(self.names))


def _exact_set(run: _Run, limit: Limit, same_set: Sequence[CtEntry],
               problems: list[Problem], reasons: list[str]) -> LimitUsage:
    policy, now = run.policy, run.now
    state = _bucket([e.issued(policy.not_before_backdate) for e in same_set], limit, now)
    refill = (f", refilling one every {_hours(limit.interval)}"
              if limit.refill is Refill.TOKEN_BUCKET else "")
    seen = (f"{run.source} lists {state.counted} certificate{'s' * (state.counted != 1)}"
            f" from {policy.name} for exactly these names ({run.label}) issued in the last"
            f" {limit.window}; {policy.name} allows {limit}{refill}")
    help_url = limit.help_url or policy.source
    if state.frees_at is not None:
        ari = (" An ARI renewal (RFC 9773 `replaces`) of a certificate not yet replaced is"
               " exempt." if policy.ari_replacements_exempt else "")
        problems.append(_client(
            "ProductionExactSetLimit", Severity.ERROR,
            f"{seen}: production would refuse a new order for this set (rateLimited)"
            f" until {_at(state.frees_at)}, {_span(state.frees_at - now)} from now",
            f"Do not order these names from {policy.name} production before"
            f" {_at(state.frees_at)}: this limit has no override. Keep testing on staging"
            " and reuse the certificate already issued (a client that keeps its"
            " configuration does not hit this). An order for a different set of names is"
            f" a new certificate and counts against the per-domain limit.{ari}",
            identifier=min(run.names), help_url=help_url))
        reasons.append(f"Production refuses this exact set until {_at(state.frees_at)}"
                       f" ({state.counted} issued in the last {limit.window}).")
    elif _near(limit, state.capacity):
        then = (f", then refuse it until {_at(state.after_capacity)}"
                if state.after_capacity is not None else "")
        problems.append(_client(
            "ProductionExactSetNearLimit", Severity.WARNING,
            f"{seen}: production would issue {state.capacity} more now{then}",
            f"The next certificate for these names from {policy.name} production uses up"
            " this limit, which has no override: order the production certificate once"
            " and keep it; test on staging.",
            identifier=min(run.names), help_url=help_url))
        reasons.append(f"Production allows {state.capacity} more certificate(s) for this"
                       f" exact set now ({state.counted} issued in the last"
                       f" {limit.window}).")
    else:
        reasons.append(f"{run.source}: {state.counted} certificate(s) for this exact set in"
                       f" the last {limit.window}; production allows {state.capacity} more"
                       " now.")
    return LimitUsage("certificates_per_exact_set", ",".join(sorted(run.names)),
                      limit.count, limit.window, state.counted, state.capacity,
                      state.frees_at)


def _per_domain(run: _Run, limit: Limit, domain: str, answer: CtAnswer, *, exempt: bool,
                problems: list[Problem], reasons: list[str]) -> LimitUsage:
    policy, now = run.policy, run.now
    backdate = policy.not_before_backdate
    under = _under(run.ours, answer, domain)
    renewed = _renewals(under, backdate) if policy.renewals_exempt_from_domain_limit else set()
    state = _bucket([e.issued(backdate) for e in under if _key(e) not in renewed], limit, now)
    usage = LimitUsage("certificates_per_registered_domain", domain, limit.count,
                       limit.window, state.counted, state.capacity, state.frees_at, exempt)
    if exempt or not _near(limit, state.capacity):
        return usage
    renewals = " (renewals not counted)" if policy.renewals_exempt_from_domain_limit else ""
    seen = (f"{run.source} lists {state.counted} new certificate{'s' * (state.counted != 1)}"
            f" from {policy.name} under {domain} in the last {limit.window}{renewals};"
            f" {policy.name} allows {limit} per registered domain")
    help_url = limit.help_url or policy.source
    if state.frees_at is not None:
        problems.append(_client(
            "ProductionDomainLimit", Severity.WARNING,
            f"{seen}: production would refuse a new certificate under {domain} until"
            f" {_at(state.frees_at)}, {_span(state.frees_at - now)} from now",
            "Production refuses this order unless it renews a certificate for exactly"
            f" these names or the account has an override for {domain}: wait until"
            f" {_at(state.frees_at)}, put more names on fewer certificates, or request an"
            f" override ({help_url}).",
            identifier=domain, help_url=help_url))
        reasons.append(f"{domain} is at {policy.name}'s per-domain limit until"
                       f" {_at(state.frees_at)}.")
    else:
        problems.append(_client(
            "ProductionDomainNearLimit", Severity.WARNING,
            f"{seen}: production would issue {state.capacity} more under {domain} now",
            f"Plan new certificates under {domain} with this in mind: combine names on"
            f" fewer certificates or spread them over the week ({help_url}).",
            identifier=domain, help_url=help_url))
        reasons.append(f"{domain} has {state.capacity} new certificate(s) left at"
                       f" {policy.name} for now.")
    return usage


def predict_rate_limits(
        names: Sequence[str], answers: Mapping[str, CtAnswer], policy: CaPolicy, *,
        now: datetime, ari_replacement: bool = False) -> CtForecast:
    """What production's rate limits do with the next order for ``names``.  Pure.

    Rules (the counting is described in the module docstring):

    * the exact set has no capacity left -> ``client`` error
      ``ProductionExactSetLimit``: production refuses the order (``rateLimited``);
      the detail and hint say when it frees up;
    * one left -> warning ``ProductionExactSetNearLimit`` with the numbers;
    * a registered domain has no capacity left, or a tenth or less (5 of 50) ->
      warning ``ProductionDomainLimit`` / ``ProductionDomainNearLimit``: a warning, not
      an error, because the order may still be exempt (a renewal the CT view cannot
      show, an account with a per-domain override);
    * a non-ARI renewal skips the per-domain check where the CA exempts it; an ARI
      replacement skips everything where the CA exempts it;
    * a registered domain the CT source did not answer about -> ``info``
      ``CtUnavailable``, nobody's fault; the limits that need it are not checked.

    Args:
        names: The run's identifiers.
        answers: One answer per registered domain of ``names`` (a missing one counts as
            unanswered).
        policy: The CA whose production limits and issuer names apply.
        now: The moment the production order would be made; timezone-aware.
        ari_replacement: The production order names the certificate it replaces
            (RFC 9773 section 5) and that certificate was not replaced before.

    Returns:
        The forecast.  Empty (with a reason) when the policy has no CT-countable limit
        or the order is exempt.

    Raises:
        ValueError: ``now`` is naive.
    """
    now = _aware(now)
    run_set = frozenset(n for n in (normalize_name(x) for x in names) if n is not None)
    if not run_set:
        return CtForecast(reasons=("No name to check against CT.",))
    if not policy.ct_checkable:
        return CtForecast(reasons=(
            f"{policy.name}'s production rate limits are not published in a form CT can"
            f" check ({policy.source}); they were not checked.",))
    if ari_replacement and policy.ari_replacements_exempt:
        return CtForecast(reasons=(
            "The production order replaces a certificate through ARI (RFC 9773 section"
            f" 5), which {policy.name} exempts from every rate limit ({policy.source}).",))

    domains = sorted({registered_domain(n) for n in run_set})
    answered = {d: answers[d] for d in domains if d in answers and answers[d].answered}
    problems: list[Problem] = []
    for domain in (d for d in domains if d not in answered):
        answer = answers.get(domain)
        why = answer.reason if answer is not None and answer.reason else "not asked"
        where = answer.url if answer is not None else "the CT source"
        problems.append(_notice(
            "CtUnavailable", f"no answer from {where} about {domain}: {why}",
            f"{policy.name}'s production rate limits were not checked for names under"
            f" {domain}. Look its certificates up yourself (https://crt.sh/?q={domain}) or"
            " run again later; this is no failure of the setup.",
            identifier=domain))
    if not answered:
        return CtForecast(problems=tuple(problems), reasons=(
            "The CT source did not answer: production's rate limits were not checked.",))

    run = _Run(policy, now, run_set,
               [e for e in _union(answered.values()) if policy.issued(e.issuer)],
               urlsplit(next(iter(answered.values())).url).hostname or "the CT source")
    same_set = [e for e in run.ours if e.names == run_set]
    lookback = policy.renewal_lookback
    renewal = any(lookback is None or e.issued(policy.not_before_backdate) > now - lookback
                  for e in same_set)
    usages: list[LimitUsage] = []
    reasons: list[str] = []
    if policy.certificates_per_exact_set is not None:
        usages.append(_exact_set(run, policy.certificates_per_exact_set, same_set,
                                 problems, reasons))
    if policy.certificates_per_registered_domain is not None:
        exempt = renewal and policy.renewals_exempt_from_domain_limit
        if exempt:
            within = f"the last {lookback.days} days" if lookback else "the past"
            reasons.append(f"An order for exactly these names renews a certificate"
                           f" {policy.name} issued in {within}: it is exempt from the"
                           " per-domain limit.")
        usages.extend(
            _per_domain(run, policy.certificates_per_registered_domain, domain,
                        answered[domain], exempt=exempt, problems=problems, reasons=reasons)
            for domain in domains if domain in answered)
    return CtForecast(problems=tuple(problems), usages=tuple(usages), reasons=tuple(reasons),
                      checked=True)


def _key(entry: CtEntry) -> tuple[str, str]:
    """What makes an issuance one: (issuer, serial), or the source's id without a serial."""
    return (entry.issuer, entry.serial) if entry.serial else ("", entry.source_id)


def _under(ours: Sequence[CtEntry], answer: CtAnswer, domain: str) -> list[CtEntry]:
    """The CA's issuances in ``answer`` that name something under ``domain``: each
    spends the domain's limit once, however many of its names are under it."""
    keys = {_key(e) for e in answer.entries or ()}
    covering: dict[str, str] = {}

    def cover(name: str) -> str:
        if name not in covering:
            covering[name] = registered_domain(name)
        return covering[name]

    return [e for e in ours if _key(e) in keys and any(cover(n) == domain for n in e.names)]


def _renewals(pool: Sequence[CtEntry], backdate: timedelta) -> set[tuple[str, str]]:
    """The issuances in ``pool`` that renewed an earlier one for their exact set.

    Boulder's RA spends the per-domain limit only when no certificate for the set
    exists yet (``FQDNSetExists``).  CT shows unexpired certificates, so a renewal of
    an expired or unseen one is counted: a warning too early rather than too late.
    """
    first: dict[frozenset[str], datetime] = {}
    for entry in pool:
        issued = entry.issued(backdate)
        if entry.names not in first or issued < first[entry.names]:
            first[entry.names] = issued
    return {_key(e) for e in pool if e.issued(backdate) > first[e.names]}


def check_rate_limits(
        names: Sequence[str], policy: CaPolicy, *, fetch: Fetch,
        cache: CtCache | None = None, url: str = DEFAULT_CT_URL,
        timeout: float = DEFAULT_TIMEOUT, now: datetime | None = None,
        ari_replacement: bool = False) -> CtForecast:
    """Look the run's registered domains up in CT (once each, through ``cache``) and
    :func:`predict_rate_limits`.  I/O via ``fetch`` only.

    Args:
        names: The run's identifiers.
        policy: The CA whose production limits and issuer names apply.
        fetch: One bounded GET raising :class:`CtFetchError` (the transport's).
        cache: Shared across the runs of a batch; a private one when None.
        url: The CT search endpoint (``--ct-url``).
        timeout: Seconds each GET may take.
        now: The moment of the production order; the current time when None.
        ari_replacement: See :func:`predict_rate_limits`.

    Returns:
        The forecast; a CT source that does not answer gives notices, never a failure.
    """
    moment = _aware(now) if now is not None else datetime.now(timezone.utc)
    run_names = [n for n in (normalize_name(x) for x in names) if n is not None]
    if not policy.ct_checkable or (ari_replacement and policy.ari_replacements_exempt):
        return predict_rate_limits(run_names, {}, policy, now=moment,
                                   ari_replacement=ari_replacement)
    cache = cache if cache is not None else CtCache()
    answers = {domain: cache.lookup(domain, fetch=fetch, url=url, timeout=timeout)
               for domain in sorted({registered_domain(n) for n in run_names})}
    return predict_rate_limits(run_names, answers, policy, now=moment,
                               ari_replacement=ari_replacement)
