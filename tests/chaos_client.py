"""A tiny ACME client whose behaviour under every fault is known: the scorecard's control.

RFC 8555 straight through (directory, newNonce, newAccount, newOrder, one
http-01 authorization, finalize, certificate) with ``requests`` and ES256 JWS,
and no resilience at all: the first answer that is no use (HTTP >= 400, a
reset, a body that is not JSON, a missing Replay-Nonce) ends the run; an
authorization or order is polled at most ``--max-polls`` times.  ``--mode``
picks how it ends:

* ``never-retry`` (default): prints the reason, exit 1;
* ``crash``: raises, so Python prints a traceback (exit 1);
* ``abort``: ``os.abort()``, killed by SIGABRT;
* ``hang``: after the directory, ignores SIGTERM, starts a grandchild that
  ignores it too (both PIDs appended to ``--pidfile``, the responder's port in
  ``PIDFILE.port``) and sleeps for ever;
* ``exit0``: exit 0 right after the directory, with no certificate;
* ``issue-twice``: the whole issuance twice (two orders, two certificates);
* ``hammer``: a refused newOrder is sent again at once, up to 8 times.

Usage: ``python chaos_client.py DIRECTORY NAME HTTP_PORT [--mode M] ...``; trusts
``$REQUESTS_CA_BUNDLE`` (which ``acmedryrun chaos`` points at the proxy's CA).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

POLL_INTERVAL_S = 0.3


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Failed(Exception):
    """An answer that was no use."""


class Client:
    def __init__(self, directory: str, mode: str) -> None:
        self.mode = mode
        self.session = requests.Session()
        self.session.trust_env = False
        self.verify = os.environ["REQUESTS_CA_BUNDLE"]
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"crv": "P-256", "kty": "EC", "x": b64(numbers.x.to_bytes(32, "big")),
                    "y": b64(numbers.y.to_bytes(32, "big"))}
        thumb = json.dumps(self.jwk, sort_keys=True, separators=(",", ":")).encode()
        self.thumbprint = b64(hashlib.sha256(thumb).digest())
        self.kid: str | None = None
        self.nonce: str | None = None
        self.directory = self.get(directory)

    def _check(self, resp: requests.Response) -> requests.Response:
        if resp.status_code >= 400:
            raise Failed(f"HTTP {resp.status_code} from {resp.url}: {resp.text[:120]!r}")
        self.nonce = resp.headers.get("Replay-Nonce")
        return resp

    def get(self, url: str) -> Any:
        try:
            resp = self._check(self.session.get(url, verify=self.verify, timeout=10))
            return resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise Failed(f"GET {url}: {exc}") from exc

    def post(self, url: str, payload: Any | None) -> requests.Response:
        if self.nonce is None:
            try:
                self._check(self.session.head(self.directory["newNonce"], verify=self.verify,
                                              timeout=10))
            except requests.RequestException as exc:
                raise Failed(f"newNonce: {exc}") from exc
        if self.nonce is None:
            raise Failed("no Replay-Nonce from newNonce")
        protected: dict[str, Any] = {"alg": "ES256", "nonce": self.nonce, "url": url}
        if self.kid:
            protected["kid"] = self.kid
        else:
            protected["jwk"] = self.jwk
        body = "" if payload is None else b64(json.dumps(payload).encode())
        head = b64(json.dumps(protected).encode())
        der = self.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        jws = {"protected": head, "payload": body,
               "signature": b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))}
        self.nonce = None
        try:
            resp = self.session.post(url, json=jws, verify=self.verify, timeout=10,
                                     headers={"Content-Type": "application/jose+json"})
        except requests.RequestException as exc:
            raise Failed(f"POST {url}: {exc}") from exc
        self._check(resp)
        if "Replay-Nonce" not in resp.headers:
            raise Failed(f"POST {url}: no Replay-Nonce in the answer")
        return resp

    def post_json(self, url: str, payload: Any | None) -> tuple[Any, requests.Response]:
        resp = self.post(url, payload)
        try:
            return resp.json(), resp
        except ValueError as exc:
            raise Failed(f"POST {url}: not JSON: {exc}") from exc

    def poll(self, url: str, want: str, max_polls: int) -> Any:
        for _ in range(max_polls):
            time.sleep(POLL_INTERVAL_S)
            obj, _ = self.post_json(url, None)
            if obj.get("status") == want:
                return obj
            if obj.get("status") == "invalid":
                raise Failed(f"{url} is invalid: {obj.get('error')}")
        raise Failed(f"{url} still not {want} after {max_polls} polls")


def serve_http01(port: int, answers: dict[str, str]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            token = self.path.rsplit("/", 1)[-1]
            body = answers.get(token, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def issue(client: Client, name: str, answers: dict[str, str], max_polls: int) -> str:
    if client.kid is None:
        _, resp = client.post_json(client.directory["newAccount"],
                                   {"termsOfServiceAgreed": True})
        client.kid = resp.headers["Location"]
    attempts = 9 if client.mode == "hammer" else 1
    for attempt in range(attempts):
        try:
            order, resp = client.post_json(client.directory["newOrder"],
                                           {"identifiers": [{"type": "dns", "value": name}]})
            break
        except Failed:
            if attempt == attempts - 1:
                raise
    order_url = resp.headers["Location"]
    for authz_url in order["authorizations"]:
        authz, _ = client.post_json(authz_url, None)
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        answers[challenge["token"]] = f"{challenge['token']}.{client.thumbprint}"
        client.post_json(challenge["url"], {})
        client.poll(authz_url, "valid", max_polls)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()))
    client.post_json(order["finalize"],
                     {"csr": b64(csr.public_bytes(serialization.Encoding.DER))})
    order = client.poll(order_url, "valid", max_polls)
    pem = client.post(order["certificate"], None).text
    if "BEGIN CERTIFICATE" not in pem:
        raise Failed("the certificate is not PEM")
    return pem


def hang(pidfile: str | None, port: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, time\n"
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                              "time.sleep(3600)\n"])
    if pidfile:
        with open(pidfile, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n{child.pid}\n")
        with open(pidfile + ".port", "w", encoding="utf-8") as f:
            f.write(f"{port}\n")  # the http-01 responder listens there until the kill
    time.sleep(3600)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("name")
    parser.add_argument("http_port", type=int)
    parser.add_argument("--mode", default="never-retry",
                        choices=("never-retry", "crash", "abort", "hang", "exit0",
                                 "issue-twice", "hammer"))
    parser.add_argument("--max-polls", type=int, default=2)
    parser.add_argument("--pidfile")
    args = parser.parse_args()
    answers: dict[str, str] = {}
    server = serve_http01(args.http_port, answers)
    try:
        client = Client(args.directory, args.mode)
        if args.mode == "hang":
            hang(args.pidfile, args.http_port)
        if args.mode == "exit0":
            return 0
        issue(client, args.name, answers, args.max_polls)
        if args.mode == "issue-twice":
            issue(client, args.name, answers, args.max_polls)
    except Failed as exc:
        if args.mode == "crash":
            raise RuntimeError(f"chaos_client crashed: {exc}") from None
        if args.mode == "abort":
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
            os.abort()
        print(f"chaos_client: {exc}", file=sys.stderr)
        return 1
    finally:
        server.shutdown()
    print("chaos_client: certificate issued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
