"""http-01 (RFC 8555 section 8.3) by the subscriber's own hook commands.

``HTTP01Hook`` is certbot's ``--manual --preferred-challenges http`` with
``--manual-auth-hook`` / ``--manual-cleanup-hook``: for a CDN, a load balancer
or a remote web server that this machine can reach only through a command (an
API call, ``scp``, ``kubectl cp``), the hook puts ``$CERTBOT_VALIDATION`` at
``http://$CERTBOT_DOMAIN/.well-known/acme-challenge/$CERTBOT_TOKEN`` and the
cleanup hook removes it.  The environment is exactly certbot's for http-01, so
existing certbot hook scripts work unchanged.
"""

from __future__ import annotations

from typing import ClassVar

from acmedryrun.report import ChallengeType
from acmedryrun.solvers._base import Challenge, Solver
from acmedryrun.solvers._hooks import DEFAULT_HOOK_TIMEOUT, ManualHooks


class HTTP01Hook(Solver):
    """Answer http-01 by running certbot-compatible hook commands.

    Each command runs as ``/bin/sh -c COMMAND``, once per challenge, with the
    parent environment plus certbot's manual-hook variables for http-01:
    ``CERTBOT_DOMAIN`` / ``CERTBOT_IDENTIFIER`` (the name or IP address),
    ``CERTBOT_VALIDATION`` (the key authorization: the file's whole content),
    ``CERTBOT_TOKEN`` (the file name under ``/.well-known/acme-challenge/``),
    ``CERTBOT_REMAINING_CHALLENGES``, ``CERTBOT_ALL_DOMAINS`` /
    ``CERTBOT_ALL_IDENTIFIERS``, and for cleanup ``CERTBOT_AUTH_OUTPUT`` (the
    auth hook's stdout, stripped).  Every auth hook has run before the CA is
    asked to validate any challenge, as with certbot.

    Args:
        auth_hook: Publishes the file (``--http-01-auth-hook``).
        cleanup_hook: Removes it (``--http-01-cleanup-hook``); optional.  It runs
            for every challenge whose auth hook ran, also after failures.
        timeout: Seconds each hook may run before its process group is killed.

    Raises:
        UsageError: a hook's program or its ``#!`` interpreter is not found or not
            executable, or a bad timeout.
    """

    challenge_type: ClassVar[ChallengeType] = "http-01"
    supports_ip: ClassVar[bool] = True  # RFC 8738 section 7: http-01 validates IPs too

    AUTH_OPTION: ClassVar[str] = "--http-01-auth-hook"
    CLEANUP_OPTION: ClassVar[str] = "--http-01-cleanup-hook"

    def __init__(self, auth_hook: str, cleanup_hook: str | None = None, *,
                 timeout: float = DEFAULT_HOOK_TIMEOUT) -> None:
        self.hooks = ManualHooks(auth_hook, cleanup_hook, timeout=timeout,
                                 auth_option=self.AUTH_OPTION,
                                 cleanup_option=self.CLEANUP_OPTION)
        self._challenges: list[Challenge] = []  # in prepare() order
        self._performed: list[Challenge] = []   # auth hook started

    def describe(self) -> str:
        return f"http-01 via hook {self.hooks.describe()!r}"

    def open(self) -> None:
        self.hooks.check()  # the files may have changed since __init__

    def close(self) -> None:
        self._challenges.clear()
        self._performed.clear()
        self.hooks.reset()

    def environment(self, challenge: Challenge) -> dict[str, str]:
        """The hook environment for ``challenge`` (certbot's manual-hook variables)."""
        return self.hooks.environment(challenge, self._challenges)

    def prepare(self, challenge: Challenge) -> None:
        if challenge not in self._challenges:
            self._challenges.append(challenge)

    def perform(self, challenge: Challenge) -> None:
        self.prepare(challenge)  # also works for a caller that skips prepare()
        if challenge not in self._performed:
            self._performed.append(challenge)
        self.hooks.auth(challenge, self._challenges)

    def cleanup(self, challenge: Challenge) -> None:
        if challenge in self._performed:
            self._performed.remove(challenge)
            self.hooks.cleanup(challenge, self._challenges)
