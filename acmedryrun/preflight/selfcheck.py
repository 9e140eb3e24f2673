"""The self-check: fetch each placed challenge response from this machine, as the CA will.

* http-01: GET ``/.well-known/acme-challenge/TOKEN`` from the first IPv6 and the
  first IPv4 address of the name (as Boulder picks them), following redirects by
  the CA's rules, and compare the body with the key authorization.
* dns-01: wait (at most :data:`~acmedryrun.deadline.SELF_CHECK_BUDGET` s) until
  ``_acme-challenge.NAME`` TXT holds the validation at the resolver.
* tls-alpn-01: nothing; the responder is checked by the CA only.

Every problem is a warning: hairpin NAT and split DNS can make a correct setup
fail from here, so the CA's answer decides.  The fetches go through
:func:`acmedryrun.transport.va_get` (the one HTTP boundary, with the validation
authority's policy).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import dns.exception

from acmedryrun.deadline import SELF_CHECK_BUDGET, SELF_CHECK_SHARE, Deadline, Party
from acmedryrun.preflight.dns import DnsClient, NoAnswer
from acmedryrun.preflight.identifiers import _problem
from acmedryrun.preflight.records import DnsAnswer
from acmedryrun.report import Problem, Severity
from acmedryrun.transport import VaFailure, va_accepts, va_get

if TYPE_CHECKING:
    from acmedryrun.solvers import Challenge

#: Boulder's limits for http-01 (va/http.go): redirects followed, response bytes read.
MAX_REDIRECTS = 10
MAX_BODY = 128
#: The redirect statuses the CA follows (CA/B Baseline Requirements 3.2.2.4.19).
REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
#: The port an ``https`` redirect goes to (the CA's https port).
HTTPS_PORT = 443
#: Seconds for one HTTP exchange of the self-check.
HTTP_TIMEOUT = 5.0
#: Seconds between TXT polls of the dns-01 self-check.
TXT_POLL = 0.5


@dataclass(frozen=True, slots=True)
class SelfCheckResult:
    """What the self-check found: warnings, and the identifiers that answered right.

    ``passed`` holds :attr:`Challenge.domain` of each challenge whose response was
    fetched correctly over every address (used to cross-examine a CA failure).
    """

    problems: tuple[Problem, ...] = ()
    passed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Fetch:
    """One address's http-01 outcome: ``name`` is None when it answered correctly."""

    address: str
    name: str | None
    detail: str
    dial: bool = False  # the connection could not be made (Boulder falls back to IPv4)


def _family(address: str) -> str:
    return "IPv6" if ":" in address else "IPv4"


