"""Run every (mutation, endpoint) of the catalogue once and print what broke.

The exhaustive companion of ``tests/test_hostile_property.py`` (which samples the
same space with hypothesis): one real Pebble, one hostile proxy per case, the
same invariants.  Output: one line per case on stdout (``ok`` / ``FAIL`` / ``n/a``
when the mutation found nothing to change), and with ``--json FILE`` one JSON
object per case.  Everything stays on loopback (:mod:`hostile.netguard`).

Usage (from the repository root)::

    PYTHONPATH=tests .venv/bin/python -m hostile.survey [--kind sizes ...]
        [--match SUBSTRING] [--timeout 2] [--json survey.jsonl]

The whole catalogue (461 cases) takes about 8 minutes on two cores with ``--timeout 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from acmedryrun.testing import LocalPebble
from hostile.invariants import DEFAULT_TIMEOUT, run_case
from hostile.mutations import KINDS, pairs
from hostile.proxy import TlsMaterial


def main(argv: Sequence[str] | None = None) -> int:
    """Run the survey; exit 0 when every case held, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m hostile.survey", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", action="append", choices=KINDS, help="only this class")
    parser.add_argument("--match", help="only mutations or endpoints containing this")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--json", help="write one JSON object per case to this file")
    args = parser.parse_args(argv)
    # The suite's rule: DNS from tests goes to a local server, never the system's.
    # always_valid: see the test modules' ``upstream`` fixture (a Pebble 2.4.0 deadlock).
    os.environ.setdefault("ACMEDRYRUN_DNS_RESOLVER", "127.0.0.1:9")
    cases = [(m, e) for m, e in pairs(args.kind or KINDS)
             if not args.match or args.match in f"{m.name}@{e}"]
    failed = 0
    started = time.monotonic()
    out = open(args.json, "w") if args.json else None  # noqa: SIM115 - closed below
    try:
        with LocalPebble(always_valid=True) as pebble, TlsMaterial() as tls:
            for index, (mutation, endpoint) in enumerate(cases, 1):
                outcome = run_case(pebble, mutation, endpoint, timeout=args.timeout, tls=tls)
                state = ("FAIL" if outcome.violations
                         else "n/a " if not outcome.proxy.fired else "ok  ")
                failed += bool(outcome.violations)
                print(f"[{index}/{len(cases)}] {state} {outcome.summary()}", flush=True)
                for violation in outcome.violations:
                    print(f"        - {violation}", flush=True)
                if out is not None:
                    out.write(json.dumps({
                        "mutation": mutation.name, "kind": mutation.kind,
                        "endpoint": endpoint, "fired": outcome.proxy.fired,
                        "summary": outcome.summary(), "wall": round(outcome.wall, 2),
                        "violations": list(outcome.violations),
                        "exception": (type(outcome.result).__name__
                                      if outcome.report is None else None),
                        "verdict": (outcome.report.verdict.value
                                    if outcome.report is not None else None),
                        "traceback_tail": (outcome.traceback or "").strip().splitlines()[-3:],
                    }) + "\n")
                    out.flush()
    finally:
        if out is not None:
            out.close()
    print(f"{failed} of {len(cases)} cases violated an invariant "
          f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
