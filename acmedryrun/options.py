"""One frozen value for the options of a dry run: :func:`dry_run`, the CLI and batch lines build it.

:class:`Options` holds what the caller asked for, with the defaults and the
checks that need nothing but the values themselves (types, ranges, syntax).
:func:`plan` then resolves it against the world without sending anything --
reading the CSR, the account key, the certificate being renewed and the CA
bundle, parsing the directory URL with the one URL parser and applying the
production guard -- and returns the :class:`Plan` the orchestrator runs.  Both
raise :class:`~acmedryrun.errors.UsageError` with a one-line message naming the
input, before any request.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acmedryrun import directories
from acmedryrun.errors import UsageError
from acmedryrun.report import KEY_TYPES
from acmedryrun.urls import BadUrl, Url, parse_url

if TYPE_CHECKING:
    from josepy.jwk import JWK

    from acmedryrun.certs import CsrInfo
    from acmedryrun.preflight.identifiers import Identifier
    from acmedryrun.production.policy import CaPolicy
    from acmedryrun.run_cache import RunCache
    from acmedryrun.solvers import Solver

DEFAULT_TIMEOUT = 300.0
#: Where production's issuance is looked up (crt.sh's JSON interface, issue 17).
DEFAULT_CT_URL = "https://crt.sh/"
#: The most a run may be given, seconds (a day).
MAX_TIMEOUT = 86400.0
#: The most a patient dry run may keep retrying, seconds (a day).
MAX_PATIENCE = 86400.0


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Everything a dry run can be told, but the identifiers (CONTRACT.md's keywords).

    Build one with keywords; :func:`dataclasses.replace` makes a variant (a batch
    line's own ``key-type``) and checks it again.  See :func:`acmedryrun.dry_run`
    for each option's meaning.

    Raises:
        UsageError: a value of the wrong type or out of range.
    """

    directory: str = directories.DEFAULT_ALIAS
    solver: Solver | None = None
    ca_bundle: str | os.PathLike[str] | None = None
    timeout: float = DEFAULT_TIMEOUT
    #: None: ``ec256``, or the CSR's own key with ``csr`` (a key type given with a
    #: CSR is a usage error: it would be ignored).
    key_type: str | None = None
    csr: bytes | str | None = None
    account_key: str | os.PathLike[str] | bytes | JWK | None = None
    email: str | None = None
    eab: Eab | tuple[str, str] | None = None
    profile: str | None = None
    preflight: bool = True
    dns_resolver: str | None = None
    caa_identities: Sequence[str] | None = None
    reference_directory: str | None = None
    allow_production: bool = False
    renewing: bytes | str | os.PathLike[str] | None = None
    ct: bool = True
    ct_url: str | None = None
    production_policy: str | None = None
    patience: float | None = None
    #: One Certificate Transparency look-up per registered domain across the runs of a
    #: batch (an :class:`acmedryrun.production.ct.CtCache`); a private one when None.
    ct_cache: Any = field(default=None, compare=False, repr=False)
    #: Kept-alive connections shared by the runs of a batch (an
    #: :class:`acmedryrun.transport.ConnectionPool`); the run's own when None.
    connections: Any = field(default=None, compare=False, repr=False)
    #: What the runs of a batch learn once (an :class:`acmedryrun.run_cache.RunCache`:
    #: the directory, the twin's, the account, spare nonces); nothing shared when None.
    run_cache: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not (0 < timeout <= MAX_TIMEOUT):
            raise UsageError(f"--timeout: {timeout!r} is not a number of seconds in"
                             f" (0, {MAX_TIMEOUT:g}]")
        object.__setattr__(self, "timeout", float(timeout))
        if not isinstance(self.directory, str) or not self.directory.strip():
            raise UsageError("--directory: empty")
        if self.key_type is not None and self.key_type not in KEY_TYPES:
            raise UsageError(f"--key-type: {self.key_type!r} is not one of"
                             f" {', '.join(KEY_TYPES)}")
        if self.eab is not None and not isinstance(self.eab, Eab):
            if not (isinstance(self.eab, tuple) and len(self.eab) == 2):
                raise UsageError("eab: expected Eab(kid, hmac_key) or a (kid, hmac_key) pair")
            object.__setattr__(self, "eab", Eab(*self.eab))
        if isinstance(self.caa_identities, str):
            raise UsageError("caa_identities: pass a list of issuer domains, not a string")
        for name in ("preflight", "allow_production", "ct"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name}: expected True or False")
        patience = self.patience
        if patience is not None:
            if isinstance(patience, bool) or not isinstance(patience, int | float) \
                    or not (0 < patience <= MAX_PATIENCE):
                raise UsageError(f"--patience: {patience!r} is not a duration in"
                                 f" (0, {MAX_PATIENCE:g}] seconds")
            object.__setattr__(self, "patience", float(patience))

    @classmethod
    def of(cls, **kwargs: Any) -> Options:
        """Options from keywords, with a usage error (not a TypeError) for unknown ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UsageError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**kwargs)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Target:
    """The directory to run against, what is known of it, and its production twin."""

    url: str
    known: directories.KnownDirectory | None
    reference_url: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """The resolved, checked arguments of one dry run (what the orchestrator runs)."""

    target: Target
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
    #: The CA whose production rate limits are looked up in CT, or None: no look-up.
    ct_policy: CaPolicy | None = None
    ct_url: str = DEFAULT_CT_URL
    ct_cache: Any = None
    connections: Any = None
    run_cache: RunCache | None = None

    @property
    def account_key_given(self) -> bool:
        """An existing key: look its account up first.  A key made now has none yet."""
        return self.account_key is not None


def _check_url(text: str, option: str) -> Url:
    try:
        url = parse_url(text.strip())
    except BadUrl as exc:
        raise UsageError(f"{option}: {text!r} is not a usable URL: {exc}") from None
    return url


def resolve_directory(directory: str, *, allow_production: bool,
                      reference_directory: str | None = None) -> Target:
    """An alias or URL -> the URL, what is known of it, and its production twin.

    The production guard applies to every spelling of a production host (case, a
    final dot, percent-encoding, IDNA); a public IP address cannot be told from a
    production CA's, so it needs ``allow_production`` too.

    Raises:
        UsageError: unknown alias, not a usable URL, or production without
            ``allow_production``.
    """
    known = directories.by_alias(directory)
    if known is None:
        if "://" not in directory:
            raise UsageError(
                f"--directory: {directory!r} is neither a URL nor a known alias"
                f" ({', '.join(directories.aliases())})")
        parsed = _check_url(directory, "--directory")
        known = directories.lookup(parsed)
        production = directories.production_host(parsed)
        if production is not None and not allow_production:
            raise UsageError(
                f"--directory: {directory} is {production.alias}'s production CA: a dry run"
                " there counts against real rate limits and issues a trusted certificate"
                " (pass --allow-production to do it anyway)")
        if parsed.is_ip and not allow_production and ipaddress.ip_address(parsed.host).is_global:
            raise UsageError(
                f"--directory: {directory} names a public IP address, which cannot be told"
                " from a production CA's: use the CA's host name (or --allow-production)")
        url = parsed.text
    else:
        url = known.url
    if known and known.kind is directories.Kind.PRODUCTION and not allow_production:
        raise UsageError(
            f"--directory: {directory} is a production CA: a dry run there counts against"
            " real rate limits and issues a trusted certificate (pass --allow-production"
            " to do it anyway)")
    ref_url: str | None
    if reference_directory is not None:
        ref = directories.by_alias(reference_directory)
        ref_url = ref.url if ref else _check_url(reference_directory,
                                                 "--reference-directory").text
    else:
        twin = directories.twin_of(known) if known else None
        ref_url = twin.url if twin else None
    return Target(url, known, ref_url)


def _check_ca_bundle(path: str) -> None:
    """The trust anchors must load: a file of PEM CA certificates."""
    import ssl

    if not Path(path).is_file():
        raise UsageError(f"--ca-bundle: {path} is not a readable file")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"--ca-bundle: {path} holds no PEM CA certificate ({exc})") from exc


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


def _identifiers(identifiers: Sequence[str], option: str = "-d") -> list[Identifier]:
    """Parse the names; one that cannot be a DNS name or IP address at all is bad input.

    The syntax rules are :func:`~acmedryrun.preflight.identifiers.check_syntax`'s (RFC
    1035 section 2.3.1, RFC 5890/5891: labels, length, A-labels, a trailing dot, a
    misplaced ``*``): the one source of truth, applied here so such a name is a usage
    error before any request.  What a CA's policy refuses (a wildcard without dns-01, a
    public suffix, an internal TLD) stays a ``client_error`` verdict of the run.
    """
    from acmedryrun.preflight.identifiers import check_syntax, parse_identifier

    if isinstance(identifiers, str):
        raise UsageError("identifiers: pass a list of names, not a single string")
    if not all(isinstance(i, str) for i in identifiers):
        raise UsageError("identifiers: every name must be a string")
    idents = [parse_identifier(i) for i in identifiers]
    if not idents:
        raise UsageError(f"{option}: no name given")
    for raw, ident in zip(identifiers, idents, strict=True):
        if not ident.value or any(ch.isspace() for ch in raw.strip()) or "/" in ident.value:
            raise UsageError(f"{option}: {raw!r} is not a domain name or IP address")
        if ident.type == "dns" and ":" in ident.value:
            raise UsageError(f"{option}: {raw!r} is neither an IP address (RFC 4291 section"
                             " 2.2 text form) nor a DNS name")
        broken = check_syntax(ident)
        if broken:
            raise UsageError(f"{option}: {broken[0].detail}. {broken[0].hint}")
    return idents


#: RFC 5322 section 3.2.3 ``atext``: what a dot-atom local part is made of.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
#: RFC 5321 section 4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL_PART = 64


def _email(email: str) -> str:
    """The contact address as a bare addr-spec (``mailto:`` is added when it is sent).

    RFC 5322 section 3.4.1, simplified as ACME CAs apply it (RFC 8555 section 7.3:
    ``mailto:`` contacts): a dot-atom local part, ``@``, a DNS name.  A leading
    ``mailto:`` is accepted and dropped, so it is never doubled.

    Raises:
        UsageError: not one such address.
    """
    from acmedryrun.preflight.identifiers import check_syntax, parse_identifier

    if not isinstance(email, str):
        raise UsageError("--email: expected a string")
    text = email.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    local, at, domain = text.rpartition("@")
    why = None
    if not at or not local or not domain:
        why = "no local@domain"
    elif "," in text or any(ch.isspace() for ch in text):
        why = "one address only, without spaces or commas"
    elif len(local) > MAX_LOCAL_PART or not _LOCAL_PART.fullmatch(local):
        why = f"the local part {local!r} is not an RFC 5322 dot-atom"
    else:
        ident = parse_identifier(domain)
        if ident.type != "dns" or ident.wildcard or "." not in ident.value.strip("."):
            why = f"the domain {domain!r} is not a fully qualified DNS name"
        elif check_syntax(ident):
            why = f"the domain {domain!r} is not a valid DNS name"
        else:
            text = f"{local}@{ident.value}"
    if why is not None:
        raise UsageError(f"--email: {email!r} is not an email address ({why})")
    return text


#: RFC 9110 section 5.6.2 ``token``: what a profile name is (draft-ietf-acme-profiles
#: names them in ``meta.profiles``; Let's Encrypt's are ``classic``, ``tlsserver``, ...).
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _profile(profile: str) -> str:
    if not isinstance(profile, str) or not _TOKEN.fullmatch(profile):
        raise UsageError(f"--profile: {profile!r} is not a profile name (a token: letters,"
                         " digits and !#$%&'*+-.^_`|~, as the CA's meta.profiles lists them)")
    return profile


def _caa_identities(identities: Sequence[str]) -> tuple[str, ...]:
    """The CAA issuer domains (RFC 8659 section 4.2: ``issuer-domain-name``)."""
    from acmedryrun.preflight.identifiers import check_syntax, parse_identifier

    checked = []
    for raw in identities:
        if not isinstance(raw, str) or not raw.strip():
            raise UsageError("--caa-identity: empty")
        ident = parse_identifier(raw)
        if ident.type != "dns" or ident.wildcard or check_syntax(ident) \
                or any(ch.isspace() for ch in raw.strip()):
            raise UsageError(f"--caa-identity: {raw!r} is not a DNS name (an issuer domain"
                             " such as letsencrypt.org, RFC 8659 section 4.2)")
        checked.append(ident.value)
    return tuple(checked)


def _check_solver(solver: Solver) -> None:
    """A solver's ``challenge_type`` must be an ACME challenge type (a typo costs requests)."""
    import difflib

    from acmedryrun.report import CHALLENGE_TYPES

    ctype = getattr(solver, "challenge_type", None)
    if ctype in CHALLENGE_TYPES:
        return
    close = difflib.get_close_matches(str(ctype), CHALLENGE_TYPES, n=1, cutoff=0.6)
    also = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(f"solver: {type(solver).__name__}.challenge_type is {ctype!r}, not one of"
                     f" {', '.join(CHALLENGE_TYPES)}{also}")


