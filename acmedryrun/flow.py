"""The issuance steps: the only code that talks to the CA.

``directory -> nonce -> account -> order -> authorizations -> challenges -> poll
-> finalize -> poll -> certificate -> cleanup`` (RFC 8555 section 7).

Foreign exceptions (``requests``, ``OSError`` from a socket, JSON errors) are
converted to :mod:`acmedryrun.classify` observations in exactly one place,
:meth:`Acme._send`; everything after that is data.  Anything else that escapes
is a bug and propagates (the CLI turns it into exit 70 with a traceback).
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from acme import jws, messages
from josepy.json_util import decode_b64jose, encode_b64jose
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC

from acmedryrun import classify as c
from acmedryrun import directories, retry, twin
from acmedryrun.certs import CsrInfo, verify_chain
from acmedryrun.errors import UsageError
from acmedryrun.report import (
    Event,
    Problem,
    RequestStats,
    Retry,
    Severity,
    Step,
    StepResult,
    StepStatus,
)
from acmedryrun.solvers._base import Challenge, Solver, SolverFailure

log = logging.getLogger("acmedryrun.http")

JOSE_CONTENT_TYPE = "application/jose+json"
PROBLEM_CONTENT_TYPE = "application/problem+json"
USER_AGENT = "acmedryrun"

#: Adaptive polling (issue "performance"): quick when the CA is quick, polite when not.
POLL_FIRST = 0.01
POLL_FACTOR = 1.5
POLL_CAP = 5.0
#: A solver that alone used this share of the run's time is blamed for its expiry.
SOLVER_SHARE = 0.5
#: No single request waits longer than this, whatever the deadline.
REQUEST_TIMEOUT_CAP = 30.0


#: A self-check of placed challenge responses, from this machine: its problems, and
#: the identifiers (``Challenge.domain``) it saw answer correctly.
SelfCheck = Callable[[Sequence[Challenge]], tuple[Sequence[Problem], frozenset[str]]]


class ProductionRefused(UsageError):
    """The directory turned out to be production's (by its endpoints), and that is not allowed."""


class StopRun(Exception):
    """Raised inside a step to end the run; the problem is already recorded."""


