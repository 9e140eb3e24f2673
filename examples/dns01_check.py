"""dns-01 with your own DNS: a custom solver in Python, or your certbot hook scripts.

    python examples/dns01_check.py '*.example.com' example.com
    python examples/dns01_check.py --hooks '*.example.com' example.com

dns-01 (RFC 8555 section 8.4) is the only challenge that validates a wildcard, and
the only one that needs no server reachable from the CA: the CA looks up a TXT
record at ``_acme-challenge.<name>``.  acmedryrun publishes it two ways:

- **in Python** (the default here): :class:`~acmedryrun.solvers.DNS01Callback`
  calls two functions, ``set_txt(record_name, value)`` and ``clear_txt(record_name,
  value)``.  :class:`DnsApi` below is such a pair for a DNS provider's HTTP API;
  an ACME client puts its own provider code there.
- **with hook commands** (``--hooks``): :class:`~acmedryrun.solvers.DNS01Hook` runs
  the scripts you wrote for ``certbot --manual --preferred-challenges dns``, with
  certbot's environment (``CERTBOT_DOMAIN``, ``CERTBOT_VALIDATION``, ...; cleanup
  also gets ``CERTBOT_AUTH_OUTPUT``); ``examples/dns01_hook.sh`` is one.  The CLI
  does the same: ``acmedryrun check --dns-01-auth-hook CMD --dns-01-cleanup-hook CMD``.

Either way acmedryrun waits until every record is visible at
``DNS_PROPAGATION_RESOLVER`` before it asks the CA to look (a CA that looks too
early fails the challenge although the setup is right), and removes the records
again afterwards, also after a failure.

Environment:

    ACMEDRYRUN_DIRECTORY      directory URL or alias (default: letsencrypt-staging)
    ACMEDRYRUN_CA_BUNDLE      trust anchors for the CA's TLS (default: the system's)
    ACMEDRYRUN_DNS_RESOLVER   host[:port] for the preflight checks (default: the system's)
    DNS_API_URL               the DNS API: POST /set-txt {"host", "value"} and
                              /clear-txt {"host"} (pebble-challtestsrv's management
                              API speaks exactly this; replace DnsApi for yours)
    DNS_PROPAGATION_RESOLVER  host[:port] of an authoritative server of the zone to poll
                              (default: ACMEDRYRUN_DNS_RESOLVER; none: no wait)

Exit codes are the CLI's: 0 likely_success, 1 client_error, 2 staging_unstable,
64 bad arguments.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import urllib.request
from pathlib import Path

import acmedryrun
from acmedryrun.solvers import DNS01Callback, DNS01Hook, Solver

HOOK = Path(__file__).resolve().parent / "dns01_hook.sh"


class DnsApi:
    """A DNS provider's API, driven in-process: the two callables DNS01Callback needs."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise acmedryrun.UsageError(f"DNS_API_URL: {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")

    def _post(self, endpoint: str, payload: dict[str, str]) -> None:
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            f"{self.url}/{endpoint}", data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - as above
            response.read()

    def set_txt(self, record_name: str, value: str) -> None:
        """Add ``value`` at ``record_name`` (a wildcard and its base name share one name,
        so this must add, not replace)."""
        print(f"dns01: set TXT {record_name} {value}", file=sys.stderr, flush=True)
        self._post("set-txt", {"host": f"{record_name}.", "value": value})

    def clear_txt(self, record_name: str, value: str) -> None:
        """Remove the record again (challtestsrv removes every value of the name)."""
        print(f"dns01: clear TXT {record_name}", file=sys.stderr, flush=True)
        self._post("clear-txt", {"host": f"{record_name}."})


def solver(hooks: bool) -> Solver:
    """The dns-01 solver: DNS01Callback over :class:`DnsApi`, or DNS01Hook over the script."""
    env = os.environ.get
    api_url = env("DNS_API_URL")
    if not api_url:
        raise acmedryrun.UsageError("DNS_API_URL is not set (the DNS API to publish TXT with)")
    resolver = env("DNS_PROPAGATION_RESOLVER", env("ACMEDRYRUN_DNS_RESOLVER")) or None
    if hooks:
        # The hook scripts find the API in their environment, which they inherit.
        return DNS01Hook(f"{shlex.quote(str(HOOK))} auth", f"{shlex.quote(str(HOOK))} cleanup",
                         timeout=60, propagation_resolver=resolver, propagation_timeout=30)
    api = DnsApi(api_url)
    return DNS01Callback(api.set_txt, api.clear_txt, propagation_resolver=resolver,
                         propagation_timeout=30)


def main(argv: list[str]) -> int:
    """Dry-run the names in ``argv`` over dns-01; return the exit code."""
    hooks = "--hooks" in argv
    names = [a for a in argv if a != "--hooks"]
    env = os.environ.get
    try:
        report = acmedryrun.dry_run(
            names or ["example.com"],
            directory=env("ACMEDRYRUN_DIRECTORY", acmedryrun.LETSENCRYPT_STAGING),
            ca_bundle=env("ACMEDRYRUN_CA_BUNDLE"),
            solver=solver(hooks),
            dns_resolver=env("ACMEDRYRUN_DNS_RESOLVER"),
            timeout=120,
        )
    except acmedryrun.UsageError as exc:  # bad arguments, raised before any request
        print(f"error: {exc}", file=sys.stderr)
        return 64

    prod = {True: "yes", False: "no", None: "cannot tell"}[report.prod_likely_to_succeed]
    print(f"verdict: {report.verdict.value} (production likely to succeed: {prod})")
    for problem in report.problems:
        print(f"  {problem.severity.value} {problem.name} ({problem.cause.value}'s fault):"
              f" {problem.detail}")
        if problem.hint:
            print(f"    hint: {problem.hint}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
