"""``dry_run()``: validate the arguments, run the flow, build the report."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from acmedryrun import directories
from acmedryrun.errors import UsageError
from acmedryrun.report import (
    ProductionTwin,
    Report,
    RequestStats,
    Retry,
    Step,
    StepResult,
    StepStatus,
)
from acmedryrun.solvers._base import Solver

if TYPE_CHECKING:
    from josepy.jwk import JWK

    from acmedryrun.certs import CsrInfo
    from acmedryrun.flow import RunState
    from acmedryrun.preflight import Identifier
    from acmedryrun.report import Event

DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Eab:
    """External account binding credentials (RFC 8555 section 7.3.4).

    Attributes:
        kid: The key identifier the CA gave you.
        hmac_key: The base64url-encoded HMAC key the CA gave you (a secret: it is
            never logged or reported).
    """

    kid: str
    hmac_key: str

    def __repr__(self) -> str:
        return f"Eab(kid={self.kid!r}, hmac_key=<redacted>)"


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    known: directories.KnownDirectory | None
    reference_url: str | None


def resolve_directory(directory: str, *, allow_production: bool,
                      reference_directory: str | None = None) -> _Target:
    """An alias or URL -> the URL, what is known of it, and its production twin.

    Raises:
        UsageError: unknown alias, not an https URL, or production without
            ``allow_production``.
    """
    if not directory:
        raise UsageError("--directory: empty")
    known = directories.by_alias(directory)
    if known is None:
        if not _is_url(directory):
            raise UsageError(
                f"--directory: {directory!r} is neither a URL nor a known alias"
                f" ({', '.join(directories.aliases())})")
        known = directories.lookup(directory)
    url = known.url if known else directory
    if known and known.kind is directories.Kind.PRODUCTION and not allow_production:
        raise UsageError(
            f"--directory: {directory} is a production CA: a dry run there counts against"
            " real rate limits and issues a trusted certificate (pass --allow-production"
            " to do it anyway)")
    ref_url: str | None
    if reference_directory is not None:
        ref = directories.by_alias(reference_directory)
        ref_url = ref.url if ref else reference_directory
        if not _is_url(ref_url):
            raise UsageError(f"--reference-directory: {reference_directory!r} is not a URL")
    else:
        twin = directories.twin_of(known) if known else None
        ref_url = twin.url if twin else None
    return _Target(url, known, ref_url)


def _check_ca_bundle(path: str) -> None:
    """The trust anchors must load: a file of PEM CA certificates."""
    import ssl

    if not Path(path).is_file():
        raise UsageError(f"--ca-bundle: {path} is not a readable file")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"--ca-bundle: {path} holds no PEM CA certificate ({exc})") from exc


def _is_url(text: str) -> bool:
    """An http(s) URL with a host and, if any, a valid port."""
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return parts.scheme in ("https", "http") and bool(parts.hostname)


def read_input(path: str | os.PathLike[str], option: str) -> bytes:
    """Read an input file named by ``option``; unreadable is a usage error."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {os.fspath(path)}: {exc.strerror}") from exc


