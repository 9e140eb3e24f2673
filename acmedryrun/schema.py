"""The report's JSON Schema (draft 2020-12) and a validator for it.

:func:`report_schema` returns the schema shipped in ``acmedryrun/report.schema.json``:
hand it to any JSON Schema implementation, or read it as the reference for
``acmedryrun check --json``.  :func:`validate_report` checks a report against it
with the ``jsonschema`` package, an optional extra (``pip install
'acmedryrun[schema]'``) imported on first use only: a dry run itself never needs it.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ReportSchemaError", "report_schema", "validate_report"]

SCHEMA_RESOURCE = "report.schema.json"


class ReportSchemaError(ValueError):
    """A report does not match the schema.

    Attributes:
        violations: One line per violation, each starting with the JSON path
            (``$.problems[0].cause``) of the offending value.
    """

    def __init__(self, violations: list[str]) -> None:
        self.violations = tuple(violations)
        super().__init__(
            f"report does not match the schema ({len(violations)} violation(s)):\n  "
            + "\n  ".join(violations))


def report_schema() -> dict[str, Any]:
    """The report's JSON Schema, as a fresh dict the caller may modify.

    Returns:
        The parsed ``report.schema.json`` (draft 2020-12).
    """
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.cache
def _schema_text() -> str:
    return importlib.resources.files("acmedryrun").joinpath(SCHEMA_RESOURCE).read_text("utf-8")


@functools.cache
def _validator() -> Any:
    try:
        import jsonschema
    except ModuleNotFoundError as exc:  # pragma: no cover - the test extra has it
        raise ModuleNotFoundError(
            "validate_report needs the jsonschema package: pip install 'acmedryrun[schema]'"
        ) from exc
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_report(data: Mapping[str, Any]) -> None:
    """Check that ``data`` is a valid report.

    Args:
        data: A report as JSON-ready data: ``Report.to_dict()``, or the parsed
            output of ``acmedryrun check --json``.  Arrays may be lists or tuples.

    Raises:
        ReportSchemaError: (a ``ValueError``) listing every violation found.
        ModuleNotFoundError: the ``jsonschema`` package is not installed.
    """
    errors = sorted(_validator().iter_errors(_plain(data)), key=lambda e: e.json_path)
    if errors:
        raise ReportSchemaError([f"{e.json_path}: {e.message}" for e in errors])


def _plain(value: Any) -> Any:
    """Tuples as lists, so that JSON arrays built either way validate alike."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
