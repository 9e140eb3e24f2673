"""How an ACME client implements ``--dry-run`` with acmedryrun: a worked example.

``tinyacme`` is a made-up ACME client that, like many real ones, answers http-01
challenges with its own web server: the tokens it must serve sit in a dict
behind that server.  Its ``--dry-run`` hands the whole issuance to acmedryrun and
plugs in its own machinery through a custom solver, ``TinyAcmeSolver``:

1. tinyacme starts its web server as it always does (``ChallengeServer``);
2. ``acmedryrun.dry_run()`` runs the issuance against staging, retrying what is
   transient, and calls the solver to put each token in place and take it away;
3. tinyacme turns the report into its own messages and keeps acmedryrun's exit
   codes: 0 a real run is likely to work, 1 the setup is broken (a real run
   fails too), 2 staging was unwell (this says nothing about the setup; try
   later), 64 bad arguments.

Run it on the machine that serves the names::

    python examples/client_backend.py --dry-run -d www.example.com -d example.com

Against a local Pebble, as the test-suite does::

    python examples/client_backend.py --dry-run -d www.example.com \\
        --server https://127.0.0.1:14000/dir --ca-bundle pebble-ca.pem \\
        --http-port 5002 --listen 127.0.0.1 --dns-resolver 127.0.0.1:8053
"""

from __future__ import annotations

import argparse
import http.server
import sys
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, NoReturn

import acmedryrun
from acmedryrun.solvers import Challenge, ChallengeType, Solver, SolverErrorKind, SolverFailure

if TYPE_CHECKING:
    from acmedryrun.report import Event

EX_USAGE = 64  # sysexits.h, as acmedryrun's own CLI uses it

#: tinyacme's exit code for each verdict: the same numbers as ``acmedryrun check``,
#: so a deployment script can treat both tools alike.
EXIT_CODES = {
    acmedryrun.Verdict.LIKELY_SUCCESS: 0,
    acmedryrun.Verdict.CLIENT_ERROR: 1,
    acmedryrun.Verdict.STAGING_UNSTABLE: 2,
}

#: What tinyacme tells its user for each verdict.
MESSAGES = {
    acmedryrun.Verdict.LIKELY_SUCCESS:
        "The dry run was successful: a real run for these names is likely to succeed.",
    acmedryrun.Verdict.CLIENT_ERROR:
        "The dry run failed because of your setup; a real run would fail the same way.",
    acmedryrun.Verdict.STAGING_UNSTABLE:
        "Let's Encrypt's staging environment misbehaved, so the dry run could not tell"
        " whether your setup works.  Nothing to fix on your side: try again later.",
}

WELL_KNOWN = "/.well-known/acme-challenge/"  # RFC 8555 section 8.3


# ------------------------------------------------------------------ tinyacme's own machinery


