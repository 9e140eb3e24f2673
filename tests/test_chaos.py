"""``acmedryrun chaos`` (issue 16): every scenario through clients whose behaviour is known.

The catalog runs, through the real CLI in a subprocess, against real Pebbles
behind real FaultProxies, with three clients:

* acmedryrun itself (``python -m acmedryrun check``), which survives every
  transient fault and fails cleanly under the two that never end;
* ``tests/chaos_client.py``, a tiny raw ACME client that never retries, polls
  twice at most, and can be told to hang, crash, abort, issue twice or hammer:
  its outcome under each scenario is known in advance;
* certbot (PyPI, the test extra's, in the test venv) under a few scenarios, with the
  outcomes certbot 5.8 produces.

``ACMEDRYRUN_CHAOS_LONG=1`` adds certbot's and lego's full scorecards (the
README's tables), a few minutes more.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from acmedryrun.chaos.catalog import CATALOG, DEFAULT_MAX_REQUESTS, Scenario, load_scenarios
from acmedryrun.chaos.render import render_junit, render_table
from acmedryrun.chaos.runner import Template, run_scenario
from acmedryrun.chaos.score import (
    Evidence,
    ScenarioResult,
    Scorecard,
    Traffic,
    crash_line,
    error_line,
    score,
    traffic,
)
from acmedryrun.errors import UsageError
from acmedryrun.testing import FaultProxy, LocalPebble, ProxyEvent, parse_fault

ROOT = Path(__file__).resolve().parent.parent
CLIENT = str(Path(__file__).resolve().parent / "chaos_client.py")
NAMES = [s.name for s in CATALOG]
LONG = bool(os.environ.get("ACMEDRYRUN_CHAOS_LONG"))

ACMEDRYRUN = ["{python}", "-m", "acmedryrun", "check", "-d", "{name}",
              "--directory", "{directory}", "--ca-bundle", "{ca_bundle}",
              "--http-01-port", "{http_port}", "--http-01-address", "127.0.0.1",
              "--dns-resolver", "{dns_server}", "--timeout", "10"]
SCRIPTED = ["{python}", CLIENT, "{directory}", "{name}", "{http_port}"]


def certbot_binary() -> str | None:
    found = os.environ.get("ACMEDRYRUN_CERTBOT") or str(Path(sys.executable).with_name("certbot"))
    return found if os.access(found, os.X_OK) else shutil.which("certbot")


def certbot_command(binary: str) -> list[str]:
    return [binary, "certonly", "--server", "{directory}", "--standalone",
            "--http-01-port", "{http_port}", "--http-01-address", "127.0.0.1", "-d", "{name}",
            "--config-dir", "{workdir}/config", "--work-dir", "{workdir}/work",
            "--logs-dir", "{workdir}/logs", "--register-unsafely-without-email",
            "--agree-tos", "--non-interactive"]


LEGO = ["lego", "--server", "{directory}", "--accept-tos", "--email", "chaos@example.com",
        "--domains", "{name}", "--http", "--http.port", "127.0.0.1:{http_port}",
        "--path", "{workdir}", "run"]


@pytest.fixture(scope="module", autouse=True)
def _pebble_installed() -> None:
    if not LocalPebble.is_installed() and not os.environ.get("CI"):
        pytest.skip("Debian package 'pebble' is not installed")


def chaos(*args: str, timeout: float = 600, env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m acmedryrun chaos ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "acmedryrun", "chaos", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})}, check=False)


def scorecard(*args: str, command: list[str]) -> tuple[dict[str, Any], str, int]:
    proc = chaos("--json", *args, "--", *command)
    assert proc.returncode in (0, 1), proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data, proc.stderr, proc.returncode


def by_scenario(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["scenario"]: row for row in data["scenarios"]}


# ------------------------------------------------------------------ the catalog itself

def test_the_catalog_covers_every_incident_of_the_issue() -> None:
    """Issue 16's list, each as a named scenario with faults, an expectation and a citation."""
    wanted = {"service-busy-503", "server-internal-retry-after", "maintenance-page",
              "lb-502-504", "connection-reset", "lost-finalize", "bad-nonce-storm",
              "missing-replay-nonce", "truncated-bodies", "authz-pending-a-while",
              "order-processing-a-while", "slow-trickle", "challenge-back-to-pending",
              "rate-limited-long-retry-after"}
    assert wanted <= set(NAMES)
    assert len(NAMES) == len(set(NAMES))
    for s in CATALOG:
        assert len(s.description) > 60, s.name
        assert s.faults or s.name == "baseline"
        for spec in s.faults:
            parse_fault(spec)
    kinds = {parse_fault(f).kind for s in CATALOG for f in s.faults}
    assert {"stall", "trickle", "lost", "reset", "html", "status", "strip_nonce",
            "truncated"} <= kinds
    assert by_name("lost-finalize").limit("finalize") == 1
    assert by_name("rate-limited-long-retry-after").limit("order") <= 3
    assert by_name("baseline").limit("order") == DEFAULT_MAX_REQUESTS