@dataclass(slots=True)
class Response:
    """What the flow needs of an HTTP response."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; a body that is not one is a staging fault."""
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise retry.RequestFailed(
                c.MalformedResponse("json", f"{self.url}: {exc}", self.status)
            ) from exc
        if not isinstance(data, dict):
            raise retry.RequestFailed(
                c.MalformedResponse("json", f"{self.url}: not a JSON object", self.status)
            )
        return data

    @property
    def location(self) -> str:
        """The ``Location`` header; its absence is a staging fault."""
        loc = self.headers.get("Location")
        if not loc:
            raise retry.RequestFailed(
                c.MalformedResponse("location", f"{self.url}: no Location header", self.status)
            )
        return loc

    @property
    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds (RFC 9110 section 10.2.3)."""
        return parse_retry_after(self.headers.get("Retry-After"))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` given as delay-seconds or as an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _help_link(headers: Mapping[str, str]) -> str | None:
    for part in headers.get("Link", "").split(","):
        if 'rel="help"' in part and "<" in part and ">" in part:
            return part[part.index("<") + 1 : part.index(">")]
    return None


def transport_kind(exc: BaseException) -> c.TransportKind:
    """Name a ``requests`` exception (the one place that inspects them)."""
    text = f"{exc!r} {exc.__context__!r}".lower()
    if isinstance(exc, requests.exceptions.SSLError):
        if "certificate_verify_failed" in text or "certificate verify failed" in text:
            return c.TransportKind.TLS_VERIFY
        return c.TransportKind.TLS
    if isinstance(exc, requests.exceptions.Timeout):
        return c.TransportKind.TIMEOUT
    if isinstance(exc, requests.exceptions.ChunkedEncodingError
                  | requests.exceptions.ContentDecodingError):
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


def _alg_for(key: JWK) -> JWASignature:
    if isinstance(key, JWKEC):
        size = key.key.curve.key_size
        return {256: ES256, 384: ES384, 521: ES512}[size]
    return RS256


class Acme:
    """An ACME connection: nonces, JWS signing, request counting, the exception boundary.

    Each response's ``Replay-Nonce`` is kept for the next POST (RFC 8555 section
    6.5), so a newNonce round trip happens once per run, not once per request.
    """

    def __init__(
        self,
        *,
        verify: str | bool,
        deadline: retry.Deadline,
        on_retry: Callable[[Retry], None],
        session: requests.Session | None = None,
    ) -> None:
        self.verify = verify
        self.deadline = deadline
        self._on_retry = on_retry
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.directory: dict[str, Any] = {}
        self.key: JWK | None = None
        self.kid: str | None = None
        self._nonce: str | None = None
        self.total = 0
        self.polls = 0
        self.retries = 0
        #: Responses received from the CA (any status): proof the network reaches it.
        self.answered = 0
        #: ``Retry-After`` of the last response (polls honour it), None when absent.
        self.last_retry_after: float | None = None
        self._nonce_missing = False

    # -- the boundary -------------------------------------------------------------

    def _send(self, method: str, url: str, body: bytes | None = None) -> Response:
        """Send one request; every failure leaves here as :class:`retry.RequestFailed`."""
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise retry.RequestFailed(c.DeadlineExceeded("ca", f"before {method} {url}"))
        timeout = min(REQUEST_TIMEOUT_CAP, remaining)
        headers = {"Content-Type": JOSE_CONTENT_TYPE} if body is not None else {}
        self.total += 1
        started = time.monotonic()
        try:
            # verify= per request: a Session's own verify loses to REQUESTS_CA_BUNDLE.
            raw = self.session.request(method, url, data=body, headers=headers,
                                       verify=self.verify, timeout=timeout)
            resp = Response(raw.status_code, raw.headers, raw.content, url)
            self.answered += 1
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise retry.RequestFailed(
                c.MalformedResponse("url", f"the CA gave an unusable URL: {url!r}")) from exc
        except requests.RequestException as exc:
            kind = transport_kind(exc)
            log.debug("%s %s -> %s (%.0f ms)", method, url, kind.value,
                      (time.monotonic() - started) * 1000)
            raise retry.RequestFailed(c.TransportError(kind, _short(exc))) from exc
        log.debug("%s %s -> %d (%.0f ms)", method, url, resp.status,
                  (time.monotonic() - started) * 1000)
        nonce = resp.headers.get("Replay-Nonce")
        if nonce:
            self._nonce = nonce
        elif method == "POST" and resp.status < 400:
            self._nonce_missing = True  # RFC 8555 section 6.5: every POST response has one
        self.last_retry_after = resp.retry_after
        if resp.status >= 400:
            raise retry.RequestFailed(self._error_observation(resp))
        return resp

    @staticmethod
    def _error_observation(resp: Response) -> c.Observation:
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        doc: Any = None
        if ctype in (PROBLEM_CONTENT_TYPE, "application/json"):
            try:
                doc = json.loads(resp.body)
            except ValueError:
                doc = None
        if isinstance(doc, dict) and isinstance(doc.get("type"), str):
            return acme_error(doc, resp.status, resp.retry_after, _help_link(resp.headers))
        return c.HttpError(resp.status, ctype, resp.body[:300].decode("utf-8", "replace"),
                           resp.retry_after)

    # -- requests -------------------------------------------------------------------

    def with_retries(self, step: Step, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` under the one retry adapter, counting retries."""

        def on_retry(r: Retry) -> None:
            self.retries += 1
            self._on_retry(r)

        return retry.call(fn, step=step, deadline=self.deadline, on_retry=on_retry)

    def get_directory(self, url: str) -> dict[str, Any]:
        """GET the directory (RFC 8555 section 7.1.1)."""
        data: dict[str, Any] = self.with_retries(
            Step.DIRECTORY, lambda: self._send("GET", url).json())
        for needed in ("newNonce", "newAccount", "newOrder"):
            if not isinstance(data.get(needed), str):
                raise retry.RequestFailed(
                    c.MalformedResponse("directory", f"{url}: no {needed} in the directory")
                )
        self.directory = data
        return data

    def fetch_nonce(self) -> None:
        """HEAD newNonce once (RFC 8555 section 7.2); later nonces come from responses."""

        def head() -> None:
            self._nonce = None
            self._send("HEAD", self.directory["newNonce"])
            if not self._nonce:
                raise retry.RequestFailed(
                    c.MalformedResponse("replay_nonce", "newNonce answered without Replay-Nonce")
                )

        self.with_retries(Step.NONCE, head)

    def post(self, url: str, payload: Mapping[str, Any] | None, *, step: Step,
             kid: bool = True, poll: bool = False) -> Response:
        """One signed POST (``payload=None`` is POST-as-GET, RFC 8555 section 6.3), no retry."""
        assert self.key is not None  # noqa: S101 - the flow sets the key before any POST
        if not self._nonce:
            if self._nonce_missing:
                # The previous response carried no Replay-Nonce (RFC 8555 section 6.5 says
                # it must): a staging fault we survive with one newNonce round trip.
                self._nonce_missing = False
                self._on_retry(Retry(step, "missing_replay_nonce", 1, 0.0))
                self.retries += 1
            # Otherwise the last request failed without a response (reset, lost): the
            # retry itself is recorded already; it just needs a fresh nonce.
            self.fetch_nonce()
        nonce, self._nonce = self._nonce or "", None
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = jws.JWS.sign(
            body, key=self.key, alg=_alg_for(self.key), nonce=decode_b64jose(nonce),
            url=url, kid=self.kid if kid else None,
        )
        if poll:
            self.polls += 1
        return self._send("POST", url, signed.json_dumps().encode())

    def stats(self) -> RequestStats:
        """The request counts so far."""
        return RequestStats(total=self.total, polls=self.polls, retries=self.retries)


