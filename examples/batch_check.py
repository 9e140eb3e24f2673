"""Check many customers' names against staging at once, as a hosting provider would.

    python examples/batch_check.py names.txt

``names.txt`` holds one certificate per line (its names separated by spaces or
commas, ``#`` comments allowed).  Runs share one account and one http-01 responder,
ten at a time; the summary says which customers would fail in production (their
setup: tell them) and which only met a flaky staging (retry later).  The same
environment variables as ``dry_run_basic.py`` configure the CA and the responder.

Exit codes: 0 every certificate is likely fine; 1 some customer's setup is at fault;
2 only staging trouble; 64 bad input.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import acmedryrun
from acmedryrun.batch import BatchJob, dry_run_many, parse_batch
from acmedryrun.solvers import HTTP01Standalone


def main(path: str) -> int:
    """Dry-run every certificate listed in ``path``; return the exit code."""
    env = os.environ.get
    try:
        with open(path, encoding="utf-8") as f:
            jobs, errors = parse_batch(f)
    except OSError as exc:
        print(f"error: {path}: {exc.strerror}", file=sys.stderr)
        return 64
    for err in errors:
        print(f"{path}:{err.line}: skipped: {err.reason}", file=sys.stderr)

    def show(job: BatchJob, report: acmedryrun.Report) -> None:
        first = next((p for p in report.problems if p.severity.decisive), None)
        why = f" - {first.name}: {first.hint}" if first else ""
        print(f"{' '.join(job.identifiers)}: {report.verdict.value}{why}", flush=True)

    try:
        results = dry_run_many(
            jobs,
            directory=env("ACMEDRYRUN_DIRECTORY", acmedryrun.LETSENCRYPT_STAGING),
            ca_bundle=env("ACMEDRYRUN_CA_BUNDLE"),
            solver=HTTP01Standalone(port=int(env("ACMEDRYRUN_HTTP_PORT", "80")),
                                    address=env("ACMEDRYRUN_HTTP_ADDRESS", "")),
            dns_resolver=env("ACMEDRYRUN_DNS_RESOLVER"),
            concurrency=10,
            timeout=120,
            on_report=show,
        )
    except acmedryrun.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 64

    counts = Counter(report.verdict for _, report in results)
    print(f"\n{len(results)} checked: {counts[acmedryrun.Verdict.LIKELY_SUCCESS]} fine,"
          f" {counts[acmedryrun.Verdict.CLIENT_ERROR]} to fix on the customer's side,"
          f" {counts[acmedryrun.Verdict.STAGING_UNSTABLE]} to retry (staging trouble)")
    if counts[acmedryrun.Verdict.CLIENT_ERROR] or errors:
        return 1
    return 2 if counts[acmedryrun.Verdict.STAGING_UNSTABLE] else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: batch_check.py NAMES_FILE", file=sys.stderr)
        sys.exit(64)
    sys.exit(main(sys.argv[1]))