def _authority(host: str, port: int, default: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default else f"{shown}:{port}"


_SELF_CHECK_HINTS = {
    "SelfCheckConnectionRefused": "Nothing accepts connections there: start the web server"
    " (or the standalone responder) on that address and port, and open the firewall.",
    "SelfCheckTimeout": "The connection or the answer timed out: check the firewall and"
    " port forwarding for that port.",
    "SelfCheckUnreachable": "This machine has no route to that address: check the"
    " address in DNS and the network (an AAAA record without working IPv6 is common).",
    "SelfCheckHttpsOnly": "Port 80 refuses but 443 accepts: http-01 always starts with"
    " plain HTTP on port 80. Serve /.well-known/acme-challenge/ on port 80 (a redirect"
    " to HTTPS is fine).",
    "SelfCheckTlsError": "The HTTPS server a redirect led to failed the TLS handshake"
    " (the CA accepts any certificate but needs TLS 1.2 or newer).",
    "SelfCheckBadResponse": "The server did not answer with valid HTTP.",
    "SelfCheckNotFound": "The web server does not serve the challenge file: check the"
    " webroot path, and that no rewrite rule or other virtual host catches"
    " /.well-known/acme-challenge/.",
    "SelfCheckHttpStatus": "The web server refused the challenge file: allow"
    " /.well-known/acme-challenge/ without authentication or IP restrictions.",
    "SelfCheckWrongContent": "Another server or virtual host answers the name, or the"
    " file is served with changes: serve the file exactly as written (the CA reads at"
    " most 127 bytes and trims only trailing whitespace).",
    "SelfCheckBadRedirect": "The CA follows at most 10 redirects (301, 302, 307, 308), only"
    " to http or https on ports 80 and 443 and to domain names, never IP addresses: fix"
    " the redirect.",
}
_HAIRPIN = (" If this machine cannot reach its own public address (hairpin NAT), this"
            " warning may be harmless: the CA's own check decides.")



class SelfCheck:
    """The self-check of one run.

    Args:
        dns: The run's DNS client.
        deadline: The run's deadline.
        http_port: The port the CA's http-01 validation connects to (80 for a real CA).
    """

    def __init__(self, dns: DnsClient, deadline: Deadline, http_port: int = 80) -> None:
        self._dns = dns
        self.deadline = deadline
        self.http_port = http_port

    def _unreachable(self) -> list[Problem]:
        return self._dns.unreachable("The self-check was")

    def run(self, challenges: Sequence[Challenge]) -> SelfCheckResult:
        """Check each placed response from here, the way the CA will."""
        with self.deadline.charge(Party.PREFLIGHT):
            problems, passed = self._check(challenges)
        return SelfCheckResult(tuple(problems), frozenset(passed))

    def _check(self, challenges: Sequence[Challenge]) -> tuple[list[Problem], set[str]]:
        """Check each placed response from here, the way the CA will.

        * http-01: fetch ``/.well-known/acme-challenge/TOKEN`` from the first IPv6
          and the first IPv4 address of the name (as Boulder picks them), following
          redirects by the CA's rules, and compare the body with the key authorization.
        * dns-01: wait (at most :data:`SELF_CHECK_BUDGET` s, polling every :data:`TXT_POLL` s)
          until ``_acme-challenge.NAME`` TXT holds the validation at the resolver.
        * tls-alpn-01: nothing; the responder is checked by the CA only.

        Every problem is a warning: hairpin NAT and split DNS can make a correct
        setup fail from here, so the CA's answer decides.

        Returns:
            The problems, and :attr:`Challenge.domain` of each challenge that answered
            correctly over every address (used to cross-examine a CA failure).
        """
        problems: list[Problem] = []
        passed: set[str] = set()
        http01 = [ch for ch in challenges if ch.type == "http-01"]
        dns01 = [ch for ch in challenges if ch.type == "dns-01"]
        if http01:
            found, ok = self._self_check_http01(http01)
            problems += found
            passed |= ok
        if dns01:
            found, ok = self._self_check_dns01(dns01)
            problems += found
            passed |= ok
        return problems, passed

    def _self_check_http01(self, challenges: Sequence[Challenge]) -> tuple[list[Problem],
                                                                           set[str]]:
        end = time.monotonic() + self.deadline.budget(SELF_CHECK_BUDGET)
        workers = min(8, len(challenges))
        with concurrent.futures.ThreadPoolExecutor(workers, "acmedryrun-selfcheck") as pool:
            results = list(pool.map(lambda ch: self._http01_one(ch, end), challenges))
        problems: list[Problem] = []
        passed: set[str] = set()
        for ch, result in zip(challenges, results, strict=True):
            if result is None:
                problems += self._unreachable()
            elif isinstance(result, Problem):
                problems.append(result)
            else:
                passed.add(ch.domain)
        return problems, passed

    def _addresses(self, name: str) -> list[str]:
        """The first IPv6 and the first IPv4 address of ``name``: what Boulder tries."""
        found: list[str] = []
        for rdtype in ("AAAA", "A"):
            answer = self._dns.lookup(name, rdtype)
            if answer.records:
                found.append(answer.texts[0])
        return found

    def _http01_one(self, ch: Challenge, end: float) -> Problem | bool | None:
        """True when every address answered correctly; None when DNS did not answer."""
        ident = ch.domain
        if ch.identifier_type == "ip":
            addresses = [ch.identifier]
        else:
            try:
                addresses = self._addresses(ch.identifier)
            except NoAnswer:
                return None
        if not addresses:
            return _problem("SelfCheckNoAddress", ident, f"{ch.identifier} has no A or AAAA"
                            f" record at {self._dns.label}", "Add an A or AAAA record.",
                            Severity.WARNING)
        fetches = [self._fetch(ch, address, end) for address in addresses]
        failed = [f for f in fetches if f.name is not None]
        if not failed:
            return True
        lines = "; ".join(f"{_family(f.address)} {f.address}: {f.detail}" for f in fetches)
        hint = _SELF_CHECK_HINTS.get(failed[0].name or "", "")
        v6 = [f for f in fetches if ":" in f.address]
        v4_ok = any(f.name is None for f in fetches if ":" not in f.address)
        if v6 and v6[0].name is not None and v4_ok:
            hint += (" IPv4 works but IPv6 does not: Let's Encrypt tries IPv6 first and falls"
                     " back to IPv4 only when the IPv6 connection cannot be made at all"
                     + (" (as here)." if v6[0].dial else ", so this fails validation."))
        return _problem(failed[0].name or "", ident, lines, hint + _HAIRPIN, Severity.WARNING)

    def _fetch(self, ch: Challenge, address: str, end: float) -> _Fetch:
        """GET the challenge URL through ``address`` and follow redirects like Boulder."""
        scheme, host, port = "http", ch.identifier, self.http_port
        path = f"/.well-known/acme-challenge/{ch.token}"
        url = f"http://{_authority(host, port, 80)}{path}"
        seen = [url]
        origin = address
        for hop in range(MAX_REDIRECTS + 1):
            where = f"GET {url}"
            try:
                status, location, body = va_get(
                    scheme=scheme, host=host, address=address, port=port, path=path,
                    end=min(end, time.monotonic() + HTTP_TIMEOUT), max_body=MAX_BODY,
                    host_header=_authority(host, port, 80 if scheme == "http" else 443))
            except VaFailure as exc:
                if exc.kind == "dial":
                    cause = exc.cause if isinstance(exc.cause, OSError) else OSError(exc.detail)
                    return self._dial_failure(address, where, cause, first=hop == 0, end=end)
                name = {"tls": "SelfCheckTlsError", "timeout": "SelfCheckTimeout"}.get(
                    exc.kind, "SelfCheckBadResponse")
                return _Fetch(address, name, f"{where}: {exc.detail}")
            if status in REDIRECT_STATUSES:
                if hop == MAX_REDIRECTS:
                    return _Fetch(address, "SelfCheckBadRedirect",
                                  f"{where}: more than {MAX_REDIRECTS} redirects")
                try:
                    # A Location the subscriber's server sends may be any text.
                    target = urljoin(url, location or "")
                    why = self._bad_redirect(target, location, seen, ch.identifier_type)
                    parts = urlsplit(target)
                    port = parts.port or (self.http_port if parts.scheme == "http"
                                          else HTTPS_PORT)
                except ValueError as exc:
                    why = f"not a usable URL ({exc})"
                if why:
                    return _Fetch(address, "SelfCheckBadRedirect", f"{where}: {status} to"
                                  f" {location!r}: {why}")
                scheme, host = parts.scheme, (parts.hostname or "").lower()
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                address = origin
                if host != ch.identifier.lower():
                    try:
                        choice = self._addresses(host)
                    except (NoAnswer, dns.exception.DNSException, ValueError):
                        choice = []
                    same = [a for a in choice if (":" in a) == (":" in address)]
                    if not (same or choice):
                        return _Fetch(address, "SelfCheckBadRedirect", f"{where}: {status} to"
                                      f" {target}: {host} has no address")
                    address = (same or choice)[0]
                url = target
                seen.append(url)
                continue
            if 300 <= status < 400:
                return _Fetch(address, "SelfCheckBadRedirect", f"{where}: status {status}:"
                              " the CA follows only 301, 302, 307 and 308")
            if status == 404:
                return _Fetch(address, "SelfCheckNotFound", f"{where}: 404 Not Found")
            if status != 200:
                return _Fetch(address, "SelfCheckHttpStatus", f"{where}: HTTP {status}")
            if len(body) >= MAX_BODY:
                return _Fetch(address, "SelfCheckWrongContent", f"{where}: the response is"
                              f" {MAX_BODY} bytes or longer: {body[:60]!r}...")
            # Boulder compares after trimming trailing whitespace only (va/http.go).
            payload = body.decode("utf-8", "replace").rstrip()
            if payload != ch.key_authorization:
                return _Fetch(address, "SelfCheckWrongContent", f"{where}: got {payload!r},"
                              f" expected {ch.key_authorization!r}")
            return _Fetch(address, None, f"{where}: ok")
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _bad_redirect(self, target: str, location: str | None, seen: Sequence[str],
                      identifier_type: str) -> str | None:
        """Why the CA would not follow this redirect (Boulder va/http.go), or None."""
        if not location:
            return "no Location header"
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https"):
            return f"only http and https are followed, not {parts.scheme!r}"
        try:
            port = parts.port
        except ValueError:
            return "the port is not a number"
        if port is not None and port not in (self.http_port, HTTPS_PORT):
            return f"only ports {self.http_port} and {HTTPS_PORT} are followed, not {port}"
        host = parts.hostname or ""
        if not host:
            return "no host"
        if identifier_type == "dns":
            try:
                ipaddress.ip_address(host)
                return "redirects to IP addresses are not followed, only to domain names"
            except ValueError:
                pass
        if host.endswith(".well-known"):
            return "the host ends in .well-known: a '/' is missing in the redirect target"
        if target in seen:
            return f"redirect loop ({' -> '.join((*seen, target))})"
        return None

    def _dial_failure(self, address: str, where: str, exc: OSError, *, first: bool,
                      end: float) -> _Fetch:
        if isinstance(exc, ConnectionRefusedError):
            if first and va_accepts(address, HTTPS_PORT, min(2.0, end - time.monotonic())):
                return _Fetch(address, "SelfCheckHttpsOnly", f"{where}: connection refused,"
                              f" but port {HTTPS_PORT} accepts", dial=True)
            return _Fetch(address, "SelfCheckConnectionRefused", f"{where}: connection"
                          " refused", dial=True)
        if isinstance(exc, TimeoutError):
            return _Fetch(address, "SelfCheckTimeout", f"{where}: connect timed out",
                          dial=True)
        return _Fetch(address, "SelfCheckUnreachable", f"{where}: {exc.strerror or exc}",
                      dial=True)

    def _self_check_dns01(self, challenges: Sequence[Challenge]) -> tuple[list[Problem],
                                                                          set[str]]:
        # Leave the CA at least half of what is left: the self-check only advises.
        end = time.monotonic() + min(self.deadline.remaining() * SELF_CHECK_SHARE,
                                     SELF_CHECK_BUDGET)
        started = time.monotonic()
        pending = {ch.domain: ch for ch in challenges}
        seen: dict[str, DnsAnswer] = {}
        passed: set[str] = set()
        while pending:
            for domain, ch in list(pending.items()):
                try:
                    answer = self._dns.lookup(f"_acme-challenge.{ch.identifier}", "TXT")
                except NoAnswer:
                    return self._unreachable(), passed
                seen[domain] = answer
                # RFC 1035 section 3.3.14: one value may be split into several strings.
                values = {b"".join(r.strings).decode("utf-8", "replace")
                          for r in answer.records}
                if ch.validation in values:
                    passed.add(domain)
                    del pending[domain]
            left = end - time.monotonic()
            if not pending or left <= 0:
                break
            self.deadline.sleep(min(TXT_POLL, left))
            if self.deadline.expired:
                break
        waited = time.monotonic() - started
        problems = []
        for domain, ch in pending.items():
            last = seen.get(domain)
            got = (f"{last.rcode}, values {last.texts or 'none'}"
                   + (f", via {last.chain}" if last.cnames else "")) if last else "?"
            problems.append(_problem(
                "SelfCheckTxtMissing", domain, f"after {waited:.1f} s, TXT"
                f" _acme-challenge.{ch.identifier} at {self._dns.label} does not hold"
                f" {ch.validation!r} ({got})", "Check that the DNS hook or provider"
                " published the record in the right zone. A resolver that cached an earlier"
                " 'no record' answer repeats it until the negative TTL expires: point"
                " --dns-resolver at an authoritative server to see the zone itself.",
                Severity.WARNING))
        return problems, passed


