"""The RFC 8555 conversation, step by step, as functions over data.

    get_directory -> new_nonce -> find_account / new_account -> new_order
    -> get_authorization -> answer_challenge -> get_order (poll) -> finalize
    -> get_order (poll) -> download_certificate -> deactivate

Each step takes an :class:`AcmeClient` (the signing key, the account URL, the
nonces, the retry adapter, the transport) and plain values, and returns a checked
record: :class:`Directory`, :class:`Account`, :class:`Order`,
:class:`Authorization`, :class:`ChallengeRef`.  Every object the CA sends is
checked against RFC 8555 section 7.1 before use -- types, statuses, URLs (parsed by
the one URL parser, so the production guard sees them) -- and anything else is a
staging :class:`~acmedryrun.classify.MalformedResponse`.  A step that cannot go on
raises :class:`~acmedryrun.classify.RequestFailed` with the observation; deciding
what follows (and whose fault it is) is the orchestrator's.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from acme import jws
from josepy.json_util import decode_b64jose, encode_b64jose
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC

from acmedryrun import classify as c
from acmedryrun import retry
from acmedryrun.classify import RequestFailed
from acmedryrun.deadline import Deadline, Party
from acmedryrun.report import Retry, Step
from acmedryrun.transport import Resource, Response, Transport
from acmedryrun.urls import BadUrl, Url, parse_url

T = TypeVar("T")

JOSE_CONTENT_TYPE = "application/jose+json"
PROBLEM_CONTENT_TYPE = "application/problem+json"

#: RFC 8555 section 7.1.6: the statuses of each object.
ORDER_STATUSES = frozenset({"pending", "ready", "processing", "valid", "invalid"})
AUTHZ_STATUSES = frozenset({"pending", "valid", "invalid", "deactivated", "expired", "revoked"})
CHALLENGE_STATUSES = frozenset({"pending", "processing", "valid", "invalid"})
#: RFC 8555 section 8.1: a token is base64url; anything else could escape a webroot.
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Text copied from the CA into a report is cut to this many characters.
MAX_TEXT = 1000
#: Subproblems read from one compound problem document.
MAX_SUBPROBLEMS = 100
#: Authorizations one order may list (Let's Encrypt allows 100 names).
MAX_AUTHORIZATIONS = 1000


# --------------------------------------------------------------------------- CA text


_JWS_FIELD = re.compile(r'(\\?"(?:protected|payload|signature)\\?"\s*:\s*\\?")[^"\\]*(\\?")')
_JWS_PARAM = re.compile(r"\b(protected|payload|signature)=[A-Za-z0-9_=.-]+")
_LONG_B64 = re.compile(r"[A-Za-z0-9_-]{80,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(value: object, limit: int = MAX_TEXT) -> str:
    """Text from the CA made safe for a report: bounded, no JWS, no control characters.

    A problem ``detail`` that echoes the request would otherwise copy a JWS
    signature (or the signed payload) into reports and logs.
    """
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text[: limit * 4]
    text = _JWS_FIELD.sub(r"\1<redacted>\2", text)
    text = _JWS_PARAM.sub(r"\1=<redacted>", text)
    text = _LONG_B64.sub("<redacted>", text)
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def acme_error(doc: Mapping[str, Any], status: int | None, retry_after: float | None = None,
               help_url: str | None = None, *, depth: int = 0) -> c.AcmeError:
    """A problem document as an observation (RFC 8555 section 6.7, RFC 7807).

    Every field is checked: a ``type`` that is not a string is an unknown type, a
    ``subproblems`` that is not a list is ignored, an identifier value that is not
    a string is dropped.
    """
    ident = doc.get("identifier")
    value = ident.get("value") if isinstance(ident, dict) else None
    subs_raw = doc.get("subproblems")
    subs: tuple[c.AcmeError, ...] = ()
    if isinstance(subs_raw, list) and depth == 0:
        subs = tuple(acme_error(s, status, depth=1) for s in subs_raw[:MAX_SUBPROBLEMS]
                     if isinstance(s, dict))
    doc_status = doc.get("status")
    if status is None and isinstance(doc_status, int) and not isinstance(doc_status, bool) \
            and 100 <= doc_status < 600:
        status = doc_status
    kind = doc.get("type")
    return c.AcmeError(
        type=clean_text(kind, 200) if isinstance(kind, str) else "",
        detail=clean_text(doc.get("detail")),
        status=status,
        subproblems=subs,
        identifier=clean_text(value, 300) if isinstance(value, str) else None,
        retry_after=retry_after,
        help_url=clean_text(help_url, 300) if help_url else None,
    )


def error_observation(resp: Response) -> c.Observation:
    """An error response (status >= 300) as an observation: its problem document, if any."""
    doc: Any = None
    if resp.content_type in (PROBLEM_CONTENT_TYPE, "application/json"):
        try:
            doc = resp.json()
        except RequestFailed:
            doc = None
    if isinstance(doc, dict) and isinstance(doc.get("type"), str) and resp.status >= 400:
        return acme_error(doc, resp.status, resp.retry_after, resp.link("help"))
    return c.HttpError(resp.status, resp.content_type,
                       clean_text(resp.body[:300].decode("utf-8", "replace"), 300),
                       resp.retry_after,
                       location=clean_text(resp.header("Location"), 300)
                       if resp.header("Location") else None)


def _malformed(what: str, url: str, why: str, status: int | None = None) -> RequestFailed:
    return RequestFailed(c.MalformedResponse(what, f"{url}: {why}", status))


def _url(value: object, what: str, where: str) -> Url:
    """A URL inside a CA object, checked by the one parser."""
    if not isinstance(value, str):
        raise _malformed(what, where, f"{what} is not a URL string")
    try:
        return parse_url(value)
    except BadUrl as exc:
        raise _malformed(what, where, f"{what} {clean_text(value, 120)!r}: {exc}") from exc


def _status(data: Mapping[str, Any], allowed: frozenset[str], what: str, where: str) -> str:
    status = data.get("status")
    if not isinstance(status, str) or status not in allowed:
        raise _malformed(what, where, f"status {clean_text(repr(status), 60)} is not one of"
                         f" {', '.join(sorted(allowed))} (RFC 8555 section 7.1.6)")
    return status


def _error(data: Mapping[str, Any]) -> c.AcmeError | None:
    err = data.get("error")
    return acme_error(err, None) if isinstance(err, dict) else None


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Directory:
    """A checked directory (RFC 8555 section 7.1.1); ``data`` is the object as sent."""

    url: str
    new_nonce: Url
    new_account: Url
    new_order: Url
    data: Mapping[str, Any]

    @property
    def meta(self) -> Mapping[str, Any]:
        """``meta``, or empty when absent or not an object."""
        meta = self.data.get("meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def profiles(self) -> Mapping[str, str]:
        """``meta.profiles`` (draft-ietf-acme-profiles section 3): name -> description."""
        profiles = self.meta.get("profiles")
        if isinstance(profiles, dict):
            return {str(k): clean_text(v, 300) for k, v in profiles.items()}
        if isinstance(profiles, list):  # not the draft's shape, but unambiguous
            return {p: "" for p in profiles if isinstance(p, str)}
        return {}


@dataclass(frozen=True, slots=True)
class Account:
    """The account this run uses (RFC 8555 section 7.1.2)."""

    url: str
    status: str


@dataclass(frozen=True, slots=True)
class ChallengeRef:
    """One challenge object (RFC 8555 section 7.1.5) as last read."""

    type: str
    url: Url
    status: str
    token: str | None
    error: c.AcmeError | None = None


@dataclass(frozen=True, slots=True)
class Authorization:
    """One authorization (RFC 8555 section 7.1.4) as last read."""

    url: Url
    identifier_type: str
    identifier: str
    status: str
    wildcard: bool
    challenges: tuple[ChallengeRef, ...]
    error: c.AcmeError | None = None

    @property
    def domain(self) -> str:
        """The name as ordered (``*.`` for a wildcard)."""
        return f"*.{self.identifier}" if self.wildcard else self.identifier

    def failure(self) -> c.Observation:
        """Why this authorization is not valid: its challenges' or its own error.

        RFC 8555 section 7.5.1: an authorization that turned invalid carries the
        failed challenge's error; without one it is still a failed validation.
        """
        for ch in self.challenges:
            if ch.error is not None:
                return ch.error
        if self.error is not None:
            return self.error
        return c.AuthorizationInvalid(f"authorization for {self.domain} is {self.status}")


@dataclass(frozen=True, slots=True)
class Order:
    """One order (RFC 8555 section 7.1.3) as last read."""

    url: Url
    status: str
    authorizations: tuple[Url, ...]
    finalize: Url
    certificate: Url | None = None
    error: c.AcmeError | None = None


def check_directory(url: str, data: object) -> Directory:
    """A directory as RFC 8555 section 7.1.1 requires it, or a staging fault."""
    if not isinstance(data, dict):
        raise _malformed("directory", url, "not a JSON object")
    links = {}
    for name in ("newNonce", "newAccount", "newOrder"):
        if not isinstance(data.get(name), str):
            raise _malformed("directory", url, f"no {name} in the directory")
        links[name] = _url(data[name], name, url)
    return Directory(url, links["newNonce"], links["newAccount"], links["newOrder"], data)


def check_order(url: Url, data: Mapping[str, Any]) -> Order:
    """An order as RFC 8555 section 7.1.3 requires it, or a staging fault."""
    where = url.text
    status = _status(data, ORDER_STATUSES, "order", where)
    authzs = data.get("authorizations")
    if not isinstance(authzs, list) or not authzs or len(authzs) > MAX_AUTHORIZATIONS:
        raise _malformed("order", where, "authorizations is not a list of URLs")
    cert = data.get("certificate")
    return Order(
        url=url, status=status,
        authorizations=tuple(_url(a, "authorization URL", where) for a in authzs),
        finalize=_url(data.get("finalize"), "finalize URL", where),
        certificate=_url(cert, "certificate URL", where) if cert is not None else None,
        error=_error(data),
    )


def check_authorization(url: Url, data: Mapping[str, Any]) -> Authorization:
    """An authorization as RFC 8555 section 7.1.4 requires it, or a staging fault."""
    where = url.text
    ident = data.get("identifier")
    if not isinstance(ident, dict) or not isinstance(ident.get("value"), str) \
            or not isinstance(ident.get("type", "dns"), str):
        raise _malformed("authorization", where, "no identifier")
    status = _status(data, AUTHZ_STATUSES, "authorization", where)
    raw = data.get("challenges")
    if not isinstance(raw, list) or not all(isinstance(ch, dict) for ch in raw):
        raise _malformed("authorization", where, "challenges is not a list of objects")
    challenges = []
    for ch in raw:
        if not isinstance(ch.get("type"), str):
            raise _malformed("authorization", where, "a challenge without a type")
        challenges.append(check_challenge(_url(ch.get("url"), "challenge URL", where), ch))
    return Authorization(
        url=url, identifier_type=clean_text(ident.get("type", "dns"), 20),
        identifier=clean_text(ident["value"], 300), status=status,
        wildcard=data.get("wildcard") is True, challenges=tuple(challenges),
        error=_error(data))


def check_challenge(url: Url, data: Mapping[str, Any]) -> ChallengeRef:
    """A challenge as RFC 8555 section 7.1.5 requires it, or a staging fault."""
    kind = data.get("type")
    if not isinstance(kind, str):
        raise _malformed("challenge", url.text, "no type")
    status = data.get("status", "pending")
    if not isinstance(status, str) or status not in CHALLENGE_STATUSES:
        raise _malformed("challenge", url.text, f"status {clean_text(repr(status), 60)} is"
                         " not pending, processing, valid or invalid (RFC 8555 section 7.1.6)")
    token = data.get("token")
    return ChallengeRef(clean_text(kind, 40), url, status,
                        token if isinstance(token, str) else None, _error(data))


# --------------------------------------------------------------------------- the client


def _alg_for(key: JWK) -> JWASignature:
    if isinstance(key, JWKEC):
        size = key.key.curve.key_size
        return {256: ES256, 384: ES384, 521: ES512}[size]
    return RS256


@dataclass(slots=True)
class Stats:
    """What the client counted: polls and retries (the transport counts requests)."""

    polls: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class AcmeClient:
    """An ACME connection: JWS signing, nonces, retries, over the run's transport.

    Each response's ``Replay-Nonce`` is kept for the next POST of the same stream
    (thread; RFC 8555 section 6.5), so a newNonce round trip happens once per stream,
    not once per request, and a badNonce is retried on its own stream with the fresh
    nonce its error carried.  :meth:`share_nonce` hands a stream's nonce to the next
    stream that needs one (a pool), so N parallel streams cost N - 1 extra newNonce.

    Args:
        transport: The run's transport.
        key: The account key.
        deadline: The run's deadline.
        on_retry: Receives each retry record.
    """

    def __init__(self, transport: Transport, key: JWK, *, deadline: Deadline,
                 on_retry: Callable[[Retry], None]) -> None:
        self.transport = transport
        self.key = key
        self.deadline = deadline
        self.kid: str | None = None
        self.directory: Directory | None = None
        self.stats = Stats()
        self._on_retry = on_retry
        self._nonces: deque[str] = deque(maxlen=16)
        self._stream = threading.local()
        self._lock = threading.Lock()
        self._nonce_missing = False

    # -- nonces -------------------------------------------------------------------------

    def _keep_nonce(self, resp: Response, method: str) -> None:
        nonce = resp.nonce
        if nonce is not None:
            if getattr(self._stream, "nonce", None) is None:
                self._stream.nonce = nonce
                return
            with self._lock:
                self._nonces.append(nonce)
        elif method == "POST" and resp.status < 400:
            with self._lock:
                self._nonce_missing = True  # RFC 8555 section 6.5: every POST response has one

    def share_nonce(self) -> None:
        """Hand this stream's unused nonce to the pool (before other streams start)."""
        nonce = self._stream_nonce()
        if nonce is not None:
            with self._lock:
                self._nonces.append(nonce)

    def seed_nonce(self, nonce: str) -> None:
        """Start this stream with a nonce an earlier run left (a batch's run cache)."""
        self._stream.nonce = nonce

    def spare_nonces(self) -> list[str]:
        """This stream's and the pool's unused nonces, handed over (for the next run)."""
        spare = [n for n in (self._stream_nonce(),) if n is not None]
        with self._lock:
            spare += self._nonces
            self._nonces.clear()
        return spare

    def _stream_nonce(self) -> str | None:
        nonce: str | None = getattr(self._stream, "nonce", None)
        self._stream.nonce = None
        return nonce

    def _take_nonce(self, step: Step) -> str:
        nonce = self._stream_nonce()
        if nonce is not None:
            return nonce
        with self._lock:
            if self._nonces:
                return self._nonces.popleft()
            missing, self._nonce_missing = self._nonce_missing, False
        if missing:
            # The previous response carried no (usable) Replay-Nonce: a staging fault we
            # survive with one newNonce round trip.
            self._record_retry(Retry(step, "missing_replay_nonce", 1, 0.0))
        new_nonce(self)
        nonce = self._stream_nonce()
        if nonce is not None:
            return nonce
        with self._lock:
            if self._nonces:
                return self._nonces.popleft()
        raise RequestFailed(c.MalformedResponse("replay_nonce",
                                                "newNonce answered without Replay-Nonce"))

    # -- requests -----------------------------------------------------------------------

    def _record_retry(self, r: Retry) -> None:
        with self.stats.lock:
            self.stats.retries += 1
        self._on_retry(r)

    def retrying(self, step: Step, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the one retry adapter (:mod:`acmedryrun.retry`)."""
        return retry.call(fn, step=step, deadline=self.deadline, on_retry=self._record_retry)

    def head_nonce(self) -> None:
        """HEAD newNonce (RFC 8555 section 7.2) into the pool."""
        assert self.directory is not None  # noqa: S101 - the directory comes first
        resp = self.transport.request("HEAD", self.directory.new_nonce, resource=Resource.NONCE)
        if resp.status >= 400:
            raise RequestFailed(error_observation(resp))
        self._keep_nonce(resp, "HEAD")

    def post(self, url: Url, payload: Mapping[str, Any] | None, *, resource: Resource,
             step: Step, kid: bool = True, poll: bool = False) -> Response:
        """One signed POST (``payload=None``: POST-as-GET, RFC 8555 section 6.3), no retry.

        Raises:
            RequestFailed: no answer, or an error status (its problem document).
        """
        url = self.transport.check_url(url)
        nonce = self._take_nonce(step)
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = jws.JWS.sign(body, key=self.key, alg=_alg_for(self.key),
                              nonce=decode_b64jose(nonce), url=url.text,
                              kid=self.kid if kid else None)
        if poll:
            with self.stats.lock:
                self.stats.polls += 1
        resp = self.transport.request("POST", url, resource=resource,
                                      body=signed.json_dumps().encode(),
                                      content_type=JOSE_CONTENT_TYPE)
        self._keep_nonce(resp, "POST")
        if resp.status >= 300:
            raise RequestFailed(error_observation(resp))
        return resp

    def wait(self, seconds: float) -> bool:
        """Wait for the CA (charged to it); False when no time is left to wait that long."""
        if self.deadline.remaining() <= seconds:
            return False
        with self.deadline.charge(Party.CA):
            self.deadline.sleep(seconds)
        return not self.deadline.cancelled


# --------------------------------------------------------------------------- the steps


def get_directory(client: AcmeClient, url: str) -> Directory:
    """GET the directory (RFC 8555 section 7.1.1)."""

    def get() -> Directory:
        resp = client.transport.request("GET", url, resource=Resource.DIRECTORY,
                                        accept="application/json")
        if resp.status != 200:
            raise RequestFailed(error_observation(resp))
        if resp.content_type in ("text/html", "application/xhtml+xml") \
                or resp.body.lstrip()[:1] == b"<":
            # A web page where the directory should be: the wrong URL (or a portal in
            # front of it), which no retry changes.
            page = clean_text(resp.body[:120].decode("utf-8", "replace"), 120)
            raise RequestFailed(c.NotADirectory(
                f"{resp.url}: HTTP 200 with a web page ({resp.content_type or 'no type'}),"
                f" not a JSON directory: {page}"))
        data = resp.json()
        if isinstance(data, dict) and not any(k in data for k in ("newNonce", "newAccount",
                                                                 "newOrder")):
            raise RequestFailed(c.NotADirectory(
                f"{resp.url}: a JSON object without newNonce, newAccount or newOrder"))
        return check_directory(resp.url, data)

    directory = client.retrying(Step.DIRECTORY, get)
    client.directory = directory
    return directory


def new_nonce(client: AcmeClient) -> None:
    """Get a fresh nonce (RFC 8555 section 7.2); later nonces come from responses."""
    client.retrying(Step.NONCE, client.head_nonce)


def _account(client: AcmeClient, resp: Response) -> Account:
    assert client.directory is not None  # noqa: S101
    location = resp.location()
    new_account = client.directory.new_account
    if (location.scheme, location.host, location.effective_port) != (
            new_account.scheme, new_account.host, new_account.effective_port):
        raise _malformed("location", new_account.text, f"the account URL {location.text} is"
                         " not on the CA's host (RFC 8555 section 7.3)", resp.status)
    data = resp.json_object()
    status = data.get("status", "valid")
    return Account(location.text, status if isinstance(status, str) else repr(status)[:40])


def find_account(client: AcmeClient) -> Account | None:
    """Look the key's account up (RFC 8555 section 7.3.1, ``onlyReturnExisting``)."""
    assert client.directory is not None  # noqa: S101
    url = client.directory.new_account

    def post() -> Account:
        resp = client.post(url, {"onlyReturnExisting": True}, resource=Resource.ACCOUNT,
                           step=Step.ACCOUNT, kid=False)
        return _account(client, resp)

    try:
        return client.retrying(Step.ACCOUNT, post)
    except RequestFailed as exc:
        if isinstance(exc.obs, c.AcmeError) and exc.obs.short_type == "accountDoesNotExist":
            return None
        raise


def new_account(client: AcmeClient, *, email: str | None,
                eab: tuple[str, str] | None) -> Account:
    """Create (or find) the account (RFC 8555 section 7.3), agreeing to the terms."""
    assert client.directory is not None  # noqa: S101
    url = client.directory.new_account
    payload: dict[str, Any] = {"termsOfServiceAgreed": True}
    if email:
        payload["contact"] = [f"mailto:{email}"]
    if eab:
        from acme import messages  # acme.messages costs ~20 ms to import: only for EAB

        kid, hmac_key = eab
        # RFC 8555 section 7.3.4: HS256 over the account key, for the newAccount URL.
        binding: dict[str, Any] = messages.ExternalAccountBinding.from_data(
            client.key.public_key(), kid, hmac_key, messages.Directory({"newAccount": url.text}))
        payload["externalAccountBinding"] = binding

    def post() -> Account:
        resp = client.post(url, payload, resource=Resource.ACCOUNT, step=Step.ACCOUNT,
                           kid=False)
        return _account(client, resp)

    return client.retrying(Step.ACCOUNT, post)


def new_order(client: AcmeClient, identifiers: Sequence[tuple[str, str]],
              profile: str | None) -> Order:
    """POST newOrder (RFC 8555 section 7.4; ``profile``: draft-ietf-acme-profiles)."""
    assert client.directory is not None  # noqa: S101
    payload: dict[str, Any] = {
        "identifiers": [{"type": t, "value": v} for t, v in identifiers]}
    if profile:
        payload["profile"] = profile
    url = client.directory.new_order

    def post() -> Order:
        resp = client.post(url, payload, resource=Resource.ORDER, step=Step.ORDER)
        location = client.transport.check_url(resp.location())
        return check_order(location, resp.json_object())

    return client.retrying(Step.ORDER, post)


def get_order(client: AcmeClient, url: Url, *, step: Step, poll: bool = False) -> Order:
    """POST-as-GET the order."""
    return client.retrying(step, lambda: check_order(url, client.post(
        url, None, resource=Resource.ORDER, step=step, poll=poll).json_object()))


def get_authorization(client: AcmeClient, url: Url, *, step: Step = Step.AUTHORIZATION,
                      poll: bool = False) -> Authorization:
    """POST-as-GET one authorization (RFC 8555 section 7.5)."""
    return client.retrying(step, lambda: check_authorization(url, client.post(
        url, None, resource=Resource.AUTHORIZATION, step=step, poll=poll).json_object()))


def answer_challenge(client: AcmeClient, challenge: ChallengeRef) -> ChallengeRef:
    """Tell the CA to validate (RFC 8555 section 7.5.1); a lost answer is re-read first.

    Returns:
        The challenge as the CA answered: some CAs validate in the POST itself and
        answer ``valid`` or ``invalid`` there.
    """
    attempts = 0

    def answer() -> ChallengeRef:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            # The POST may have taken effect: a challenge no longer pending was answered.
            current = check_challenge(challenge.url, client.post(
                challenge.url, None, resource=Resource.CHALLENGE,
                step=Step.CHALLENGE).json_object())
            if current.status != "pending":
                return current
        return check_challenge(challenge.url, client.post(
            challenge.url, {}, resource=Resource.CHALLENGE, step=Step.CHALLENGE).json_object())

    return client.retrying(Step.CHALLENGE, answer)


def finalize(client: AcmeClient, order: Order, csr_der: bytes) -> Order:
    """POST the CSR (RFC 8555 section 7.4); a lost response is re-read, not repeated."""
    attempts = 0
    payload = {"csr": encode_b64jose(csr_der)}

    def post() -> Order:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            current = check_order(order.url, client.post(
                order.url, None, resource=Resource.ORDER, step=Step.FINALIZE).json_object())
            if current.status in ("processing", "valid", "invalid"):
                return current
        return check_order(order.url, client.post(
            order.finalize, payload, resource=Resource.ORDER,
            step=Step.FINALIZE).json_object())

    return client.retrying(Step.FINALIZE, post)


def download_certificate(client: AcmeClient, url: Url) -> bytes:
    """POST-as-GET the certificate chain (RFC 8555 section 7.4.2), as sent."""
    return client.retrying(Step.CERTIFICATE, lambda: client.post(
        url, None, resource=Resource.CERTIFICATE, step=Step.CERTIFICATE).body)


def deactivate(client: AcmeClient, url: Url, step: Step) -> Authorization:
    """Deactivate one authorization (RFC 8555 section 7.5.2); returns it as answered."""
    return client.retrying(step, lambda: check_authorization(url, client.post(
        url, {"status": "deactivated"}, resource=Resource.AUTHORIZATION,
        step=step).json_object()))


# --------------------------------------------------------------------------- challenges


def key_authorization(token: str, key: JWK) -> str:
    """``token || '.' || base64url(Thumbprint(accountKey))`` (RFC 8555 section 8.1)."""
    return f"{token}.{encode_b64jose(key.thumbprint())}"


def challenge_validation(ctype: str, key_auth: str) -> str:
    """What the CA checks for each challenge type."""
    digest = hashlib.sha256(key_auth.encode("ascii")).digest()
    if ctype == "dns-01":
        return encode_b64jose(digest)  # RFC 8555 section 8.4
    if ctype == "tls-alpn-01":
        return digest.hex()  # RFC 8737 section 3
    return key_auth  # http-01, RFC 8555 section 8.3