def acme_error(doc: Mapping[str, Any], status: int | None, retry_after: float | None = None,
               help_url: str | None = None) -> c.AcmeError:
    """A problem document as an observation (RFC 8555 section 6.7, RFC 7807)."""
    ident = doc.get("identifier")
    subs = tuple(
        acme_error(s, status) for s in doc.get("subproblems") or () if isinstance(s, dict)
    )
    return c.AcmeError(
        type=str(doc.get("type", "")),
        detail=str(doc.get("detail", "")),
        status=status if status is not None else doc.get("status"),
        subproblems=subs,
        identifier=ident.get("value") if isinstance(ident, dict) else None,
        retry_after=retry_after,
        help_url=help_url,
    )


def _builtin(solver: Solver) -> bool:
    """True for acmedryrun's own solvers, whose unexpected exceptions are bugs."""
    return type(solver).__module__.startswith("acmedryrun.")


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, cut to a readable length."""
    return f"{type(exc).__name__}: {_short(exc)}"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:297] + "..."


def key_authorization(token: str, key: JWK) -> str:
    """``token || '.' || base64url(Thumbprint(accountKey))`` (RFC 8555 section 8.1)."""
    thumb = encode_b64jose(key.thumbprint())
    return f"{token}.{thumb}"


def challenge_validation(ctype: str, key_auth: str) -> str:
    """What the CA checks for each challenge type."""
    digest = hashlib.sha256(key_auth.encode("ascii")).digest()
    if ctype == "dns-01":
        return encode_b64jose(digest)  # RFC 8555 section 8.4
    if ctype == "tls-alpn-01":
        return digest.hex()  # RFC 8737 section 3
    return key_auth  # http-01, RFC 8555 section 8.3


# ------------------------------------------------------------------------------ the run


@dataclass(slots=True)
class Authz:
    """One authorization of the current order, as last read."""

    url: str
    identifier: str
    identifier_type: str
    wildcard: bool
    status: str
    data: dict[str, Any]

    @property
    def challenges(self) -> list[dict[str, Any]]:
        """The challenges (each checked to carry a string ``type`` and ``url``)."""
        challenges: list[dict[str, Any]] = self.data["challenges"]
        return challenges


_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _malformed(what: str, url: str, why: str) -> retry.RequestFailed:
    return retry.RequestFailed(c.MalformedResponse(what, f"{url}: {why}"))


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def checked_order(url: str, data: dict[str, Any]) -> dict[str, Any]:
    """An order object as RFC 8555 section 7.1.3 requires it, or a staging fault."""
    if not isinstance(data.get("status"), str):
        raise _malformed("order", url, "no status")
    if not _str_list(data.get("authorizations")) or not data["authorizations"]:
        raise _malformed("order", url, "authorizations is not a list of URLs")
    if not isinstance(data.get("finalize"), str):
        raise _malformed("order", url, "no finalize URL")
    return data


def checked_authz(url: str, data: dict[str, Any]) -> Authz:
    """An authorization object as RFC 8555 section 7.1.4 requires it, or a staging fault."""
    ident = data.get("identifier")
    if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
        raise _malformed("authorization", url, "no identifier")
    if not isinstance(data.get("status"), str):
        raise _malformed("authorization", url, "no status")
    challenges = data.get("challenges")
    if not isinstance(challenges, list) or not all(
            isinstance(ch, dict) and isinstance(ch.get("type"), str)
            and isinstance(ch.get("url"), str) for ch in challenges):
        raise _malformed("authorization", url, "challenges is not a list of challenge objects")
    return Authz(url, ident["value"], str(ident.get("type", "dns")), bool(data.get("wildcard")),
                 data["status"], data)


@dataclass
class RunState:
    """What the flow has learnt so far (mutable; the report is built from it)."""

    problems: list[Problem] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    account_url: str | None = None
    chain_pem: str | None = None
    staging_only_features: tuple[str, ...] = ()
    production_only_features: tuple[str, ...] = ()
    #: The production twin compared with (None: none known), and the prediction's reasons.
    twin_url: str | None = None
    twin_compared: bool = False
    twin_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What to order: identifiers as (type, value) in order, and the CSR to finalize with."""

    identifiers: tuple[tuple[str, str], ...]
    csr: CsrInfo
    profile: str | None = None


