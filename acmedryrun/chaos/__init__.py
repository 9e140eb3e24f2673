"""``acmedryrun chaos``: any ACME client through staging's breakages, offline, as a scorecard.

* :data:`CATALOG` — named `Scenario`\\ s modelled on real staging and production
  incidents, each a list of FaultProxy fault specs and what a resilient client
  does under it (``succeed`` after retrying, or ``fail`` cleanly).
* :func:`run_scorecard` runs a client's command once per scenario, against a
  fresh `LocalPebble` behind a `FaultProxy`, and returns a `Scorecard`;
  :func:`render_table`, :func:`render_json` and :func:`render_junit` show it.
* :func:`add_parser` / :func:`run` are the ``chaos`` subcommand.

Imported on first use, so ``import acmedryrun.chaos`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acmedryrun._lazy import lazy_getattr

if TYPE_CHECKING:
    from acmedryrun.chaos.catalog import CATALOG, Scenario, load_scenarios
    from acmedryrun.chaos.cli import add_parser, run
    from acmedryrun.chaos.render import render_json, render_junit, render_table
    from acmedryrun.chaos.runner import Template, run_scenario, run_scorecard
    from acmedryrun.chaos.score import ScenarioResult, Scorecard

_LAZY = {
    "CATALOG": "acmedryrun.chaos.catalog",
    "Scenario": "acmedryrun.chaos.catalog",
    "load_scenarios": "acmedryrun.chaos.catalog",
    "add_parser": "acmedryrun.chaos.cli",
    "run": "acmedryrun.chaos.cli",
    "render_json": "acmedryrun.chaos.render",
    "render_junit": "acmedryrun.chaos.render",
    "render_table": "acmedryrun.chaos.render",
    "Template": "acmedryrun.chaos.runner",
    "run_scenario": "acmedryrun.chaos.runner",
    "run_scorecard": "acmedryrun.chaos.runner",
    "ScenarioResult": "acmedryrun.chaos.score",
    "Scorecard": "acmedryrun.chaos.score",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = [
    "CATALOG",
    "Scenario",
    "ScenarioResult",
    "Scorecard",
    "Template",
    "add_parser",
    "load_scenarios",
    "render_json",
    "render_junit",
    "render_table",
    "run",
    "run_scenario",
    "run_scorecard",
]
