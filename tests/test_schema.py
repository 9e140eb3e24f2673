"""The report's JSON Schema: real reports validate, drifted ones are rejected.

``validate_report`` is the ``jsonschema`` package's Draft 2020-12 validator over the
shipped schema; these tests prove the schema is neither too loose nor too strict.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from conftest import run

from acmedryrun.report import (
    Cause,
    CertificateSummary,
    Confidence,
    Problem,
    Report,
    RequestStats,
    Retry,
    Severity,
    Step,
    StepResult,
    StepStatus,
    Verdict,
)
from acmedryrun.schema import ReportSchemaError, report_schema, validate_report
from acmedryrun.testing import LocalPebble

Doc = dict[str, Any]


def reference_errors(data: Any) -> list[str]:
    """What the ``jsonschema`` package finds wrong with ``data`` (empty: valid)."""
    validator = jsonschema.Draft202012Validator(report_schema())
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]


def assert_valid(data: Any) -> None:
    """Both validators accept ``data``."""
    assert reference_errors(data) == []
    validate_report(data)


def full_report() -> Report:
    """A report with every list non-empty and every nullable field set."""
    return Report(
        verdict=Verdict.STAGING_UNSTABLE,
        prod_likely_to_succeed=None,
        confidence=Confidence.MEDIUM,
        directory="https://acme-staging-v02.api.letsencrypt.org/directory",
        identifiers=("example.com", "www.example.com"),
        problems=(
            Problem(
                name="StagingServerError", cause=Cause.STAGING, severity=Severity.FATAL,
                step=Step.ORDER, detail="503 Service Unavailable", hint="retry later",
                identifier="www.example.com", acme_type="urn:ietf:params:acme:error:serverInternal",
                http_status=503, confidence=Confidence.LOW, retry_after=1.5,
                help_url="https://letsencrypt.status.io/"),
            Problem(name="CAARecordMissing", cause=Cause.CLIENT, severity=Severity.INFO,
                    step=Step.PREFLIGHT),
        ),
        retries=(Retry(Step.NONCE, "badNonce", 1, 0.25), Retry(Step.ORDER, "http_503", 2, 1.0)),
        steps=(StepResult(Step.PREFLIGHT, StepStatus.OK, 0.01),
               StepResult(Step.ORDER, StepStatus.FAILED, 2.5),
               StepResult(Step.CLEANUP, StepStatus.SKIPPED, 0.0)),
        requests=RequestStats(total=9, polls=2, retries=2),
        certificate=CertificateSummary(
            serial="fa1afe1", not_before="2025-01-01T00:00:00+00:00",
            not_after="2025-04-01T00:00:00+00:00", chain_length=2,
            names=("example.com", "www.example.com"), issuer="CN=Pebble Intermediate CA",
            key_type="ec256"),
        account_url="https://acme-staging-v02.api.letsencrypt.org/acme/acct/1",
        staging_only_features=("profiles",),
        production_only_features=("renewalInfo",),
        duration_s=3.25,
    )


# ------------------------------------------------------------------------------ valid reports


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    document = report_schema()
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)


def test_live_success_report_validates_as_dict_and_as_json(
    pebble: LocalPebble, unique_name: str
) -> None:
    report = run(pebble, [unique_name])
    assert report.verdict is Verdict.LIKELY_SUCCESS, report.problems
    assert report.certificate is not None
    assert_valid(report.to_dict())
    assert_valid(json.loads(report.to_json()))


def test_live_client_error_report_validates(pebble: LocalPebble, unique_name: str) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])  # nothing listens there: validation fails
    report = run(pebble, [unique_name])
    assert report.verdict is Verdict.CLIENT_ERROR
    assert report.problems
    assert report.certificate is None
    assert_valid(json.loads(report.to_json()))


def test_report_with_every_optional_field_set_validates() -> None:
    assert_valid(json.loads(full_report().to_json()))


def test_report_with_only_required_fields_validates() -> None:
    minimal = Report(verdict=Verdict.CLIENT_ERROR, prod_likely_to_succeed=False,
                     confidence=Confidence.HIGH, directory="https://127.0.0.1:14000/dir",
                     identifiers=("example.com",))
    assert_valid(minimal.to_dict())


def test_schema_enums_are_exactly_the_python_enums() -> None:
    document = report_schema()
    defs, top = document["$defs"], document["properties"]
    problem = defs["problem"]["properties"]
    assert top["verdict"]["enum"] == [v.value for v in Verdict]
    assert defs["confidence"]["enum"] == [c.value for c in Confidence]
    assert defs["step"]["enum"] == [s.value for s in Step]
    assert problem["cause"]["enum"] == [*(c.value for c in Cause), None]
    assert problem["severity"]["enum"] == [s.value for s in Severity]
    assert defs["step_result"]["properties"]["status"]["enum"] == [s.value for s in StepStatus]


def test_every_key_to_dict_emits_is_a_required_schema_property() -> None:
    document = report_schema()
    defs = document["$defs"]
    data = full_report().to_dict()
    for obj, node in [(data, document), (data["problems"][0], defs["problem"]),
                      (data["retries"][0], defs["retry"]), (data["steps"][0], defs["step_result"]),
                      (data["requests"], defs["requests"]),
                      (data["certificate"], defs["certificate"])]:
        assert set(obj) == set(node["properties"]) == set(node["required"])
        assert node["additionalProperties"] is False


def test_report_schema_hands_out_a_copy_the_caller_may_change() -> None:
    report_schema()["properties"].clear()
    assert "verdict" in report_schema()["properties"]
    validate_report(full_report().to_dict())


# ------------------------------------------------------------------------------ drift


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation that sets ``a.b.0.c`` to ``value``."""
    *parents, last = path.split(".")

    def mutate(doc: Doc) -> None:
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return mutate


