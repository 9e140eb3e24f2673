"""acmedryrun: ACME (RFC 8555) dry runs that tell a broken setup from a flaky staging CA.

    >>> import acmedryrun
    >>> report = acmedryrun.dry_run(["example.com"], directory="letsencrypt-staging")
    >>> report.verdict, report.prod_likely_to_succeed

See CONTRACT.md for the whole public interface.
"""

from __future__ import annotations

from acmedryrun.api import Eab, dry_run
from acmedryrun.directories import (
    BUYPASS,
    BUYPASS_STAGING,
    GOOGLE,
    GOOGLE_STAGING,
    LETSENCRYPT,
    LETSENCRYPT_STAGING,
)
from acmedryrun.errors import UsageError
from acmedryrun.report import (
    Cause,
    CertificateSummary,
    Confidence,
    DryRunFailed,
    Event,
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

__version__ = "0.1.0"

__all__ = [
    "BUYPASS",
    "BUYPASS_STAGING",
    "GOOGLE",
    "GOOGLE_STAGING",
    "LETSENCRYPT",
    "LETSENCRYPT_STAGING",
    "Cause",
    "CertificateSummary",
    "Confidence",
    "DryRunFailed",
    "Eab",
    "Event",
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
