"""pytest fixtures for acme2certifier (tests/a2c.py), loaded as a plugin.

A test module that needs them says ``pytest_plugins = ["a2c_fixtures"]``; a separate
module (rather than tests/a2c.py itself) so that pytest can rewrite its asserts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from a2c import A2CNotInstalled, LocalA2C

__all__ = ["a2c"]


@pytest.fixture(scope="session")
def a2c() -> Iterator[LocalA2C]:
    """The suite's acme2certifier, one per session.

    A machine without it fails these tests with the install command, rather than
    skipping them: a CI that lost its install step must not go green.
    """
    instance = LocalA2C()
    try:
        instance.start()
    except A2CNotInstalled as exc:
        pytest.fail(f"LocalA2C cannot start: {exc}", pytrace=False)
    try:
        yield instance
    finally:
        instance.stop()
