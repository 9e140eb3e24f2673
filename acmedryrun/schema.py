"""The report's JSON Schema (draft 2020-12, ``schema_version`` 1) and a validator for it.

:func:`report_schema` returns the schema shipped in ``acmedryrun/report.schema.json``:
hand it to any JSON Schema implementation, or read it as the reference for
``acmedryrun check --json``.  :func:`validate_report` checks a report against it
without a third-party package: a dry-run tool should not pull a validator (and
its dependency tree) into every installation just to check its own output.

The built-in validator implements exactly the keywords this schema uses
(``type``, ``const``, ``enum``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``minimum``, ``minLength``, ``anyOf``,
``oneOf`` and local ``$ref``; ``format`` and the other annotations are ignored,
as draft 2020-12 does by default).  A schema node with any other keyword raises
:class:`NotImplementedError` instead of being half-checked.  The test suite
cross-checks it against the ``jsonschema`` package.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["ReportSchemaError", "report_schema", "validate_report"]

SCHEMA_RESOURCE = "report.schema.json"

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description",
                          "format", "examples", "default"})
_ASSERTIONS = frozenset({"$ref", "type", "const", "enum", "required", "properties",
                         "additionalProperties", "items", "minimum", "minLength", "anyOf",
                         "oneOf"})


class ReportSchemaError(ValueError):
    """A report does not match the schema.

    Attributes:
        violations: One line per violation, each starting with the JSON path
            (``$.problems[0].cause``) of the offending value.
    """

    def __init__(self, violations: list[str]) -> None:
        self.violations = tuple(violations)
        super().__init__(
            f"report does not match schema_version 1 ({len(violations)} violation(s)):\n  "
            + "\n  ".join(violations))


def report_schema() -> dict[str, Any]:
    """The report's JSON Schema, as a fresh dict the caller may modify.

    Returns:
        The parsed ``report.schema.json`` (draft 2020-12).
    """
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def validate_report(data: Mapping[str, Any]) -> None:
    """Check that ``data`` is a valid ``schema_version`` 1 report.

    Args:
        data: A report as JSON-ready data: ``Report.to_dict()``, or the parsed
            output of ``acmedryrun check --json``.  Arrays may be lists or tuples.

    Raises:
        ReportSchemaError: (a ``ValueError``) listing every violation found.
    """
    schema = _schema()
    violations = list(_check(data, schema, "$", schema))
    if violations:
        raise ReportSchemaError(violations)


@functools.cache
def _schema_text() -> str:
    return importlib.resources.files("acmedryrun").joinpath(SCHEMA_RESOURCE).read_text("utf-8")


@functools.cache
def _schema() -> dict[str, Any]:
    """The parsed schema, shared and never modified (``report_schema`` hands out copies)."""
    return report_schema()


def _json_type(value: object) -> str:
    """The JSON type name of a Python value (``integer`` for whole floats, as 2020-12 says)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _has_type(value: object, name: str) -> bool:
    actual = _json_type(value)
    return actual == name or (name == "number" and actual == "integer")


def _json_equal(a: object, b: object) -> bool:
    """JSON equality: ``true`` is not ``1`` (unlike Python), ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if _has_type(a, "number") and _has_type(b, "number"):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _check(value: Any, node: Mapping[str, Any], path: str,
           root: Mapping[str, Any]) -> Iterator[str]:
    """Yield a message for each way ``value`` (at ``path``) violates schema ``node``."""
    unknown = node.keys() - _ANNOTATIONS - _ASSERTIONS
    if unknown:
        raise NotImplementedError(f"schema keyword(s) {sorted(unknown)} at {path}")
    if "$ref" in node:
        ref = str(node["$ref"])
        if not ref.startswith("#/$defs/"):
            raise NotImplementedError(f"only local '#/$defs/...' references, not {ref!r}")
        yield from _check(value, root["$defs"][ref.removeprefix("#/$defs/")], path, root)
    if "type" in node:
        types = [node["type"]] if isinstance(node["type"], str) else list(node["type"])
        if not any(_has_type(value, t) for t in types):
            yield f"{path}: expected {' or '.join(types)}, got {_json_type(value)} {value!r}"
            return  # the other keywords' messages would only repeat this one
    if "const" in node and not _json_equal(value, node["const"]):
        yield f"{path}: expected {node['const']!r}, got {value!r}"
    if "enum" in node and not any(_json_equal(value, e) for e in node["enum"]):
        yield f"{path}: {value!r} is not one of {', '.join(map(repr, node['enum']))}"
    if "minimum" in node and _has_type(value, "number") and value < node["minimum"]:
        yield f"{path}: {value!r} is less than the minimum {node['minimum']!r}"
    if "minLength" in node and isinstance(value, str) and len(value) < node["minLength"]:
        yield f"{path}: {value!r} is shorter than {node['minLength']} character(s)"
    if isinstance(value, Mapping):
        yield from _check_object(value, node, path, root)
    if "items" in node and isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _check(item, node["items"], f"{path}[{i}]", root)
    for keyword in ("anyOf", "oneOf"):
        if keyword in node:
            results = [list(_check(value, alt, path, root)) for alt in node[keyword]]
            passed = sum(not r for r in results)
            if passed == 0 or (keyword == "oneOf" and passed > 1):
                why = "; ".join(m for r in results for m in r) or f"{passed} alternatives match"
                yield f"{path}: matches {'none' if passed == 0 else passed} of the {keyword}" \
                      f" alternatives ({why})"


def _check_object(value: Mapping[str, Any], node: Mapping[str, Any], path: str,
                  root: Mapping[str, Any]) -> Iterator[str]:
    properties: Mapping[str, Any] = node.get("properties", {})
    for key in node.get("required", ()):
        if key not in value:
            yield f"{path}: missing required key {key!r}"
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in properties:
            yield from _check(item, properties[key], where, root)
        elif node.get("additionalProperties", True) is False:
            yield f"{where}: unexpected key (not in schema_version 1)"
        elif isinstance(node.get("additionalProperties"), Mapping):
            yield from _check(item, node["additionalProperties"], where, root)
