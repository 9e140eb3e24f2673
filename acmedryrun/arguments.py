"""argparse building blocks shared by the CLI's commands: usage errors, checked numbers.

Imports nothing of acmedryrun but its errors, so every command module can use it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from acmedryrun.errors import UsageError

__all__ = ["Parser", "pace", "port", "positive_int", "seconds"]


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
