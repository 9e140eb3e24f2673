"""Challenge solvers: one small protocol, several built in.

Subclass :class:`Solver` to plug in your own machinery (see its docstring and
``examples/client_backend.py``).  The built-in solvers are imported on first use,
so ``import acmedryrun`` does not pay for servers a run does not start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acmedryrun._lazy import lazy_getattr
from acmedryrun.report import CHALLENGE_TYPES, ChallengeType, SolverErrorKind
from acmedryrun.solvers._base import Challenge, Solver, SolverFailure

if TYPE_CHECKING:
    from acmedryrun.solvers.dns01 import DNS01Callback, DNS01Hook
    from acmedryrun.solvers.http01 import HTTP01Standalone, HTTP01Webroot
    from acmedryrun.solvers.http01_hook import HTTP01Hook
    from acmedryrun.solvers.tlsalpn01 import TLSALPN01Standalone

_LAZY = {
    "DNS01Callback": "acmedryrun.solvers.dns01",
    "DNS01Hook": "acmedryrun.solvers.dns01",
    "HTTP01Hook": "acmedryrun.solvers.http01_hook",
    "HTTP01Standalone": "acmedryrun.solvers.http01",
    "HTTP01Webroot": "acmedryrun.solvers.http01",
    "TLSALPN01Standalone": "acmedryrun.solvers.tlsalpn01",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "CHALLENGE_TYPES",
    "Challenge",
    "ChallengeType",
    "DNS01Callback",
    "DNS01Hook",
    "HTTP01Hook",
    "HTTP01Standalone",
    "HTTP01Webroot",
    "Solver",
    "SolverErrorKind",
    "SolverFailure",
    "TLSALPN01Standalone",
]
