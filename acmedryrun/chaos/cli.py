"""``acmedryrun chaos``: the subcommand's options and its body.

Exposed as `add_parser` (registers ``chaos`` on the main parser's
subparsers) and `run` (returns the exit code), so the main CLI only wires
them in.  Exit codes: 0 every scenario passed, 1 some did not, 64 bad input
(one line naming it, before anything starts, nothing written), 69 Pebble or
the client's program is missing, 130 interrupted.

Nothing heavy is imported until `run`: ``acmedryrun --help`` stays quick.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from typing import TYPE_CHECKING, Any, TextIO

from acmedryrun.errors import UsageError

if TYPE_CHECKING:
    from acmedryrun.chaos.catalog import Scenario

__all__ = ["EX_UNAVAILABLE", "add_parser", "run"]

EX_UNAVAILABLE = 69
PROG = "acmedryrun chaos"

EPILOG = """\
The command after '--' runs once per scenario. Placeholders: {directory} {ca_bundle}
{http_port} {tls_port} {dns_server} {dns_port} {dns_hook} {dns_api} {name} {workdir}
{python} {scenario}; REQUESTS_CA_BUNDLE, SSL_CERT_FILE and CURL_CA_BUNDLE name the CA
bundle. Examples:

  acmedryrun chaos -- certbot certonly --server {directory} --standalone \\
      --http-01-port {http_port} --http-01-address 127.0.0.1 -d {name} \\
      --config-dir {workdir}/c --work-dir {workdir}/w --logs-dir {workdir}/l \\
      --register-unsafely-without-email --agree-tos --non-interactive

  acmedryrun chaos --junit chaos.xml -- lego --server {directory} --accept-tos \\
      --email chaos@example.com --domains {name} --http --http.port 127.0.0.1:{http_port} \\
      --path {workdir} run

exit codes: 0 every scenario passed, 1 some did not, 64 usage error,
69 pebble (or the client's program) missing, 130 interrupted"""


def _bound(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 3600]")
    return value


def _seed(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``chaos`` on the main CLI's subparsers; returns its parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "chaos", help="run any ACME client through staging's breakages, offline: a scorecard",
        description="Run an ACME client's command once per scenario against a fresh local\n"
        "Pebble behind a fault-injecting proxy, and score how it copes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", dest="scenarios", action="append", default=[],
                   metavar="NAME", help="run only this scenario (repeatable; default all)")
    p.add_argument("--scenarios-file", dest="scenario_files", action="append", default=[],
                   metavar="FILE", help="user-defined scenarios (TOML or JSON), added to the"
                   " catalog (repeatable)")
    p.add_argument("--list", action="store_true",
                   help="print the scenarios (catalog and files) and exit")
    p.add_argument("--junit", metavar="FILE", help="write the scorecard as JUnit XML here")
    p.add_argument("--json", action="store_true",
                   help="the scorecard as JSON on stdout; the table goes to stderr")
    p.add_argument("--time-bound", type=_bound, metavar="SECONDS",
                   help="kill the client after this long in every scenario (default: each"
                   " scenario's own bound)")
    p.add_argument("--seed", type=_seed, default=0, help="seed for probabilistic faults")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="show the client's output for every scenario that did not pass")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("client_command", nargs=argparse.REMAINDER, metavar="-- CLIENT COMMAND ...",
                   help="the client's command line, with placeholders")
    return p


def _select(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios to run: the catalog plus files, narrowed by --scenario."""
    from acmedryrun.chaos.catalog import CATALOG, load_scenarios

    available: dict[str, Scenario] = {s.name: s for s in CATALOG}
    for path in args.scenario_files:
        for scenario in load_scenarios(path):
            if scenario.name in available:
                raise UsageError(f"--scenarios-file: {path}: scenario {scenario.name!r}"
                                 " already exists (names must be unique)")
            available[scenario.name] = scenario
    if not args.scenarios:
        return list(available.values())
    chosen: list[Scenario] = []
    for name in args.scenarios:
        if name not in available:
            raise UsageError(f"--scenario: unknown scenario {name!r}"
                             f" (known: {', '.join(available)})")
        if available[name] not in chosen:
            chosen.append(available[name])
    return chosen


def _check_junit(path: str | None) -> None:
    if path is None:
        return
    if os.path.isdir(path):
        raise UsageError(f"--junit: {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--junit: {parent} does not exist")


def _missing_program(program: str | None) -> str | None:
    """Why the client's program cannot be run, or None."""
    if program is None:
        return None
    if os.sep in program:
        return None if os.access(program, os.X_OK) and os.path.isfile(program) else \
            f"CLIENT COMMAND: {program} is not an executable file"
    return None if shutil.which(program) else f"CLIENT COMMAND: {program!r} not found on PATH"


def _missing_pebble() -> str | None:
    from acmedryrun.testing._pebble import (
        CHALLTESTSRV_ENV_VAR,
        PEBBLE_ENV_VAR,
        PebbleNotInstalled,
        _find_binary,
    )

    try:
        _find_binary("pebble", None, PEBBLE_ENV_VAR)
        _find_binary("pebble-challtestsrv", None, CHALLTESTSRV_ENV_VAR)
    except PebbleNotInstalled as exc:
        return str(exc)
    return None


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Body of ``acmedryrun chaos``; returns the exit code.

    Raises:
        UsageError: bad input, before anything starts.
    """
    import threading

    from acmedryrun.chaos.render import render_catalog, render_json, render_junit, render_table
    from acmedryrun.chaos.runner import Template, run_scorecard
    from acmedryrun.testing._pebble import LocalPebbleError

    err = stream if stream is not None else sys.stderr
    scenarios = _select(args)
    if args.list:
        sys.stdout.write(render_catalog(scenarios))
        return 0
    command = list(args.client_command)
    if command and command[0] == "--":
        command = command[1:]
    template = Template(tuple(command))
    _check_junit(args.junit)
    for why in (_missing_pebble(), _missing_program(template.program())):
        if why is not None:
            print(f"{PROG}: {why}", file=err)
            return EX_UNAVAILABLE
    quiet = args.quiet
    live = err.isatty() and not quiet

    def on_start(s: Scenario) -> None:
        if live:
            print(f"  {s.name:<32} running", end="", file=err, flush=True)

    def on_result(r: Any) -> None:
        if live:
            print("\r\033[K", end="", file=err)
        if not quiet:
            print(f"  {r.scenario.name:<32} {r.outcome:<8} {r.evidence.wall_s:6.1f} s"
                  f"  {r.reason}", file=err, flush=True)
        if args.verbose and r.outcome != "passed" and r.evidence.output_tail:
            tail = r.evidence.output_tail.rstrip().splitlines()[-20:]
            print("\n".join(f"    | {line}" for line in tail), file=err, flush=True)

    if not quiet:
        print(f"{PROG}: {len(scenarios)} scenario(s), one fresh Pebble each", file=err,
              flush=True)
    cancel = threading.Event()
    try:
        card = run_scorecard(scenarios, template, time_bound=args.time_bound, seed=args.seed,
                             on_start=on_start, on_result=on_result, cancel=cancel)
    except LocalPebbleError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{PROG}: {first}", file=err)
        return EX_UNAVAILABLE
    table = render_table(card, color=(err if args.json else sys.stdout).isatty()
                         and "NO_COLOR" not in os.environ)
    if args.json:
        err.write("\n" + table)
        sys.stdout.write(render_json(card))
    else:
        sys.stdout.write(("\n" if not quiet else "") + table)
    sys.stdout.flush()
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(render_junit(card))
    return card.exit_code
