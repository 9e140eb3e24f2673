"""The taxonomy cannot drift: docs/TAXONOMY.md is generated, and every name is registered.

* The committed ``docs/TAXONOMY.md`` is exactly what ``python -m acmedryrun.taxonomy
  --write`` writes (from acmedryrun/taxonomy.py and the classifier's tables).
* Every problem-name literal anywhere in the package is in the registry, and every
  registered name occurs in the package: a new ``Rule("...")``, ``_problem("...")`` or
  ``name="..."`` without an entry fails here, and so does an entry for a name nothing
  emits any more.
* Every row of the classifier's tables is in the registry with its own cause,
  confidence and hint.
* ``acmedryrun explain NAME`` prints an entry (exit 0); an unknown name is exit 64 with
  close names suggested.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from conftest import cli

from acmedryrun import UsageError, classify, taxonomy

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "acmedryrun"
#: A problem name is CamelCase with at least two humps (``ValidationConnection``).
CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\Z")
#: Calls whose first argument is a problem name (single-hump names such as
#: ``Malformed`` are found this way, and through ``name=`` keywords).
NAME_FIRST = {"Rule", "Problem", "_problem", "_client", "_notice", "_named"}
#: CamelCase strings in the package that are not problem names.
NOT_PROBLEMS = {
    "AddressSanitizer",  # chaos/score.py: a crash marker in a client's output
    "PublicKey",         # certs.py: stripped from a key class's name for a message
}


def _exported(tree: ast.AST) -> set[int]:
    """The nodes inside ``__all__`` and ``_LAZY`` (names of classes and functions)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id in ("__all__", "_LAZY") for t in targets):
            inside |= {id(sub) for sub in ast.walk(node)}
    return inside


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    return node.func.attr if isinstance(node.func, ast.Attribute) else None


def _literals() -> tuple[dict[str, set[str]], set[str]]:
    """(problem-name literals -> files, every string constant) in the package."""
    names: dict[str, set[str]] = {}
    strings: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _exported(tree)
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
                if id(node) not in skip and CAMEL.match(node.value):
                    names.setdefault(node.value, set()).add(where)
            if isinstance(node, ast.Call):
                candidates = [k.value for k in node.keywords if k.arg == "name"]
                if _call_name(node) in NAME_FIRST and node.args:
                    candidates.append(node.args[0])
                for value in candidates:
                    for sub in ast.walk(value):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) \
                                and sub.value[:1].isupper():
                            names.setdefault(sub.value, set()).add(where)
    return names, strings


def test_the_committed_document_is_what_the_generator_writes() -> None:
    committed = (ROOT / taxonomy.DOCUMENT).read_text(encoding="utf-8")
    assert committed == taxonomy.render_markdown(), (
        "docs/TAXONOMY.md is out of date: run `python -m acmedryrun.taxonomy --write`")


def test_every_problem_name_in_the_package_is_registered_and_no_entry_is_stale() -> None:
    literals, strings = _literals()
    registered = set(taxonomy.names())
    unregistered = {n: sorted(w) for n, w in literals.items()
                    if n not in registered and n not in NOT_PROBLEMS}
    assert not unregistered, f"problem names without a taxonomy entry: {unregistered}"
    assert registered <= strings, f"entries nothing emits: {sorted(registered - strings)}"
    assert {"Malformed", "Unauthorized", "ValidationConnection", "SelfCheckNotFound",
            "RenewalDue", "RenewalNotDue", "ManualAuthHookMissing"} <= set(literals), \
        "the scan finds names in every form they are written in"


def test_every_classifier_row_is_in_the_registry_with_its_own_words() -> None:
    rules = [v for v in vars(classify).values() if isinstance(v, classify.Rule)]
    for table in vars(classify).values():
        if isinstance(table, Mapping) and table and all(
                isinstance(r, classify.Rule) for r in table.values()):
            rules += list(table.values())
    assert len(rules) > 90
    for rule in rules:
        e = taxonomy.entry(rule.name)
        assert any((s.cause, s.confidence, s.hint) == (rule.cause, rule.confidence, rule.hint)
                   and s.origin.startswith("classify.") for s in e.sources), rule


def test_entries_are_complete_and_blame_is_consistent() -> None:
    reg = taxonomy.registry()
    assert len(reg) >= 130
    for e in reg.values():
        assert e.category in taxonomy.CATEGORIES
        assert e.meaning.endswith(".")
        assert e.sources
        for s in e.sources:
            assert s.when
            assert s.hint
            assert s.severities
            if s.cause is None:  # a notice is never decisive (CONTRACT.md)
                assert not any(v.decisive for v in s.severities), e.name
    # The line between bad input and a verdict: syntax is bad input, policy a verdict.
    assert {e.name for e in reg.values() if e.category == taxonomy.SYNTAX} == {
        "TrailingDot", "BadWildcard", "InvalidName", "NameTooLong"}
    assert taxonomy.entry("PublicSuffix").category != taxonomy.SYNTAX
    assert taxonomy.entry("WildcardNeedsDns01").category != taxonomy.SYNTAX


def test_entry_lookup_is_case_insensitive_and_suggests_close_names() -> None:
    assert taxonomy.entry("validationconnection").name == "ValidationConnection"
    with pytest.raises(UsageError, match="did you mean ValidationConnection"):
        taxonomy.entry("ValidationConection")


@pytest.mark.parametrize(("name", "needles"), [
    ("ValidationConnection", ["ValidationConnection: client", "could not connect",
                              "hint: The CA could not connect to your server"]),
    ("staginGUnreachable", ["StagingUnreachable: staging", "production twin's directory"
                            " answered", "retry later"]),
    ("CaaForbidden", ["classify.ACME_TYPES", "preflight.caa"]),
    ("DnsCname", ["nobody (a notice)"]),
])
def test_explain_prints_cause_meaning_and_hint(name: str, needles: list[str]) -> None:
    proc = cli("explain", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for needle in needles:
        assert needle in proc.stdout


@pytest.mark.parametrize(("name", "suggested"), [
    ("ValidationConection", "ValidationConnection"),
    ("HookFail", "HookFailed"),
    ("NoSuchThingAtAll", "docs/TAXONOMY.md"),
])
def test_explain_an_unknown_name_is_exit_64_with_close_matches(name: str,
                                                               suggested: str) -> None:
    proc = cli("explain", name)
    assert proc.returncode == 64
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert f"explain: no problem is named {name!r}" in proc.stderr
    assert suggested in proc.stderr


def test_the_package_points_at_documents_that_exist() -> None:
    """The docstring and the README name docs/TAXONOMY.md (no CONTRACT.md/TAXONOMY.md
    outside the repository)."""
    import acmedryrun

    doc = acmedryrun.__doc__ or ""
    assert "docs/TAXONOMY.md" in doc
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (doc, readme):
        for ref in re.findall(r"(?<![\w/])(?:[\w.-]+/)*[A-Z]+\.md", text):
            assert (ROOT / ref).is_file(), f"{ref} is not in the repository"
