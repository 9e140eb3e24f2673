"""The command line: argparse -> dry_run() -> exit code.

Exit codes (CONTRACT.md): 0 likely_success, 1 client_error, 2 staging_unstable,
64 usage error (argparse's own exit 2 never leaks), 69 a required local program
missing (demo, chaos), 70 internal error (a bug: traceback on stderr, never a
verdict), 130 interrupted.

Heavy modules (acme, cryptography, requests) are imported only by the commands
that need them, so ``acmedryrun --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from acmedryrun.arguments import Parser as _Parser
from acmedryrun.arguments import duration as _duration
from acmedryrun.arguments import pace as _pace
from acmedryrun.arguments import port as _port
from acmedryrun.arguments import positive_int as _positive_int
from acmedryrun.arguments import seconds as _seconds
from acmedryrun.directories import DEFAULT_ALIAS
from acmedryrun.errors import Cancelled, UsageError

if TYPE_CHECKING:
    from acmedryrun.options import Options
    from acmedryrun.render import Output
    from acmedryrun.report import Report
    from acmedryrun.solvers import Solver

EX_USAGE = 64
EX_UNAVAILABLE = 69  # sysexits: a service it needs (Pebble, for the demo) is missing
EX_SOFTWARE = 70
EX_INTERRUPTED = 130

PROG = "acmedryrun"


# ------------------------------------------------------------------------------ check


def _add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--domain", dest="domains", action="append", default=[],
                   metavar="NAME", help="a name (or IP address) for the certificate; repeatable")
    p.add_argument("--csr", metavar="FILE", help="use this CSR (its names are the order's)")
    p.add_argument("--json", action="store_true",
                   help="the report as JSON on stdout; human text goes to stderr")
    _add_run_options(p)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of one run, shared by ``check`` and ``batch``."""
    p.add_argument("--directory", default=DEFAULT_ALIAS, metavar="URL|ALIAS",
                   help="ACME directory URL or alias (default letsencrypt-staging)")
    p.add_argument("--ca-bundle", metavar="FILE",
                   help="trust anchors for the ACME server's TLS (beats REQUESTS_CA_BUNDLE)")
    sol = p.add_argument_group("challenge solver (default: standalone http-01 on port 80)")
    sol.add_argument("--http-01-port", type=_port, metavar="N",
                     help="standalone http-01 responder port (default 80)")
    sol.add_argument("--http-01-address", default="", metavar="ADDR",
                     help="bind address for it (default all)")
    sol.add_argument("--webroot", metavar="DIR",
                     help="http-01 by writing files under DIR/.well-known/acme-challenge/")
    sol.add_argument("--webroot-port", type=_port, metavar="N",
                     help="the port the web server behind --webroot listens on, for the"
                     " self-check (default 80)")
    sol.add_argument("--dns-01-auth-hook", metavar="CMD",
                     help="dns-01: CMD gets CERTBOT_DOMAIN, CERTBOT_VALIDATION, ... (exactly"
                     " certbot's manual-hook environment for dns-01: no CERTBOT_TOKEN)")
    sol.add_argument("--dns-01-cleanup-hook", metavar="CMD",
                     help="dns-01: removes the TXT record again (same, plus CERTBOT_AUTH_OUTPUT)")
    sol.add_argument("--http-01-auth-hook", metavar="CMD",
                     help="http-01 via hooks (certbot's --manual --preferred-challenges http):"
                     " CMD serves CERTBOT_VALIDATION at CERTBOT_TOKEN, for CDNs and remote"
                     " web servers")
    sol.add_argument("--http-01-cleanup-hook", metavar="CMD",
                     help="http-01: removes the file again (same, plus CERTBOT_AUTH_OUTPUT)")
    sol.add_argument("--tls-alpn-01-port", type=_port, metavar="N",
                     help="standalone tls-alpn-01 responder port (RFC 8737)")
    sol.add_argument("--tls-alpn-01-address", default="", metavar="ADDR",
                     help="bind address for it (default all)")
    p.add_argument("--key-type", default=None,
                   choices=("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"),
                   help="certificate key type (default ec256; not with --csr)")
    p.add_argument("--account-key", metavar="FILE",
                   help="reuse an account; created (mode 0600) if the file does not exist")
    p.add_argument("--email", metavar="ADDR", help="contact address for a new account")
    p.add_argument("--eab-kid", metavar="KID", help="external account binding key id")
    p.add_argument("--eab-hmac-key", metavar="KEY",
                   help="external account binding HMAC key (base64url)")
    p.add_argument("--profile", metavar="NAME", help="ACME profile to request")
    p.add_argument("--reference-directory", metavar="URL",
                   help="production directory to compare with (read-only GETs)")
    p.add_argument("--renewing", metavar="CERT",
                   help="the production certificate you mean to renew: ask production's"
                   " renewalInfo (RFC 9773, one GET) whether renewal is due")
    p.add_argument("--allow-production", action="store_true",
                   help="permit a production directory (real rate limits, a trusted cert)")
    p.add_argument("--no-preflight", dest="preflight", action="store_false",
                   help="skip the local checks before the CA is asked")
    p.add_argument("--dns-resolver", metavar="HOST[:PORT]",
                   help="resolver for the preflight checks (default: $ACMEDRYRUN_DNS_RESOLVER,"
                   " else the system's)")
    p.add_argument("--caa-identity", dest="caa_identities", action="append", default=None,
                   metavar="NAME",
                   help="the CA's CAA issuer domain (repeatable; default from the directory)")
    p.add_argument("--timeout", type=_seconds, default=300.0, metavar="SECONDS",
                   help="overall deadline (default 300)")
    p.add_argument("--patience", type=_duration, metavar="DURATION",
                   help="keep retrying a staging_unstable run this long (e.g. 10m), with"
                   " growing spacing, until a conclusive verdict")
    p.add_argument("--no-ct", dest="ct", action="store_false",
                   help="skip the Certificate Transparency rate-limit look-up")
    p.add_argument("--ct-url", metavar="URL",
                   help="CT search endpoint (default crt.sh's JSON interface)")
    p.add_argument("--production-policy", metavar="CA",
                   help="whose production rate limits apply (letsencrypt, google, buypass;"
                   " default: the known directory's)")


