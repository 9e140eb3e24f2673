"""The scorecard as a terminal table, as JSON and as JUnit XML.

JUnit: one ``<testcase>`` per scenario, so a client's own CI shows each
scenario as a test.  ``failed`` is a ``<failure>``, ``hung`` and ``crashed``
are ``<error>``s; the client's output tail goes to ``<system-out>``.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from acmedryrun.chaos.catalog import Scenario
from acmedryrun.chaos.score import ScenarioResult, Scorecard
from acmedryrun.testing._faultproxy import ENDPOINTS

__all__ = ["render_catalog", "render_json", "render_junit", "render_table"]

#: Short column names for the per-endpoint request counts.
ENDPOINT_LABELS = {
    "directory": "dir", "nonce": "nonce", "account": "acct", "order": "order",
    "order_poll": "poll", "authz": "authz", "deactivate": "deact", "challenge": "chal",
    "finalize": "final", "certificate": "cert", "key_change": "key", "revoke": "revoke",
    "other": "other",
}
#: The table's reason column is cut here; JSON and JUnit keep the whole line.
REASON_WIDTH = 100
_COLORS = {"passed": "32", "failed": "31", "hung": "35", "crashed": "31;1"}
# XML 1.0 allows neither most control characters nor lone surrogates.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _grid(rows: list[list[str]], right: Iterable[int] = ()) -> list[str]:
    """Left-aligned columns (right-aligned for the indices in ``right``), two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right_set = set(right)
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if i in right_set else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def render_table(card: Scorecard, *, color: bool = False) -> str:
    """The human scorecard: one line per scenario, requests per endpoint, the score."""
    head = ["scenario", "expect", "outcome", "exit", "time", "reqs", "retries", "reason"]
    rows = [head]
    for r in card.results:
        code = "-" if r.evidence.exit_code is None else str(r.evidence.exit_code)
        rows.append([r.scenario.name, r.scenario.expect, r.outcome, code,
                     f"{r.evidence.wall_s:.1f}s", str(r.traffic.total), str(r.traffic.retries),
                     _shorten(r.reason)])
    lines = _grid(rows, right=(3, 4, 5, 6))
    if color:
        for index, r in enumerate(card.results, 1):
            lines[index] = lines[index].replace(
                f"  {r.outcome}", f"  \033[{_COLORS[r.outcome]}m{r.outcome}\033[0m", 1)
    used = [e for e in ENDPOINTS if any(r.traffic.requests.get(e) for r in card.results)]
    if used:
        counts = [["requests", *[ENDPOINT_LABELS[e] for e in used]]]
        counts += [[r.scenario.name, *[str(r.traffic.requests.get(e, 0)) for e in used]]
                   for r in card.results]
        lines += ["", *_grid(counts, right=range(1, len(used) + 1))]
    baseline = next((r for r in card.results if r.scenario.name == "baseline"), None)
    if baseline is not None and baseline.outcome != "passed":
        lines += ["", "warning: the baseline (no fault) did not pass: the command line is"
                  " probably wrong, and the other results say little"]
    lines += ["", f"score: {card.passed}/{card.total} passed"
              f" ({_breakdown(card)}) in {card.wall_s:.0f} s",
              f"client: {shlex.join(card.command)}"]
    return "\n".join(lines) + "\n"


def _shorten(text: str, width: int = REASON_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _breakdown(card: Scorecard) -> str:
    counts: dict[str, int] = {}
    for r in card.results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return ", ".join(f"{n} {o}" for o, n in counts.items() if o != "passed") or "all passed"


def render_json(card: Scorecard) -> str:
    """The ``--json`` document."""
    return json.dumps(card.to_dict(), indent=2) + "\n"


def _xml(text: str) -> str:
    return _XML_BAD.sub("\N{REPLACEMENT CHARACTER}", text)


def _case(suite: ET.Element, r: ScenarioResult) -> None:
    case = ET.SubElement(suite, "testcase", classname="acmedryrun.chaos",
                         name=r.scenario.name, time=f"{r.evidence.wall_s:.3f}")
    if r.outcome != "passed":
        tag = "failure" if r.outcome == "failed" else "error"
        detail = "\n".join([
            r.scenario.description,
            f"expected: {r.scenario.expect}; faults: {', '.join(r.scenario.faults) or 'none'}",
            f"exit code: {r.evidence.exit_code}; wall time {r.evidence.wall_s:.1f} s",
            "requests: " + (", ".join(f"{e} {n}" for e, n in r.traffic.requests.items())
                            or "none") + f"; retries {r.traffic.retries}",
        ])
        failure = ET.SubElement(case, tag, message=_xml(r.reason), type=r.outcome)
        failure.text = _xml(detail)
    if r.evidence.output_tail:
        ET.SubElement(case, "system-out").text = _xml(r.evidence.output_tail)


def render_junit(card: Scorecard) -> str:
    """The scorecard as JUnit XML (the schema Jenkins, GitLab and GitHub tooling read)."""
    failures = sum(1 for r in card.results if r.outcome == "failed")
    errors = sum(1 for r in card.results if r.outcome in ("hung", "crashed"))
    attrs = {"name": "acmedryrun chaos", "tests": str(card.total), "failures": str(failures),
             "errors": str(errors), "skipped": "0", "time": f"{card.wall_s:.3f}"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", attrs)
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="command", value=_xml(shlex.join(card.command)))
    for r in card.results:
        _case(suite, r)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def render_catalog(scenarios: Iterable[Scenario]) -> str:
    """``--list``: each scenario's name, expectation, faults and description."""
    blocks = []
    for s in scenarios:
        where = "" if s.builtin else "  (from --scenarios-file)"
        faults = "\n".join(f"    fault: {f}" for f in s.faults) or "    fault: none"
        blocks.append(f"{s.name}  expect {s.expect} within {s.time_bound:g} s{where}\n"
                      f"{faults}\n    {s.description}")
    return "\n\n".join(blocks) + "\n"
