"""Set and clear TXT records in a chaos run's DNS, for a client's dns-01 hooks.

Pebble resolves through pebble-challtestsrv, which answers TXT queries with
whatever its management API was told.  ``acmedryrun chaos`` hands the client an
executable, ``{dns_hook}``, that runs this module against the run's own
challtestsrv; its management URL is ``{dns_api}`` and ``$ACMEDRYRUN_CHAOS_DNS_API``.
Three calling conventions, so existing hook setups work unchanged::

    {dns_hook} set-txt _acme-challenge.example.com VALUE     # plain
    {dns_hook} clear-txt _acme-challenge.example.com
    {dns_hook} present _acme-challenge.example.com. VALUE    # lego's exec provider
    {dns_hook} cleanup _acme-challenge.example.com. VALUE    # (EXEC_PATH={dns_hook})
    {dns_hook} auth                                          # certbot manual hooks:
    {dns_hook} cleanup                                       # CERTBOT_DOMAIN, CERTBOT_VALIDATION

(``python -m acmedryrun.chaos.dns --api URL ...`` is the same without the
executable.)  Exit 0 on success, 1 when challtestsrv refused or was not
reachable, 64 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

__all__ = ["API_ENV_VAR", "clear_txt", "main", "set_txt"]

API_ENV_VAR = "ACMEDRYRUN_CHAOS_DNS_API"
_TIMEOUT_S = 10.0


def _post(api: str, endpoint: str, payload: dict[str, str]) -> None:
    """POST one management call; raise OSError unless challtestsrv answers 2xx."""
    split = urllib.parse.urlsplit(api)
    if split.scheme != "http" or split.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"{api} is not challtestsrv's loopback http:// management URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        f"{api.rstrip('/')}/{endpoint}", data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    # A handler without proxies: the loopback API must never go through one.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=_TIMEOUT_S) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        raise OSError(f"challtestsrv answered HTTP {exc.code} to {endpoint}") from None


def _fqdn(host: str) -> str:
    """The name challtestsrv keys TXT records on: lower case with the trailing dot."""
    host = host.strip().lower()
    if not host or host == ".":
        raise ValueError("empty DNS name")
    return host if host.endswith(".") else host + "."


def set_txt(api: str, host: str, value: str) -> None:
    """Add TXT ``value`` at ``host`` (repeated calls add values, for wildcard + base)."""
    _post(api, "set-txt", {"host": _fqdn(host), "value": value})


def clear_txt(api: str, host: str) -> None:
    """Remove every TXT value at ``host``."""
    _post(api, "clear-txt", {"host": _fqdn(host)})


def _challenge_name(domain: str) -> str:
    """``_acme-challenge.<domain>``, a wildcard's ``*.`` dropped (RFC 8555 section 8.4)."""
    domain = domain.strip()
    if domain.startswith("*."):
        domain = domain[2:]
    return f"_acme-challenge.{domain}"


def main(argv: Sequence[str] | None = None) -> int:
    """The helper's command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m acmedryrun.chaos.dns",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--api", default=os.environ.get(API_ENV_VAR),
                        help=f"challtestsrv's management URL (default ${API_ENV_VAR})")
    parser.add_argument("action", choices=("set-txt", "clear-txt", "present", "cleanup", "auth"))
    parser.add_argument("args", nargs="*", metavar="ARG")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    if not args.api:
        print(f"acmedryrun.chaos.dns: no --api and no ${API_ENV_VAR}", file=sys.stderr)
        return 64
    action, rest = args.action, list(args.args)
    try:
        if action in ("set-txt", "present") and len(rest) == 2:
            set_txt(args.api, rest[0], rest[1])
        elif (action, len(rest)) in (("clear-txt", 1), ("cleanup", 2)):
            clear_txt(args.api, rest[0])
        elif action in ("auth", "cleanup") and not rest:
            domain = os.environ.get("CERTBOT_DOMAIN")
            validation = os.environ.get("CERTBOT_VALIDATION")
            if not domain or (action == "auth" and not validation):
                print(f"acmedryrun.chaos.dns: {action} needs CERTBOT_DOMAIN and"
                      " CERTBOT_VALIDATION in the environment", file=sys.stderr)
                return 64
            if action == "auth":
                set_txt(args.api, _challenge_name(domain), validation or "")
            else:
                clear_txt(args.api, _challenge_name(domain))
        else:
            print(f"acmedryrun.chaos.dns: {action}: wrong number of arguments ({len(rest)})",
                  file=sys.stderr)
            return 64
    except ValueError as exc:
        print(f"acmedryrun.chaos.dns: {exc}", file=sys.stderr)
        return 64
    except OSError as exc:
        print(f"acmedryrun.chaos.dns: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