def _drop(path: str) -> Callable[[Doc], None]:
    """A mutation that deletes the key at ``a.b.0.c``."""
    *parents, last = path.split(".")

    def mutate(doc: Doc) -> None:
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[last]
    return mutate


_FULL = full_report().to_dict()

MUTATIONS: dict[str, Callable[[Doc], None]] = {
    # extra keys, at every level the contract fixes
    "extra top-level key": _set("verdict_reason", "x"),
    "extra problem key": _set("problems.0.blame", "client"),
    "extra retry key": _set("retries.0.status", 503),
    "extra step key": _set("steps.0.started_at", "now"),
    "extra requests key": _set("requests.bytes", 10),
    "extra certificate key": _set("certificate.pem", "-----BEGIN CERTIFICATE-----"),
    # values outside an enum
    "verdict not an enum value": _set("verdict", "success"),
    "verdict in upper case": _set("verdict", "LIKELY_SUCCESS"),
    "confidence not an enum value": _set("confidence", "certain"),
    "cause not an enum value": _set("problems.0.cause", "server"),
    "severity not an enum value": _set("problems.0.severity", "critical"),
    "problem step not an enum value": _set("problems.0.step", "issuance"),
    "problem confidence not an enum value": _set("problems.0.confidence", "sure"),
    "retry step not an enum value": _set("retries.0.step", "poll"),
    "step not an enum value": _set("steps.0.step", "validation"),
    "step status not an enum value": _set("steps.0.status", "error"),
    # wrong types and ranges
    "schema_version 1 (the old shape)": _set("schema_version", 1),
    "schema_version true (JSON true is not 1)": _set("schema_version", True),
    "a fatal problem that is nobody's fault": _set("problems.0.cause", None),
    "a detail longer than the bound": _set("problems.0.detail", "x" * 2001),
    "schema_version as a string": _set("schema_version", "2"),
    "prod_likely_to_succeed as a string": _set("prod_likely_to_succeed", "yes"),
    "identifiers a string, not an array": _set("identifiers", "example.com"),
    "identifier entry a number": _set("identifiers.0", 1),
    "empty identifier": _set("identifiers.0", ""),
    "problems an object, not an array": _set("problems", {}),
    "http_status a string": _set("problems.0.http_status", "503"),
    "http_status a boolean": _set("problems.0.http_status", True),
    "retry_after negative": _set("problems.0.retry_after", -1),
    "retry attempt 0": _set("retries.0.attempt", 0),
    "retry attempt fractional": _set("retries.0.attempt", 1.5),
    "retry wait negative": _set("retries.0.wait_s", -0.5),
    "requests.total fractional": _set("requests.total", 1.5),
    "requests.polls negative": _set("requests.polls", -1),
    "requests null": _set("requests", None),
    "certificate an array": _set("certificate", []),
    "certificate chain_length 0": _set("certificate.chain_length", 0),
    "duration_s a string": _set("duration_s", "0.4"),
    "duration_s negative": _set("duration_s", -0.1),
    "account_url a number": _set("account_url", 1),
    "staging_only_features a string": _set("staging_only_features", "profiles"),
    # every key the contract promises, dropped in turn
    **{f"missing top-level {key}": _drop(key) for key in _FULL},
    **{f"missing problem {key}": _drop(f"problems.0.{key}") for key in _FULL["problems"][0]},
    **{f"missing retry {key}": _drop(f"retries.0.{key}") for key in _FULL["retries"][0]},
    **{f"missing step {key}": _drop(f"steps.0.{key}") for key in _FULL["steps"][0]},
    **{f"missing requests {key}": _drop(f"requests.{key}") for key in _FULL["requests"]},
    **{f"missing certificate {key}": _drop(f"certificate.{key}") for key in _FULL["certificate"]},
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_mutated_report_is_rejected_by_both_validators(mutate: Callable[[Doc], None]) -> None:
    doc = copy.deepcopy(_FULL)
    mutate(doc)
    assert reference_errors(doc), "jsonschema accepted it: the schema is too loose"
    with pytest.raises(ReportSchemaError) as caught:
        validate_report(doc)
    assert isinstance(caught.value, ValueError)
    assert caught.value.violations


def test_every_violation_is_listed_with_its_json_path() -> None:
    doc = copy.deepcopy(_FULL)
    doc["verdict"] = "success"
    doc["problems"][0]["cause"] = "server"
    del doc["steps"][1]["duration_s"]
    doc["extra"] = 1
    with pytest.raises(ReportSchemaError) as caught:
        validate_report(doc)
    # The bad cause breaks the enum and the "fatal/error need a cause" rule alike.
    assert sorted(v.split(":")[0] for v in caught.value.violations) == [
        "$", "$.problems[0].cause", "$.problems[0].cause", "$.steps[1]", "$.verdict"]
    assert "'duration_s' is a required property" in str(caught.value)
    assert "'server' is not one of ['client', 'staging', None]" in str(caught.value)
    assert len(reference_errors(doc)) == 5


def test_a_non_object_report_is_rejected() -> None:
    with pytest.raises(ReportSchemaError, match=r"\$: \[\] is not of type 'object'"):
        validate_report([])  # type: ignore[arg-type]
