"""``acmedryrun certbot``: ``certbot renew --dry-run``, classified, for every lineage.

certbot's own dry run exits 1 alike for a broken webroot and a staging outage.
This command reads certbot's renewal configuration (:mod:`acmedryrun.certbot_renewal`;
it reads, never writes, anything under the config dir), dry-runs each lineage with
its names and its way of answering challenges, against the staging twin of the
CA it renews from, and says per lineage whether production would renew and,
if not, whose fault it is.

How each certbot setting is answered:

=================  ========================================================
``standalone``     :class:`~acmedryrun.solvers.HTTP01Standalone` on the
                   lineage's ``http01_address``/``http01_port``, one
                   responder shared by the lineages that use the same one
``webroot``        ``webroot_map`` (else the last ``webroot_path``) per name;
                   a missing document root is created for the run and removed
                   again, as certbot's webroot plugin does
``manual``         :class:`~acmedryrun.solvers.HTTP01Hook` or
                   :class:`~acmedryrun.solvers.DNS01Hook` (``pref_challs``)
                   with certbot's exact hook environment
``server``         its staging twin (Let's Encrypt production -> staging, ...),
                   or ``--directory``; an unknown CA is "not checkable"
``cert``           the current certificate: its names, and ``renewing=``
                   (production's renewalInfo and renewal-related checks)
``key_type`` ...   ``ec256``/``ec384``/``rsa2048``/``rsa3072``/``rsa4096``
=================  ========================================================

Not run: pre, post and deploy hooks (``pre_hook``, ``post_hook``,
``renew_hook``, ``renewal-hooks/*``); the output says so.  Authenticators
acmedryrun cannot drive (DNS provider plugins, nginx, apache) are reported as
"not checkable here" with what to do instead, not as failures.  Lineages run
with bounded concurrency through :func:`acmedryrun.batch.dry_run_many`, all on
one staging account.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from acmedryrun import directories
from acmedryrun.certbot_args import DEFAULT_CONFIG_DIR, add_parser
from acmedryrun.certbot_renewal import (
    MANUAL,
    STANDALONE,
    WEBROOT,
    Lineage,
    LineageError,
    read_renewal_dir,
)
from acmedryrun.errors import UsageError
from acmedryrun.report import (
    Cause,
    ChallengeType,
    Problem,
    Report,
    Severity,
    SolverErrorKind,
    Step,
    Verdict,
)
from acmedryrun.solvers._base import Challenge, Solver, SolverFailure

if TYPE_CHECKING:
    from acmedryrun.batch import BatchJob
    from acmedryrun.render import Output
    from acmedryrun.solvers.http01 import HTTP01Standalone, HTTP01Webroot

_KEY_TYPES = {("ecdsa", "secp256r1"): "ec256", ("ecdsa", "secp384r1"): "ec384",
              ("rsa", 2048): "rsa2048", ("rsa", 3072): "rsa3072", ("rsa", 4096): "rsa4096"}


class LineageStatus(str, enum.Enum):
    """What became of one lineage."""

    #: Dry-run (or failed before the CA for a reason production shares): see the verdict.
    CHECKED = "checked"
    #: acmedryrun cannot answer its challenges or knows no staging for its CA: not a failure.
    NOT_CHECKABLE = "not_checkable"
    #: Its renewal configuration file is broken: certbot skips it too ("parse failure").
    UNREADABLE = "unreadable"
    #: acmedryrun refused its settings (a name or file it cannot use): see ``reason``.
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class LineageResult:
    """One lineage's outcome.

    Attributes:
        name: The lineage (cert) name.
        conf_path: Its renewal configuration file.
        status: checked, not_checkable, unreadable or invalid.
        authenticator: certbot's authenticator for it (None when unreadable).
        names: The identifiers renewed.
        server: The CA certbot renews it from.
        directory: The staging directory it was dry-run against.
        challenge: The challenge type answered.
        verdict: For checked lineages: would production renew it?
        reason: Why it is not checkable (and what to do), unreadable or invalid.
        problems: Problems found before any run (the run's own are in ``report``).
        notes: What this dry run does differently from ``certbot renew``.
        report: The dry run's report, when one ran.
    """

    name: str
    conf_path: str
    status: LineageStatus
    authenticator: str | None = None
    names: tuple[str, ...] = ()
    server: str | None = None
    directory: str | None = None
    challenge: str | None = None
    verdict: Verdict | None = None
    reason: str | None = None
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    report: Report | None = None

    @property
    def fatal(self) -> Problem | None:
        """The problem that decided a failed verdict (None for a success)."""
        problems = self.problems + (self.report.problems if self.report else ())
        decisive = [p for p in problems if p.severity.decisive]
        return next((p for p in decisive if p.severity is Severity.FATAL),
                    decisive[0] if decisive else None)

    def to_dict(self) -> dict[str, Any]:
        """The lineage as JSON-ready data (one JSON Lines record)."""
        return {
            "lineage": self.name,
            "config": self.conf_path,
            "status": self.status.value,
            "authenticator": self.authenticator,
            "names": list(self.names),
            "server": self.server,
            "directory": self.directory,
            "challenge": self.challenge,
            "verdict": self.verdict.value if self.verdict else None,
            "reason": self.reason,
            "problems": [p.to_dict() for p in self.problems],
            "notes": list(self.notes),
            "report": self.report.to_dict() if self.report else None,
        }


# ------------------------------------------------------------------ planning (pure)


@dataclass(frozen=True, slots=True)
class LineagePlan:
    """How one lineage is to be dry-run, or why it cannot be (:func:`plan_lineage`).

    Attributes:
        lineage: The lineage.
        directory: The staging directory to dry-run it against.
        challenge: The challenge type its authenticator answers.
        key_type: The acmedryrun key type for its certificate key.
        not_checkable: Why acmedryrun cannot check it here, and what to do instead.
        problems: Client problems that fail it before any request (certbot fails them too).
        notes: What the dry run does differently from ``certbot renew``.
    """

    lineage: Lineage
    directory: str | None = None
    challenge: str | None = None
    key_type: str | None = None
    not_checkable: str | None = None
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()


def staging_directory(server: str) -> str | None:
    """The staging twin of certbot's ``server``: itself when it is a known staging.

    Let's Encrypt production maps to Let's Encrypt staging, and so on through the
    known-directory table; None for a CA acmedryrun knows no staging of.
    """
    known = directories.lookup(server)
    if known is None:
        return None
    if known.kind is directories.Kind.STAGING:
        return known.url
    return next((d.url for d in directories.KNOWN if d.twin == known.alias), None)


def _what_to_do(lineage: Lineage) -> str:
    names = " ".join(f"-d {n}" for n in lineage.names[:3])
    return (f"check its names another way (acmedryrun check {names} with --webroot,"
            f" --dns-01-auth-hook or --http-01-auth-hook), or run certbot renew --dry-run"
            f" --cert-name {lineage.name}")


def _not_driven(lineage: Lineage) -> str:
    auth = lineage.authenticator
    if auth.startswith("dns-"):
        why = f"certbot's {auth} plugin calls the DNS provider's API, which acmedryrun cannot"
    elif auth in ("nginx", "apache"):
        why = (f"certbot's {auth} plugin answers http-01 by editing {auth}'s configuration,"
               " which acmedryrun does not do")
    else:
        why = f"acmedryrun cannot drive certbot's {auth!r} authenticator"
    return f"{why}: {_what_to_do(lineage)}"


def _manual_challenge(lineage: Lineage) -> str | None:
    """The challenge type certbot's manual plugin answers for this lineage.

    certbot takes ``pref_challs`` in order among what the plugin supports
    (``manual.get_chall_pref``: http-01, dns-01); without a preference, http-01
    (a wildcard's authorization offers only dns-01).
    """
    for challenge in lineage.pref_challs:
        if challenge in ("http-01", "dns-01"):
            return challenge
    if lineage.pref_challs:
        return None
    return "dns-01" if any(n.startswith("*.") for n in lineage.names) else "http-01"


def _manual_hook_missing(lineage: Lineage) -> Problem:
    return Problem(
        name="ManualAuthHookMissing", cause=Cause.CLIENT, severity=Severity.FATAL,
        step=Step.PREFLIGHT,
        detail=f"{lineage.conf_path}: authenticator = manual without manual_auth_hook: certbot"
        " renew stops with 'An authentication script must be provided with"
        " --manual-auth-hook when using the manual plugin non-interactively'",
        hint="This lineage cannot renew unattended: give it an auth hook (certbot reconfigure"
        f" --cert-name {lineage.name} --manual-auth-hook SCRIPT) or another authenticator.")


def plan_lineage(lineage: Lineage, *, directory: str | None) -> LineagePlan:
    """Decide how to dry-run ``lineage`` (no I/O).

    Args:
        lineage: The lineage, with its names.
        directory: ``--directory``: dry-run every lineage there instead of its
            server's staging twin.
    """
    from acmedryrun.solvers._hooks import redact_command

    notes = [f"{kind} not run: {redact_command(getattr(lineage, kind))}"
             for kind in lineage.hooks_not_run]
    if lineage.reuse_key:
        notes.append("reuse_key: the dry run uses a fresh key of the same type")
    if not lineage.autorenew:
        notes.append("autorenew = False: certbot renew does not renew it unless forced")
    if lineage.preferred_profile and not lineage.required_profile:
        notes.append(f"preferred_profile {lineage.preferred_profile!r} not requested: certbot"
                     " asks for it only when the CA offers it")
    target = directory or staging_directory(lineage.server)
    base = LineagePlan(lineage, directory=target, notes=tuple(notes))
    if target is None:
        return replace(base, not_checkable=(
            f"its server {lineage.server} has no staging directory acmedryrun knows: pass"
            " --directory with that CA's staging (test) directory"))
    if lineage.authenticator == MANUAL:
        if not lineage.manual_auth_hook:
            return replace(base, problems=(_manual_hook_missing(lineage),))
        challenge = _manual_challenge(lineage)
        if challenge is None:
            return replace(base, not_checkable=(
                f"its preferred challenges ({', '.join(lineage.pref_challs)}) are none that"
                f" acmedryrun answers with hooks (http-01, dns-01): {_what_to_do(lineage)}"))
    elif lineage.authenticator in (STANDALONE, WEBROOT):
        challenge = "http-01"
    else:
        return replace(base, not_checkable=_not_driven(lineage))
    size: str | int = (lineage.elliptic_curve if lineage.key_type == "ecdsa"
                       else lineage.rsa_key_size)
    key_type = _KEY_TYPES.get((lineage.key_type, size))
    if key_type is None:
        return replace(base, not_checkable=(
            f"its key ({lineage.key_type} {size}) is not one acmedryrun can make"
            f" ({', '.join(sorted(set(_KEY_TYPES.values())))}): run certbot renew --dry-run"
            f" --cert-name {lineage.name}"))
    return replace(base, challenge=challenge, key_type=key_type)


# ------------------------------------------------------------------ webroot, as certbot


class _WebrootMap(Solver):
    """certbot's webroot plugin for one lineage: each name to its own document root.

    The document roots are :class:`HTTP01Webroot` solvers shared by every lineage
    (their open/close nest), kept open by the command for the whole batch.
    """

    challenge_type: ClassVar[ChallengeType] = "http-01"
    supports_ip: ClassVar[bool] = True

    def __init__(self, roots: Mapping[str, HTTP01Webroot]) -> None:
        self.roots = dict(roots)

    def describe(self) -> str:
        return "http-01 webroot map"

    def _root(self, challenge: Challenge) -> HTTP01Webroot:
        root = self.roots.get(challenge.identifier)
        if root is None:  # the CA asked for a name the lineage does not have
            raise SolverFailure(SolverErrorKind.WEBROOT,
                                f"no webroot for {challenge.identifier}")
        return root

    def prepare(self, challenge: Challenge) -> None:
        self._root(challenge).prepare(challenge)

    def perform(self, challenge: Challenge) -> None:
        self._root(challenge).perform(challenge)

    def cleanup(self, challenge: Challenge) -> None:
        if challenge.identifier in self.roots:
            self.roots[challenge.identifier].cleanup(challenge)


@dataclass
class _Resources:
    """What the lineages share during the batch: responders and document roots."""

    standalone: dict[tuple[str, int], HTTP01Standalone | str] = field(default_factory=dict)
    webroots: dict[str, HTTP01Webroot | str] = field(default_factory=dict)
    created: list[Path] = field(default_factory=list)
    missing_roots: set[str] = field(default_factory=set)

    def responder(self, address: str, port: int) -> HTTP01Standalone | str:
        """The shared standalone responder on ``address:port``, or why it cannot listen."""
        from acmedryrun.solvers.http01 import HTTP01Standalone

        key = (address, port)
        if key not in self.standalone:
            try:
                solver = HTTP01Standalone(port=port, address=address)
                solver.open()  # held until close(): every run's open/close nests inside
            except UsageError as exc:
                self.standalone[key] = str(exc).replace("--http-01-port: ", "")
            else:
                self.standalone[key] = solver
        return self.standalone[key]

    def webroot(self, path: str) -> tuple[HTTP01Webroot | str, bool]:
        """The shared webroot solver for ``path`` (or why not), and whether it was created.

        A missing document root is created, as certbot's webroot plugin does
        (``webroot._create_challenge_dirs`` makes every missing parent, mode 0755),
        and removed again by :meth:`close` if it is empty then.
        """
        from acmedryrun.solvers.http01 import HTTP01Webroot

        if path not in self.webroots:
            if not os.path.isdir(path):
                self.missing_roots.add(path)
            try:
                self._make_dirs(Path(path))
                solver = HTTP01Webroot(path)
                solver.open()
            except (OSError, UsageError) as exc:
                self.webroots[path] = f"webroot {path}: {exc}".replace("--webroot: ", "")
            else:
                self.webroots[path] = solver
        return self.webroots[path], path in self.missing_roots

    def _make_dirs(self, path: Path) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir(mode=0o755)
            self.created.append(directory)

    def close(self) -> None:
        """Stop the responders, close the webroots, remove the directories made for the run."""
        for solver in (*self.standalone.values(), *self.webroots.values()):
            if not isinstance(solver, str):
                solver.close()
        for directory in reversed(self.created):
            with contextlib.suppress(OSError):
                directory.rmdir()


def _setup_failure(kind: SolverErrorKind, detail: str) -> Problem:
    from acmedryrun.classify import SolverError, classify

    return classify(SolverError(kind, detail), step=Step.PREFLIGHT, severity=Severity.FATAL)


def _solver_for(plan: LineagePlan, resources: _Resources,
                hook_timeout: float) -> tuple[Solver | None, tuple[Problem, ...], tuple[str, ...]]:
    """The lineage's solver, or the problems that stop it before the CA; extra notes."""
    from acmedryrun.solvers.dns01 import DNS01Hook
    from acmedryrun.solvers.http01_hook import HTTP01Hook

    lineage = plan.lineage
    if lineage.authenticator == STANDALONE:
        responder = resources.responder(lineage.http01_address, lineage.http01_port)
        if isinstance(responder, str):
            kind = (SolverErrorKind.PERMISSION if "not permitted" in responder
                    else SolverErrorKind.PORT_IN_USE)
            return None, (_setup_failure(kind, responder),), ()
        return responder, (), ()
    if lineage.authenticator == WEBROOT:
        roots: dict[str, HTTP01Webroot] = {}
        notes = []
        for name in lineage.names:
            path = lineage.webroot_for(name)
            if path is None:  # certbot would prompt for one, which renew cannot
                return None, (_setup_failure(SolverErrorKind.WEBROOT, (
                    f"no webroot for {name}: it is neither in [[webroot_map]] nor is there a"
                    " webroot_path")),), ()
            root, created = resources.webroot(path)
            if isinstance(root, str):
                return None, (_setup_failure(SolverErrorKind.WEBROOT, root),), ()
            roots[name] = root
            if created:
                notes.append(f"webroot {path} (for {name}) did not exist: created for the run"
                             " as certbot renew does, and removed again")
        return _WebrootMap(roots), (), tuple(dict.fromkeys(notes))
    assert lineage.manual_auth_hook is not None  # noqa: S101 - plan_lineage checked it
    hook_class = HTTP01Hook if plan.challenge == "http-01" else DNS01Hook
    try:
        solver = hook_class(lineage.manual_auth_hook, lineage.manual_cleanup_hook,
                            timeout=hook_timeout)
    except UsageError as exc:
        detail = str(exc).replace(hook_class.AUTH_OPTION, "manual_auth_hook").replace(
            hook_class.CLEANUP_OPTION, "manual_cleanup_hook")
        return None, (_setup_failure(SolverErrorKind.HOOK_FAILED, detail),), ()
    return solver, (), ()


# ------------------------------------------------------------------ running


@dataclass(frozen=True, slots=True)
class CertbotRun:
    """The whole result: every lineage, in ``certbot renew``'s order.

    Attributes:
        config_dir: The certbot configuration directory read.
        lineages: One result per renewal configuration file.
        not_run: certbot hooks this dry run did not run (lineage and global).
    """

    config_dir: str
    lineages: tuple[LineageResult, ...]
    not_run: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """As ``batch``: 1 for any client_error or broken file, else 2 for staging, else 0."""
        if any(r.verdict is Verdict.CLIENT_ERROR
               or r.status in (LineageStatus.UNREADABLE, LineageStatus.INVALID)
               for r in self.lineages):
            return 1
        return 2 if any(r.verdict is Verdict.STAGING_UNSTABLE for r in self.lineages) else 0

    def summary(self) -> dict[str, int]:
        """Counts by verdict and status."""
        counts = {"total": len(self.lineages)}
        for key in ("likely_success", "client_error", "staging_unstable"):
            counts[key] = sum(1 for r in self.lineages if r.verdict and r.verdict.value == key)
        for status in (LineageStatus.NOT_CHECKABLE, LineageStatus.UNREADABLE,
                       LineageStatus.INVALID):
            counts[status.value] = sum(1 for r in self.lineages if r.status is status)
        counts["not_run"] = sum(1 for r in self.lineages
                                if r.status is LineageStatus.CHECKED and r.verdict is None)
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The whole result as JSON-ready data (``--json``)."""
        return {"config_dir": self.config_dir, "summary": self.summary(),
                "hooks_not_run": list(self.not_run),
                "lineages": [r.to_dict() for r in self.lineages]}


def global_hooks(config_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    """certbot's ``renewal-hooks/{pre,post,deploy}/*`` executables (certbot runs them)."""
    found = []
    for kind in ("pre", "post", "deploy"):
        folder = Path(config_dir) / "renewal-hooks" / kind
        with contextlib.suppress(OSError):
            found += [str(p) for p in sorted(folder.iterdir())
                      if p.is_file() and os.access(p, os.X_OK)]
    return tuple(found)


def check_lineages(
    config_dir: str | os.PathLike[str] = DEFAULT_CONFIG_DIR,
    *,
    cert_names: Sequence[str] = (),
    directory: str | None = None,
    concurrency: int = 4,
    pace: float = 0.0,
    timeout: float = 300.0,
    cancel: threading.Event | None = None,
    on_result: Callable[[LineageResult], None] | None = None,
    **options: Any,
) -> CertbotRun:
    """Dry-run every lineage of a certbot installation as ``certbot renew`` renews it.

    Args:
        config_dir: certbot's ``--config-dir`` (default ``/etc/letsencrypt``).
        cert_names: Only these lineages (certbot's ``--cert-name``), in this order.
        directory: Dry-run every lineage against this directory (URL or alias)
            instead of its server's staging twin.
        concurrency: Lineages dry-run at once.
        pace: Minimum seconds between run starts.
        timeout: Each lineage's deadline, in seconds.
        cancel: Set it to stop (see :func:`acmedryrun.batch.dry_run_many`).
        on_result: Called with each lineage's result as soon as it is known.
        **options: Other :func:`acmedryrun.dry_run` keywords shared by every run
            (``ca_bundle``, ``account_key``, ``email``, ``eab``, ``dns_resolver``,
            ``preflight``, ``caa_identities``).

    Returns:
        Every lineage's result, in certbot's order.

    Raises:
        UsageError: no certbot configuration there, an unknown ``--cert-name``,
            no lineage at all, or bad options; before any request.
    """
    from acmedryrun import api, certs
    from acmedryrun import options as opts
    from acmedryrun.batch import BatchJob, dry_run_many

    try:
        entries = read_renewal_dir(config_dir, cert_names)
    except FileNotFoundError as exc:
        raise UsageError(f"--config-dir: {exc}") from exc
    if not entries:
        raise UsageError(f"--config-dir: {Path(config_dir) / 'renewal'} holds no lineage"
                         " (*.conf)")
    # The options every lineage shares are checked once, before anything is sent.
    api.check_arguments(["example.com"], directory=directory or directories.DEFAULT_ALIAS,
                        **options)
    if directory is not None:
        directory = opts.resolve_directory(directory, allow_production=False).url
    # One staging account for every lineage and every staging directory.
    key, new_path = opts.account_key_of(options.pop("account_key", None))
    if key is None:
        fresh = certs.generate_key("ec256")
        if new_path is not None:
            certs.write_private_key(new_path, fresh)
        key = certs.jwk_from_private(fresh)
    options["account_key"] = key

    results: dict[str, LineageResult] = {}
    lock = threading.Lock()

    def record(result: LineageResult) -> None:
        with lock:
            results[result.conf_path] = result
            if on_result is not None:
                on_result(result)

    plans: list[LineagePlan] = []
    for entry in entries:
        if isinstance(entry, LineageError):
            record(LineageResult(entry.name, entry.conf_path, LineageStatus.UNREADABLE,
                                 reason=entry.reason))
            continue
        plans.append(plan_lineage(entry, directory=directory))
    resources = _Resources()
    try:
        groups: dict[str, list[BatchJob]] = {}
        by_job: dict[int, LineagePlan] = {}
        for plan in plans:
            lineage = plan.lineage
            if plan.not_checkable is not None:
                record(_checked(plan, status=LineageStatus.NOT_CHECKABLE,
                                reason=plan.not_checkable))
                continue
            if plan.problems:
                record(_checked(plan, problems=plan.problems, verdict=Verdict.CLIENT_ERROR))
                continue
            solver, problems, notes = _solver_for(plan, resources, min(120.0, timeout))
            if solver is None and lineage.pre_hook and lineage.authenticator == STANDALONE:
                record(_checked(
                    plan, status=LineageStatus.NOT_CHECKABLE,
                    reason=f"{problems[0].detail}; its pre_hook probably frees the port, and"
                    " acmedryrun does not run pre hooks: stop the server on that port, or"
                    f" run certbot renew --dry-run --cert-name {lineage.name}"))
                continue
            if solver is None:
                record(_checked(plan, problems=problems, verdict=Verdict.CLIENT_ERROR))
                continue
            assert plan.directory is not None  # noqa: S101 - not_checkable otherwise
            renewing, why_not = _renewing(lineage)
            if why_not:
                notes += (why_not,)
            job = BatchJob(lineage.names, {"key_type": plan.key_type, "renewing": renewing,
                                           "timeout": timeout,
                                           "profile": lineage.required_profile},
                           solver=solver)
            by_job[id(job)] = replace(plan, notes=plan.notes + notes)
            groups.setdefault(plan.directory, []).append(job)

        def on_report(job: BatchJob, report: Report) -> None:
            plan = by_job[id(job)]
            record(_checked(plan, report=report, verdict=report.verdict))

        def on_invalid(job: BatchJob, reason: str) -> None:
            plan = by_job[id(job)]
            record(_checked(plan, status=LineageStatus.INVALID, reason=reason))

        for target, jobs in groups.items():
            with contextlib.suppress(UsageError):  # raised when every job was invalid
                dry_run_many(jobs, directory=target, concurrency=concurrency, pace=pace,
                             cancel=cancel, on_report=on_report, on_invalid=on_invalid,
                             **options)
            if cancel is not None and cancel.is_set():
                break
    finally:
        resources.close()
    hooks = tuple([f"{p.lineage.name} {kind}" for p in plans for kind in p.lineage.hooks_not_run]
                  + list(global_hooks(config_dir)))
    ordered = []
    for entry in entries:
        done = results.get(entry.conf_path)
        if done is None:  # interrupted before it ran
            assert isinstance(entry, Lineage)  # noqa: S101 - errors are recorded at once
            done = _checked(plan_lineage(entry, directory=directory))
        ordered.append(done)
    return CertbotRun(os.fspath(config_dir), tuple(ordered), hooks)


def _renewing(lineage: Lineage) -> tuple[bytes | None, str | None]:
    """The current certificate for ``renewing=``, or why it cannot serve (then a note).

    certbot renews a certificate ARI cannot name (no authority key identifier, as
    some private CAs issue) all the same: that is no reason to skip the lineage.
    """
    from acmedryrun.production.ari import ari_cert_id

    try:
        pem = Path(lineage.cert_path).read_bytes()
        ari_cert_id(pem)
    except (OSError, ValueError) as exc:
        return None, f"its certificate is not asked about (renewalInfo, RFC 9773): {exc}"
    return pem, None


def _checked(plan: LineagePlan, **changes: Any) -> LineageResult:
    lineage = plan.lineage
    values: dict[str, Any] = {
        "name": lineage.name, "conf_path": lineage.conf_path, "status": LineageStatus.CHECKED,
        "authenticator": lineage.authenticator, "names": lineage.names,
        "server": lineage.server, "directory": plan.directory, "challenge": plan.challenge,
        "notes": plan.notes}
    values.update(changes)
    return LineageResult(**values)


# ------------------------------------------------------------------ CLI


def line_for(result: LineageResult) -> str:
    """One human line for a lineage: name, authenticator, verdict, the fatal problem's hint."""
    head = f"{result.name}  {result.authenticator or '-'}"
    if result.status is LineageStatus.UNREADABLE:
        return f"{result.conf_path}  unreadable: {result.reason}"
    if result.status is LineageStatus.NOT_CHECKABLE:
        return f"{head}  not checkable here: {result.reason}"
    if result.status is LineageStatus.INVALID:
        return f"{head}  invalid: {result.reason}"
    if result.verdict is None:
        return f"{head}  not run (interrupted)"
    fatal = result.fatal
    why = f"  {fatal.name}: {fatal.hint}" if fatal is not None else ""
    return f"{head}  {result.verdict.value}{why}"


def run(args: argparse.Namespace, out: Output) -> int:
    """``acmedryrun certbot``: the exit code as ``batch``'s."""
    if bool(args.eab_kid) != bool(args.eab_hmac_key):
        raise UsageError("--eab-kid and --eab-hmac-key go together")
    stream_jsonl = not args.json and not sys.stdout.isatty()

    def show(result: LineageResult) -> None:
        out.line(line_for(result))
        if stream_jsonl:
            sys.stdout.write(json.dumps(result.to_dict(), allow_nan=False) + "\n")
            sys.stdout.flush()

    cancel = threading.Event()
    interrupted = False
    try:
        outcome = check_lineages(
            args.config_dir, cert_names=args.cert_names, directory=args.directory,
            concurrency=args.concurrency, pace=args.pace, timeout=args.timeout, cancel=cancel,
            on_result=show, ca_bundle=args.ca_bundle, account_key=args.account_key,
            email=args.email, eab=(args.eab_kid, args.eab_hmac_key) if args.eab_kid else None,
            dns_resolver=args.dns_resolver, preflight=args.preflight,
            caa_identities=args.caa_identities)
    except KeyboardInterrupt:
        cancel.set()
        interrupted = True
    if interrupted:
        print("interrupted: the lineages shown were checked; the rest did not run",
              file=out.stream)
        return 130
    if outcome.not_run:
        out.line(f"not run (acmedryrun runs no certbot pre/post/deploy hook):"
                 f" {'; '.join(outcome.not_run)}")
    counts = outcome.summary()
    print("  ".join(f"{k} {v}" for k, v in counts.items() if v or k == "total"),
          file=out.stream, flush=True)
    if args.json:
        sys.stdout.write(json.dumps(outcome.to_dict(), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    return outcome.exit_code



__all__ = [
    "DEFAULT_CONFIG_DIR",
    "CertbotRun",
    "LineagePlan",
    "LineageResult",
    "LineageStatus",
    "add_parser",
    "check_lineages",
    "global_hooks",
    "line_for",
    "plan_lineage",
    "run",
    "staging_directory",
]