def by_name(name: str) -> Scenario:
    return next(s for s in CATALOG if s.name == name)


def test_scenarios_file_in_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('[[scenario]]\nname = "slow-nonce"\ndescription = "cold cache"\n'
                    'faults = ["nonce:delay:0.5,count=1"]\nexpect = "succeed"\n'
                    'time_bound = 20\nmax_requests = { nonce = 3 }\n')
    (scenario,) = load_scenarios(str(toml))
    assert (scenario.name, scenario.faults, scenario.time_bound, scenario.limit("nonce"),
            scenario.builtin) == ("slow-nonce", ("nonce:delay:0.5,count=1",), 20.0, 3, False)
    js = tmp_path / "s.json"
    js.write_text(json.dumps([{"name": "a", "faults": [], "expect": "fail"}]))
    assert [s.name for s in load_scenarios(str(js))] == ["a"]


@pytest.mark.parametrize(("content", "message"), [
    ('[[scenario]]\nname = "x"\nfaults = ["order:explode"]\nexpect = "succeed"\n',
     "unknown kind 'explode'"),
    ('[[scenario]]\nname = "x"\nfaults = []\nexpect = "maybe"\n', "expect 'maybe'"),
    ('[[scenario]]\nname = "x"\nfaults = []\n', "missing 'expect'"),
    ('[[scenario]]\nname = "x"\nfaults = []\nexpect = "fail"\ncolour = 1\n',
     "unknown key 'colour'"),
    ('[[scenario]]\nname = "x"\nfaults = []\nexpect = "fail"\n'
     '[[scenario]]\nname = "x"\nfaults = []\nexpect = "fail"\n', "given twice"),
    ('[[scenario]]\nname = "x"\nfaults = []\nexpect = "fail"\nmax_requests = {orders = 1}\n',
     "unknown endpoint 'orders'"),
    ('[[scenario]]\nname = "x y"\nfaults = []\nexpect = "fail"\n', "scenario name"),
    ("not = [toml", "not TOML"),
])
def test_a_bad_scenarios_file_is_one_line_naming_it(tmp_path: Path, content: str,
                                                    message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as info:
        load_scenarios(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_template_placeholders_are_checked_and_secrets_hidden() -> None:
    with pytest.raises(UsageError, match=r"unknown placeholder \{domain\}"):
        Template(("lego", "--domains", "{domain}"))
    with pytest.raises(UsageError, match="missing"):
        Template(())
    t = Template(("x", "{{literal}}", "{name}", "--eab-hmac-key", "s3cret", "--password=pw"))
    assert t.render({"name": "n.example.com"})[1:3] == ["{literal}", "n.example.com"]
    assert "s3cret" not in t.shown()
    assert "--password=***" in t.shown()


# ------------------------------------------------------------------ scoring, pure

def event(endpoint: str, status: int | None, *, path: str | None = None, method: str = "POST",
          fault: str | None = None, upstream: int | None = None) -> ProxyEvent:
    return ProxyEvent(endpoint, method, path or f"/{endpoint}", parse_fault(fault)
                      if fault else None, status, upstream if upstream is not None else status)


def test_retries_are_requests_repeated_after_a_useless_answer() -> None:
    seen = traffic([
        event("directory", 200, method="GET"),
        event("order", 503, fault="order:status:503"), event("order", 503,
                                                             fault="order:status:503"),
        event("order", 201),
        event("order_poll", 200, path="/o/1"), event("order_poll", 200, path="/o/1"),  # polls
        event("finalize", None, fault="finalize:lost", upstream=200),
        event("order_poll", 200, path="/o/1"),
        event("certificate", 200),
    ])
    assert seen.retries == 2
    assert seen.issued == 1
    assert seen.delivered
    assert seen.requests == {"directory": 1, "order": 3, "order_poll": 3, "finalize": 1,
                             "certificate": 1}
    assert seen.faults_fired == 3
    assert seen.last == "POST certificate"


def test_a_truncated_certificate_is_not_a_delivered_one() -> None:
    seen = traffic([event("finalize", 200), event("certificate", 200,
                                                  fault="certificate:truncated")])
    assert not seen.delivered


def verdict(scenario: str, code: int | None, events: list[ProxyEvent], *, output: str = "",
            timed_out: bool = False) -> tuple[str, str]:
    return score(by_name(scenario), Evidence(code, timed_out, 1.0, output), traffic(events))


GOOD = [event("finalize", 200), event("certificate", 200)]


def test_score_rules_in_order() -> None:
    assert verdict("baseline", None, GOOD, timed_out=True)[0] == "hung"
    assert verdict("baseline", -6, GOOD) == ("crashed", "killed by SIGABRT")
    tb = "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'status'\n"
    assert verdict("baseline", 1, [], output=tb) == ("crashed", "exit 1: KeyError: 'status'")
    assert verdict("baseline", 0, GOOD + GOOD)[1].startswith("issued 2 certificates")
    lost = [event("finalize", None, fault="finalize:lost", upstream=200),
            event("finalize", 403, upstream=403), *GOOD[1:]]
    assert verdict("lost-finalize", 0, lost)[1].startswith("sent 2 finalize requests")
    assert verdict("baseline", 0, [event("finalize", 200)]) == (
        "failed", "exit 0, but no certificate was downloaded")
    assert verdict("baseline", 0, GOOD)[0] == "passed"
    assert verdict("baseline", 1, [], output="Error: nope\nAsk for help at x")[1] == \
        "exit 1: Error: nope"
    page = [event("directory", 503, fault="directory:html:503", method="GET")]
    assert verdict("maintenance-page", 1, page)[0] == "passed"
    assert verdict("maintenance-page", 0, page)[0] == "failed"
    assert verdict("maintenance-page", 2, [])[1].startswith("exit 2 before meeting the fault")


def test_crash_and_error_lines() -> None:
    assert crash_line("goroutine 1 [running]:\npanic: runtime error: nil map\n") == \
        "panic: runtime error: nil map"
    assert crash_line("acme: error: 503 :: POST\n") is None
    assert error_line("Saving debug log to x\nAn unexpected error occurred:\n"
                      "acme.errors.ClientError: <Response [502]>\n"
                      "Ask for help or search for solutions at https://x. See the logfile y"
                      ) == "acme.errors.ClientError: <Response [502]>"
    assert error_line("Could not obtain certificates:\n\terror: one or more domains had a"
                      " problem:\n[x.example.com] Post \"https://127.0.0.1:1/f\": read: reset\n"
                      ) == ("error: one or more domains had a problem: [x.example.com] Post"
                            ' "https://127.0.0.1:1/f": read: reset')


def test_junit_has_one_case_per_scenario_failures_and_errors() -> None:
    def result(name: str, outcome: str) -> ScenarioResult:
        return ScenarioResult(by_name(name), outcome, f"why \x1b {outcome}",
                              Evidence(1, False, 0.5, "out\x00put"),
                              Traffic({"order": 2}, 1, 0, False, 1, "POST order"))

    card = Scorecard(("client", "{name}"), (result("baseline", "passed"),
                                            result("lost-finalize", "failed"),
                                            result("slow-trickle", "hung"),
                                            result("lb-502-504", "crashed")), 3.0)
    root = ET.fromstring(render_junit(card))  # noqa: S314 - our own output
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "2")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["baseline", "lost-finalize", "slow-trickle",
                                              "lb-502-504"]
    assert cases[0].find("failure") is None
    assert cases[0].find("error") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("type") == "failed"
    error = cases[2].find("error")
    assert error is not None
    assert error.get("type") == "hung"
    table = render_table(card)
    assert "score: 1/4 passed" in table
    assert "warning" not in table


# ------------------------------------------------------------------ the new FaultProxy kinds

@pytest.fixture(scope="module")
def upstream() -> Iterator[LocalPebble]:
    with LocalPebble() as p:
        yield p


def test_stall_counts_only_responses_it_rewrote(upstream: LocalPebble) -> None:
    import acmedryrun
    from acmedryrun.solvers import HTTP01Standalone

    with FaultProxy(upstream.directory_url, upstream_ca_bundle=upstream.ca_bundle,
                    faults=[parse_fault("order_poll:stall:processing,count=3")]) as proxy:
        report = acmedryrun.dry_run(
            ["stall.example.com"], directory=proxy.directory_url, ca_bundle=proxy.ca_bundle,
            solver=HTTP01Standalone(port=upstream.http_port, address="127.0.0.1"),
            dns_resolver=upstream.dns_resolver, timeout=30)
    assert report.exit_code == 0, report.problems
    polls = [e for e in proxy.events if e.endpoint == "order_poll"]
    # The poll before finalize (order "ready") is not "later than processing": untouched.
    assert [e.fault is not None for e in polls] == [False, True, True, True, False]


def test_stall_unanswered_shows_the_challenges_pending_again() -> None:
    from acmedryrun.testing._faultproxy import _stall_json

    authz = {"status": "valid", "identifier": {"type": "dns", "value": "x"}, "challenges": [
        {"type": "http-01", "url": "u", "token": "t", "status": "valid", "validated": "now"}]}
    raw = json.dumps(authz).encode()
    unanswered = json.loads(_stall_json(raw, 200, "unanswered") or b"{}")
    assert unanswered["status"] == "pending"
    assert unanswered["challenges"][0]["status"] == "pending"
    assert "validated" not in unanswered["challenges"][0]
    validating = json.loads(_stall_json(raw, 200, "pending") or b"{}")
    assert validating["challenges"][0]["status"] == "processing"
    invalid = json.dumps({**authz, "status": "invalid"}).encode()
    assert _stall_json(invalid, 200, "pending") is None  # a failure is never hidden
    order = json.dumps({"status": "valid", "finalize": "f", "certificate": "c"}).encode()
    assert json.loads(_stall_json(order, 200, "processing") or b"{}") == {
        "status": "processing", "finalize": "f"}


@pytest.mark.parametrize(("spec", "message"), [
    ("order_poll:stall:valid", "needs a state"),
    ("order_poll:stall", "needs a state"),
    ("directory:trickle", "needs duration"),
    ("directory:trickle:1,delay=2", "applies only"),
])
def test_bad_new_fault_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(spec)


def test_new_fault_specs_round_trip() -> None:
    assert str(parse_fault("order_poll:stall:processing,count=3")) == \
        "order_poll:stall:processing,count=3"
    assert parse_fault("authz:stall,status=unanswered").stall == "unanswered"
    trickle = parse_fault("directory:trickle:2,count=1")
    assert (trickle.duration, trickle.count) == (2.0, 1)
    assert parse_fault("directory:trickle,duration=0.5").duration == 0.5


def test_trickle_outlasts_a_read_timeout_and_arrives_whole(upstream: LocalPebble) -> None:
    with FaultProxy(upstream.directory_url, upstream_ca_bundle=upstream.ca_bundle,
                    faults=[parse_fault("directory:trickle:1.5,count=1")]) as proxy:
        session = requests.Session()
        session.trust_env = False
        started = time.monotonic()
        slow = session.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=0.5)
        took = time.monotonic() - started
        fast = session.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=0.5)
    assert 1.4 <= took < 5, took
    assert slow.json() == fast.json()
    assert "newNonce" in slow.json()


