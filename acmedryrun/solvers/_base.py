"""The solver protocol: how acmedryrun gets a challenge answered.

A solver answers one challenge type.  For each challenge of a run acmedryrun
calls :meth:`Solver.prepare`, then :meth:`Solver.perform`; after the CA has
decided (valid, invalid, or the deadline), it calls :meth:`Solver.cleanup` for
every challenge it prepared, also after failures and timeouts.  Around the whole
run, :meth:`Solver.open` (before any request is sent: bind ports, check paths)
and :meth:`Solver.close`.

Failures are reported by raising :class:`SolverFailure` (the subscriber's setup
is at fault, e.g. a hook script exited 1); :meth:`Solver.open` raises
:class:`~acmedryrun.errors.UsageError` for bad input (a port in use, a missing
webroot), which stops the run before it talks to the CA.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from acmedryrun.report import ChallengeType, SolverErrorKind

if TYPE_CHECKING:
    from acmedryrun.deadline import Deadline

#: RFC 8555 section 8.3: the path the CA fetches an http-01 response from.
WELL_KNOWN = "/.well-known/acme-challenge/"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge to answer.

    Attributes:
        type: ``http-01``, ``dns-01`` or ``tls-alpn-01``.
        identifier: The name (``example.com``; a wildcard's base name for dns-01)
            or the IP address to validate.
        identifier_type: ``dns`` or ``ip``.
        wildcard: True when the order asked for ``*.identifier``.
        token: The challenge token (RFC 8555 section 8.1).
        key_authorization: ``token || '.' || base64url(JWK thumbprint)``.
        validation: What the CA checks: the key authorization for http-01, the
            TXT value (base64url SHA-256 of it) for dns-01, the SHA-256 digest
            (hex) for tls-alpn-01.
        url: The challenge URL at the CA.
        deadline: The run's :class:`~acmedryrun.deadline.Deadline` (None: none).
            A solver should finish ``perform`` within it (:meth:`time_left`) and
            stop at once when it is cancelled (``deadline.cancelled``); during
            cleanup it is the one cleanup budget.
    """

    type: str
    identifier: str
    identifier_type: str
    wildcard: bool
    token: str
    key_authorization: str
    validation: str
    url: str
    deadline: Deadline | None = field(default=None, compare=False)

    def time_left(self, floor: float = 0.0) -> float | None:
        """Seconds left of :attr:`deadline` (at least ``floor``), or None without one."""
        if self.deadline is None:
            return None
        return max(floor, self.deadline.remaining())

    @property
    def domain(self) -> str:
        """The name as the subscriber wrote it (with ``*.`` for a wildcard)."""
        return f"*.{self.identifier}" if self.wildcard else self.identifier


class SolverFailure(Exception):
    """A solver could not do its part; the subscriber's setup is at fault."""

    def __init__(self, kind: SolverErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Solver(abc.ABC):
    """Base class of every solver; subclass it to plug in your own machinery.

    Class attributes:
        challenge_type: The ACME challenge type this solver answers: ``"http-01"``,
            ``"dns-01"`` or ``"tls-alpn-01"`` (:data:`~acmedryrun.report.ChallengeType`;
            anything else is a usage error before any request).
        supports_wildcard: Whether it can validate ``*.name`` (only dns-01 can).
        supports_ip: Whether it can validate IP identifiers (RFC 8738: http-01
            and tls-alpn-01 can, dns-01 cannot).
        shareable: Whether :func:`acmedryrun.batch.dry_run_many` may hand one instance
            to concurrent runs; otherwise pass it a factory.
    """

    challenge_type: ClassVar[ChallengeType]
    supports_wildcard: ClassVar[bool] = False
    supports_ip: ClassVar[bool] = False
    #: Whether one instance may serve several concurrent runs (batch mode): its
    #: open/close nest and its per-challenge state is keyed by token.
    shareable: ClassVar[bool] = False

    def open(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Acquire what the solver needs, before any request is sent.

        Raises:
            UsageError: the solver cannot work as configured (port in use, no webroot).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release what :meth:`open` acquired.  Always called after :meth:`open`."""

    def prepare(self, challenge: Challenge) -> None:  # noqa: B027 - optional hook
        """Get ready to answer ``challenge`` (called for all challenges before any perform)."""

    @abc.abstractmethod
    def perform(self, challenge: Challenge) -> None:
        """Make the challenge response available to the CA.

        Raises:
            SolverFailure: the response could not be put in place.
        """

    @abc.abstractmethod
    def cleanup(self, challenge: Challenge) -> None:
        """Remove the challenge response.  Called for every prepared challenge."""

    def describe(self) -> str:
        """A short description for the human output (e.g. ``http-01 on 127.0.0.1:80``)."""
        return self.challenge_type
