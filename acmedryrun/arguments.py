"""argparse building blocks shared by the CLI's commands: usage errors, checked numbers.

Imports nothing of acmedryrun but its errors, so every command module can use it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any, NoReturn

from acmedryrun.errors import UsageError

__all__ = ["Parser", "duration", "pace", "port", "positive_int", "seconds"]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are usage errors (exit 64), not exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _number(kind: type[int] | type[float], what: str, low: float, high: float, *,
            low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` in [low, high] (``(low, high]`` if low_open)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        # Written so that NaN fails too (every comparison with NaN is false).
        if not ((low < value if low_open else low <= value) and value <= high):
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{text} is not in {bracket}{low:g}, {high:g}]")
        return value

    return parse


port = _number(int, "a port number", 1, 65535)
positive_int = _number(int, "a whole number", 1, 1_000_000)
pace = _number(float, "a number of seconds", 0, 86400)
seconds = _number(float, "a number of seconds", 0, 86400, low_open=True)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def duration(text: str) -> float:
    """An argparse type: a duration such as ``90``, ``90s``, ``5m``, ``1h30m`` (seconds)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (seconds, or e.g. 90s, 5m, 1h30m)")
    hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    value = hours * 3600 + minutes * 60 + secs
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text} is not in (0 s, 24 h]")
    return value
