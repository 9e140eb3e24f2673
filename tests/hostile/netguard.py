"""Keep every socket of this process on loopback, and record who tried to leave it.

A hostile CA points the client at production (redirects, ``Location``, directory
links, userinfo tricks).  To prove the client never follows, without a packet ever
leaving the machine, a PEP 578 audit hook (``sys.addaudithook``) watches the
``socket.getaddrinfo``, ``socket.gethostbyname``, ``socket.connect`` and
``socket.sendto`` events of the whole process.  While a :class:`Recording` is
active, any of them aimed at something other than loopback is *recorded* and
*blocked*: the hook raises the ``OSError`` the operating system would raise for
an unknown name (``socket.gaierror``) or a refused connection, so the client
sees an ordinary network failure and the test sees exactly which host it tried.

Why an audit hook rather than a patched resolver: it needs no change to
acmedryrun or its libraries (``requests``/``urllib3`` call ``socket.getaddrinfo``
for every connection, IP literals included), and it sees the host *as the
library is about to use it*, which is what matters for
``https://acme-v02.api.letsencrypt.org\\@127.0.0.1/`` (checked as 127.0.0.1,
connected to production).

An audit hook cannot be removed, so it is installed once per process and is a
no-op unless a recording is active.  Outside a recording nothing is blocked.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
import threading
import unicodedata
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "PRODUCTION_HOSTS",
    "Contact",
    "Recording",
    "is_loopback",
    "normalize_host",
    "production_host",
    "record",
]

#: The production CAs of CONTRACT.md's "Known directories" table, plus the address
#: ``acme-v02.api.letsencrypt.org`` resolved to when this harness was written (used
#: as the "IP literal" spelling of production; nothing is ever sent there).
PRODUCTION_HOSTS: frozenset[str] = frozenset({
    "acme-v02.api.letsencrypt.org",
    "dv.acme-v02.api.pki.goog",
    "api.buypass.com",
    "172.65.32.248",
})

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def normalize_host(host: str) -> str:
    """``host`` as a guard should compare it: percent-decoded, NFKC, IDNA, lower, no dot.

    Mirrors CONTRACT.md ("hosts are compared after IDNA, percent-decoding, case and
    trailing-dot normalisation"); a host that is not valid IDNA is only lower-cased.
    """
    text = urllib.parse.unquote(host).strip().strip("[]")
    text = unicodedata.normalize("NFKC", text).replace("\u3002", ".")
    text = text.lower().rstrip(".")
    with contextlib.suppress(UnicodeError, ValueError):
        text = text.encode("idna").decode("ascii")
    return text


def production_host(host: str) -> bool:
    """True when ``host`` in any spelling is one of :data:`PRODUCTION_HOSTS`."""
    return normalize_host(host) in PRODUCTION_HOSTS


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and the loopback names."""
    name = normalize_host(host)
    if name in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True, slots=True)
class Contact:
    """One blocked attempt to leave loopback.

    Attributes:
        event: The audit event (``socket.getaddrinfo``, ``socket.connect``, ...).
        host: The host as the library passed it.
        port: The port, when the event has one.
        production: True when the host, normalised, is a production CA's.
        thread: The name of the thread that tried.
    """

    event: str
    host: str
    port: int | None
    production: bool
    thread: str

    def __str__(self) -> str:
        what = "production CA" if self.production else "non-loopback host"
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.event} to {what} {self.host!r}{port} (thread {self.thread})"


@dataclass(slots=True)
class Recording:
    """The contacts blocked while one :func:`record` block was active."""

    contacts: list[Contact] = field(default_factory=list)
    #: Every audited network event (loopback included), for "zero requests" checks.
    events: list[tuple[str, str, int | None]] = field(default_factory=list)

    @property
    def production(self) -> list[Contact]:
        """The contacts aimed at a production CA (in any spelling)."""
        return [c for c in self.contacts if c.production]


_lock = threading.Lock()
_active: list[Recording] = []
_installed = False


def _host_port(event: str, args: tuple[object, ...]) -> tuple[str, int | None] | None:
    """The (host, port) an audited socket event targets, or None for non-IP targets."""
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        host = args[0] if args else None
        port = args[1] if event == "socket.getaddrinfo" and len(args) > 1 else None
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str) or not host:
            return None
        return host, port if isinstance(port, int) else None
    if event in ("socket.connect", "socket.sendto"):
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and address and isinstance(address[0], str):
            port = address[1] if len(address) > 1 and isinstance(address[1], int) else None
            return address[0], port
    return None


def _hook(event: str, args: tuple[object, ...]) -> None:
    if not event.startswith("socket.") or not _active:
        return
    target = _host_port(event, args)
    if target is None:
        return
    host, port = target
    with _lock:
        recordings = list(_active)
    for rec in recordings:
        rec.events.append((event, host, port))
    if is_loopback(host):
        return
    contact = Contact(event, host, port, production_host(host),
                      threading.current_thread().name)
    for rec in recordings:
        rec.contacts.append(contact)
    if event.startswith("socket.gethost") or event == "socket.getaddrinfo":
        raise socket.gaierror(socket.EAI_NONAME,
                              f"hostile harness: {host!r} is not loopback (blocked)")
    raise ConnectionRefusedError(errno.ECONNREFUSED,
                                 f"hostile harness: {host!r} is not loopback (blocked)")


def install() -> None:
    """Install the audit hook (once per process; later calls do nothing)."""
    global _installed  # noqa: PLW0603 - one hook per process, by the nature of audit hooks
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


@contextlib.contextmanager
def record() -> Iterator[Recording]:
    """Block and record every non-loopback network attempt of this process meanwhile."""
    install()
    rec = Recording()
    with _lock:
        _active.append(rec)
    try:
        yield rec
    finally:
        with _lock:
            _active.remove(rec)
