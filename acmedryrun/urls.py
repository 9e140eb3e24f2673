"""The one URL parser: every URL acmedryrun checks is the URL it connects to.

A URL given by the user (``--directory``) or sent by a CA (directory links,
``Location``, ``Link``, order, authorization and challenge URLs) is parsed here
once, strictly, into a :class:`Url`; what is requested is :attr:`Url.text`, the
canonical form rebuilt from the parsed parts, so no other parser ever sees the
original spelling.  That closes the gap between "checked as host A" and
"connected to host B" (a backslash, userinfo, percent-encoding, a trailing dot,
an odd IP spelling).

Rules (RFC 3986 section 3, RFC 8555 section 6.1):

* ``https``; plain ``http`` only to a loopback host (RFC 8555 section 6.1
  requires HTTPS; a local test CA may use HTTP);
* no userinfo, no fragment, no backslash, no whitespace or control character,
  nothing but RFC 3986 characters in the path and query, valid ``%XX`` escapes;
* the host: a dotted-quad IPv4 address, a bracketed IPv6 address (no zone), or a
  DNS name of 1-63 octet labels and at most 253 octets, compared after
  percent-decoding, IDNA 2008 (UTS 46), lower-casing and dropping a final dot;
  an all-numeric last label that is not a dotted quad (``2130706433``,
  ``0x7f.1``) is refused, since resolvers read such names as addresses;
* a port, if any, is 1-65535.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

import idna

__all__ = ["BadUrl", "Url", "is_loopback_host", "parse_url"]

#: RFC 1035 section 2.3.4, RFC 5890: labels of 1-63 octets, names of at most 253.
MAX_LABEL = 63
MAX_NAME = 253
#: No ACME URL comes near this (Boulder's are under 200 characters).
MAX_URL = 4096

_SCHEME_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)
#: RFC 3986 section 3.3/3.4: pchar, "/" and "?" (percent escapes checked separately).
_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_DEFAULT_PORTS = {"https": 443, "http": 80}


class BadUrl(ValueError):
    """A URL acmedryrun will not use; the message says why (without the URL)."""


@dataclass(frozen=True, slots=True)
class Url:
    """A checked URL.

    Attributes:
        scheme: ``https`` or ``http``.
        host: The normalized host: an A-label DNS name without a final dot, a
            dotted-quad IPv4 address, or an IPv6 address (without brackets).
        port: The explicit port, or None for the scheme's default.
        path: The path and query (``/`` at least), exactly as sent.
    """

    scheme: str
    host: str
    port: int | None
    path: str

    @property
    def text(self) -> str:
        """The canonical URL, the only form that is ever requested."""
        return f"{self.scheme}://{self.authority}{self.path}"

    @property
    def authority(self) -> str:
        """``host[:port]`` with an IPv6 address in brackets; no default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is None or self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def effective_port(self) -> int:
        """The port connected to."""
        return self.port if self.port is not None else _DEFAULT_PORTS[self.scheme]

    @property
    def is_ip(self) -> bool:
        """True when the host is an IP address literal."""
        return _ip(self.host) is not None

    def __str__(self) -> str:
        return self.text


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def _host(raw: str) -> str:
    """Normalize the host part of an authority; raise BadUrl when it is not one."""
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise BadUrl("an IPv6 address must be written in brackets")
        inner = raw[1:-1]
        if "%" in inner:
            raise BadUrl("an IPv6 zone identifier is not allowed")
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise BadUrl(f"{inner!r} is not an IPv6 address") from None
    if "%" in raw:
        if _ESCAPE.search(raw):
            raise BadUrl("the host has an invalid %-escape")
        raw = unquote(raw, errors="strict")
    if not raw:
        raise BadUrl("no host")
    if any(ch.isspace() or ord(ch) < 0x21 or ch in "\\/@:[]%?#" for ch in raw):
        raise BadUrl("the host has a character no host name has")
    name = raw[:-1] if raw.endswith(".") else raw
    if not name:
        raise BadUrl("no host")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise BadUrl(f"the host is not a valid IDNA 2008 name ({exc})") from None
    name = name.lower()
    labels = name.split(".")
    if labels[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]*", labels[-1]):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise BadUrl("the host is an IP address in a form other than a dotted"
                         " quad") from None
    if len(name) > MAX_NAME:
        raise BadUrl(f"the host is longer than {MAX_NAME} octets")
    for label in labels:
        if not label:
            raise BadUrl("the host has an empty label")
        if len(label) > MAX_LABEL:
            raise BadUrl(f"the host has a label longer than {MAX_LABEL} octets")
        if not _LABEL.fullmatch(label):
            raise BadUrl(f"the host label {label!r} is not letters, digits and hyphens")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                raise BadUrl(f"the host label {label!r} is not a valid A-label") from None
    return name


def parse_url(text: object) -> Url:
    """Parse and check one absolute URL (the rules are in the module docstring).

    Raises:
        BadUrl: it breaks a rule; the message names the rule, not the URL.
    """
    if not isinstance(text, str):
        raise BadUrl(f"a URL must be a string, not {type(text).__name__}")
    if len(text) > MAX_URL:
        raise BadUrl(f"longer than {MAX_URL} characters")
    if "\\" in text:
        raise BadUrl("it contains a backslash")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in text):
        raise BadUrl("it contains whitespace or a control character")
    m = _SCHEME_AUTHORITY.fullmatch(text)
    if m is None:
        raise BadUrl("not an absolute URL (scheme://host/path)")
    scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3)
    if scheme not in _DEFAULT_PORTS:
        raise BadUrl(f"the scheme {scheme!r} is neither https nor http")
    if "@" in authority:
        raise BadUrl("it contains userinfo (user@host)")
    if "#" in rest:
        raise BadUrl("it contains a fragment")
    port: int | None = None
    host_part = authority
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise BadUrl("an unclosed IPv6 bracket")
        host_part, after = authority[:close + 1], authority[close + 1:]
        if after:
            if not after.startswith(":"):
                raise BadUrl("characters after the IPv6 address")
            port_text = after[1:]
            port = _port(port_text)
    elif ":" in authority:
        host_part, _, port_text = authority.rpartition(":")
        port = _port(port_text)
    host = _host(host_part)
    if not rest:
        rest = "/"
    if not rest.startswith(("/", "?")):
        raise BadUrl("the path does not start with '/'")
    if rest.startswith("?"):
        rest = "/" + rest
    if not _PATH.fullmatch(rest):
        raise BadUrl("the path has characters that must be %-escaped")
    if _ESCAPE.search(rest):
        raise BadUrl("the path has an invalid %-escape")
    if scheme == "http" and not is_loopback_host(host):
        raise BadUrl("plain http is allowed only to a loopback host (RFC 8555 section 6.1"
                     " requires https)")
    return Url(scheme, host, port, rest)


def _port(text: str) -> int | None:
    if text == "":
        return None
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise BadUrl("the port is not a number from 1 to 65535")
    return int(text)
