"""``acmedryrun demo``: a real dry run against a local Pebble, offline, in seconds.

Scenarios show each verdict: ``success``; ``client-error`` (the name's A record
points where nothing listens, so validation fails the way a wrong DNS record
does in production); ``staging-unstable`` (a fault proxy answers every newOrder
with 503, the way an overloaded staging does).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acmedryrun.render import Output
    from acmedryrun.report import Report
    from acmedryrun.testing import LocalPebble

SCENARIOS = ("success", "client-error", "staging-unstable")


def _run_one(pebble: LocalPebble, scenario: str, out: Output) -> Report:
    import acmedryrun
    from acmedryrun.solvers import HTTP01Standalone

    solver = HTTP01Standalone(port=pebble.http_port, address="127.0.0.1")
    names = ["www.example.com", "example.com"]
    directory, ca_bundle = pebble.directory_url, pebble.ca_bundle
    timeout = 30.0
    if scenario == "client-error":
        names = ["broken.example.com"]
        pebble.add_a("broken.example.com", ["127.0.0.2"])  # nothing listens there
    out.line(f"\n== scenario {scenario}: {', '.join(names)}")
    if scenario == "staging-unstable":
        from acmedryrun.testing import FaultProxy, parse_fault

        proxy = FaultProxy(pebble.directory_url, upstream_ca_bundle=pebble.ca_bundle,
                           faults=[parse_fault("order:status:503,type=serverInternal")])
        with proxy:
            return acmedryrun.dry_run(names, directory=proxy.directory_url,
                                      ca_bundle=proxy.ca_bundle, solver=solver, timeout=4.0,
                                      dns_resolver=pebble.dns_resolver, on_event=out.on_event)
    return acmedryrun.dry_run(names, directory=directory, ca_bundle=ca_bundle, solver=solver,
                              timeout=timeout, dns_resolver=pebble.dns_resolver,
                              on_event=out.on_event)


def run_demo(args: argparse.Namespace, out: Output) -> int:
    """Start LocalPebble, run the chosen scenario(s), print the report(s).

    Returns:
        The exit code of the last scenario's verdict (``all``: 0 when each
        scenario gave the verdict it demonstrates).
    """
    from acmedryrun.testing import LocalPebble

    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    expected = {"success": 0, "client-error": 1, "staging-unstable": 2}
    out.line("acmedryrun demo: starting a local Pebble (Let's Encrypt's test CA) on loopback")
    code = 0
    with LocalPebble() as pebble:
        out.line(f"  directory {pebble.directory_url}")
        for scenario in scenarios:
            report = _run_one(pebble, scenario, out)
            out.report(report)
            if args.json:
                sys.stdout.write(report.to_json() + "\n")
                sys.stdout.flush()
            code = report.exit_code
            if args.scenario == "all" and code != expected[scenario]:
                return 1
    return 0 if args.scenario == "all" else code
