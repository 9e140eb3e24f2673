"""The ``acmedryrun certbot`` command line: its parser only, cheap to import.

The command itself is :mod:`acmedryrun.certbot_cmd`, imported when it runs, so that
``acmedryrun --help`` does not pay for it.
"""

from __future__ import annotations

import argparse
from typing import Any

#: certbot's default configuration directory.
DEFAULT_CONFIG_DIR = "/etc/letsencrypt"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``acmedryrun certbot`` on the CLI's subparsers; returns its parser."""
    from acmedryrun.arguments import pace as _pace
    from acmedryrun.arguments import positive_int as _positive_int
    from acmedryrun.arguments import seconds as _seconds

    p: argparse.ArgumentParser = subparsers.add_parser(
        "certbot", help="dry-run every lineage of a certbot installation, as certbot renew"
        " would, and say whose fault each failure is")
    p.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, metavar="DIR",
                   help=f"certbot's configuration directory (default {DEFAULT_CONFIG_DIR});"
                   " only read, never written")
    p.add_argument("--cert-name", dest="cert_names", action="append", default=[],
                   metavar="NAME", help="only this lineage (repeatable)")
    p.add_argument("--directory", metavar="URL|ALIAS",
                   help="dry-run every lineage here (default: each lineage's server's"
                   " staging twin)")
    p.add_argument("--ca-bundle", metavar="FILE",
                   help="trust anchors for the ACME server's TLS (beats REQUESTS_CA_BUNDLE)")
    p.add_argument("--account-key", metavar="FILE",
                   help="the staging account every lineage shares; created (0600) if missing")
    p.add_argument("--email", metavar="ADDR", help="contact address for a new account")
    p.add_argument("--eab-kid", metavar="KID", help="external account binding key id")
    p.add_argument("--eab-hmac-key", metavar="KEY",
                   help="external account binding HMAC key (base64url)")
    p.add_argument("--dns-resolver", metavar="HOST[:PORT]",
                   help="resolver for the preflight checks (default: the system's)")
    p.add_argument("--caa-identity", dest="caa_identities", action="append", default=None,
                   metavar="NAME", help="the CA's CAA issuer domain (repeatable)")
    p.add_argument("--no-preflight", dest="preflight", action="store_false",
                   help="skip the local checks before the CA is asked")
    p.add_argument("--timeout", type=_seconds, default=300.0, metavar="SECONDS",
                   help="each lineage's deadline (default 300)")
    p.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                   help="lineages dry-run at once (default 4)")
    p.add_argument("--pace", type=_pace, default=0.0, metavar="SECONDS",
                   help="minimum seconds between run starts (default 0)")
    p.add_argument("--json", action="store_true",
                   help="the whole result as one JSON document on stdout")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="also log each HTTP exchange (secrets redacted)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return p
