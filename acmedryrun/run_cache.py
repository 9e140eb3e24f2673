"""What the runs of one batch learn once and share (thread-safe, no I/O).

A batch of thousands of certificates against one CA asks the same questions in every
run: the directory, the production twin's directory, the account of the batch's one
key, and a fresh nonce.  The answers do not change between runs, so each is asked
once and remembered here; a later run then costs 8 requests for one name instead of
11 (at 50 ms round trips, 150 ms a run).  What each run must prove afresh — the order,
its authorizations, the challenges, finalize and the certificate — is never shared.

Remembered: a directory that was read and checked; a production twin's directory that
answered (a twin that could not be read is asked again by the next run); an account
whose status was ``valid``; nonces no older than :data:`NONCE_MAX_AGE` seconds (an older
one may have left the CA's window; a badNonce answer would cost a retry).

Not shared, on purpose: what the runs' *blame* rests on.  Whether staging answered
*this* run, and whether this machine reaches production *now*, are each run's own: a
batch whose network fails midway must not blame staging from what an earlier run saw.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acmedryrun.acme_steps import Directory

__all__ = ["NONCE_MAX_AGE", "RunCache"]

#: Seconds a nonce left by one run is offered to the next.
NONCE_MAX_AGE = 30.0
#: Spare nonces kept per CA (a run leaves one or two).
MAX_NONCES = 64


class RunCache:
    """The directory, the twin's directory, the account and spare nonces of a batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directories: dict[str, Directory] = {}
        self._twins: dict[str, Mapping[str, Any]] = {}
        self._accounts: dict[tuple[str, str], tuple[str, bool]] = {}
        self._nonces: dict[str, deque[tuple[float, str]]] = {}

    def directory(self, url: str) -> Directory | None:
        """The checked directory read from ``url`` by an earlier run, or None."""
        with self._lock:
            return self._directories.get(url)

    def remember_directory(self, url: str, directory: Directory) -> None:
        with self._lock:
            self._directories.setdefault(url, directory)

    def twin(self, url: str) -> Mapping[str, Any] | None:
        """The production twin's directory an earlier run read from ``url``, or None."""
        with self._lock:
            return self._twins.get(url)

    def remember_twin(self, url: str, directory: Mapping[str, Any]) -> None:
        with self._lock:
            self._twins.setdefault(url, directory)

    def account(self, new_account: str, thumbprint: str) -> tuple[str, bool] | None:
        """``(account URL, created by this batch)`` for the key at this CA, or None."""
        with self._lock:
            return self._accounts.get((new_account, thumbprint))

    def remember_account(self, new_account: str, thumbprint: str, url: str, *,
                         created: bool) -> None:
        with self._lock:
            self._accounts.setdefault((new_account, thumbprint), (url, created))

    def take_nonce(self, new_nonce: str) -> str | None:
        """A nonce another run left for this CA, fresh enough to use; None if none."""
        cutoff = time.monotonic() - NONCE_MAX_AGE
        with self._lock:
            pool = self._nonces.get(new_nonce)
            while pool:
                at, nonce = pool.popleft()
                if at >= cutoff:
                    return nonce
        return None

    def give_nonces(self, new_nonce: str, nonces: Iterable[str]) -> None:
        """Keep a finished run's unused nonces for the next run (each is used once)."""
        now = time.monotonic()
        with self._lock:
            pool = self._nonces.setdefault(new_nonce, deque(maxlen=MAX_NONCES))
            pool.extend((now, n) for n in nonces)
