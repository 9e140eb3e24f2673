"""Known ACME directories: staging/production pairs and what each CA's policy is.

Pure data plus lookups.  CONTRACT.md's "Known directories" table is the spec.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit


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


def _normalize(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        port_number = parts.port
    except ValueError:  # a malformed URL matches no known directory
        return url.strip()
    host = (parts.hostname or "").lower()
    port = f":{port_number}" if port_number and port_number != 443 else ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


_BY_URL = {_normalize(d.url): d for d in KNOWN}


def by_alias(alias: str) -> KnownDirectory | None:
    """The known directory with this alias, or None."""
    return _BY_ALIAS.get(alias)


def lookup(url: str) -> KnownDirectory | None:
    """The known directory at this URL (scheme/host case and a trailing slash ignored)."""
    return _BY_URL.get(_normalize(url))


def twin_of(known: KnownDirectory) -> KnownDirectory | None:
    """The production twin of a known staging directory."""
    return _BY_ALIAS[known.twin] if known.twin else None


def aliases() -> tuple[str, ...]:
    """Every alias, in the order of CONTRACT.md's table."""
    return tuple(d.alias for d in KNOWN)
