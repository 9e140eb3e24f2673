"""dns-01 (RFC 8555 section 8.4): publish a TXT record at ``_acme-challenge.<name>``.

``DNS01Hook`` runs the subscriber's own commands with the environment of
certbot's manual hooks (``--manual-auth-hook`` / ``--manual-cleanup-hook``), so
scripts written for ``certbot --manual`` work unchanged.  ``DNS01Callback``
calls two Python callables instead, for ACME clients that drive their DNS
provider in-process.

Both can wait until the record is visible at a resolver before the CA is told
to look (:func:`wait_for_txt`), because a CA that queries too early fails the
challenge although the setup is right.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from acmedryrun.errors import UsageError
from acmedryrun.preflight.dns import parse_resolver
from acmedryrun.report import ChallengeType, SolverErrorKind
from acmedryrun.solvers._base import Challenge, Solver, SolverFailure
from acmedryrun.solvers._hooks import (
    DEFAULT_HOOK_TIMEOUT,
    HookResult,
    ManualHooks,
    check_hook_command,
    redact_command,
    run_hook,
)

#: RFC 8555 section 8.4: the label the CA queries under the validated name.
CHALLENGE_LABEL = "_acme-challenge"

DEFAULT_PROPAGATION_TIMEOUT = 120.0


def record_name(challenge: Challenge) -> str:
    """The TXT owner name for ``challenge`` (RFC 8555 section 8.4), without a final dot.

    For a wildcard the CA validates the base name (RFC 8555 section 7.1.3), so
    ``*.example.com`` and ``example.com`` share ``_acme-challenge.example.com``.
    """
    return f"{CHALLENGE_LABEL}.{challenge.identifier.rstrip('.')}"


# ------------------------------------------------------------------ propagation


def _txt_values(name: str, resolver: dns.resolver.Resolver, lifetime: float) -> set[str]:
    """The TXT values at ``name`` right now (empty on NXDOMAIN, no answer or error)."""
    try:
        answer = resolver.resolve(dns.name.from_text(name), dns.rdatatype.TXT,
                                  lifetime=lifetime, raise_on_no_answer=False, search=False)
    except (dns.exception.DNSException, OSError):  # not there (yet), or unreachable
        return set()
    values: set[str] = set()
    for rdata in answer.rrset or ():
        # A TXT value longer than 255 octets is split into several strings
        # (RFC 1035 section 3.3.14); the CA concatenates them (RFC 8555 section 8.4).
        values.add(b"".join(rdata.strings).decode("utf-8", "replace"))
    return values


def wait_for_txt(name: str, value: str, resolver: str, timeout: float, *,
                 interval: float = 1.0) -> bool:
    """Poll ``resolver`` until the TXT record ``name`` has ``value``, for at most ``timeout`` s.

    The resolver is asked directly, without a local cache.  Point it at an
    authoritative server of the zone (or a test server): a recursive resolver
    caches the "no such record" answer of an early poll for the zone's negative
    TTL (RFC 2308), which can outlast ``timeout``.

    Args:
        name: The owner name, e.g. ``_acme-challenge.example.com`` (a final dot is optional).
        value: The TXT value to look for (among any others at that name).
        resolver: ``host[:port]`` of the server to ask; the host is an IP address.
        timeout: Give up after this many seconds.
        interval: Seconds between polls (grows to 4x while waiting).

    Returns:
        True once the value is visible, False if it never was within ``timeout``.

    Raises:
        ValueError: ``resolver`` is not ``ip[:port]``.
    """
    host, port = parse_resolver(resolver)
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [host]
    res.port = port
    deadline = time.monotonic() + max(timeout, 0.0)
    pause = interval
    while True:
        remaining = deadline - time.monotonic()
        if value in _txt_values(name, res, max(0.1, min(2.0, remaining))):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 1.5, interval * 4)


# ------------------------------------------------------------------ base


class _DNS01Solver(Solver):
    """What both dns-01 solvers share: the run's challenge list and the propagation wait.

    RFC 8555 section 8.4 puts all of a run's TXT records in place before the
    CA is asked to validate any; scripts often batch updates and publish on
    the last one (``CERTBOT_REMAINING_CHALLENGES=0``), so the propagation wait
    starts only after the last prepared challenge was performed, and then
    checks every record.
    """

    challenge_type: ClassVar[ChallengeType] = "dns-01"
    supports_wildcard: ClassVar[bool] = True
    supports_ip: ClassVar[bool] = False  # RFC 8738 section 7: no dns-01 for IP identifiers

    def __init__(self, propagation_resolver: str | None, propagation_timeout: float) -> None:
        if propagation_resolver is not None:
            parse_resolver(propagation_resolver, "propagation_resolver")
        if not propagation_timeout > 0:
            raise UsageError(f"propagation_timeout: {propagation_timeout!r} is not positive")
        self.propagation_resolver = propagation_resolver
        self.propagation_timeout = float(propagation_timeout)
        self._challenges: list[Challenge] = []   # in prepare() order
        self._performed: list[Challenge] = []    # set_txt attempted, in order
        self._unconfirmed: list[Challenge] = []  # performed, propagation not yet seen

    def close(self) -> None:
        self._challenges.clear()
        self._performed.clear()
        self._unconfirmed.clear()

    def prepare(self, challenge: Challenge) -> None:
        if challenge not in self._challenges:
            self._challenges.append(challenge)

    def perform(self, challenge: Challenge) -> None:
        self.prepare(challenge)  # also works for a caller that skips prepare()
        if challenge not in self._performed:
            self._performed.append(challenge)
        self._set(challenge)
        if self.propagation_resolver is None:
            return
        self._unconfirmed.append(challenge)
        if all(ch in self._performed for ch in self._challenges):
            self._wait_for_propagation(self.propagation_resolver)

    def cleanup(self, challenge: Challenge) -> None:
        if challenge in self._performed:
            self._performed.remove(challenge)
            self._clear(challenge)

    def _wait_for_propagation(self, resolver: str) -> None:
        deadline = time.monotonic() + self.propagation_timeout
        while self._unconfirmed:
            ch = self._unconfirmed[0]
            name = record_name(ch)
            if not wait_for_txt(name, ch.validation, resolver,
                                max(0.0, deadline - time.monotonic())):
                raise SolverFailure(
                    SolverErrorKind.OTHER,
                    f"TXT record {name} with value {ch.validation!r} not visible at resolver"
                    f" {resolver} after {self.propagation_timeout:g} s")
            self._unconfirmed.pop(0)

    def _position(self, challenge: Challenge) -> tuple[int, list[Challenge]]:
        challenges = self._challenges or [challenge]
        return challenges.index(challenge), challenges

    @abc.abstractmethod
    def _set(self, challenge: Challenge) -> None:
        """Publish the TXT record of ``challenge``."""

    @abc.abstractmethod
    def _clear(self, challenge: Challenge) -> None:
        """Remove the TXT record of ``challenge``."""


# ------------------------------------------------------------------ hooks


class DNS01Hook(_DNS01Solver):
    """Answer dns-01 by running certbot-compatible hook commands.

    Each command is a shell command line, run as ``/bin/sh -c COMMAND`` (as
    certbot runs ``--manual-auth-hook``), once per challenge, with the parent
    environment plus exactly the variables certbot's manual plugin sets for
    dns-01 (see :class:`~acmedryrun.solvers._hooks.ManualHooks`):

    - ``CERTBOT_DOMAIN`` / ``CERTBOT_IDENTIFIER``: the name validated (a
      wildcard's base name, without ``*.``);
    - ``CERTBOT_VALIDATION``: the TXT value to publish at
      ``_acme-challenge.$CERTBOT_DOMAIN``;
    - ``CERTBOT_REMAINING_CHALLENGES``: how many challenges come after this one;
    - ``CERTBOT_ALL_DOMAINS`` / ``CERTBOT_ALL_IDENTIFIERS``: every challenged
      name of the run, comma-separated;
    - cleanup only: ``CERTBOT_AUTH_OUTPUT``, the auth hook's stdout (stripped).

    No ``CERTBOT_TOKEN``: certbot sets it only for http-01, and scripts that
    serve both challenge types branch on it.  Inherited ``CERTBOT_*`` variables
    are dropped first, so a run started from inside another certbot hook sees
    only its own.

    Args:
        auth_hook: Publishes the record (``--dns-01-auth-hook``).
        cleanup_hook: Removes it (``--dns-01-cleanup-hook``); optional.  It runs
            for every challenge whose auth hook ran, also after failures.
        timeout: Seconds each hook may run before its process group is killed.
        propagation_resolver: ``ip[:port]`` of a DNS server to poll until every
            record is visible before the CA is asked to validate; None (default)
            does not wait.
        propagation_timeout: How long to wait for that, in seconds.

    Raises:
        UsageError: a hook's program or its ``#!`` interpreter is not found or not
            executable, or a bad timeout or resolver.
    """

    AUTH_OPTION: ClassVar[str] = "--dns-01-auth-hook"
    CLEANUP_OPTION: ClassVar[str] = "--dns-01-cleanup-hook"

    def __init__(self, auth_hook: str, cleanup_hook: str | None = None, *,
                 timeout: float = DEFAULT_HOOK_TIMEOUT,
                 propagation_resolver: str | None = None,
                 propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT) -> None:
        super().__init__(propagation_resolver, propagation_timeout)
        self.hooks = ManualHooks(auth_hook, cleanup_hook, timeout=timeout,
                                 auth_option=self.AUTH_OPTION,
                                 cleanup_option=self.CLEANUP_OPTION)

    @property
    def auth_hook(self) -> str:
        """The auth hook command."""
        return self.hooks.auth_hook

    @property
    def cleanup_hook(self) -> str | None:
        """The cleanup hook command, if any."""
        return self.hooks.cleanup_hook

    @property
    def timeout(self) -> float:
        """Seconds each hook may run."""
        return self.hooks.timeout

    def describe(self) -> str:
        return f"dns-01 via hook {self.hooks.describe()!r}"

    def open(self) -> None:
        self.hooks.check()  # the files may have changed since __init__

    def close(self) -> None:
        super().close()
        self.hooks.reset()

    def environment(self, challenge: Challenge) -> dict[str, str]:
        """The hook environment for ``challenge`` (certbot's manual-hook variables)."""
        return self.hooks.environment(challenge, self._position(challenge)[1])

    def _set(self, challenge: Challenge) -> None:
        self.hooks.auth(challenge, self._position(challenge)[1])

    def _clear(self, challenge: Challenge) -> None:
        self.hooks.cleanup(challenge, self._position(challenge)[1])


# ------------------------------------------------------------------ callables


def _callable_name(fn: Callable[..., object]) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return repr(fn)
    return f"{module}.{name}" if module and module != "builtins" else str(name)


class DNS01Callback(_DNS01Solver):
    """Answer dns-01 by calling two Python callables.

    Each is called as ``fn(record_name, value)`` with ``record_name`` like
    ``_acme-challenge.example.com`` (no final dot; a wildcard's base name) and
    the TXT value (RFC 8555 section 8.4).  ``set_txt`` must *add* the value
    (a wildcard and its base name share one owner name with two values);
    ``clear_txt`` removes that value.  ``clear_txt`` is called for every
    challenge ``set_txt`` was called for, also after failures.

    An exception from either becomes a ``HookFailed`` problem naming the callable.

    Args:
        set_txt: Publishes a TXT value.
        clear_txt: Removes it.
        propagation_resolver: ``ip[:port]`` of a DNS server to poll until every
            record is visible; None (default) does not wait.
        propagation_timeout: How long to wait for that, in seconds.
    """

    def __init__(self, set_txt: Callable[[str, str], None],
                 clear_txt: Callable[[str, str], None], *,
                 propagation_resolver: str | None = None,
                 propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT) -> None:
        super().__init__(propagation_resolver, propagation_timeout)
        for label, fn in (("set_txt", set_txt), ("clear_txt", clear_txt)):
            if not callable(fn):
                raise UsageError(f"DNS01Callback: {label} is not callable")
        self.set_txt = set_txt
        self.clear_txt = clear_txt

    def describe(self) -> str:
        return f"dns-01 via {_callable_name(self.set_txt)}"

    def _call(self, label: str, fn: Callable[[str, str], None], challenge: Challenge) -> None:
        try:
            fn(record_name(challenge), challenge.validation)
        except Exception as exc:  # any failure of user code is the subscriber's
            raise SolverFailure(
                SolverErrorKind.HOOK_FAILED,
                f"{label} callable {_callable_name(fn)} raised {type(exc).__name__}: {exc}",
            ) from exc

    def _set(self, challenge: Challenge) -> None:
        self._call("set_txt", self.set_txt, challenge)

    def _clear(self, challenge: Challenge) -> None:
        self._call("clear_txt", self.clear_txt, challenge)


__all__: Sequence[str] = [
    "CHALLENGE_LABEL", "DNS01Callback", "DNS01Hook", "HookResult", "check_hook_command",
    "record_name", "redact_command", "run_hook", "wait_for_txt",
]