def _solver(args: argparse.Namespace) -> Solver:
    from acmedryrun import solvers

    chosen = [name for name, given in (
        ("--webroot", args.webroot), ("--http-01-port", args.http_01_port),
        ("--dns-01-auth-hook", args.dns_01_auth_hook),
        ("--http-01-auth-hook", args.http_01_auth_hook),
        ("--tls-alpn-01-port", args.tls_alpn_01_port)) if given]
    if len(chosen) > 1:
        raise UsageError(f"{chosen[0]} and {chosen[1]} exclude each other: one solver per run")
    if args.dns_01_cleanup_hook and not args.dns_01_auth_hook:
        raise UsageError("--dns-01-cleanup-hook needs --dns-01-auth-hook")
    if args.http_01_cleanup_hook and not args.http_01_auth_hook:
        raise UsageError("--http-01-cleanup-hook needs --http-01-auth-hook")
    if args.webroot_port and not args.webroot:
        raise UsageError("--webroot-port needs --webroot")
    if args.webroot:
        return solvers.HTTP01Webroot(args.webroot, port=args.webroot_port or 80)
    if args.dns_01_auth_hook:
        return solvers.DNS01Hook(args.dns_01_auth_hook, args.dns_01_cleanup_hook,
                                 timeout=min(120.0, args.timeout))
    if args.http_01_auth_hook:
        return solvers.HTTP01Hook(args.http_01_auth_hook, args.http_01_cleanup_hook,
                                  timeout=min(120.0, args.timeout))
    if args.tls_alpn_01_port:
        return solvers.TLSALPN01Standalone(port=args.tls_alpn_01_port,
                                           address=args.tls_alpn_01_address)
    return solvers.HTTP01Standalone(port=args.http_01_port or 80, address=args.http_01_address)


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    """``acmedryrun check``: one dry run, reported."""
    import dataclasses

    from acmedryrun.api import run_options
    from acmedryrun.options import read_input

    if not args.domains and not args.csr:
        raise UsageError("-d: give at least one name (or --csr)")
    if any(not d.strip() for d in args.domains):
        raise UsageError("-d: empty name")
    options = _options(args)
    csr = read_input(args.csr, "--csr") if args.csr else None
    if csr is not None:
        from acmedryrun.certs import load_csr

        load_csr(csr, args.csr)  # a bad CSR's message names the file (plan() checks it again)
    out.header = f"acmedryrun: dry run for {', '.join(args.domains) or args.csr} against" \
                 f" {args.directory}"
    options = dataclasses.replace(options, solver=_solver(args), csr=csr)
    report = run_options(args.domains, options, on_event=out.on_event)
    return _finish(report, args, out)


