"""The smallest useful dry run: run it, print the verdict and the problems, exit 0/1/2.

    python examples/dry_run_basic.py www.example.com example.com

Run it on the machine that serves those names: the built-in http-01 responder
listens on port 80, where the CA connects.  Settings come from the environment,
so the same script runs against Let's Encrypt staging and against a local
Pebble in CI:

    ACMEDRYRUN_DIRECTORY     directory URL or alias (default: letsencrypt-staging)
    ACMEDRYRUN_CA_BUNDLE     trust anchors for the CA's TLS (default: the system's)
    ACMEDRYRUN_HTTP_PORT     port of the http-01 responder (default: 80)
    ACMEDRYRUN_HTTP_ADDRESS  address it binds (default: all)
    ACMEDRYRUN_DNS_RESOLVER  host[:port] for the preflight checks (default: the system's)

Exit codes are the CLI's: 0 likely_success, 1 client_error, 2 staging_unstable,
64 bad arguments.
"""

from __future__ import annotations

import os
import sys

import acmedryrun
from acmedryrun.solvers import HTTP01Standalone


def main(names: list[str]) -> int:
    """Dry-run ``names`` against the configured directory; return the exit code."""
    env = os.environ.get
    try:
        report = acmedryrun.dry_run(
            names,
            directory=env("ACMEDRYRUN_DIRECTORY", acmedryrun.LETSENCRYPT_STAGING),
            ca_bundle=env("ACMEDRYRUN_CA_BUNDLE"),
            solver=HTTP01Standalone(port=int(env("ACMEDRYRUN_HTTP_PORT", "80")),
                                    address=env("ACMEDRYRUN_HTTP_ADDRESS", "")),
            dns_resolver=env("ACMEDRYRUN_DNS_RESOLVER"),
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
    sys.exit(main(sys.argv[1:] or ["www.example.com"]))
