"""Known ACME directories: staging/production pairs, and the production guard's hosts.

Pure data plus lookups.  CONTRACT.md's "Known directories" table is the spec.
Every comparison goes through :func:`acmedryrun.urls.parse_url`, so a host is
matched in any spelling (case, a final dot, percent-encoding, IDNA).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acmedryrun.urls import Url


class Kind(str, enum.Enum):
    """Whether a directory is a staging (test) or a production (trusted) CA."""

    STAGING = "staging"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class KnownDirectory:
    """One directory acmedryrun knows by name.

    Attributes:
        alias: The short name accepted by ``directory=`` and ``--directory``.
        url: The directory URL.
        kind: staging or production.
        twin: The alias of the production twin (for a staging directory).
        ca: Which CA runs it (keys :data:`POLICIES`).
        caa_identities: The issuer domains this CA honours in CAA records.
    """

    alias: str
    url: str
    kind: Kind
    twin: str | None
    ca: str
    caa_identities: tuple[str, ...]


LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
GOOGLE_STAGING = "https://dv.acme-v02.test-api.pki.goog/directory"
GOOGLE = "https://dv.acme-v02.api.pki.goog/directory"
BUYPASS_STAGING = "https://api.test4.buypass.no/acme/directory"
BUYPASS = "https://api.buypass.com/acme/directory"

_LE_CAA = ("letsencrypt.org",)
_GOOGLE_CAA = ("pki.goog",)
_BUYPASS_CAA = ("buypass.com", "buypass.no")

KNOWN: tuple[KnownDirectory, ...] = (
    KnownDirectory("letsencrypt-staging", LETSENCRYPT_STAGING, Kind.STAGING, "letsencrypt",
                   "letsencrypt", _LE_CAA),
    KnownDirectory("letsencrypt", LETSENCRYPT, Kind.PRODUCTION, None, "letsencrypt", _LE_CAA),
    KnownDirectory("google-staging", GOOGLE_STAGING, Kind.STAGING, "google", "google",
                   _GOOGLE_CAA),
    KnownDirectory("google", GOOGLE, Kind.PRODUCTION, None, "google", _GOOGLE_CAA),
    KnownDirectory("buypass-staging", BUYPASS_STAGING, Kind.STAGING, "buypass", "buypass",
                   _BUYPASS_CAA),
    KnownDirectory("buypass", BUYPASS, Kind.PRODUCTION, None, "buypass", _BUYPASS_CAA),
)

DEFAULT_ALIAS = "letsencrypt-staging"

_BY_ALIAS = {d.alias: d for d in KNOWN}


def _key(url: str | Url) -> tuple[str, str, int, str] | None:
    from acmedryrun.urls import BadUrl, parse_url

    try:
        parsed = parse_url(url.strip()) if isinstance(url, str) else url
    except BadUrl:  # a malformed URL matches no known directory
        return None
    return parsed.scheme, parsed.host, parsed.effective_port, parsed.path.rstrip("/")


@functools.cache
def _by_url() -> Mapping[tuple[str, str, int, str] | None, KnownDirectory]:
    return {_key(d.url): d for d in KNOWN}


@functools.cache
def _by_host() -> Mapping[Kind, Mapping[str, KnownDirectory]]:
    """The hosts of each kind of known directory (every resource of a known CA lives on
    its directory's host).  Built on first use: the URL parser is not needed before."""
    from acmedryrun.urls import parse_url

    return {kind: {parse_url(d.url).host: d for d in KNOWN if d.kind is kind} for kind in Kind}
#: The resources of a directory (RFC 8555 section 7.1.1, RFC 9773 section 3).
ENDPOINTS: tuple[str, ...] = (
    "newNonce", "newAccount", "newOrder", "newAuthz", "revokeCert", "keyChange", "renewalInfo",
)


def by_alias(alias: str) -> KnownDirectory | None:
    """The known directory with this alias, or None."""
    return _BY_ALIAS.get(alias)


def lookup(url: str | Url) -> KnownDirectory | None:
    """The known directory at this URL (any spelling of the host, a trailing slash ignored)."""
    key = _key(url)
    return _by_url().get(key) if key is not None else None


def production_host(url: Url) -> KnownDirectory | None:
    """The known production CA whose host ``url`` is on, or None (the production guard)."""
    return _by_host()[Kind.PRODUCTION].get(url.host)


def twin_of(known: KnownDirectory) -> KnownDirectory | None:
    """The production twin of a known staging directory."""
    return _BY_ALIAS[known.twin] if known.twin else None


def staging_of(known: KnownDirectory) -> KnownDirectory | None:
    """The staging twin of a known production directory (None for a staging one)."""
    return next((d for d in KNOWN if d.twin == known.alias), None)


def aliases() -> tuple[str, ...]:
    """Every alias, in the order of CONTRACT.md's table."""
    return tuple(d.alias for d in KNOWN)


def by_endpoints(directory: Mapping[str, Any], kind: Kind) -> KnownDirectory | None:
    """The known CA of ``kind`` whose host serves this directory's resources.  Pure.

    A directory reached through another URL (a proxy, a mirror, a typo'd alias) is
    still production when its ``newNonce``, ``newAccount``, ``newOrder`` or other
    resources live on a production CA's host: a dry run there would count against
    real rate limits and issue a trusted certificate.
    """
    from acmedryrun.urls import BadUrl, parse_url

    hosts = _by_host()[kind]
    for name in ENDPOINTS:
        value = directory.get(name)
        if not isinstance(value, str):
            continue
        try:
            host = parse_url(value).host
        except BadUrl:
            continue
        if host in hosts:
            return hosts[host]
    return None