def _options(args: argparse.Namespace) -> Options:
    """The :class:`~acmedryrun.options.Options` that ``check`` and ``batch`` share."""
    from acmedryrun.options import Options

    if bool(args.eab_kid) != bool(args.eab_hmac_key):
        raise UsageError("--eab-kid and --eab-hmac-key go together")
    return Options(
        directory=args.directory,
        ca_bundle=args.ca_bundle,
        timeout=args.timeout,
        key_type=args.key_type,
        account_key=args.account_key,
        email=args.email,
        eab=(args.eab_kid, args.eab_hmac_key) if args.eab_kid else None,
        profile=args.profile,
        preflight=args.preflight,
        dns_resolver=args.dns_resolver,
        caa_identities=args.caa_identities,
        reference_directory=args.reference_directory,
        allow_production=args.allow_production,
        renewing=args.renewing,
        ct=args.ct,
        ct_url=args.ct_url,
        production_policy=args.production_policy,
        patience=getattr(args, "patience", None),
    )


def cmd_batch(args: argparse.Namespace, out: Output) -> int:
    """``acmedryrun batch FILE``: many dry runs, JSON Lines out, a summary at the end.

    Before the first run: the output is checked (not an input file, its directory
    exists) and, resuming, read; it is opened when every line was checked.  Each
    report is then written as one whole line as its run ends.
    """
    import collections
    import threading

    from acmedryrun.batch import BatchJob, Summary, dry_run_many, parse_batch
    from acmedryrun.batch_output import ReportWriter, check_output, check_stdout, read_output

    try:
        with open(args.file, encoding="utf-8") as f:
            jobs, errors = parse_batch(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"batch: cannot read {args.file}: {exc}") from exc
    if args.resume and not args.output:
        raise UsageError("--resume needs --output FILE (the output of the batch to go on with)")
    inputs = {"the batch file": args.file, "--account-key": args.account_key,
              "--ca-bundle": args.ca_bundle, "--renewing": args.renewing}
    if args.output:
        check_output(args.output, inputs)
    else:
        check_stdout(inputs)
    resume = read_output(args.output) if args.resume else None
    for err in errors:
        out.line(f"{args.file}:{err.line}: {err.reason}: {err.text.strip()}")
    if not jobs:
        raise UsageError(f"batch: {args.file} holds no certificate to check"
                         + (f" ({len(errors)} unreadable line(s))" if errors else ""))
    options = _options(args)
    solver = _solver(args)
    # A solver with per-run state (dns-01 hooks) gets a fresh instance per run.
    solver_or_factory: Solver | Callable[[], Solver] = (
        solver if solver.shareable else (lambda: _solver(args)))
    _warn_production_limits(jobs, args.directory, out)
    # JSON Lines go to --output, or to stdout unless it is a terminal (people read
    # the failures and the summary on stderr there).
    to_stdout = not args.output and not sys.stdout.isatty()
    writer: ReportWriter | None = None
    from acmedryrun.render import Progress

    progress = Progress(out, len(jobs))
    invalid = 0
    earlier: dict[frozenset[str], collections.deque[Any]] = collections.defaultdict(
        collections.deque)
    for data in resume.reports if resume else ():
        earlier[frozenset(data["identifiers"])].append(data)
    resumed: list[Any] = []

    def on_invalid(job: BatchJob, reason: str) -> None:
        nonlocal invalid
        invalid += 1
        progress.invalid()
        out.line(f"{args.file}:{job.line}: {reason}")

    def on_skip(job: BatchJob, key: frozenset[str]) -> None:
        data = earlier[key].popleft()
        resumed.append(data)
        progress.skipped(data["verdict"])

    def on_start() -> None:
        nonlocal writer
        if args.output:
            writer = ReportWriter.open(args.output, resume)
        elif to_stdout:
            writer = ReportWriter.stdout()
        else:
            out.line("reports: stdout is a terminal, so no JSON Lines are written there"
                     " (give --output FILE, or pipe stdout)")
        if resume is not None:
            out.line(f"--resume: {len(resumed)} certificate(s) already in {args.output},"
                     f" {progress.planned - len(resumed)} to go"
                     + (f"; its incomplete last line ({resume.torn} bytes) is dropped"
                        if resume.torn else ""))

    cancel = threading.Event()
    closed = False  # the reader of stdout went away (``batch FILE | head``)

    def on_report(job: BatchJob, report: Report) -> None:
        nonlocal closed
        if writer is not None and not closed:  # the line is on disk before it is shown
            try:
                writer.write(report.to_json(indent=None))
            except BrokenPipeError:
                closed = True
                cancel.set()  # nobody reads the reports: stop, as on Ctrl-C
                return
        progress.done(job, report)

    results: list[tuple[BatchJob, Report]] = []
    interrupted = False
    try:
        results = dry_run_many(jobs, solver=solver_or_factory, concurrency=args.concurrency,
                               pace=args.pace, cancel=cancel, on_report=on_report,
                               on_invalid=on_invalid, skip=resume.done() if resume else None,
                               on_skip=on_skip, on_start=on_start, **_option_values(options))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if writer is not None:
            writer.close()
    if interrupted or closed:
        interrupted = True
        results = progress.results  # the runs whose report was written and shown
    summary = Summary.of(results, len(jobs) - invalid, len(errors) + invalid, resumed)
    then = (f"to go on: the same command with --resume (it skips what {args.output} holds)"
            if interrupted and args.output and not args.resume
            else "stdout was closed: nobody read the reports" if closed else None)
    progress.finish(summary, interrupted, resuming=resume is not None, then=then)
    if interrupted:
        return EX_INTERRUPTED
    if summary.client_error or summary.unreadable_lines:
        return 1
    return 2 if summary.staging_unstable else 0


