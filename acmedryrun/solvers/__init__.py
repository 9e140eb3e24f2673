"""Challenge solvers: one small protocol, several built in.

Subclass :class:`Solver` to plug in your own machinery (see its docstring and
``examples/client_backend.py``).
"""

from __future__ import annotations

from acmedryrun.solvers._base import Challenge, Solver, SolverFailure
from acmedryrun.solvers.http01 import HTTP01Standalone, HTTP01Webroot

__all__ = ["Challenge", "HTTP01Standalone", "HTTP01Webroot", "Solver", "SolverFailure"]