def test_a_response_is_one_write_so_nagle_costs_nothing(
    upstream: LocalPebble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With NODELAY off on the client-facing socket, head-then-body writes cost ~40 ms a
    response (Nagle waits for the delayed ACK); one write costs nothing."""
    from acmedryrun.testing import _faultproxy

    real = _faultproxy._Server.get_request

    def with_nagle(self: Any) -> tuple[socket.socket, Any]:
        sock, addr = real(self)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        return sock, addr

    monkeypatch.setattr(_faultproxy._Server, "get_request", with_nagle)
    with FaultProxy(upstream.directory_url, upstream_ca_bundle=upstream.ca_bundle) as proxy:
        session = requests.Session()
        session.trust_env = False
        session.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=5)
        times = []
        for _ in range(15):
            started = time.perf_counter()
            session.get(proxy.directory_url, verify=proxy.ca_bundle, timeout=5)
            times.append(time.perf_counter() - started)
    assert sorted(times)[len(times) // 2] < 0.02, times


# ------------------------------------------------------------------ acmedryrun as the client

#: acmedryrun's known outcome: every scenario passed.
@pytest.fixture(scope="module")
def acmedryrun_card(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    junit = tmp_path_factory.mktemp("junit") / "acmedryrun.xml"
    data, _, code = scorecard("--junit", str(junit), command=ACMEDRYRUN)
    data["_exit"] = code
    data["_junit"] = junit.read_text()
    return data


@pytest.mark.parametrize("name", NAMES)
def test_acmedryrun_passes_every_scenario(acmedryrun_card: dict[str, Any], name: str) -> None:
    row = by_scenario(acmedryrun_card)[name]
    assert row["outcome"] == "passed", row
    expect = by_name(name).expect
    assert (row["exit_code"] == 0) == (expect == "succeed")
    assert row["certificates_issued"] == (1 if expect == "succeed" else 0)
    assert row["wall_s"] < by_name(name).time_bound
    if name in RETRIED:
        assert row["retries"] >= 1, row  # a repeated request after each useless answer
    else:
        assert row["retries"] == 0, row  # nothing to repeat (a poll is not a retry)


#: Scenarios whose faults leave acmedryrun no usable answer, so it sends the request again.
RETRIED = {"service-busy-503", "server-internal-retry-after", "maintenance-page", "lb-502-504",
           "connection-reset", "bad-nonce-storm", "truncated-bodies"}


def test_acmedryrun_scorecard_details(acmedryrun_card: dict[str, Any]) -> None:
    rows = by_scenario(acmedryrun_card)
    assert acmedryrun_card["_exit"] == 0
    assert acmedryrun_card["score"] == {"passed": len(NAMES), "total": len(NAMES),
                                        "failed": 0, "hung": 0, "crashed": 0}
    assert rows["lost-finalize"]["requests"]["finalize"] == 1  # re-read, not re-finalized
    assert rows["bad-nonce-storm"]["retries"] == 10  # 2 refusals x 5 endpoints
    assert rows["rate-limited-long-retry-after"]["requests"]["order"] == 1
    assert rows["order-processing-a-while"]["requests"]["order_poll"] >= 4
    assert rows["slow-trickle"]["wall_s"] >= 5  # 2 + 1.5 + 1.5 s of trickle
    assert rows["service-busy-503"]["wall_s"] >= 4  # four Retry-After: 1 waited out
    suite = ET.fromstring(acmedryrun_card["_junit"]).find("testsuite")  # noqa: S314
    assert suite is not None
    assert len(suite.findall("testcase")) == len(NAMES)
    assert suite.get("failures") == "0"
    assert suite.get("errors") == "0"


def test_dns01_hooks_set_records_through_the_helper() -> None:
    hooks = ["--dns-01-auth-hook", "{dns_hook} auth", "--dns-01-cleanup-hook",
             "{dns_hook} cleanup"]
    base = [a for a in ACMEDRYRUN if a not in ("--http-01-port", "{http_port}",
                                                "--http-01-address", "127.0.0.1")]
    data, stderr, code = scorecard("--scenario", "baseline", command=[*base, *hooks])
    assert code == 0, stderr
    assert by_scenario(data)["baseline"]["outcome"] == "passed"


def test_dns_helper_sets_and_clears_txt(upstream: LocalPebble) -> None:
    import dns.resolver

    def txt() -> list[str]:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = upstream.dns_port
        try:
            answer = resolver.resolve("_acme-challenge.helper.example.com", "TXT")
        except dns.resolver.NoAnswer:
            return []
        return sorted(r.strings[0].decode() for r in answer)

    def helper(*args: str, env: dict[str, str] | None = None) -> int:
        return subprocess.run([sys.executable, "-m", "acmedryrun.chaos.dns", "--api",
                               upstream.challtestsrv_url, *args], check=False,
                              env={**os.environ, **(env or {})}, timeout=30).returncode

    assert helper("present", "_acme-challenge.helper.example.com.", "lego-style") == 0
    assert helper("auth", env={"CERTBOT_DOMAIN": "*.helper.example.com",
                               "CERTBOT_VALIDATION": "certbot-style"}) == 0
    assert txt() == ["certbot-style", "lego-style"]
    assert helper("cleanup", env={"CERTBOT_DOMAIN": "helper.example.com"}) == 0
    assert txt() == []
    assert helper("present", "only-one-arg") == 64


# ------------------------------------------------------------------ the scripted client

#: What a client that never retries and polls twice does under each scenario.
SCRIPTED_OUTCOMES = {
    "baseline": "passed", "service-busy-503": "failed",
    "server-internal-retry-after": "failed", "maintenance-page": "passed",
    "lb-502-504": "failed", "connection-reset": "failed", "lost-finalize": "failed",
    "bad-nonce-storm": "failed", "missing-replay-nonce": "failed",
    "truncated-bodies": "failed", "authz-pending-a-while": "failed",
    "order-processing-a-while": "failed", "slow-trickle": "passed",
    "challenge-back-to-pending": "failed", "rate-limited-long-retry-after": "passed",
}


@pytest.fixture(scope="module")
def scripted_card() -> dict[str, Any]:
    data, _, code = scorecard(command=SCRIPTED)
    data["_exit"] = code
    return data


@pytest.mark.parametrize("name", NAMES)
def test_a_client_that_never_retries_scores_as_predicted(scripted_card: dict[str, Any],
                                                         name: str) -> None:
    row = by_scenario(scripted_card)[name]
    assert row["outcome"] == SCRIPTED_OUTCOMES[name], row
    assert row["retries"] == 0
    if row["outcome"] == "failed":
        assert row["exit_code"] == 1, row
        assert "chaos_client:" in row["reason"], row


def test_the_scripted_scorecard_exit_code_and_total(scripted_card: dict[str, Any]) -> None:
    assert scripted_card["_exit"] == 1
    passed = sum(1 for o in SCRIPTED_OUTCOMES.values() if o == "passed")
    assert scripted_card["score"]["passed"] == passed == 4


def listeners_of(pids: set[int]) -> set[str]:
    """Local addresses of the listening TCP sockets and bound UDP sockets ``pids`` hold."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found: set[str] = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            listening = fields[3] == "0A" if table.startswith("tcp") else fields[3] == "07"
            if listening and fields[9] in inodes:
                found.add(fields[1].rsplit(":", 1)[0])
    return found


def _proc_address(hexed: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp* writes it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hexed)
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def test_a_hung_client_is_killed_whole_and_nothing_outlives_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed at the bound with the grandchild that ignores SIGTERM; ports, temp dirs freed;
    the proxy, Pebble and its DNS listen on loopback only."""
    pidfile = tmp_path / "pids"
    # A temp root of this test's own: another suite on the machine makes and removes its own.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    before = set(private_tmp.glob("acmedryrun-chaos-*"))
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # what this process and its children (Pebble) listen on
        while not stop.wait(0.2):
            seen.update(listeners_of(descendants(os.getpid()) - client_pids()))

    def client_pids() -> set[int]:
        try:
            return {int(x) for x in pidfile.read_text().split()}
        except OSError:
            return set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        started = time.monotonic()
        result = run_scenario(by_name("baseline"), Template((
            *SCRIPTED, "--mode", "hang", "--pidfile", str(pidfile))), time_bound=3)
        took = time.monotonic() - started
    finally:
        stop.set()
        watcher.join()
    assert result.outcome == "hung", result.reason
    assert result.evidence.exit_code is None
    assert 3 <= result.evidence.wall_s < 4
    assert took < 12
    pids = client_pids()
    assert len(pids) == 2
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    port = int((tmp_path / "pids.port").read_text())
    with socket.socket() as probe:  # the client's responder port is free again
        probe.bind(("127.0.0.1", port))
    assert set(private_tmp.glob("acmedryrun-chaos-*")) == before
    assert seen, "the watcher saw the proxy and Pebble listen"
    assert all(_proc_address(hexed).is_loopback for hexed in seen), seen


@pytest.mark.parametrize(("mode", "scenario", "outcome", "reason"), [
    ("crash", "service-busy-503", "crashed", "exit 1: RuntimeError: chaos_client crashed"),
    ("abort", "lb-502-504", "crashed", "killed by SIGABRT"),
    ("exit0", "baseline", "failed", "exit 0, but no certificate was downloaded"),
    ("issue-twice", "baseline", "failed", "issued 2 certificates"),
    ("hammer", "rate-limited-long-retry-after", "failed", "sent 9 order requests, at most 3"),
])
def test_known_misbehaviour_is_scored(mode: str, scenario: str, outcome: str,
                                      reason: str) -> None:
    result = run_scenario(by_name(scenario), Template((*SCRIPTED, "--mode", mode)))
    assert result.outcome == outcome, result.reason
    assert result.reason.startswith(reason), result.reason


def test_user_defined_scenarios_run_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[[scenario]]\nname = "one-503-on-authz"\ndescription = "mine"\n'
                    'faults = ["authz:status:503,count=1"]\nexpect = "succeed"\n'
                    'time_bound = 30\n')
    data, _, code = scorecard("--scenarios-file", str(path), "--scenario", "one-503-on-authz",
                              "--scenario", "baseline", command=SCRIPTED)
    rows = by_scenario(data)
    assert list(rows) == ["one-503-on-authz", "baseline"]
    assert code == 1
    assert rows["one-503-on-authz"]["outcome"] == "failed"
    assert rows["one-503-on-authz"]["requests"]["authz"] == 1


def test_list_shows_catalog_and_file_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"scenario": [{"name": "mine", "faults": [], "expect": "fail"}]}))
    proc = chaos("--list", "--scenarios-file", str(path))
    assert proc.returncode == 0, proc.stderr
    for name in [*NAMES, "mine"]:
        assert f"\n{name}  expect" in "\n" + proc.stdout


# ------------------------------------------------------------------ usage errors, exit 64 / 69

@pytest.mark.parametrize(("args", "message"), [
    (["--scenario", "nope", "--", "true"], "--scenario: unknown scenario 'nope'"),
    (["--", "true", "{domain}"], "unknown placeholder {domain}"),
    ([], "CLIENT COMMAND: missing"),
    (["--time-bound", "0", "--", "true"], "--time-bound"),
    (["--scenarios-file", "/nonexistent.toml", "--", "true"], "/nonexistent.toml"),
    (["--junit", "/nonexistent-dir/x.xml", "--", "true"], "--junit: /nonexistent-dir"),
])
def test_bad_input_is_exit_64_one_line_before_anything(tmp_path: Path, args: list[str],
                                                       message: str) -> None:
    proc = chaos(*args, cwd=tmp_path)
    assert proc.returncode == 64, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_missing_pebble_or_client_program_is_exit_69(tmp_path: Path) -> None:
    junit = tmp_path / "x.xml"
    proc = chaos("--junit", str(junit), "--", "true", env={"ACMEDRYRUN_PEBBLE": "/nonexistent"})
    assert proc.returncode == 69
    assert "pebble" in proc.stderr
    assert not junit.exists()
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = chaos("--", "no-such-acme-client-xyz", "{name}")
    assert proc.returncode == 69
    assert "no-such-acme-client-xyz" in proc.stderr


# ------------------------------------------------------------------ certbot and lego

#: certbot 5.8's outcomes (measured; README "Chaos scorecards").
CERTBOT_OUTCOMES = {
    "baseline": "passed", "service-busy-503": "failed", "server-internal-retry-after": "failed",
    "maintenance-page": "passed", "lb-502-504": "failed", "connection-reset": "failed",
    "lost-finalize": "failed", "bad-nonce-storm": "failed", "missing-replay-nonce": "failed",
    "truncated-bodies": "failed", "authz-pending-a-while": "passed",
    "order-processing-a-while": "passed", "slow-trickle": "passed",
    "challenge-back-to-pending": "passed", "rate-limited-long-retry-after": "passed",
}
#: Debian's lego (4.9)'s outcomes (measured; README "Chaos scorecards").
LEGO_OUTCOMES = {
    **CERTBOT_OUTCOMES, "bad-nonce-storm": "passed", "missing-replay-nonce": "passed",
}
CERTBOT_SHORT = ("baseline", "bad-nonce-storm", "maintenance-page", "order-processing-a-while")


@pytest.fixture(scope="module")
def certbot() -> str:
    found = certbot_binary()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("certbot is missing: scripts/dev test installs the test extra")
        pytest.skip("certbot is not installed (scripts/dev test installs it)")
    return found


def test_certbot_scores_as_known(certbot: str) -> None:
    """certbot survives one badNonce, not two; fails cleanly on a maintenance page; polls a
    processing order patiently."""
    names = list(CERTBOT_OUTCOMES) if LONG else list(CERTBOT_SHORT)
    args = [a for n in names for a in ("--scenario", n)]
    data, stderr, _ = scorecard(*args, command=certbot_command(certbot))
    rows = by_scenario(data)
    assert {n: rows[n]["outcome"] for n in names} == {n: CERTBOT_OUTCOMES[n] for n in names}, \
        stderr
    assert rows["bad-nonce-storm"]["retries"] == 1  # acme's ClientNetwork retries once
    assert rows["bad-nonce-storm"]["requests"]["account"] == 2


@pytest.mark.skipif(not LONG or shutil.which("lego") is None,
                    reason="ACMEDRYRUN_CHAOS_LONG=1 and Debian's lego needed")
def test_lego_full_scorecard() -> None:
    data, stderr, _ = scorecard(command=LEGO)
    assert {r["scenario"]: r["outcome"] for r in data["scenarios"]} == LEGO_OUTCOMES, stderr
