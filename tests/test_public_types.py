"""Types for client developers: challenge types, event kinds, steps, the fixtures' types.

* ``Solver.challenge_type`` is a ``Literal`` (:data:`acmedryrun.ChallengeType`): mypy
  rejects ``"dns01"`` in a custom solver (checked by running mypy on one), and
  ``dry_run`` refuses it at run time (tests/test_bad_input.py).
* ``Event.kind`` is an :class:`acmedryrun.EventKind` ``str`` enum: string equality
  still works, and a real run hands out nothing else.
* Everything a pytest fixture of the plugin hands out is importable from
  ``acmedryrun.testing``.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import acmedryrun
import acmedryrun.testing
from acmedryrun import ChallengeType, Event, EventKind, Step
from acmedryrun.report import CHALLENGE_TYPES
from acmedryrun.solvers import (
    DNS01Callback,
    DNS01Hook,
    HTTP01Hook,
    HTTP01Standalone,
    HTTP01Webroot,
    Solver,
    TLSALPN01Standalone,
)

ROOT = Path(__file__).resolve().parent.parent


def test_challenge_types_are_the_three_of_rfc_8555_and_8737() -> None:
    assert CHALLENGE_TYPES == ("http-01", "dns-01", "tls-alpn-01")
    assert typing.get_args(ChallengeType) == CHALLENGE_TYPES
    assert acmedryrun.solvers.CHALLENGE_TYPES is CHALLENGE_TYPES
    hints = typing.get_type_hints(Solver, include_extras=True)
    assert hints["challenge_type"] == typing.ClassVar[ChallengeType]
    for solver in (DNS01Callback, DNS01Hook, HTTP01Hook, HTTP01Standalone, HTTP01Webroot,
                   TLSALPN01Standalone):
        assert solver.challenge_type in CHALLENGE_TYPES


def test_mypy_rejects_a_typo_in_a_custom_solvers_challenge_type(tmp_path: Path) -> None:
    """What the Literal buys: the typo is caught before the code ever runs."""
    source = tmp_path / "my_solver.py"
    source.write_text(
        "from typing import ClassVar\n"
        "from acmedryrun.solvers import Challenge, ChallengeType, Solver\n\n\n"
        "class Good(Solver):\n"
        "    challenge_type: ClassVar[ChallengeType] = 'dns-01'\n\n"
        "    def perform(self, challenge: Challenge) -> None: ...\n\n"
        "    def cleanup(self, challenge: Challenge) -> None: ...\n\n\n"
        "class Typo(Solver):\n"
        "    challenge_type = 'dns01'\n\n"
        "    def perform(self, challenge: Challenge) -> None: ...\n\n"
        "    def cleanup(self, challenge: Challenge) -> None: ...\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), str(source)],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, proc.stdout + proc.stderr
    typo_line = source.read_text().splitlines().index("    challenge_type = 'dns01'") + 1
    assert f"my_solver.py:{typo_line}: error: Incompatible types in assignment" in errors[0]
    assert "Literal['dns01']" in errors[0]
    assert "Literal['http-01', 'dns-01', 'tls-alpn-01']" in errors[0]


def test_event_kind_is_a_str_enum_and_strings_still_compare() -> None:
    event = Event("retry", Step.ORDER)
    assert event.kind is EventKind.RETRY
    assert event.kind == "retry"
    assert {k.value for k in EventKind} == {"step_start", "step_end", "problem", "retry", "wait"}
    with pytest.raises(ValueError, match="step_begin"):
        Event("step_begin", Step.ORDER)  # type: ignore[arg-type]


def test_a_run_hands_out_only_event_kinds_and_steps() -> None:
    events: list[Event] = []
    report = acmedryrun.dry_run(["a.example.org"], directory="https://127.0.0.1:9/dir",
                                solver=HTTP01Standalone(port=0, address="127.0.0.1"),
                                preflight=False, timeout=5, on_event=events.append)
    assert report.verdict is not acmedryrun.Verdict.LIKELY_SUCCESS
    kinds = {e.kind for e in events}
    assert {EventKind.STEP_START, EventKind.STEP_END, EventKind.PROBLEM} <= kinds
    assert all(type(e.kind) is EventKind and type(e.step) is Step for e in events)


def _fixture_types() -> dict[str, set[str]]:
    """Each fixture of the pytest plugin -> the names in its return annotation."""
    path = ROOT / "acmedryrun" / "testing" / "pytest_plugin.py"
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and any(
                "fixture" in ast.unparse(d) for d in node.decorator_list):
            assert node.returns is not None, node.name
            found[node.name] = {n.id for n in ast.walk(node.returns)
                                if isinstance(n, ast.Name)} - {"Iterator", "Generator"}
    return found


def test_everything_a_fixture_hands_out_is_importable_from_acmedryrun_testing() -> None:
    fixtures = _fixture_types()
    assert set(fixtures) == {"local_pebble", "fault_proxy", "dry_run_local"}
    for fixture, types in fixtures.items():
        for name in types:
            assert name in acmedryrun.testing.__all__, (fixture, name)
            assert isinstance(getattr(acmedryrun.testing, name), type), (fixture, name)
    # What dry_run_local's callable returns: the report type, from the package itself.
    returns = inspect.signature(acmedryrun.testing.DryRunLocal.__call__).return_annotation
    assert returns == "Report"
    assert "Report" in acmedryrun.__all__