def account_key_of(
    account_key: str | os.PathLike[str] | bytes | JWK | None,
) -> tuple[JWK | None, Path | None]:
    """The account key to use, or the path to create a new key at (``--account-key``).

    Raises:
        UsageError: unreadable, not a key, or a path whose directory cannot hold it.
    """
    from acmedryrun import certs

    if account_key is None:
        return None, None
    if isinstance(account_key, bytes):
        return certs.load_account_key(account_key, "<bytes>"), None
    if isinstance(account_key, str) and (
            "-----BEGIN" in account_key or "\n" in account_key
            or account_key.lstrip().startswith("{")):
        # Key material, not a path: never echo it in a message.
        return certs.load_account_key(account_key.encode(), "the key given as a string"), None
    if isinstance(account_key, str | os.PathLike):
        path = Path(account_key)
        if path.exists():
            return certs.load_account_key(read_input(path, "--account-key"), str(path)), None
        if not path.parent.is_dir():
            raise UsageError(f"--account-key: directory {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise UsageError(f"--account-key: cannot create {path}: directory not writable")
        return None, path
    from josepy.jwk import JWK

    if isinstance(account_key, JWK):
        return account_key, None
    raise UsageError("account_key: expected a path, PEM/JWK bytes or a josepy JWK")


def _identifiers(identifiers: Sequence[str]) -> list[Identifier]:
    from acmedryrun.preflight import parse_identifier

    if isinstance(identifiers, str):
        raise UsageError("identifiers: pass a list of names, not a single string")
    idents = [parse_identifier(i) for i in identifiers]
    if not idents:
        raise UsageError("-d: no name given")
    for raw, ident in zip(identifiers, idents, strict=True):
        if not ident.value or any(ch.isspace() for ch in raw.strip()) or "/" in ident.value:
            raise UsageError(f"-d: {raw!r} is not a domain name or IP address")
    return idents


def dry_run(
    identifiers: Sequence[str],
    *,
    directory: str,
    solver: Solver | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    key_type: str = "ec256",
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
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
    renewing: bytes | str | os.PathLike[str] | None = None,
) -> Report:
    """Run a complete issuance against a staging directory and say what it means.

    Args:
        identifiers: The names (and IP addresses) of the certificate, in order.
            With ``csr``, they must match the CSR's names (or be empty).
        directory: A directory URL or a known alias (``letsencrypt-staging``, ...).
        solver: Answers the challenges; default ``HTTP01Standalone(port=80)``.
        ca_bundle: Trust anchors for the CA's TLS; beats ``REQUESTS_CA_BUNDLE``.
        timeout: One overall deadline for the whole run, in seconds.
        key_type: The certificate key: ``ec256`` (default), ``ec384``, ``rsa2048``,
            ``rsa3072``, ``rsa4096``.  Ignored with ``csr``.
        csr: The subscriber's own CSR (PEM or DER).
        account_key: A key file path (created with mode 0600 if missing), PEM/JWK
            bytes, or a josepy JWK.  Default: a fresh key for this run only.
        email: A contact address for a new account.
        eab: External account binding, as :class:`Eab` or ``(kid, hmac_key)``.
        profile: An ACME profile name to send with newOrder.
        preflight: Run the local checks first (default True): identifier rules, DNS,
            CAA, and a self-check of each placed challenge response.
        dns_resolver: ``host[:port]`` of the resolver for the checks (default:
            ``$ACMEDRYRUN_DNS_RESOLVER``, else the system's).
        caa_identities: The CA's CAA issuer domains (default: the directory's
            ``meta.caaIdentities``, else the known CA's).
        reference_directory: The production directory to compare with; defaults
            to the production twin of a known staging directory.
        allow_production: Permit a production directory (default False).
        on_event: Called with progress :class:`~acmedryrun.Event` records.
        cancel: Set this event (from another thread) to end the run early: it stops at
            its next request or wait, cleans up, and reports what it got to.
        renewing: The production certificate you mean to renew (PEM/DER bytes or a
            path): production's renewalInfo (RFC 9773, one GET) says whether renewal
            is due.  Its identifiers are never sent to staging.

    Returns:
        The report.  Whatever the CA, the network or the subscriber's setup did is
        in it as problems; a failed run does not raise.

    Raises:
        UsageError: bad arguments, before any network request.
    """
    started = time.monotonic()
    plan = _plan(identifiers, directory=directory, solver=solver, ca_bundle=ca_bundle,
                 timeout=timeout, key_type=key_type, csr=csr, account_key=account_key,
                 email=email, eab=eab, profile=profile, preflight=preflight,
                 dns_resolver=dns_resolver, caa_identities=caa_identities,
                 reference_directory=reference_directory, allow_production=allow_production,
                 renewing=renewing)
    plan.solver.open()  # UsageError (port in use, no webroot) before any request
    try:
        return _execute(plan, on_event or (lambda _event: None), started, cancel)
    finally:
        plan.solver.close()


def check_arguments(identifiers: Sequence[str], **kwargs: Any) -> None:
    """Validate :func:`dry_run`'s arguments without sending or writing anything.

    Raises:
        UsageError: what :func:`dry_run` would raise for them.
    """
    kwargs.pop("on_event", None)
    kwargs.pop("cancel", None)
    _plan(identifiers, **_with_defaults(kwargs))


def _with_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "solver": None, "ca_bundle": None, "timeout": DEFAULT_TIMEOUT, "key_type": "ec256",
        "csr": None, "account_key": None, "email": None, "eab": None, "profile": None,
        "preflight": True, "dns_resolver": None, "caa_identities": None,
        "reference_directory": None, "allow_production": False, "renewing": None,
    }
    unknown = set(kwargs) - set(defaults) - {"directory"}
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return {**defaults, **kwargs}


