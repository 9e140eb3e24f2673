"""The package's shape, checked from its source: no import cycles, one HTTP boundary, pure cores.

Imports are read with :mod:`ast`, function-level (lazy) imports included, those under
``if TYPE_CHECKING:`` left out (they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "acmedryrun"

#: Modules that decide blame and verdicts, compare and judge: data in, data out.
PURE = (
    "acmedryrun.classify", "acmedryrun.verdict", "acmedryrun.urls", "acmedryrun.report",
    "acmedryrun.directories", "acmedryrun.deadline", "acmedryrun.preflight.identifiers",
    "acmedryrun.preflight.caa", "acmedryrun.preflight.records",
    "acmedryrun.production.compare", "acmedryrun.production.policy", "acmedryrun.run_cache",
)
#: What a pure module may not import, directly or through another package module.
IO = ("requests", "urllib3", "socket", "ssl", "http", "dns.query", "dns.resolver",
      "subprocess", "acmedryrun.transport", "acmedryrun.run")


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports when it runs (fully qualified)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield sub if sub in modules() else module


def _own(module: str) -> str | None:
    """The package module that importing ``module`` runs, or None for a foreign one."""
    while module and module not in modules():
        module = module.rpartition(".")[0]
    return module or None


@cache
def graph() -> dict[str, frozenset[str]]:
    edges = {}
    for name, path in modules().items():
        own = {_own(m) for m in _imported(name, path)}
        edges[name] = frozenset(m for m in own if m is not None and m != name)
    return edges


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph()[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_module_is_part_of_an_import_cycle() -> None:
    cycles = sorted(name for name in graph() if name in _reachable(name))
    assert cycles == [], f"modules in an import cycle: {cycles}"


def test_only_the_transport_imports_requests() -> None:
    """The one HTTP boundary (testing/ aside: LocalPebble talks to its own servers)."""
    users = sorted(name for name, path in modules().items()
                   if not name.startswith("acmedryrun.testing")
                   and any(m.split(".")[0] in ("requests", "urllib3")
                           for m in _imported(name, path)))
    assert users == ["acmedryrun.transport"]


def test_the_solver_protocol_depends_on_nothing_but_report_types() -> None:
    assert graph()["acmedryrun.solvers._base"] == {"acmedryrun.report"}


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_do_no_io(name: str) -> None:
    reached = {name} | _reachable(name)
    foreign = {m for r in reached for m in _imported(r, modules()[r])}
    bad = sorted(m for m in foreign | reached
                 if any(m == io or m.startswith(io + ".") for io in IO))
    assert bad == [], f"{name} reaches I/O modules {bad}"


HEAVY = ("requests", "urllib3", "cryptography", "acme", "josepy", "dns", "idna",
         "http.server", "acmedryrun.report", "acmedryrun.run")


@pytest.mark.parametrize("code", [
    "import acmedryrun",
    "import sys; sys.argv = ['acmedryrun', '--help']\n"
    "from acmedryrun.cli import main\n"
    "import contextlib, io\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): main()",
])
def test_start_up_imports_nothing_heavy(code: str) -> None:
    """``import acmedryrun`` and ``acmedryrun --help`` stay cheap: the HTTP, crypto, DNS and
    ACME libraries (and the run itself) are imported when a run needs them (issue 18)."""
    import subprocess
    import sys

    probe = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                text=True, check=True).stdout.split())
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY) == []