_EAB_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _check_eab(eab: Eab) -> None:
    import binascii

    from josepy import b64

    if not eab.kid:
        raise UsageError("--eab-kid: empty")
    if not _EAB_KEY.fullmatch(eab.hmac_key or ""):
        raise UsageError("--eab-hmac-key: not base64url (only A-Z a-z 0-9 - _)")
    try:
        if not b64.b64decode(eab.hmac_key):
            raise ValueError("empty")
    except (ValueError, binascii.Error) as exc:
        raise UsageError("--eab-hmac-key: not a base64url-encoded key") from exc


def _renewing(renewing: bytes | str | os.PathLike[str]) -> bytes:
    """Read and check the certificate to renew (``--renewing``).

    The message names the file, never the ASN.1 parser's own words.
    """
    from cryptography import x509

    from acmedryrun.production.ari import ari_cert_id

    if isinstance(renewing, bytes):
        data, source = renewing, "the certificate given as bytes"
    else:
        data, source = read_input(renewing, "--renewing"), os.fspath(renewing)
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        raise UsageError(f"--renewing: {source} is not a PEM or DER certificate") from None
    try:
        ari_cert_id(cert)
    except ValueError as exc:
        raise UsageError(f"--renewing: {source}: {exc}") from None
    return data


def plan(identifiers: Sequence[str], options: Options) -> Plan:
    """Resolve ``options`` for ``identifiers``; raise UsageError before anything is sent.

    Reads the input files and checks every argument, but sends nothing and writes
    nothing.
    """
    from acmedryrun import certs
    from acmedryrun.preflight.dns import parse_resolver
    from acmedryrun.preflight.identifiers import parse_identifier
    from acmedryrun.solvers import HTTP01Standalone, Solver

    o = options
    target = resolve_directory(o.directory, allow_production=o.allow_production,
                               reference_directory=o.reference_directory)
    if o.ca_bundle is not None:
        _check_ca_bundle(os.fspath(o.ca_bundle))
    verify: str | bool = (
        os.fspath(o.ca_bundle) if o.ca_bundle is not None
        else os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    eab = o.eab if isinstance(o.eab, Eab) else None
    if eab is not None:
        _check_eab(eab)
    csr_info: CsrInfo | None = None
    option = "-d"
    if o.csr is not None:
        if o.key_type is not None:
            raise UsageError(f"--key-type: {o.key_type} together with --csr, whose own key the"
                             " certificate gets: drop --key-type (or --csr)")
        csr_info = certs.load_csr(o.csr.encode() if isinstance(o.csr, str) else o.csr, "the CSR")
        if identifiers:
            given = sorted({parse_identifier(i).value for i in identifiers})
            if given != sorted(set(csr_info.names)):
                raise UsageError(
                    f"-d: {', '.join(given)} do not match the CSR's names"
                    f" ({', '.join(csr_info.names)})")
        identifiers, option = list(csr_info.names), "--csr"
    idents = _identifiers(identifiers, option)
    jwk, new_key_path = account_key_of(o.account_key)
    solver = o.solver if o.solver is not None else HTTP01Standalone(port=80)
    if not isinstance(solver, Solver):
        raise UsageError("solver: expected an acmedryrun.solvers.Solver")
    _check_solver(solver)
    email = _email(o.email) if o.email is not None else None
    profile = _profile(o.profile) if o.profile is not None else None
    # ACMEDRYRUN_DNS_RESOLVER sets a default resolver for every run (containers, CI).
    dns_resolver = o.dns_resolver or os.environ.get("ACMEDRYRUN_DNS_RESOLVER") or None
    resolver = parse_resolver(dns_resolver) if dns_resolver is not None else None
    caa = _caa_identities(o.caa_identities) if o.caa_identities else None
    renewing_pem = _renewing(o.renewing) if o.renewing is not None else None
    if not math.isfinite(o.timeout):
        raise UsageError(f"--timeout: {o.timeout!r} is not a number of seconds")
    ct_policy, ct_url = _ct(o, target)
    return Plan(
        target=target, idents=tuple(idents), solver=solver, verify=verify,
        timeout=o.timeout, key_type=o.key_type or "ec256", csr=csr_info, account_key=jwk,
        new_account_key_path=new_key_path, email=email, eab=eab, profile=profile,
        preflight=o.preflight, dns_resolver=resolver, caa_identities=caa,
        allow_production=o.allow_production, renewing=renewing_pem, ct_policy=ct_policy,
        ct_url=ct_url, ct_cache=o.ct_cache, connections=o.connections,
        run_cache=o.run_cache)


def _ct(o: Options, target: Target) -> tuple[CaPolicy | None, str]:
    """Whose production limits CT is asked about (``--production-policy``, else the known
    directory's CA), and where (``--ct-url``, else crt.sh's JSON interface)."""
    from acmedryrun.production.policy import POLICIES, production_policy

    url = o.ct_url if o.ct_url is not None else DEFAULT_CT_URL
    if o.ct_url is not None:
        url = _check_url(o.ct_url, "--ct-url").text
    if o.production_policy is not None:
        policy = production_policy(o.production_policy)
        if policy is None:
            known = sorted({d.ca for d in directories.KNOWN} | set(POLICIES))
            raise UsageError(f"--production-policy: {o.production_policy!r} is not a known CA"
                             f" ({', '.join(known)})")
    elif target.known is not None:
        policy = production_policy(target.known.ca)
    else:
        policy = None
    return (policy if o.ct and policy is not None and policy.ct_checkable else None), url