@dataclass(frozen=True, slots=True)
class _Plan:
    """The validated arguments of one dry run."""

    target: _Target
    idents: tuple[Identifier, ...]
    solver: Solver
    verify: str | bool
    timeout: float
    key_type: str
    csr: CsrInfo | None
    account_key: JWK | None
    new_account_key_path: Path | None
    email: str | None
    eab: Eab | None
    profile: str | None
    preflight: bool
    dns_resolver: tuple[str, int] | None
    caa_identities: tuple[str, ...] | None
    allow_production: bool
    renewing: bytes | None

    @property
    def account_key_given(self) -> bool:
        """An existing key: look its account up first.  A key made now has none yet."""
        return self.account_key is not None


def _plan(identifiers: Sequence[str], *, directory: str, solver: Solver | None,
          ca_bundle: str | os.PathLike[str] | None, timeout: float, key_type: str,
          csr: bytes | str | None, account_key: str | os.PathLike[str] | bytes | JWK | None,
          email: str | None, eab: Eab | tuple[str, str] | None, profile: str | None,
          preflight: bool, dns_resolver: str | None, caa_identities: Sequence[str] | None,
          reference_directory: str | None, allow_production: bool,
          renewing: bytes | str | os.PathLike[str] | None) -> _Plan:
    """Validate every argument; raise UsageError before anything is sent or written."""
    from acmedryrun import certs
    from acmedryrun.preflight import parse_identifier, parse_resolver
    from acmedryrun.solvers.http01 import HTTP01Standalone

    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not 0 < timeout <= 86400:
        raise UsageError(f"--timeout: {timeout!r} is not a number of seconds in (0, 86400]")
    target = resolve_directory(directory, allow_production=allow_production,
                               reference_directory=reference_directory)
    if ca_bundle is not None:
        _check_ca_bundle(os.fspath(ca_bundle))
    verify: str | bool = (
        os.fspath(ca_bundle) if ca_bundle is not None
        else os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    if eab is not None:
        eab = eab if isinstance(eab, Eab) else Eab(*eab)
        _check_eab(eab)
    csr_info: CsrInfo | None = None
    if csr is not None:
        csr_info = certs.load_csr(csr.encode() if isinstance(csr, str) else csr, "the CSR")
        if identifiers:
            given = sorted({parse_identifier(i).value for i in identifiers})
            if given != sorted(set(csr_info.names)):
                raise UsageError(
                    f"-d: {', '.join(given)} do not match the CSR's names"
                    f" ({', '.join(csr_info.names)})")
        identifiers = list(csr_info.names)
    elif key_type not in certs.KEY_TYPES:
        raise UsageError(f"--key-type: {key_type!r} is not one of {', '.join(certs.KEY_TYPES)}")
    idents = _identifiers(identifiers)
    jwk, new_key_path = account_key_of(account_key)
    if solver is None:
        solver = HTTP01Standalone(port=80)
    if not isinstance(solver, Solver):
        raise UsageError("solver: expected an acmedryrun.solvers.Solver")
    # ACMEDRYRUN_DNS_RESOLVER sets a default resolver for every run (containers, CI).
    dns_resolver = dns_resolver or os.environ.get("ACMEDRYRUN_DNS_RESOLVER") or None
    resolver = parse_resolver(dns_resolver) if dns_resolver is not None else None
    if isinstance(caa_identities, str):
        raise UsageError("caa_identities: pass a list of issuer domains, not a string")
    caa = tuple(i.strip().lower() for i in caa_identities) if caa_identities else None
    if caa is not None and not all(caa):
        raise UsageError("--caa-identity: empty")
    renewing_pem = _renewing(renewing) if renewing is not None else None
    return _Plan(target, tuple(idents), solver, verify, float(timeout), key_type, csr_info, jwk,
                 new_key_path, email, eab, profile, preflight, resolver, caa,
                 allow_production, renewing_pem)


def _renewing(renewing: bytes | str | os.PathLike[str]) -> bytes:
    """Read and check the certificate to renew (``--renewing``)."""
    from acmedryrun.twin import ari_cert_id

    data = renewing if isinstance(renewing, bytes) else read_input(renewing, "--renewing")
    try:
        ari_cert_id(data)
    except ValueError as exc:
        raise UsageError(f"--renewing: {exc}") from exc
    return data


def _validation_port(solver: Solver) -> int:
    """Where the CA's http-01 validation connects: 80, or a standalone responder's port.

    A production CA always dials port 80; a local test CA (Pebble's ``httpPort``)
    may dial another, and the standalone responder is then bound there.
    """
    from acmedryrun.solvers.http01 import HTTP01Standalone

    if isinstance(solver, HTTP01Standalone):
        return solver.bound_port or solver.port
    return 80


def _check_eab(eab: Eab) -> None:
    import binascii

    from josepy import b64

    if not eab.kid:
        raise UsageError("--eab-kid: empty")
    if any(ch in eab.hmac_key for ch in "+/="):
        raise UsageError("--eab-hmac-key: not base64url (it has '+', '/' or '=')")
    try:
        if not b64.b64decode(eab.hmac_key):
            raise ValueError("empty")
    except (ValueError, binascii.Error) as exc:
        raise UsageError("--eab-hmac-key: not a base64url-encoded key") from exc


def _execute(plan: _Plan, listener: Callable[[Event], None], started: float,
             cancel: threading.Event | None) -> Report:
    from acmedryrun import certs, preflight, retry
    from acmedryrun.flow import Acme, Flow, OrderRequest, RunState
    from acmedryrun.report import Event

    state = RunState()
    deadline = retry.Deadline(plan.timeout, cancel)
    checks: preflight.Checks | None = None
    if plan.preflight:
        checks = preflight.Checks(
            resolver=plan.dns_resolver, deadline=deadline, known=plan.target.known,
            caa_identities=plan.caa_identities, http_port=_validation_port(plan.solver))
        started_checks = time.monotonic()
        listener(Event("step_start", Step.PREFLIGHT))
        state.problems += checks.before_order(
            plan.idents, challenge_type=plan.solver.challenge_type,
            supports_wildcard=plan.solver.supports_wildcard,
            supports_ip=plan.solver.supports_ip)
        failed = any(p.severity.decisive for p in state.problems)
        status = StepStatus.FAILED if failed else StepStatus.OK
        state.steps.append(StepResult(Step.PREFLIGHT, status, time.monotonic() - started_checks))
        listener(Event("step_end", Step.PREFLIGHT, status=status,
                       duration_s=state.steps[-1].duration_s))
        for problem in state.problems:
            listener(Event("problem", problem.step, problem=problem))
        if failed:
            return _build_report(plan, state, None, started)
    else:
        # Even without preflight, an identifier the solver can never validate (a
        # wildcard over http-01) is not worth an order at the CA.
        state.problems += preflight.check_fit(
            plan.idents, challenge_type=plan.solver.challenge_type,
            supports_wildcard=plan.solver.supports_wildcard,
            supports_ip=plan.solver.supports_ip)
        if state.problems:
            return _build_report(plan, state, None, started)

    jwk = plan.account_key
    if plan.new_account_key_path is not None:
        new_key = certs.generate_key("ec256")
        certs.write_private_key(plan.new_account_key_path, new_key)
        jwk = certs.jwk_from_private(new_key)
    if jwk is None:
        jwk = certs.jwk_from_private(certs.generate_key("ec256"))
    csr = plan.csr or certs.make_csr(tuple(i.value for i in plan.idents),
                                     certs.generate_key(plan.key_type))

    def on_retry(r: Retry) -> None:
        state.retries.append(r)
        listener(Event("retry", r.step, retry=r))

    acme = Acme(verify=plan.verify, deadline=deadline, on_retry=on_retry)
    flow = Flow(
        directory_url=plan.target.url, acme=acme, account_key=jwk,
        account_key_given=plan.account_key_given,
        order=OrderRequest(tuple((i.type, i.value) for i in plan.idents), csr, plan.profile),
        solver=plan.solver, eab=(plan.eab.kid, plan.eab.hmac_key) if plan.eab else None,
        email=plan.email, reference_url=plan.target.reference_url,
        reference_verify=plan.verify, on_event=listener, state=state,
        self_check=checks.self_check if checks else None,
        check_directory=checks.after_directory if checks else None,
        check_account=checks.after_account if checks else None,
        allow_production=plan.allow_production, renewing=plan.renewing,
    )
    try:
        flow.run()
    finally:
        acme.session.close()
    return _build_report(plan, state, acme.stats(), started)


#: The steps of a run in order; those a run never reached are reported as skipped.
_STEPS = (Step.PREFLIGHT, Step.DIRECTORY, Step.NONCE, Step.ACCOUNT, Step.ORDER,
          Step.AUTHORIZATION, Step.CHALLENGE, Step.FINALIZE, Step.CERTIFICATE)


def _with_skipped(steps: Sequence[StepResult]) -> tuple[StepResult, ...]:
    """Every step, in order: as it ran, or ``skipped``; cleanup (when it ran) last."""
    ran = {s.step: s for s in steps}
    ordered = [ran.get(step, StepResult(step, StepStatus.SKIPPED, 0.0)) for step in _STEPS]
    return tuple(ordered) + tuple(s for s in steps if s.step is Step.CLEANUP)


def _build_report(plan: _Plan, state: RunState, stats: RequestStats | None,
                  started: float) -> Report:
    from acmedryrun import certs
    from acmedryrun.classify import survived_retries_warning
    from acmedryrun.verdict import decide

    problems = list(state.problems)
    if state.retries and not any(p.severity.decisive for p in problems):
        problems.append(survived_retries_warning(len(state.retries), state.retries[0].step))
    decision = decide(problems, state.retries)
    return Report(
        verdict=decision.verdict,
        prod_likely_to_succeed=decision.prod_likely_to_succeed,
        confidence=decision.confidence,
        directory=plan.target.url,
        identifiers=tuple(i.value for i in plan.idents),
        problems=tuple(problems),
        retries=tuple(state.retries),
        steps=_with_skipped(state.steps),
        requests=stats or RequestStats(),
        certificate=certs.summarize(state.chain_pem) if state.chain_pem else None,
        account_url=state.account_url,
        staging_only_features=state.staging_only_features,
        production_only_features=state.production_only_features,
        production_twin=ProductionTwin(state.twin_url, state.twin_compared,
                                       tuple(state.twin_reasons)),
        duration_s=time.monotonic() - started,
    )
