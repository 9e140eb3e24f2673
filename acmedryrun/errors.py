"""Exceptions acmedryrun raises.  There are few by design::

    ValueError
     +-- UsageError        bad arguments or input files; raised before any request

A failed dry run is never an exception: it is a :class:`~acmedryrun.report.Report`
whose verdict says why (see :meth:`~acmedryrun.report.Report.raise_for_verdict`).
Anything else that escapes :func:`acmedryrun.dry_run` is a bug in acmedryrun.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad arguments or input (an unknown alias, an unreadable file, a port in use).

    Raised before any network request, with a one-line message naming the input.
    """
