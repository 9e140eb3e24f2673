"""``dry_run()``: build the options, plan the run, run it, return the report."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from acmedryrun.deadline import Deadline
from acmedryrun.options import DEFAULT_TIMEOUT, Eab, Options, Plan, plan

if TYPE_CHECKING:
    from josepy.jwk import JWK

    from acmedryrun.report import Event, Report
    from acmedryrun.solvers import Solver

__all__ = ["DEFAULT_TIMEOUT", "Eab", "Options", "check_arguments", "dry_run", "run_options"]


def dry_run(
    identifiers: Sequence[str],
    *,
    directory: str,
    solver: Solver | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    key_type: str | None = None,
    csr: bytes | str | None = None,
    account_key: str | os.PathLike[str] | bytes | JWK | None = None,
    email: str | None = None,
    eab: Eab | tuple[str, str] | None = None,
    profile: str | None = None,
    preflight: bool = True,
    dns_resolver: str | None = None,
    caa_identities: Sequence[str] | None = None,
    reference_directory: str | None = None,
    allow_production: bool = False,
    renewing: bytes | str | os.PathLike[str] | None = None,
    ct: bool = True,
    ct_url: str | None = None,
    production_policy: str | None = None,
    patience: float | None = None,
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
) -> Report:
    """Run a complete issuance against a staging directory and say what it means.

    Args:
        identifiers: The names (and IP addresses) of the certificate, in order.
            With ``csr``, they must match the CSR's names (or be empty).
        directory: A directory URL or a known alias (``letsencrypt-staging``, ...).
        solver: Answers the challenges; default ``HTTP01Standalone(port=80)``.
        ca_bundle: Trust anchors for the CA's TLS; beats ``REQUESTS_CA_BUNDLE``.
        timeout: One overall deadline for the whole run, in seconds.
        key_type: The certificate key: ``ec256`` (the default, also when None),
            ``ec384``, ``rsa2048``, ``rsa3072``, ``rsa4096``.  Not with ``csr``, whose
            own key the certificate gets (both given is a usage error).
        csr: The subscriber's own CSR (PEM or DER); its names must be in a
            subjectAltName, its key RSA 2048/3072/4096 or ECDSA P-256/P-384.
        account_key: A key file path (created with mode 0600 if missing), PEM/JWK
            bytes, or a josepy JWK.  Default: a fresh key for this run only.
        email: A contact address for a new account (``a@example.org``; a leading
            ``mailto:`` is dropped, never doubled).
        eab: External account binding, as :class:`Eab` or ``(kid, hmac_key)``.
        profile: An ACME profile name to send with newOrder (a token, such as
            ``tlsserver``).
        preflight: Run the local checks first (default True): identifier rules, DNS,
            CAA, and a self-check of each placed challenge response.
        dns_resolver: ``host[:port]`` of the resolver for the checks (default:
            ``$ACMEDRYRUN_DNS_RESOLVER``, else the system's).
        caa_identities: The CA's CAA issuer domains (default: the directory's
            ``meta.caaIdentities``, else the known CA's).
        reference_directory: The production directory to compare with; defaults
            to the production twin of a known staging directory.
        allow_production: Permit a production directory (default False).
        renewing: The production certificate you mean to renew (PEM/DER bytes or a
            path): production's renewalInfo (RFC 9773, one GET) says whether renewal
            is due.  Its identifiers are never sent to staging.
        ct: Look production's rate limits up in Certificate Transparency (default
            True; only for a known public CA or with ``production_policy``): certificates
            already issued can make production refuse what staging issues.
        ct_url: The CT search endpoint (default: crt.sh's JSON interface).
        production_policy: The CA whose production limits apply (``letsencrypt``,
            ``google``, ``buypass``; default: the known directory's).
        patience: Seconds to keep trying a ``staging_unstable`` run: it runs again,
            with growing spacing (the CA's ``Retry-After`` when larger), until a
            conclusive verdict or the patience is spent; ``report.attempts`` keeps
            every run.
        on_event: Called with progress :class:`~acmedryrun.Event` records.
        cancel: Set this event (from another thread) to end the run early: it stops
            at its next request or wait, removes what its solver placed, and raises
            :class:`~acmedryrun.Cancelled` (a cancelled run has no verdict).

    Returns:
        The report.  Whatever the CA, the network or the subscriber's setup did is
        in it as problems; a failed run does not raise.

    Raises:
        UsageError: bad arguments, before any network request.
        Cancelled: ``cancel`` was set before the run reached a verdict.
    """
    options = Options(
        directory=directory, solver=solver, ca_bundle=ca_bundle, timeout=timeout,
        key_type=key_type, csr=csr, account_key=account_key, email=email, eab=eab,
        profile=profile, preflight=preflight, dns_resolver=dns_resolver,
        caa_identities=caa_identities, reference_directory=reference_directory,
        allow_production=allow_production, renewing=renewing, ct=ct, ct_url=ct_url,
        production_policy=production_policy, patience=patience)
    return run_options(identifiers, options, on_event=on_event, cancel=cancel)


def run_options(identifiers: Sequence[str], options: Options, *,
                on_event: Callable[[Event], None] | None = None,
                cancel: threading.Event | None = None) -> Report:
    """:func:`dry_run` for an :class:`~acmedryrun.options.Options` value already built.

    Raises:
        UsageError: bad arguments, before any network request.
        Cancelled: ``cancel`` was set before the run reached a verdict.
    """
    from acmedryrun.run import execute

    listener = on_event or (lambda _event: None)
    resolved = plan(identifiers, options)
    resolved.solver.open()  # UsageError (port in use, no webroot) before any request
    try:
        if options.patience is None:
            return execute(resolved, listener, Deadline(resolved.timeout, cancel))
        return _patiently(resolved, options.patience, listener, cancel)
    finally:
        resolved.solver.close()


#: Patience: the first wait before running again, how it grows, and its cap (seconds).
PATIENCE_FIRST = 2.0
PATIENCE_FACTOR = 2.0
PATIENCE_CAP = 300.0


def _patiently(resolved: Plan, patience: float, listener: Callable[[Event], None],
               cancel: threading.Event | None) -> Report:
    """Run until a conclusive verdict (not staging_unstable) or the patience is spent.

    Each run gets the whole ``timeout``; between runs the wait grows from
    :data:`PATIENCE_FIRST` by :data:`PATIENCE_FACTOR` up to :data:`PATIENCE_CAP`, and the
    CA's ``Retry-After`` wins when larger.  A run never starts when the patience
    would be spent before it could end.
    """
    import dataclasses
    import time

    from acmedryrun.errors import Cancelled
    from acmedryrun.report import Attempt, Event, EventKind, Step, Verdict
    from acmedryrun.run import execute

    stop = cancel or threading.Event()
    started = time.monotonic()
    attempts: list[Attempt] = []
    spacing, waited = PATIENCE_FIRST, 0.0
    while True:
        report = execute(resolved, listener, Deadline(resolved.timeout, stop))
        attempts.append(Attempt(report.verdict, tuple(
            p.name for p in report.problems if p.severity.decisive), report.duration_s, waited))
        left = patience - (time.monotonic() - started)
        asked = max((p.retry_after or 0.0 for p in report.problems), default=0.0)
        wait = max(spacing, asked)
        if report.verdict is not Verdict.STAGING_UNSTABLE or wait + resolved.timeout > left:
            return dataclasses.replace(report, attempts=tuple(attempts),
                                       duration_s=time.monotonic() - started)
        listener(Event(EventKind.WAIT, Step.DIRECTORY, duration_s=wait, attempt=len(attempts)))
        if stop.wait(wait):
            raise Cancelled("the dry run was cancelled while waiting for staging")
        waited = wait
        spacing = min(PATIENCE_CAP, spacing * PATIENCE_FACTOR)


def check_arguments(identifiers: Sequence[str], **kwargs: Any) -> None:
    """Validate :func:`dry_run`'s arguments without sending or writing anything.

    Raises:
        UsageError: what :func:`dry_run` would raise for them.
    """
    kwargs.pop("on_event", None)
    kwargs.pop("cancel", None)
    plan(identifiers, Options.of(**kwargs))