class Flow:
    """One dry run's conversation with the CA."""

    def __init__(
        self,
        *,
        directory_url: str,
        acme: Acme,
        account_key: JWK,
        account_key_given: bool,
        order: OrderRequest,
        solver: Solver,
        eab: tuple[str, str] | None,
        email: str | None,
        reference_url: str | None,
        reference_verify: str | bool,
        on_event: Callable[[Event], None],
        state: RunState,
        self_check: SelfCheck | None = None,
        check_directory: Callable[[Mapping[str, Any]], Sequence[Problem]] | None = None,
        check_account: Callable[[str | None, str | None], Sequence[Problem]] | None = None,
        allow_production: bool = False,
        renewing: bytes | None = None,
    ) -> None:
        self.directory_url = directory_url
        self.acme = acme
        self.acme.key = account_key
        self.account_key_given = account_key_given
        self.order = order
        self.solver = solver
        self.eab = eab
        self.email = email
        self.reference_url = reference_url
        self.reference_verify = reference_verify
        self.on_event = on_event
        self.state = state
        self.self_check = self_check
        self.check_directory = check_directory
        self.check_account = check_account
        self.allow_production = allow_production
        self.renewing = renewing
        self._prepared: list[Challenge] = []
        self._run_authz_urls: list[str] = []
        self._reference_reach: twin.Reach | None = None
        self._self_check_passed: frozenset[str] = frozenset()

    # -- bookkeeping --------------------------------------------------------------------

    def add_problem(self, problem: Problem) -> None:
        """Record a problem and tell the listener."""
        self.state.problems.append(problem)
        self.on_event(Event("problem", problem.step, problem=problem))

    def fail(self, obs: c.Observation, step: Step, identifier: str | None = None) -> StopRun:
        """Record ``obs`` as the fatal problem of ``step``; the caller raises the result."""
        if isinstance(obs, c.TransportError):
            obs = self._diagnose(obs)
        elif isinstance(obs, c.HttpError) and directories.lookup(self.directory_url):
            obs = dataclasses.replace(obs, known_url=True)
        problem = c.classify(obs, step=step, identifier=identifier, severity=Severity.FATAL)
        if (isinstance(obs, c.AcmeError) and obs.short_type in c.VALIDATION_TYPES
                and problem.identifier in self._self_check_passed):
            # Cross-examination: it worked from here, so only the CA's vantage points
            # meet the obstacle.
            problem = dataclasses.replace(problem, hint=(
                f"{problem.hint} The self-check from this machine reached"
                f" {problem.identifier} and got the right answer: the difference is in"
                " what the CA sees (firewall, geo-blocking, split DNS, IPv6 vs IPv4)."))
        self.add_problem(problem)
        return StopRun()

    def _diagnose(self, obs: c.TransportError) -> c.TransportError:
        """Differential diagnosis of a transport failure (TAXONOMY.md).

        Staging answered earlier in this run: the network works, staging stopped.
        Otherwise one read-only GET of the production twin decides: any HTTP answer
        means this machine reaches a CA (staging's fault); failing the same way means
        the machine's network or trust store is at fault (the client's).
        """
        if self.acme.answered:
            return dataclasses.replace(obs, staging_answered=True)
        reach = self._reach_reference()
        if reach is None:
            return obs
        if obs.kind is c.TransportKind.TLS_VERIFY:
            # Only the same verification failure convicts the trust store.
            ok = {twin.Reach.ANSWERED: True, twin.Reach.TLS_VERIFY: False}.get(reach)
        else:
            ok = reach is not twin.Reach.UNREACHABLE
        return dataclasses.replace(obs, reference_ok=ok)

    def _reach_reference(self) -> twin.Reach | None:
        """How the production twin answered one read-only GET (asked once per run)."""
        if self._reference_reach is None and self.reference_url:
            timeout = max(1.0, min(10.0, self.acme.deadline.remaining()))
            answer = twin.fetch_directory(self.reference_url, verify=self.reference_verify,
                                          timeout=timeout)
            self._reference_reach = twin.reach_of(answer)
        return self._reference_reach

    @contextmanager
    def step(self, step: Step) -> Iterator[None]:
        """Time a step and record how it ended; a RequestFailed becomes its fatal problem."""
        self.on_event(Event("step_start", step))
        started = time.monotonic()
        status = StepStatus.FAILED
        try:
            yield
            status = StepStatus.OK
        except retry.RequestFailed as exc:
            raise self.fail(exc.obs, step) from exc
        finally:
            result = StepResult(step, status, time.monotonic() - started)
            self.state.steps.append(result)
            self.on_event(Event("step_end", step, status=status, duration_s=result.duration_s))

    # -- the steps ----------------------------------------------------------------------

    def run(self) -> None:
        """Run every step; returns normally when done or when a step stopped the run."""
        try:
            with self.step(Step.DIRECTORY):
                self.acme.get_directory(self.directory_url)
            self.guard_production()
            if self.check_directory is not None:
                self.check_meta(self.check_directory)
            self.compare_twin()
            with self.step(Step.NONCE):
                self.acme.fetch_nonce()
            with self.step(Step.ACCOUNT):
                self.account()
            if self.check_account is not None:
                # CAA accounturi against the account this run got (production's differs).
                for problem in self.check_account(self.state.account_url, self.reference_url):
                    self.add_problem(problem)
            authzs = self.place_order()
            self.solve(authzs)
            self.finalize()
        except StopRun:
            pass
        except KeyboardInterrupt:
            # Stop promptly: no more requests or waits; cleanup removes what the solver
            # placed and skips the deactivations (they need the CA).
            self.acme.deadline.cancel()
            raise
        finally:
            self.cleanup()

    def guard_production(self) -> None:
        """Refuse a directory whose endpoints are a known production CA's.

        A URL that is not a known alias may still front production (a proxy, a
        mirror): its endpoints tell.  Only the one read-only directory GET was sent.
        """
        known = twin.production_by_endpoints(self.acme.directory)
        if known is not None and not self.allow_production:
            raise ProductionRefused(
                f"--directory: {self.directory_url} serves {known.alias}'s production"
                " endpoints: a dry run there counts against real rate limits and issues a"
                " trusted certificate (pass --allow-production to do it anyway)")

    def compare_twin(self) -> None:
        """Compare staging's directory with its production twin's (GET only).

        What the run uses and production lacks is a client problem (production
        would refuse it); what is merely on offer is info; a twin that cannot be
        read is a warning and never changes the staging verdict.
        """
        self.state.twin_url = self.reference_url
        if not self.reference_url:
            return
        timeout = max(1.0, min(10.0, self.acme.deadline.remaining()))
        reference = twin.fetch_directory(self.reference_url, verify=self.reference_verify,
                                         timeout=timeout)
        if isinstance(reference, twin.TwinUnavailable):
            self.add_problem(twin.twin_unavailable_problem(self.reference_url, reference))
            self.state.twin_reasons.append(
                f"production ({self.reference_url}) could not be compared: {reference.reason}")
            return
        self._reference_reach = twin.Reach.ANSWERED
        used = twin.UsedFeatures(challenge_type=self.solver.challenge_type,
                                 profile=self.order.profile, eab=self.eab is not None)
        comparison = twin.compare_directories(self.acme.directory, reference, used=used)
        self.state.twin_compared = True
        self.state.staging_only_features = comparison.staging_only_features
        self.state.production_only_features = comparison.production_only_features
        self.state.twin_reasons += comparison.reasons
        for problem in comparison.problems:
            self.add_problem(problem)
        if self.renewing is not None:
            info = twin.renewal_info(self.renewing, reference, verify=self.reference_verify,
                                     timeout=timeout)
            self.add_problem(twin.renewal_info_problem(info))

    def check_meta(self, check: Callable[[Mapping[str, Any]], Sequence[Problem]]) -> None:
        """Preflight checks that need the directory (its ``meta.caaIdentities``).

        They use what preflight already looked up, so they send nothing; a decisive
        problem stops the run before any order is created.
        """
        problems = list(check(self.acme.directory))
        for problem in problems:
            self.add_problem(problem)
        if any(p.severity.decisive for p in problems):
            raise StopRun

    def account(self) -> None:
        """Find or create the account (RFC 8555 section 7.3)."""
        new_account = self.acme.directory["newAccount"]

        def post(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            resp = self.acme.post(new_account, payload, step=Step.ACCOUNT, kid=False)
            return resp.location, resp.json()

        if self.account_key_given:
            # Look the key up first (section 7.3.1): a reused account is not re-registered.
            try:
                self._set_account(*self.acme.with_retries(
                    Step.ACCOUNT, lambda: post({"onlyReturnExisting": True})))
                return
            except retry.RequestFailed as exc:
                obs = exc.obs
                if not (isinstance(obs, c.AcmeError) and obs.short_type == "accountDoesNotExist"):
                    raise
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if self.email:
            payload["contact"] = [f"mailto:{self.email}"]
        if self.eab:
            payload["externalAccountBinding"] = self._eab_jws(new_account)
        self._set_account(*self.acme.with_retries(Step.ACCOUNT, lambda: post(payload)))

    def _eab_jws(self, url: str) -> dict[str, Any]:
        """The external account binding (RFC 8555 section 7.3.4), HS256 over the account key."""
        assert self.eab is not None  # noqa: S101
        assert self.acme.key is not None  # noqa: S101
        kid, hmac_key = self.eab
        directory = messages.Directory({"newAccount": url})
        binding: dict[str, Any] = messages.ExternalAccountBinding.from_data(
            self.acme.key.public_key(), kid, hmac_key, directory)
        return binding

    def _set_account(self, url: str, account: dict[str, Any]) -> None:
        self.acme.kid = url
        self.state.account_url = url
        status = account.get("status", "valid")
        if status != "valid":
            raise self.fail(c.AccountStatus(str(status)), Step.ACCOUNT)

    def new_order(self) -> tuple[str, dict[str, Any]]:
        """POST newOrder (RFC 8555 section 7.4)."""
        payload: dict[str, Any] = {
            "identifiers": [{"type": t, "value": v} for t, v in self.order.identifiers]
        }
        if self.order.profile:
            payload["profile"] = self.order.profile
        url = self.acme.directory["newOrder"]

        def post() -> tuple[str, dict[str, Any]]:
            resp = self.acme.post(url, payload, step=Step.ORDER)
            return resp.location, checked_order(resp.location, resp.json())

        result: tuple[str, dict[str, Any]] = self.acme.with_retries(Step.ORDER, post)
        return result

    def read_authz(self, url: str, *, poll: bool = False) -> Authz:
        """POST-as-GET one authorization (RFC 8555 section 7.5)."""
        step = Step.CHALLENGE if poll else Step.AUTHORIZATION
        authz: Authz = self.acme.with_retries(
            step, lambda: checked_authz(url, self.acme.post(url, None, step=step,
                                                            poll=poll).json()))
        return authz

    def deactivate(self, url: str, step: Step) -> None:
        """Deactivate one authorization (RFC 8555 section 7.5.2)."""
        self.acme.with_retries(
            step, lambda: self.acme.post(url, {"status": "deactivated"}, step=step)
        )

    def place_order(self) -> list[Authz]:
        """Order, and make sure every authorization needs validating today.

        A valid authorization the CA reuses proves nothing about today's setup
        (certbot issue 5116): deactivate it and order again, once.
        """
        with self.step(Step.ORDER):
            self.order_url, order = self.new_order()
        with self.step(Step.AUTHORIZATION):
            authzs = [self.read_authz(u) for u in order.get("authorizations", [])]
            reused = [a for a in authzs if a.status == "valid"]
            if reused:
                for a in reused:
                    self.deactivate(a.url, Step.AUTHORIZATION)
                self.order_url, order = self.new_order()
                authzs = [self.read_authz(u) for u in order.get("authorizations", [])]
                for a in authzs:
                    if a.status == "valid":
                        self.add_problem(c.classify(
                            c.AuthorizationReused("the CA reused a valid authorization even"
                                                  " after it was deactivated"),
                            step=Step.AUTHORIZATION, identifier=a.identifier,
                            severity=Severity.WARNING))
            self._run_authz_urls = [a.url for a in authzs]
            self.order_data = order
        return authzs

    def solve(self, authzs: Sequence[Authz]) -> None:
        """Answer every pending challenge at once, then wait for the CA's decision."""
        pending = [a for a in authzs if a.status == "pending"]
        for a in authzs:
            if a.status not in ("pending", "valid"):
                obs: c.Observation = c.AuthorizationInvalid(
                    f"authorization for {a.identifier} is {a.status} before any challenge")
                err = a.data.get("error")
                if isinstance(err, dict):
                    obs = acme_error(err, None)
                raise self.fail(obs, Step.AUTHORIZATION, a.identifier)
        if not pending:
            return
        with self.step(Step.CHALLENGE):
            challenges = [(a, self._challenge_for(a)) for a in pending]
            for _, ch in challenges:
                self._run_solver(self.solver.prepare, ch)
            for _, ch in challenges:
                self._run_solver(self.solver.perform, ch)
            if self.self_check is not None:
                problems, self._self_check_passed = self.self_check([ch for _, ch in challenges])
                for problem in problems:
                    self.add_problem(problem)
            for _, ch in challenges:
                self._answer(ch)
            self._await_validation([a for a, _ in challenges])

    def _challenge_for(self, authz: Authz) -> Challenge:
        ctype = self.solver.challenge_type
        found = next((ch for ch in authz.challenges if ch["type"] == ctype), None)
        if found is None:
            offered = ", ".join(ch["type"] for ch in authz.challenges)
            raise self.fail(
                c.SolverError(c.SolverErrorKind.NO_CHALLENGE,
                              f"{authz.identifier}: no {ctype} challenge offered (offered: "
                              f"{offered or 'none'})"),
                Step.CHALLENGE, authz.identifier)
        assert self.acme.key is not None  # noqa: S101
        if not _TOKEN.fullmatch(found.get("token") or ""):
            # RFC 8555 section 8.1: base64url only.  Anything else could escape a webroot.
            raise self.fail(c.MalformedResponse(
                "challenge", f"{found['url']}: token {found.get('token')!r} is not base64url"),
                Step.CHALLENGE, authz.identifier)
        key_auth = key_authorization(found["token"], self.acme.key)
        return Challenge(
            type=ctype, identifier=authz.identifier, identifier_type=authz.identifier_type,
            wildcard=authz.wildcard, token=found["token"], key_authorization=key_auth,
            validation=challenge_validation(ctype, key_auth), url=found["url"],
            deadline=time.monotonic() + self.acme.deadline.remaining(),
        )

    def _run_solver(self, method: Callable[[Challenge], None], ch: Challenge) -> None:
        if method == self.solver.prepare:
            self._prepared.append(ch)
        started = time.monotonic()
        failure: c.Observation | None = None
        try:
            method(ch)
        except SolverFailure as exc:
            failure = c.SolverError(exc.kind, exc.detail)
        except Exception as exc:
            if _builtin(self.solver):
                raise  # a bug in acmedryrun's own solver: exit 70, never a verdict
            # A custom solver is the subscriber's (or their ACME client's) code.
            failure = c.SolverError(c.SolverErrorKind.OTHER, describe(exc))
        if self.acme.deadline.expired and not self.acme.deadline.cancelled:
            failure = self._deadline_blame(time.monotonic() - started, ch, failure)
        if failure is not None:
            raise self.fail(failure, Step.CHALLENGE, ch.domain)

    def _deadline_blame(self, took: float, ch: Challenge,
                        failure: c.Observation | None = None) -> c.DeadlineExceeded:
        """The deadline expired in the solver: whose fault is it?

        The solver's only when it alone used most of the run's time; when staging's
        slowness or retries ate the time first, a solver cut short is not to blame.
        What the solver said as it was cut short (a hook's last output) is kept.
        """
        total = self.acme.deadline.seconds
        said = f"; {failure.detail}" if isinstance(failure, c.SolverError) and failure.detail \
            else ""
        if took >= SOLVER_SHARE * total:
            return c.DeadlineExceeded(
                "solver", f"the solver took {took:.1f} s on {ch.domain} and the run's"
                f" deadline ({total:g} s, --timeout) expired before the CA was asked to"
                f" validate{said}")
        return c.DeadlineExceeded(
            "ca", f"the run's deadline ({total:g} s) expired; the solver took only"
            f" {took:.1f} s of it{said}")

    def _answer(self, ch: Challenge) -> None:
        """Tell the CA to validate (RFC 8555 section 7.5.1); a lost answer is re-read first."""
        attempts = 0

        def answer() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                # The POST may have taken effect: a challenge no longer pending was answered.
                data = self.acme.post(ch.url, None, step=Step.CHALLENGE).json()
                if data.get("status") != "pending":
                    return
            self.acme.post(ch.url, {}, step=Step.CHALLENGE)

        self.acme.with_retries(Step.CHALLENGE, answer)

    def _await_validation(self, answered: Sequence[Authz]) -> None:
        """Poll the order, not each authorization, until the CA has decided.

        RFC 8555 section 7.1.6: the order turns ``ready`` once every authorization
        is valid and ``invalid`` once one fails, so one request per round covers
        them all.  Only a failed order needs its authorizations read, to learn which
        name failed and why.
        """
        order = self.order_data

        def poll_round() -> bool:
            nonlocal order
            order = self.read_order(poll=True, step=Step.CHALLENGE)
            return order.get("status") != "pending"

        names = ", ".join(a.identifier for a in answered)
        self._poll(poll_round, Step.CHALLENGE, lambda: c.Stuck(
            c.StuckState.AUTHORIZATION_PENDING,
            f"the order stayed pending: the CA did not finish validating {names} before the"
            " deadline"), lambda: answered[0].identifier if len(answered) == 1 else None)
        self.order_data = order
        if order.get("status") != "invalid":
            return
        for authz in answered:
            current = self.read_authz(authz.url)
            if current.status not in ("valid", "pending"):
                raise self.fail(self._authz_error(current), Step.CHALLENGE, current.identifier)
        err = order.get("error")
        raise self.fail(acme_error(err, None) if isinstance(err, dict)
                        else c.AuthorizationInvalid("the order became invalid"), Step.CHALLENGE)

    def _poll(self, poll_round: Callable[[], bool], step: Step,
              stuck: Callable[[], c.Stuck], identifier: Callable[[], str | None]) -> None:
        """Repeat ``poll_round`` until it returns True: adaptive, polite, deadline-bound.

        The first poll comes after :data:`POLL_FIRST`; intervals double up to
        :data:`POLL_CAP`; a ``Retry-After`` on the last response always wins (RFC 8555
        section 7.4: "the server MAY include a Retry-After header").  Running out of
        time while waiting is the CA being stuck, not a transport failure.
        """
        interval = POLL_FIRST
        while True:
            wait = self.acme.last_retry_after
            if not self._sleep(interval if wait is None else wait):
                raise self.fail(stuck(), step, identifier())
            interval = min(POLL_CAP, interval * POLL_FACTOR)
            try:
                if poll_round():
                    return
            except retry.RequestFailed as exc:
                if isinstance(exc.obs, c.DeadlineExceeded):
                    raise self.fail(stuck(), step, identifier()) from exc
                raise self.fail(exc.obs, step, identifier()) from exc

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the deadline comes first; False when no time is left to poll."""
        if self.acme.deadline.remaining() <= seconds:
            return False
        self.acme.deadline.sleep(seconds)
        return not self.acme.deadline.cancelled

    def _authz_error(self, a: Authz) -> c.Observation:
        for ch in a.data.get("challenges", []):
            err = ch.get("error")
            if isinstance(err, dict):
                return acme_error(err, None)
        err = a.data.get("error")
        if isinstance(err, dict):
            return acme_error(err, None)
        return c.AuthorizationInvalid(f"authorization for {a.identifier} is {a.status}")

    def read_order(self, *, poll: bool = False, step: Step = Step.FINALIZE) -> dict[str, Any]:
        """POST-as-GET the order."""
        data: dict[str, Any] = self.acme.with_retries(
            step,
            lambda: checked_order(self.order_url, self.acme.post(
                self.order_url, None, step=step, poll=poll).json()),
        )
        return data

    def finalize(self) -> None:
        """Finalize with the CSR, wait for the certificate, download and check it."""
        with self.step(Step.FINALIZE):
            order = self.order_data
            if order.get("status") == "pending":
                # Every authorization is valid now, so the order is ready (RFC 8555
                # section 7.1.6): finalize at once instead of re-reading it first.
                order = self._finalize_when_ready(order)
            elif order.get("status") == "ready":
                order = self._post_finalize(order)
            order = self._poll_order(order)
            if order.get("status") != "valid":
                err = order.get("error")
                obs: c.Observation = (
                    acme_error(err, None) if isinstance(err, dict)
                    else c.AuthorizationInvalid(f"order is {order.get('status')}")
                )
                raise self.fail(obs, Step.FINALIZE)
        with self.step(Step.CERTIFICATE):
            cert_url = order.get("certificate")
            if not isinstance(cert_url, str):
                raise self.fail(c.MalformedResponse("order", "valid order without certificate"),
                                Step.CERTIFICATE)
            resp = self.acme.with_retries(
                Step.CERTIFICATE,
                lambda: self.acme.post(cert_url, None, step=Step.CERTIFICATE),
            )
            pem = resp.body.decode("ascii", "replace")
            self.state.chain_pem = pem
            mismatch = verify_chain(pem, self.order.csr)
            if mismatch:
                raise self.fail(c.InvalidChain(mismatch), Step.CERTIFICATE)

    def _post_finalize(self, order: dict[str, Any]) -> dict[str, Any]:
        """POST the CSR (RFC 8555 section 7.4); a lost response is re-read, not repeated."""
        attempts = 0
        payload = {"csr": encode_b64jose(self.order.csr.der)}

        def finalize() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                current = self.acme.post(self.order_url, None, step=Step.FINALIZE).json()
                if current.get("status") in ("processing", "valid", "invalid"):
                    return current
            return self.acme.post(order["finalize"], payload, step=Step.FINALIZE).json()

        result: dict[str, Any] = self.acme.with_retries(Step.FINALIZE, finalize)
        return result

    def _finalize_when_ready(self, order: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._post_finalize(order)
        except retry.RequestFailed as exc:
            if not (isinstance(exc.obs, c.AcmeError) and exc.obs.short_type == "orderNotReady"):
                raise
        self.acme.last_retry_after = None
        order = self._poll_order_while(order, "pending", c.StuckState.ORDER_PENDING)
        return self._post_finalize(order) if order.get("status") == "ready" else order

    def _poll_order(self, order: dict[str, Any]) -> dict[str, Any]:
        return self._poll_order_while(order, "processing", c.StuckState.ORDER_PROCESSING)

    def _poll_order_while(self, order: dict[str, Any], status: str,
                          state: c.StuckState) -> dict[str, Any]:
        current = order

        def poll_round() -> bool:
            nonlocal current
            current = self.read_order(poll=True)
            return current.get("status") != status

        if current.get("status") == status:
            self._poll(poll_round, Step.FINALIZE,
                       lambda: c.Stuck(state, f"order still {status} at the deadline"),
                       lambda: None)
        return current

    def cleanup(self) -> None:
        """Remove challenge responses and deactivate this run's authorizations.

        Deactivating means the next dry run validates again instead of riding on
        today's result.  Failures here are warnings: the run's outcome stands.
        """
        if not self._prepared and not self._run_authz_urls:
            return
        started = time.monotonic()
        self.on_event(Event("step_start", Step.CLEANUP))
        status = StepStatus.OK
        for ch in self._prepared:
            try:
                self.solver.cleanup(ch)
            except Exception as exc:
                if not isinstance(exc, SolverFailure) and _builtin(self.solver):
                    raise
                status = StepStatus.FAILED
                obs = (c.SolverError(exc.kind, exc.detail) if isinstance(exc, SolverFailure)
                       else c.SolverError(c.SolverErrorKind.OTHER, describe(exc)))
                self.add_problem(c.classify(obs, step=Step.CLEANUP, identifier=ch.domain,
                                            severity=Severity.WARNING))
        for url in self._run_authz_urls:
            if self.acme.deadline.expired:
                break
            try:
                self.deactivate(url, Step.CLEANUP)
            except retry.RequestFailed as exc:
                if isinstance(exc.obs, c.AcmeError) and exc.obs.short_type == "malformed":
                    continue  # already invalid or deactivated: nothing to undo
                status = StepStatus.FAILED
                self.add_problem(c.classify(exc.obs, step=Step.CLEANUP,
                                            severity=Severity.WARNING))
        result = StepResult(Step.CLEANUP, status, time.monotonic() - started)
        self.state.steps.append(result)
        self.on_event(Event("step_end", Step.CLEANUP, status=status,
                            duration_s=result.duration_s))