def _option_values(options: Options) -> dict[str, Any]:
    """The options as keywords (for :func:`acmedryrun.batch.dry_run_many`)."""
    import dataclasses

    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
            if f.name != "solver"}


def _warn_production_limits(jobs: Sequence[Any], directory: str, out: Output) -> None:
    """Say where this batch, run against production on one account, would hit its limits."""
    from acmedryrun import directories
    from acmedryrun.production.policy import batch_limit_warnings

    known = directories.by_alias(directory) or directories.lookup(directory)
    if known is None:
        return
    for problem in batch_limit_warnings([job.identifiers for job in jobs], known.alias):
        out.problem(problem)


def _finish(report: Report, args: argparse.Namespace, out: Output) -> int:
    out.report(report)
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
        sys.stdout.flush()
    return report.exit_code


# ------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI's parser (also used to render the README's CLI section)."""
    parser = _Parser(
        prog=PROG,
        description="ACME dry runs against staging that tell a broken setup from a flaky"
        " staging CA.",
        epilog="exit codes: 0 likely_success, 1 client_error, 2 staging_unstable,"
        " 64 usage error, 69 a required local program missing (demo, chaos),"
        " 70 internal error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    check = sub.add_parser("check", help="run one dry run and report the verdict")
    _add_check_options(check)
    _add_common(check)
    batch = sub.add_parser("batch", help="dry-run every certificate listed in FILE")
    batch.add_argument("file", metavar="FILE",
                       help="one certificate per line: names, then optional key=value options")
    _add_run_options(batch)
    batch.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                       help="dry runs at once (default 4)")
    batch.add_argument("--pace", type=_pace, default=0.0, metavar="SECONDS",
                       help="minimum seconds between run starts (default 0)")
    batch.add_argument("--output", metavar="FILE",
                       help="write the JSON Lines reports here instead of stdout (replaced;"
                       " never one of the batch's input files)")
    batch.add_argument("--resume", action="store_true",
                       help="go on with an interrupted batch: skip the certificates --output"
                       " already holds a report for, and append the others")
    _add_common(batch)
    from acmedryrun import certbot_args

    certbot_args.add_parser(sub)
    proxy = sub.add_parser("proxy", help="run a fault-injecting HTTPS proxy in front of a"
                           " directory (for testing ACME clients)")
    proxy.add_argument("--upstream", required=True, metavar="URL",
                       help="the ACME directory URL to proxy (e.g. a local Pebble's)")
    proxy.add_argument("--fault", action="append", default=[], metavar="SPEC",
                       help="ENDPOINT:KIND[:ARG][,key=value...], e.g."
                       " order:status:503,retry_after=1,count=2 (repeatable)")
    proxy.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    proxy.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    proxy.add_argument("--upstream-ca-bundle", metavar="FILE",
                       help="trust anchors for the upstream's TLS")
    proxy.add_argument("--seed", type=int, help="seed for probabilistic faults")
    proxy.add_argument("-v", "--verbose", action="store_true", help="one line per request")
    demo = sub.add_parser("demo", help="start a local Pebble and run a real dry run against it")
    demo.add_argument("--scenario", default="success",
                      choices=("success", "client-error", "staging-unstable", "all"),
                      help="which outcome to show (default success)")
    demo.add_argument("--json", action="store_true", help="the report(s) as JSON on stdout")
    _add_common(demo)
    from acmedryrun.chaos.cli import add_parser as add_chaos_parser

    add_chaos_parser(sub)
    explain = sub.add_parser("explain", help="print a problem's cause, meaning and hint"
                             " (every name: docs/TAXONOMY.md)")
    explain.add_argument("name", metavar="NAME", help="a problem name, e.g."
                         " ValidationConnection (case does not matter)")
    explain.set_defaults(verbose=0)
    return parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="also log each HTTP exchange (secrets redacted)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the verdict")


