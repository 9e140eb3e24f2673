"""The batch's run cache (acmedryrun.run_cache): pure, so table-like tests of its rules."""

from __future__ import annotations

import pytest

from acmedryrun import run_cache
from acmedryrun.run_cache import NONCE_MAX_AGE, RunCache

NEW_NONCE = "https://ca.example/new-nonce"


def test_a_nonce_is_handed_out_once_oldest_first() -> None:
    cache = RunCache()
    cache.give_nonces(NEW_NONCE, ["n1", "n2"])
    assert [cache.take_nonce(NEW_NONCE) for _ in range(3)] == ["n1", "n2", None]


def test_nonces_are_kept_per_ca() -> None:
    cache = RunCache()
    cache.give_nonces(NEW_NONCE, ["n1"])
    assert cache.take_nonce("https://other.example/new-nonce") is None
    assert cache.take_nonce(NEW_NONCE) == "n1"


def test_a_nonce_older_than_the_limit_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(run_cache.time, "monotonic", lambda: clock[0])
    cache = RunCache()
    cache.give_nonces(NEW_NONCE, ["old"])
    clock[0] += NONCE_MAX_AGE / 2
    cache.give_nonces(NEW_NONCE, ["fresh"])
    clock[0] += NONCE_MAX_AGE / 2 + 0.001
    assert cache.take_nonce(NEW_NONCE) == "fresh"
    assert cache.take_nonce(NEW_NONCE) is None


def test_the_pool_is_bounded() -> None:
    cache = RunCache()
    cache.give_nonces(NEW_NONCE, [f"n{i}" for i in range(run_cache.MAX_NONCES + 10)])
    taken = []
    while (nonce := cache.take_nonce(NEW_NONCE)) is not None:
        taken.append(nonce)
    assert len(taken) == run_cache.MAX_NONCES
    assert taken[-1] == f"n{run_cache.MAX_NONCES + 9}"  # the newest are kept


def test_the_first_answer_stays() -> None:
    cache = RunCache()
    cache.remember_account("https://ca/new-acct", "thumb", "https://ca/acct/1", created=True)
    cache.remember_account("https://ca/new-acct", "thumb", "https://ca/acct/2", created=False)
    assert cache.account("https://ca/new-acct", "thumb") == ("https://ca/acct/1", True)
    assert cache.account("https://ca/new-acct", "other key") is None
    cache.remember_twin("https://prod/dir", {"newNonce": "a"})
    cache.remember_twin("https://prod/dir", {"newNonce": "b"})
    assert cache.twin("https://prod/dir") == {"newNonce": "a"}
    assert cache.directory("https://ca/dir") is None
