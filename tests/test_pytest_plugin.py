"""The pytest plugin, as a user's suite meets it: a generated test file run by pytest.

Each run is a subprocess with plugin autoloading off and the plugin loaded with
``-p``, so the result is the same before and after acmedryrun's ``pytest11``
entry point is installed (with both, pluggy would see the module twice).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "acmedryrun.testing.pytest_plugin"

USER_TESTS = '''
import acmedryrun
from acmedryrun.testing._faultproxy import parse_fault

seen = {}


def test_dry_run_local_succeeds(dry_run_local, local_pebble):
    report = dry_run_local(["www.example.com"])
    assert report.verdict is acmedryrun.Verdict.LIKELY_SUCCESS, report.problems
    assert report.directory == local_pebble.directory_url
    seen["pebble"] = local_pebble


def test_dry_run_local_reports_a_broken_dns_record(dry_run_local, local_pebble):
    local_pebble.add_a("broken.example.com", ["127.0.0.2"])
    report = dry_run_local(["broken.example.com"])
    assert report.verdict is acmedryrun.Verdict.CLIENT_ERROR
    assert [p.name for p in report.problems if p.severity.decisive] == ["ValidationConnection"]
    assert local_pebble is seen["pebble"], "local_pebble is session-scoped"


def test_fault_proxy_sits_in_front_of_local_pebble(dry_run_local, fault_proxy, local_pebble):
    assert fault_proxy.upstream == local_pebble.directory_url
    fault_proxy.add_fault(parse_fault("order:status:503,count=1"))
    report = dry_run_local(["www.example.com"], directory=fault_proxy.directory_url,
                           ca_bundle=fault_proxy.ca_bundle)
    assert report.verdict is acmedryrun.Verdict.LIKELY_SUCCESS, report.problems
    assert [r.step for r in report.retries] == [acmedryrun.Step.ORDER]
    assert fault_proxy.hits("order") == 2
    seen["proxy"] = fault_proxy


def test_fault_proxy_is_fresh_for_each_test(fault_proxy):
    assert fault_proxy is not seen["proxy"]
    assert fault_proxy.faults == ()
    assert fault_proxy.hits() == 0
'''


def run_user_suite(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    """Run ``source`` as a user's test module, with the plugin loaded."""
    pytester.makepyfile(test_user=source)
    return pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:cacheprovider", "-rs")


@pytest.fixture(autouse=True)
def _no_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_a_suite_using_the_three_fixtures_passes(pytester: pytest.Pytester) -> None:
    result = run_user_suite(pytester, USER_TESTS)
    result.assert_outcomes(passed=4)


def test_missing_pebble_skips_the_test_outside_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("ACMEDRYRUN_PEBBLE", "/nonexistent/pebble")
    result = run_user_suite(pytester, "def test_it(local_pebble):\n    pass\n")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*pebble binary not found*apt-get install pebble*"])


def test_missing_pebble_is_an_error_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CI a missing Pebble must not turn the suite green by skipping."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("ACMEDRYRUN_PEBBLE", "/nonexistent/pebble")
    result = run_user_suite(pytester, "def test_it(local_pebble):\n    pass\n")
    result.assert_outcomes(errors=1)


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """pytest imports the plugin in every suite where acmedryrun is installed."""
    code = (
        "import sys, acmedryrun.testing.pytest_plugin\n"
        "heavy = ('acme', 'josepy', 'requests', 'cryptography', 'dns', 'tenacity',"
        " 'acmedryrun.testing._pebble', 'acmedryrun.testing._faultproxy')\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
