"""Tests for acmedryrun.testing._faultproxy: a real FaultProxy in front of a real Pebble.

Every fault is observed the way an ACME client observes it: real HTTPS
requests with ``requests`` (``verify=proxy.ca_bundle`` per request, since
REQUESTS_CA_BUNDLE overrides a Session's own verify), JWS-signed like
acmedryrun's flow signs them.  One Pebble serves the module; each test gets
its own proxy (cheap: a key pair and a socket).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import select
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from acme import jws
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.json_util import decode_b64jose
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

import acmedryrun
from acmedryrun.classify import TransportKind
from acmedryrun.errors import UsageError
from acmedryrun.solvers import HTTP01Standalone
from acmedryrun.testing import LocalPebble
from acmedryrun.testing._faultproxy import (
    ENDPOINTS,
    Fault,
    FaultProxy,
    ProxyConnection,
    ProxyEvent,
    parse_fault,
    run_proxy,
)
from acmedryrun.transport import _kind as transport_kind

TIMEOUT = 10.0
JOSE = {"Content-Type": "application/jose+json"}


@pytest.fixture(scope="module")
def pebble() -> Iterator[LocalPebble]:
    if not LocalPebble.is_installed() and not os.environ.get("CI"):
        pytest.skip("Debian package 'pebble' is not installed")
    with LocalPebble(nonce_reject=0) as instance:
        yield instance


@pytest.fixture
def proxy(pebble: LocalPebble) -> Iterator[FaultProxy]:
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle, seed=7) as p:
        yield p


class Client:
    """A minimal ACME client talking through the proxy (nonce bookkeeping, JWS)."""

    def __init__(self, proxy: FaultProxy, key: JWK | None = None) -> None:
        self.proxy = proxy
        self.session = requests.Session()
        self.session.trust_env = False
        self.key = key or JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.kid: str | None = None
        self.nonce: str | None = None
        self.directory: dict[str, Any] = self.get(proxy.directory_url).json()

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.get(url, verify=self.proxy.ca_bundle, **kwargs)

    def head(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.head(url, verify=self.proxy.ca_bundle, **kwargs)

    def fresh_nonce(self) -> str:
        return str(self.head(self.directory["newNonce"]).headers["Replay-Nonce"])

    def post(
        self,
        url: str,
        payload: dict[str, Any] | None,
        *,
        kid: bool = True,
        nonce: str | None = None,
        timeout: float = TIMEOUT,
    ) -> requests.Response:
        nonce = nonce or self.nonce or self.fresh_nonce()
        self.nonce = None
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = jws.JWS.sign(
            body, key=self.key, alg=ES256, nonce=decode_b64jose(nonce), url=url,
            kid=self.kid if kid else None,
        )
        resp = self.session.post(url, data=signed.json_dumps().encode(), headers=JOSE,
                                 verify=self.proxy.ca_bundle, timeout=timeout)
        self.nonce = resp.headers.get("Replay-Nonce")
        return resp

    def new_account(self) -> requests.Response:
        resp = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=False)
        assert resp.status_code in (200, 201), resp.text
        self.kid = resp.headers["Location"]
        return resp

    def new_order(self, name: str = "fp.example.com") -> requests.Response:
        return self.post(self.directory["newOrder"],
                         {"identifiers": [{"type": "dns", "value": name}]})


def _endpoints(proxy: FaultProxy, *, skip_nonce: bool = True) -> list[str]:
    return [e.endpoint for e in proxy.events if not (skip_nonce and e.endpoint == "nonce")]


def _faulted(proxy: FaultProxy) -> list[ProxyEvent]:
    return [e for e in proxy.events if e.fault is not None]


# ------------------------------------------------------------------ transparency


def test_directory_through_proxy_points_back_at_the_proxy(
    proxy: FaultProxy, pebble: LocalPebble
) -> None:
    assert proxy.directory_url == f"https://127.0.0.1:{proxy.port}/dir"
    assert proxy.url == f"https://127.0.0.1:{proxy.port}"
    resp = requests.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT)
    assert resp.status_code == 200
    urls = {k: v for k, v in resp.json().items() if isinstance(v, str) and k != "meta"}
    assert set(urls) >= {"newNonce", "newAccount", "newOrder"}
    for url in urls.values():
        assert url.startswith(proxy.url + "/"), url
    upstream_port = pebble.directory_url.split(":")[2].split("/")[0]
    assert f":{upstream_port}/" not in resp.text
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert proxy.events == [ProxyEvent("directory", "GET", "/dir", None, 200, 200)]
    assert proxy.hits("directory") == 1
    assert proxy.hits() == 1


def test_signed_requests_pass_and_every_endpoint_is_classified(proxy: FaultProxy) -> None:
    client = Client(proxy)
    client.new_account()
    order = client.new_order()
    assert order.status_code == 201, order.text
    order_url = order.headers["Location"]
    assert order_url.startswith(proxy.url)
    authz_url = order.json()["authorizations"][0]
    assert client.post(order_url, None).json()["status"] == "pending"
    authz = client.post(authz_url, None)
    assert authz.status_code == 200
    challenge_url = authz.json()["challenges"][0]["url"]
    assert client.post(challenge_url, None).status_code == 200
    assert client.post(client.kid or "", None).status_code == 200
    deactivated = client.post(authz_url, {"status": "deactivated"})
    assert deactivated.json()["status"] == "deactivated"
    assert client.get(proxy.url + "/no-such-thing").status_code == 404

    assert _endpoints(proxy) == [
        "directory", "account", "order", "order_poll", "authz", "challenge", "account",
        "deactivate", "other",
    ]
    assert proxy.hits("nonce") == 1  # every later nonce came with a response
    assert all(e.fault is None for e in proxy.events)


# ------------------------------------------------------------------ each fault kind


def test_status_fault_sends_a_problem_document_retry_after_and_a_usable_nonce(
    proxy: FaultProxy,
) -> None:
    client = Client(proxy)
    client.new_account()
    proxy.add_fault(parse_fault("order:status:503,retry_after=3,count=1"))

    failed = client.new_order()
    assert failed.status_code == 503
    assert failed.headers["Content-Type"] == "application/problem+json"
    assert failed.json() == {
        "type": "urn:ietf:params:acme:error:serverInternal",
        "detail": "acmedryrun FaultProxy injected HTTP 503",
        "status": 503,
    }
    assert failed.headers["Retry-After"] == "3"
    assert "rel=\"index\"" in failed.headers["Link"]
    nonce = failed.headers["Replay-Nonce"]
    assert nonce

    retried = client.post(client.directory["newOrder"],
                          {"identifiers": [{"type": "dns", "value": "fp.example.com"}]},
                          nonce=nonce)
    assert retried.status_code == 201, retried.text
    faulted = _faulted(proxy)
    assert len(faulted) == 1
    assert faulted[0].endpoint == "order"
    assert (faulted[0].status, faulted[0].upstream_status) == (503, None)


def test_bad_nonce_storm_is_retried_with_the_fresh_nonce(proxy: FaultProxy) -> None:
    client = Client(proxy)
    proxy.add_fault(parse_fault(
        "account:status:400,type=badNonce,count=2,detail=JWS has an invalid anti-replay nonce"
    ))
    url = client.directory["newAccount"]
    for _ in range(2):
        resp = client.post(url, {"termsOfServiceAgreed": True}, kid=False)
        assert resp.status_code == 400
        assert resp.json()["type"] == "urn:ietf:params:acme:error:badNonce"
        assert resp.json()["detail"] == "JWS has an invalid anti-replay nonce"
        assert client.nonce  # the retry uses the nonce the error carried
    resp = client.post(url, {"termsOfServiceAgreed": True}, kid=False)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("status", [502, 503, 504])
def test_html_fault_is_a_load_balancer_page(proxy: FaultProxy, status: int) -> None:
    proxy.add_fault(Fault("directory", "html", status=status, count=1))
    resp = requests.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT)
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == "text/html"
    assert resp.text.startswith("<html>")
    assert str(status) in resp.text
    assert "Replay-Nonce" not in resp.headers
    with pytest.raises(requests.exceptions.JSONDecodeError):
        resp.json()
    assert proxy.events[-1].upstream_status is None  # a load balancer answered, not the CA
    again = requests.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT)
    assert again.status_code == 200


def test_truncated_fault_cuts_the_body_in_half(proxy: FaultProxy) -> None:
    full = requests.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT).content
    proxy.add_fault(Fault("directory", "truncated"))
    resp = requests.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.content == full[: len(full) // 2]
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        resp.json()


def test_not_json_fault_answers_200_text_but_keeps_the_other_headers(
    proxy: FaultProxy,
) -> None:
    client = Client(proxy)
    client.new_account()
    proxy.add_fault(parse_fault("order:not_json"))
    resp = client.new_order()
    assert resp.status_code == 200  # Pebble said 201
    assert resp.headers["Content-Type"].startswith("text/plain")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        resp.json()
    assert resp.headers["Location"].startswith(proxy.url)
    assert resp.headers["Replay-Nonce"]
    assert proxy.events[-1].upstream_status == 201


def test_strip_nonce_fault_removes_replay_nonce_only(proxy: FaultProxy) -> None:
    client = Client(proxy)
    proxy.add_fault(parse_fault("account:strip_nonce"))
    resp = client.new_account()
    assert resp.status_code == 201
    assert "Replay-Nonce" not in resp.headers
    assert resp.headers["Location"]
    assert resp.json()["status"] == "valid"


def test_reset_fault_drops_the_connection_without_forwarding(proxy: FaultProxy) -> None:
    proxy.add_fault(parse_fault("directory:reset,count=1"))
    session = requests.Session()
    with pytest.raises(requests.ConnectionError) as info:
        session.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT)
    assert transport_kind(info.value) == TransportKind.RESET
    assert proxy.events[-1] == ProxyEvent(
        "directory", "GET", "/dir", Fault("directory", "reset", count=1), None, None
    )
    # The fault is spent; the same session reconnects.
    assert session.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT).ok


def test_reset_is_a_tcp_rst(proxy: FaultProxy) -> None:
    """Below TLS the client really gets ECONNRESET (SO_LINGER 0), not a FIN."""
    import ssl

    proxy.add_fault(Fault("*", "reset"))
    context = ssl.create_default_context(cafile=proxy.ca_bundle)
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /dir HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        plain = socket.socket(fileno=os.dup(tls.fileno()))
        plain.settimeout(TIMEOUT)
        with plain, pytest.raises(ConnectionResetError):  # noqa: PT012 - read to the RST
            while plain.recv(4096):  # TLS 1.3 session tickets may come first
                pass


def test_delay_fault_makes_a_short_client_timeout_fire(proxy: FaultProxy) -> None:
    proxy.add_fault(parse_fault("nonce:delay:1,count=1"))
    proxy.add_fault(Fault("nonce", "delay", delay=0.3, count=1))
    new_nonce = f"{proxy.url}/nonce-plz"
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.head(new_nonce, verify=proxy.ca_bundle, timeout=0.2)
    assert time.monotonic() - started < 0.9
    started = time.monotonic()
    resp = requests.head(new_nonce, verify=proxy.ca_bundle, timeout=TIMEOUT)
    assert resp.ok
    assert resp.headers["Replay-Nonce"]
    assert time.monotonic() - started >= 0.3


def test_lost_fault_takes_effect_upstream_but_the_client_gets_no_answer(
    proxy: FaultProxy,
) -> None:
    client = Client(proxy)
    proxy.add_fault(parse_fault("account:lost,count=1"))
    url = client.directory["newAccount"]
    with pytest.raises(requests.ConnectionError):
        client.post(url, {"termsOfServiceAgreed": True}, kid=False)
    lost = proxy.events[-1]
    assert (lost.endpoint, lost.status, lost.upstream_status) == ("account", None, 201)

    # The account exists now: the same key registers again with 200, not 201.
    again = client.post(url, {"termsOfServiceAgreed": True}, kid=False)
    assert again.status_code == 200, again.text
    assert again.headers["Location"].startswith(proxy.url + "/my-account/")


def test_patch_fault_makes_orders_and_authorizations_look_stuck(proxy: FaultProxy) -> None:
    client = Client(proxy)
    client.new_account()
    order = client.new_order()
    order_url, authz_url = order.headers["Location"], order.json()["authorizations"][0]
    proxy.add_fault(parse_fault("order_poll:patch,status=processing"))
    proxy.add_fault(Fault("authz", "patch", patch={"status": "valid", "note": "patched"}))

    polled = client.post(order_url, None)
    assert polled.json()["status"] == "processing"
    assert polled.json()["identifiers"] == [{"type": "dns", "value": "fp.example.com"}]
    assert int(polled.headers["Content-Length"]) == len(polled.content)
    authz = client.post(authz_url, None).json()
    assert (authz["status"], authz["note"]) == ("valid", "patched")
    assert [e.endpoint for e in _faulted(proxy)] == ["order_poll", "authz"]

    # A deactivation is its own endpoint, so the authz fault does not touch it.
    assert client.post(authz_url, {"status": "deactivated"}).json()["status"] == "deactivated"
    assert proxy.events[-1].endpoint == "deactivate"
    assert proxy.events[-1].fault is None


# ------------------------------------------------------------------ counting


def _statuses(proxy: FaultProxy, n: int) -> list[int]:
    session = requests.Session()
    return [
        session.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=TIMEOUT).status_code
        for _ in range(n)
    ]


def test_after_and_count(proxy: FaultProxy) -> None:
    proxy.add_fault(parse_fault("directory:status:503,after=1,count=2"))
    assert _statuses(proxy, 5) == [200, 503, 503, 200, 200]


def test_first_firing_fault_wins_and_star_matches_everything(proxy: FaultProxy) -> None:
    proxy.add_fault(Fault("*", "status", status=500, count=1))
    proxy.add_fault(Fault("directory", "html", status=502, count=1))
    assert _statuses(proxy, 3) == [500, 502, 200]
    assert [e.fault.kind if e.fault else None for e in proxy.events] == ["status", "html", None]


def test_probability_is_seeded_and_reproducible(pebble: LocalPebble) -> None:
    patterns = []
    for _ in range(2):
        with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle, seed=42,
                        faults=[Fault("directory", "status", status=503, probability=0.5)]) as p:
            patterns.append(_statuses(p, 24))
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {200, 503}


def test_probability_zero_never_fires_and_clear_faults_disarms(proxy: FaultProxy) -> None:
    proxy.add_fault(Fault("directory", "status", probability=0.0))
    assert _statuses(proxy, 3) == [200, 200, 200]
    proxy.add_fault(Fault("directory", "status", status=503))
    assert _statuses(proxy, 1) == [503]
    assert len(proxy.faults) == 2
    proxy.clear_faults()
    assert not proxy.faults
    assert _statuses(proxy, 1) == [200]
    proxy.clear_events()
    assert proxy.hits() == 0
    with pytest.raises(ValueError, match="unknown endpoint"):
        proxy.hits("orders")


def test_stop_is_prompt_with_an_idle_keep_alive_connection(pebble: LocalPebble) -> None:
    proxy = FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle).start()
    ca_bundle = proxy.ca_bundle
    session = requests.Session()
    assert session.get(proxy.directory_url, verify=ca_bundle, timeout=TIMEOUT).ok
    started = time.monotonic()
    proxy.stop()
    proxy.stop()
    assert time.monotonic() - started < 2
    assert not Path(ca_bundle).exists()
    assert not proxy.running


# ------------------------------------------------------------------ latency

LATENCY = 0.05  # one way: a 100 ms round trip, far above this machine's jitter
RTT = 2 * LATENCY
#: How far above the modelled delay a median may land: the proxy's own loopback
#: exchange with Pebble (a fresh TLS connection, ~2-5 ms) plus a shared machine's noise.
SLACK = 0.05


def _https(proxy: FaultProxy, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=TIMEOUT,
                                       context=context)


def _timed_get(conn: http.client.HTTPSConnection, target: str) -> float:
    """Seconds for one GET on ``conn`` (connecting first if it is new), body read."""
    started = time.perf_counter()
    conn.request("GET", target)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return time.perf_counter() - started


def _costs(proxy: FaultProxy, context: ssl.SSLContext) -> tuple[float, float]:
    """Median seconds of a first request on a new connection, and of a kept-alive one."""
    target = urllib.parse.urlsplit(proxy.directory_url).path
    first, later = [], []
    for _ in range(3):
        conn = _https(proxy, context)
        try:
            first.append(_timed_get(conn, target))
            later.extend(_timed_get(conn, target) for _ in range(3))
        finally:
            conn.close()
    return statistics.median(first), statistics.median(later)


def _tls_context(proxy: FaultProxy, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=proxy.ca_bundle)
    if maximum is not None:
        context.maximum_version = maximum
    return context


@pytest.mark.parametrize(
    ("maximum", "version", "setup_rtts"),
    [(None, "TLSv1.3", 2), (ssl.TLSVersion.TLSv1_2, "TLSv1.2", 3)],
    ids=["tls1.3", "tls1.2"],
)
def test_latency_costs_a_round_trip_per_request_and_the_handshakes_per_connection(
    pebble: LocalPebble, maximum: ssl.TLSVersion | None, version: str, setup_rtts: int
) -> None:
    """Added delay = latency-free proxy vs the same proxy 50 ms away, same client.

    A request on a kept-alive connection costs one round trip more; the first
    request on a new connection costs TCP's round trip, TLS's (one for 1.3, two
    for 1.2) and its own: 3 RTT on TLS 1.3, 4 on TLS 1.2.
    """
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle) as near:
        near_first, near_later = _costs(near, _tls_context(near, maximum))
        assert all(c.setup_delay == 0.0 for c in near.connections)
    seen: list[ProxyConnection] = []
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                    latency=LATENCY, on_connection=seen.append) as far:
        assert far.latency == LATENCY
        far_first, far_later = _costs(far, _tls_context(far, maximum))
        connections = far.connections
    added_request = far_later - near_later
    added_first = far_first - near_first
    expected_first = (setup_rtts + 1) * RTT
    print(f"{version}: request +{added_request * 1000:.1f} ms (model {RTT * 1000:.0f}),"
          f" new connection +{added_first * 1000:.1f} ms (model {expected_first * 1000:.0f});"
          f" absolute {far_later * 1000:.1f} / {far_first * 1000:.1f} ms")
    # Sleeps never return early, so each figure is at least the model ...
    assert far_later >= RTT
    assert far_first >= expected_first
    # ... and the added delay is the model, within the slack.
    assert RTT - SLACK / 2 <= added_request <= RTT + SLACK
    assert expected_first - SLACK / 2 <= added_first <= expected_first + SLACK
    # Three client connections (the directory fetch at start() is the proxy's own).
    assert seen == connections
    assert [(c.tls_version, c.resumed) for c in connections] == [(version, False)] * 3
    assert [c.setup_delay for c in connections] == pytest.approx([setup_rtts * RTT] * 3)


def test_latency_a_resumed_tls12_session_costs_one_tls_round_trip(pebble: LocalPebble) -> None:
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                    latency=LATENCY) as proxy:
        context = _tls_context(proxy, ssl.TLSVersion.TLSv1_2)
        target = urllib.parse.urlsplit(proxy.directory_url).path
        conn = _https(proxy, context)
        _timed_get(conn, target)
        session = conn.sock.session
        conn.close()
        resumed = _https(proxy, context)
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
        resumed.sock = context.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
        try:
            first = _timed_get(resumed, target)
            assert resumed.sock.session_reused
        finally:
            resumed.close()
        connections = proxy.connections
    assert [(c.tls_version, c.resumed) for c in connections] == [("TLSv1.2", False),
                                                                 ("TLSv1.2", True)]
    assert [c.setup_delay for c in connections] == pytest.approx([3 * RTT, 2 * RTT])
    assert first >= 2 * RTT  # handshake already done: the set-up wait, then one request
    assert first <= 3 * RTT + SLACK


def test_latency_applies_to_injected_faults_and_adds_to_a_delay_fault(
    pebble: LocalPebble,
) -> None:
    with FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                    latency=LATENCY,
                    faults=[parse_fault("directory:html:502,after=1,count=1"),
                            parse_fault("directory:delay:0.1,after=1,count=1")]) as proxy:
        conn = _https(proxy, _tls_context(proxy))
        target = urllib.parse.urlsplit(proxy.directory_url).path
        try:
            _timed_get(conn, target)  # warm: the connection's set-up is paid here
            started = time.perf_counter()
            conn.request("GET", target)
            response = conn.getresponse()
            response.read()
            html_s = time.perf_counter() - started
            assert response.status == 502
            delayed_s = _timed_get(conn, target)
        finally:
            conn.close()
    assert [e.fault.kind if e.fault else None for e in proxy.events] == [None, "html", "delay"]
    assert RTT <= html_s <= RTT + SLACK
    assert RTT + 0.1 <= delayed_s <= RTT + 0.1 + SLACK


def test_latency_rejects_bad_values(pebble: LocalPebble) -> None:
    for bad in (-0.1, float("inf"), float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="latency"):
            FaultProxy(pebble.directory_url, latency=bad)  # type: ignore[arg-type]
    assert FaultProxy(pebble.directory_url).latency == 0.0


def test_stop_is_prompt_during_a_latency_wait(pebble: LocalPebble) -> None:
    proxy = FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                       latency=30.0).start()
    conn = _https(proxy, _tls_context(proxy))
    conn.timeout = 60
    conn.connect()  # handshake done: the proxy now waits out the 180 s set-up
    errors: list[BaseException] = []

    def client() -> None:
        try:
            _timed_get(conn, "/dir")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    proxy.stop()
    thread.join(TIMEOUT)
    conn.close()
    assert time.monotonic() - started < 3
    assert not thread.is_alive()
    assert errors  # the client got a closed connection, not an answer
    assert proxy.connections == []  # stopped during the set-up: never served


class _PortRecorder(http.server.BaseHTTPRequestHandler):
    """An HTTP/1.1 upstream that answers a tiny directory and records each request's
    client port (one port per TCP connection), so a test sees connection reuse."""

    protocol_version = "HTTP/1.1"
    ports: list[int]
    close_after_each = False

    def do_GET(self) -> None:
        self.ports.append(self.client_address[1])
        body = json.dumps({"newNonce": "http://127.0.0.1/nonce"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # Hang up without saying "Connection: close": a kept connection goes stale.
        self.close_connection = self.close_after_each

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _recording_upstream(*, close_after_each: bool) -> Iterator[tuple[str, list[int]]]:
    ports: list[int] = []
    handler = type("Recorder", (_PortRecorder,),
                   {"ports": ports, "close_after_each": close_after_each})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dir", ports
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@pytest.mark.parametrize("close_after_each", [False, True], ids=["kept", "stale"])
def test_upstream_keepalive_keeps_one_upstream_connection_per_client_connection(
    close_after_each: bool,
) -> None:
    with _recording_upstream(close_after_each=close_after_each) as (upstream, ports):
        for keepalive in (False, True):
            ports.clear()
            with FaultProxy(upstream, upstream_keepalive=keepalive) as proxy:
                ports.clear()  # start()'s own directory fetch
                for _ in range(2):  # two client connections, three requests each
                    conn = _https(proxy, _tls_context(proxy))
                    try:
                        for _ in range(3):
                            _timed_get(conn, "/dir")
                    finally:
                        conn.close()
            assert len(ports) == 6
            distinct = len(set(ports))
            if keepalive and not close_after_each:
                assert distinct == 2  # one upstream connection per client connection
            else:  # a fresh one per request; a stale kept one is replaced, not an error
                assert distinct == 6


# ------------------------------------------------------------------ parse_fault


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("order:status:503,retry_after=1,count=2",
         Fault("order", "status", status=503, retry_after=1, count=2)),
        ("authz:html:502,count=1", Fault("authz", "html", status=502, count=1)),
        ("finalize:reset,count=1", Fault("finalize", "reset", count=1)),
        ("finalize:lost,count=1", Fault("finalize", "lost", count=1)),
        ("*:status:400,type=badNonce,probability=0.3",
         Fault("*", "status", status=400, problem_type="badNonce", probability=0.3)),
        ("authz:patch,status=pending", Fault("authz", "patch", patch={"status": "pending"})),
        ("order_poll:patch,status=processing",
         Fault("order_poll", "patch", patch={"status": "processing"})),
        ("authz:not_json", Fault("authz", "not_json")),
        ("nonce:delay,delay=5", Fault("nonce", "delay", delay=5.0)),
        ("nonce:delay:0.5", Fault("nonce", "delay", delay=0.5)),
        ("order:status", Fault("order", "status", status=500)),
        ("directory:html", Fault("directory", "html", status=502)),
        ("account:status,status=429,after=3", Fault("account", "status", status=429, after=3)),
        (" certificate : truncated , count = 1 ", Fault("certificate", "truncated", count=1)),
        ("challenge:strip_nonce", Fault("challenge", "strip_nonce")),
        ("deactivate:status:500,detail=a%2Cb,type=urn:x:y",
         Fault("deactivate", "status", status=500, detail="a,b", problem_type="urn:x:y")),
    ],
)
def test_parse_fault(spec: str, expected: Fault) -> None:
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected ENDPOINT:KIND"),
        ("order", "expected ENDPOINT:KIND"),
        ("order:", "expected ENDPOINT:KIND"),
        ("ordr:status", "unknown endpoint 'ordr'"),
        ("order:boom", "unknown kind 'boom'"),
        ("order:status:abc", "status 'abc' is not an integer"),
        ("order:status:200", "status must be an HTTP error status"),
        ("order:status:503:1", "too many"),
        ("order:reset:5", "kind 'reset' takes no ':ARG'"),
        ("order:status,count=x", "count 'x' is not an integer"),
        ("order:status,count=-1", "count must be >= 0"),
        ("order:status,after=1.5", "after '1.5' is not an integer"),
        ("order:status,probability=1.5", "probability '1.5' is outside"),
        ("order:status,probability=nan", "probability 'nan' must be a finite number"),
        ("order:status,probability=abc", "probability 'abc' is not a number"),
        ("order:status,retry_after=soon", "retry_after 'soon' is not an integer"),
        ("order:status,colour=red", "unknown key 'colour'"),
        ("order:status,count", "'count' is not key=value"),
        ("order:status,count=1,count=2", "key 'count' given twice"),
        ("order:status,", "'' is not key=value"),
        ("order:html,type=badNonce", "key 'type' applies only to kind 'status'"),
        ("order:reset,retry_after=1", "key 'retry_after' applies only to kind"),
        ("order:reset,delay=1", "key 'delay' applies only to kind 'delay'"),
        ("order:reset,status=1", "key 'status' applies only to kind"),
        ("order:delay", "kind 'delay' needs delay"),
        ("order:delay:1,delay=2", "delay given both"),
        ("order:status:503,status=500", "status given both"),
        ("order:patch", "kind 'patch' needs a non-empty patch"),
        ("order:status,type=bad-name!", "problem type 'bad-name!'"),
        ("order:delay,delay=-1", "must be a finite number >= 0"),
        ("order:status,type=", "key 'type' has an empty value"),
    ],
)
def test_parse_fault_errors_name_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_fault(spec)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"fault {spec!r}: ")


def test_fault_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="probability"):
        Fault("order", "reset", probability=2)
    with pytest.raises(ValueError, match="count"):
        Fault("order", "reset", count=True)
    with pytest.raises(ValueError, match="patch is not JSON-serializable"):
        Fault("order", "patch", patch={"status": object()})
    patch = {"status": "pending"}
    fault = Fault("authz", "patch", patch=patch)
    patch["status"] = "valid"
    assert fault.patch == {"status": "pending"}  # a private copy
    assert hash(fault) == hash(Fault("authz", "patch", patch={"status": "pending"}))
    assert Fault("order", "status", status=429).problem_urn.endswith(":rateLimited")
    assert Fault("order", "status", status=404).problem_urn.endswith(":malformed")
    assert set(ENDPOINTS) >= {"directory", "nonce", "account", "order", "order_poll", "authz",
                              "deactivate", "challenge", "finalize", "certificate", "other"}


# ------------------------------------------------------------------ run_proxy


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_proxy_rejects_a_bad_spec_before_anything_else() -> None:
    with pytest.raises(UsageError, match=r"--fault: fault 'order:explode'.*unknown kind"):
        run_proxy(f"https://127.0.0.1:{_closed_port()}/dir", ["order:explode"])


def test_run_proxy_rejects_an_unreachable_upstream() -> None:
    upstream = f"https://127.0.0.1:{_closed_port()}/dir"
    with pytest.raises(UsageError, match=re.escape(f"--upstream: {upstream}: cannot reach it")):
        run_proxy(upstream, ["order:reset"])


def test_run_proxy_rejects_an_upstream_that_is_no_acme_directory(pebble: LocalPebble) -> None:
    upstream = pebble.directory_url.replace("/dir", "/nonce-plz")
    with pytest.raises(UsageError, match="not an ACME directory"):
        run_proxy(upstream, [], upstream_ca_bundle=pebble.ca_bundle)
    with pytest.raises(UsageError, match="--upstream-ca-bundle"):
        run_proxy(pebble.directory_url, [], upstream_ca_bundle="/nonexistent/ca.pem")


def test_run_proxy_serves_until_sigterm(pebble: LocalPebble) -> None:
    code = (
        "import sys\n"
        "from acmedryrun.testing._faultproxy import run_proxy\n"
        "sys.exit(run_proxy(sys.argv[1], ['directory:html:503,count=1'],"
        " upstream_ca_bundle=sys.argv[2]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, pebble.directory_url, pebble.ca_bundle],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        assert ready, "run_proxy printed nothing within 30 s"
        line = proc.stderr.readline()
        match = re.search(r"directory (https://127\.0\.0\.1:\d+/dir) \(trust (\S+)\)", line)
        assert match, line
        url, ca_bundle = match.groups()
        assert requests.get(url, verify=ca_bundle, timeout=TIMEOUT).status_code == 503
        directory = requests.get(url, verify=ca_bundle, timeout=TIMEOUT).json()
        assert directory["newOrder"].startswith(url.removesuffix("/dir"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not Path(ca_bundle).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


# ------------------------------------------------------------------ end to end


def test_dry_run_through_a_fault_free_proxy_succeeds(
    proxy: FaultProxy, pebble: LocalPebble
) -> None:
    report = acmedryrun.dry_run(
        ["fp-e2e.example.com"],
        directory=proxy.directory_url,
        ca_bundle=proxy.ca_bundle,
        solver=HTTP01Standalone(port=pebble.http_port, address="127.0.0.1"),
        timeout=30,
        preflight=False,  # no lookups outside loopback, whatever preflight grows into
    )
    assert report.verdict == acmedryrun.Verdict.LIKELY_SUCCESS, report.to_dict()
    seen = set(_endpoints(proxy, skip_nonce=False))
    assert seen >= {"directory", "nonce", "account", "order", "authz", "challenge",
                    "finalize", "certificate"}
    assert "other" not in seen
    assert all(e.fault is None and e.status is not None for e in proxy.events)
