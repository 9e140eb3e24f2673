"""acmedryrun: ACME (RFC 8555) dry runs that tell a broken setup from a flaky staging CA.

    >>> import acmedryrun
    >>> report = acmedryrun.dry_run(["example.com"], directory="letsencrypt-staging")
    >>> report.verdict, report.prod_likely_to_succeed

The whole public interface is in the README's cheat sheet; the failure taxonomy
(whose fault is what, every problem name) is in ``docs/TAXONOMY.md``, generated from
:mod:`acmedryrun.taxonomy`, and ``acmedryrun explain NAME`` prints one entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acmedryrun._lazy import lazy_getattr
from acmedryrun.errors import Cancelled, UsageError

if TYPE_CHECKING:
    from acmedryrun.api import dry_run
    from acmedryrun.directories import (
        BUYPASS,
        BUYPASS_STAGING,
        GOOGLE,
        GOOGLE_STAGING,
        LETSENCRYPT,
        LETSENCRYPT_STAGING,
    )
    from acmedryrun.options import Eab, Options
    from acmedryrun.report import (
        Cause,
        CertificateSummary,
        ChallengeType,
        Confidence,
        DryRunFailed,
        Event,
        EventKind,
        Problem,
        Report,
        RequestStats,
        Retry,
        Severity,
        Step,
        StepResult,
        StepStatus,
        Verdict,
    )

# Imported on first use (PEP 562): `import acmedryrun` and `acmedryrun --help` stay cheap.
_LAZY = {
    "dry_run": "acmedryrun.api",
    **dict.fromkeys(("BUYPASS", "BUYPASS_STAGING", "GOOGLE", "GOOGLE_STAGING", "LETSENCRYPT",
                     "LETSENCRYPT_STAGING"), "acmedryrun.directories"),
    "Eab": "acmedryrun.options",
    "Options": "acmedryrun.options",
    **dict.fromkeys(("Cause", "CertificateSummary", "ChallengeType", "Confidence",
                     "DryRunFailed", "Event", "EventKind", "Problem", "Report",
                     "RequestStats", "Retry", "Severity", "Step", "StepResult", "StepStatus",
                     "Verdict"), "acmedryrun.report"),
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__version__ = "0.1.0"

__all__ = [
    "BUYPASS",
    "BUYPASS_STAGING",
    "GOOGLE",
    "GOOGLE_STAGING",
    "LETSENCRYPT",
    "LETSENCRYPT_STAGING",
    "Cancelled",
    "Cause",
    "CertificateSummary",
    "ChallengeType",
    "Confidence",
    "DryRunFailed",
    "Eab",
    "Event",
    "EventKind",
    "Options",
    "Problem",
    "Report",
    "RequestStats",
    "Retry",
    "Severity",
    "Step",
    "StepResult",
    "StepStatus",
    "UsageError",
    "Verdict",
    "__version__",
    "dry_run",
]