def _version() -> str:
    from acmedryrun import __version__

    return __version__


def cmd_certbot(args: argparse.Namespace, out: Output) -> int:
    """``acmedryrun certbot``: every lineage of a certbot installation (certbot_cmd.py)."""
    from acmedryrun import certbot_cmd

    return certbot_cmd.run(args, out)


def cmd_proxy(args: argparse.Namespace, out: Output) -> int:
    """``acmedryrun proxy``: a FaultProxy in the foreground until Ctrl-C."""
    from acmedryrun.testing import run_proxy

    return run_proxy(args.upstream, args.fault, port=args.port, host=args.host,
                     upstream_ca_bundle=args.upstream_ca_bundle, seed=args.seed,
                     verbose=args.verbose, stderr=out.stream)


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    """``acmedryrun demo``: a real dry run against a local Pebble, no internet needed."""
    from acmedryrun.demo import run_demo
    from acmedryrun.testing import LocalPebbleError

    try:
        return run_demo(args, out)
    except LocalPebbleError as exc:  # Pebble missing or not starting: not a bug here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{PROG}: demo: {first}", file=sys.stderr)
        return EX_UNAVAILABLE


def cmd_explain(args: argparse.Namespace, out: Output) -> int:
    """``acmedryrun explain NAME``: one entry of the taxonomy on stdout (acmedryrun.taxonomy).

    An unknown name is a usage error that suggests close ones.
    """
    from acmedryrun.render import terminal_width, wrap
    from acmedryrun.taxonomy import explain

    text = explain(args.name)
    width = terminal_width(sys.stdout) if sys.stdout.isatty() else None
    for line in text.splitlines():
        indent = line[:len(line) - len(line.lstrip())]
        for part in wrap(line.strip(), width, indent, indent + "  "):
            print(part)
    return 0


def _chaos_run(args: argparse.Namespace, stream: TextIO) -> int:
    from acmedryrun.chaos.cli import run

    return run(args, stream)


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "check": cmd_check,
    "batch": cmd_batch,
    "certbot": cmd_certbot,
    "proxy": cmd_proxy,
    "demo": cmd_demo,
    "chaos": lambda args, out: _chaos_run(args, out.stream),
    "explain": cmd_explain,
}


def entry() -> NoReturn:
    """The ``acmedryrun`` program (console script and ``python -m acmedryrun``).

    ``main()`` is the CLI for callers in a process that goes on (tests, wrappers); this is
    for a process that ends with it.  Before the interpreter exits, every object is moved
    to the garbage collector's permanent generation (``gc.freeze()``): the collection that
    interpreter shutdown runs over them, about 500 modules' worth, found nothing to free
    and cost a one-name ``check`` about 25 ms.  atexit handlers and the flushing of the
    standard streams run as before; what goes uncollected is cyclic garbage still alive
    at exit, whose finalizers Python does not promise to run at exit anyway.  Nothing of
    acmedryrun's waits for one: batch reports are written and fsynced line by line, and
    every other file is closed by a ``with`` before ``main()`` returns.
    """
    import gc

    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help(sys.stderr)
            return EX_USAGE
        verbosity = -1 if getattr(args, "quiet", False) else args.verbose
        from acmedryrun.render import Output

        out = Output(sys.stderr, verbosity=verbosity)
        if args.verbose:
            _log_http(out)
        return COMMANDS[args.command](args, out)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EX_USAGE
    except (KeyboardInterrupt, Cancelled):
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EX_INTERRUPTED
    except Exception:  # noqa: BLE001 - the one place a bug becomes exit 70
        print(f"{PROG}: internal error (a bug in acmedryrun; please report it):",
              file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return EX_SOFTWARE


def _log_http(out: Output) -> None:
    import logging

    handler = logging.StreamHandler(out.stream)
    handler.setFormatter(logging.Formatter("  http: %(message)s"))
    logger = logging.getLogger("acmedryrun.http")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