class ChallengeServer:
    """tinyacme's web server: serves ``/.well-known/acme-challenge/TOKEN`` from a dict.

    It stands for whatever a real client already has (an embedded web server,
    the reverse proxy it manages); acmedryrun never sees it, only the solver does.
    """

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self._responses: dict[str, bytes] = {}
        self._httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._httpd is not None

    def publish(self, token: str, key_authorization: str) -> None:
        """Serve ``key_authorization`` at the token's URL."""
        self._responses[token] = key_authorization.encode("ascii")

    def withdraw(self, token: str) -> None:
        """Stop serving the token."""
        self._responses.pop(token, None)

    def start(self) -> None:
        """Listen in a background thread.

        Raises:
            OSError: the address cannot be bound (port in use, no permission).
        """
        responses = self._responses

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = responses.get(self.path.removeprefix(WELL_KNOWN)) \
                    if self.path.startswith(WELL_KNOWN) else None
                if body is None:
                    self.send_error(404)
                    return
                print(f"tinyacme: served the challenge for {self.headers.get('Host')}",
                      file=sys.stderr)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: tinyacme prints what matters itself."""

        self._httpd = http.server.ThreadingHTTPServer((self.address, self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> ChallengeServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# ------------------------------------------------------------------ the plug: a custom solver


class TinyAcmeSolver(Solver):
    """Answers http-01 through tinyacme's own ``ChallengeServer``.

    acmedryrun calls ``perform`` for each challenge once the order is known, and
    ``cleanup`` for each one afterwards, also when the run failed.  Raising
    ``SolverFailure`` tells acmedryrun the subscriber's setup is at fault.
    """

    challenge_type: ClassVar[ChallengeType] = "http-01"  # a typo is caught by mypy
    supports_ip: ClassVar[bool] = True  # RFC 8738: http-01 can validate IP addresses

    def __init__(self, server: ChallengeServer) -> None:
        self.server = server

    def describe(self) -> str:
        return f"http-01 via tinyacme's web server on {self.server.address or '*'}" \
               f":{self.server.port}"

    def perform(self, challenge: Challenge) -> None:
        if not self.server.running:
            raise SolverFailure(SolverErrorKind.OTHER, "tinyacme's web server is not running")
        self.server.publish(challenge.token, challenge.key_authorization)

    def cleanup(self, challenge: Challenge) -> None:
        self.server.withdraw(challenge.token)


# ------------------------------------------------------------------ the --dry-run command


def dry_run(args: argparse.Namespace) -> int:
    """tinyacme's ``--dry-run``: acmedryrun does the issuance, tinyacme does the talking."""
    try:
        server = ChallengeServer(args.listen, args.http_port)
        server.start()
    except OSError as exc:
        print(f"tinyacme: cannot listen on port {args.http_port}: {exc.strerror}",
              file=sys.stderr)
        return EX_USAGE
    try:
        report = acmedryrun.dry_run(
            args.domains,
            directory=args.server,
            solver=TinyAcmeSolver(server),
            ca_bundle=args.ca_bundle,
            dns_resolver=args.dns_resolver,
            timeout=args.timeout,
            on_event=show_progress,
        )
    except acmedryrun.UsageError as exc:  # bad arguments; nothing was sent
        print(f"tinyacme: {exc}", file=sys.stderr)
        return EX_USAGE
    finally:
        server.stop()

    print(MESSAGES[report.verdict])
    for problem in report.problems:
        if problem.severity.decisive:
            where = f" for {problem.identifier}" if problem.identifier else ""
            print(f"  - {problem.name}{where}: {problem.detail}")
            if problem.cause is acmedryrun.Cause.CLIENT and problem.hint:
                print(f"    what to do: {problem.hint}")
        else:
            print(f"  note: {problem.name}: {problem.hint or problem.detail}")
    return EXIT_CODES[report.verdict]


def show_progress(event: Event) -> None:
    """acmedryrun's progress callback, printed in tinyacme's voice."""
    if event.kind == "step_end" and event.status is not None:
        print(f"tinyacme: {event.step.value}: {event.status.value}", file=sys.stderr)
    elif event.kind == "retry" and event.retry is not None:
        print(f"tinyacme: {event.step.value}: staging hiccup ({event.retry.reason}),"
              f" retrying in {event.retry.wait_s:.1f} s", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments, which would read as "staging unstable": use 64."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """tinyacme's command line; returns the exit code."""
    parser = _Parser(prog="tinyacme", description="A tiny ACME client (example).")
    parser.add_argument("-d", "--domain", dest="domains", action="append", required=True,
                        metavar="NAME", help="a name for the certificate; repeatable")
    parser.add_argument("--dry-run", action="store_true",
                        help="test against staging; nothing is issued or saved")
    parser.add_argument("--server", default=acmedryrun.LETSENCRYPT_STAGING, metavar="URL",
                        help="ACME directory for the dry run (default: Let's Encrypt staging)")
    parser.add_argument("--ca-bundle", metavar="FILE", help="trust anchors for the CA's TLS")
    parser.add_argument("--http-port", type=_port, default=80, metavar="N",
                        help="port tinyacme's web server answers http-01 on (default 80)")
    parser.add_argument("--listen", default="", metavar="ADDR",
                        help="address it binds (default: all)")
    parser.add_argument("--dns-resolver", metavar="HOST[:PORT]",
                        help="resolver for the dry run's DNS checks (default: the system's)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="give up after this long (default 300)")
    args = parser.parse_args(argv)
    if not args.dry_run:
        print("tinyacme: this example implements only --dry-run", file=sys.stderr)
        return EX_USAGE
    return dry_run(args)


if __name__ == "__main__":
    sys.exit(main())
