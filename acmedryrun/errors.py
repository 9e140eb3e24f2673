"""Exceptions acmedryrun raises.  There are few by design::

    ValueError
     +-- UsageError        bad arguments or input files; raised before any request
    Exception
     +-- Cancelled         the run was cancelled (Ctrl-C, ``cancel=``): it has no verdict

A failed dry run is never an exception: it is a :class:`~acmedryrun.report.Report`
whose verdict says why (see :meth:`~acmedryrun.report.Report.raise_for_verdict`).
Anything else that escapes :func:`acmedryrun.dry_run` is a bug in acmedryrun.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad arguments or input (an unknown alias, an unreadable file, a port in use).

    Raised before any network request, with a one-line message naming the input.
    """


class Cancelled(Exception):
    """The run was cancelled before it reached a verdict (``cancel=`` was set, or Ctrl-C).

    The run stopped at its next request or wait and removed what its solver had
    placed; a cancelled run says nothing about staging or production.
    """
