"""``acmedryrun certbot`` on configuration directories written by real certbot (issue 15).

A module-scoped installation: real certbot (PyPI) obtains certificates from a
LocalPebble with ``--standalone``, ``--webroot`` (a ``webroot_map`` of two
document roots, served by a real web server) and ``--manual`` hooks (dns-01 via
challtestsrv, http-01 via the web server), plus one through a FaultProxy.  Then
the subscriber's world changes (one site moved away from its webroot), a few
files are edited or broken the way real installations are, and ``acmedryrun
certbot`` runs as a subprocess against the same Pebble.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from certbot_support import HOOKS, host_web_server, run_certbot
from conftest import cli

from acmedryrun import directories
from acmedryrun.certbot_cmd import LineageStatus, plan_lineage, staging_directory
from acmedryrun.certbot_renewal import (
    CERTBOT_DEFAULT_SERVER,
    Lineage,
    LineageError,
    RenewalConfError,
    parse_configobj,
    parse_renewal_conf,
    read_lineage,
)
from acmedryrun.schema import validate_report
from acmedryrun.testing import FaultProxy, LocalPebble, parse_fault

WEB = "127.0.0.2"  # the subscriber's web server; the standalone responder keeps 127.0.0.1
COMPAT = HOOKS / "certbot-compat.sh"


# ------------------------------------------------------------------ a certbot installation


@dataclass
class Installation:
    pebble: LocalPebble
    proxy: FaultProxy
    root: Path          # certbot's --config-dir is root/etc
    env: dict[str, str]  # what the hooks need, for certbot and acmedryrun alike
    bundle: Path        # Pebble's and the proxy's TLS anchors, for --ca-bundle
    names: dict[str, tuple[str, ...]]

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    def acmedryrun(self, *args: str, directory: str | None = None,
                   timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``acmedryrun certbot`` as a subprocess against this installation."""
        return cli("certbot", "--config-dir", str(self.config_dir), "--directory",
                   directory or self.pebble.directory_url, "--ca-bundle", str(self.bundle),
                   "--dns-resolver", self.pebble.dns_resolver, "--timeout", "60", *args,
                   env=self.env, timeout=timeout)


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its kind and content (or link target)."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            seen[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + \
                f" {path.stat().st_mode:o} {path.stat().st_mtime_ns}"
        else:
            seen[rel] = f"dir {path.stat().st_mode:o}"
    return seen


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp("certbot")
    www = root / "www"
    roots: dict[str, Path] = {}
    with LocalPebble() as p, FaultProxy(p.directory_url, upstream_ca_bundle=p.ca_bundle) as proxy, \
            host_web_server(WEB, p.http_port, roots):
        bundle = root / "bundle.pem"
        bundle.write_text(Path(p.ca_bundle).read_text() + Path(proxy.ca_bundle).read_text())
        env_dir = root / "hook-env"
        env_dir.mkdir()
        env = {"CHALLTESTSRV_URL": p.challtestsrv_url, "HOOK_ENV_DIR": str(env_dir),
               "HOOK_WEBROOT": str(www / "hooked")}
        names = {
            "standalone.example.com": ("standalone.example.com", "www.standalone.example.com"),
            "a.web.example.com": ("a.web.example.com", "b.web.example.com"),
            "gone.web.example.com": ("gone.web.example.com",),
            "dns.hooks.example.com": ("dns.hooks.example.com", "*.dns.hooks.example.com"),
            "http.hooks.example.com": ("http.hooks.example.com",),
            "faulted.example.com": ("faulted.example.com",),
        }
        for name in (*names["a.web.example.com"], *names["gone.web.example.com"],
                     *names["http.hooks.example.com"]):
            p.add_a(name, [WEB])
        for folder in ("a", "b", "gone", "hooked"):
            (www / folder).mkdir(parents=True)
        roots.update({"a.web.example.com": www / "a", "b.web.example.com": www / "b",
                      "gone.web.example.com": www / "gone",
                      "http.hooks.example.com": www / "hooked"})

        def obtain(*args: str, **kwargs: Any) -> None:
            proc = run_certbot(p, root, "certonly", *args, env=env, **kwargs)
            assert proc.returncode == 0, proc.stdout + proc.stderr

        def domains(lineage: str) -> list[str]:
            return [a for n in names[lineage] for a in ("-d", n)]

        obtain("--standalone", "--http-01-port", str(p.http_port), "--http-01-address",
               "127.0.0.1", *domains("standalone.example.com"))
        obtain("--webroot", "-w", str(www / "a"), "-d", "a.web.example.com",
               "-w", str(www / "b"), "-d", "b.web.example.com", "--key-type", "rsa",
               "--rsa-key-size", "3072")
        obtain("--webroot", "-w", str(www / "gone"), *domains("gone.web.example.com"))
        obtain("--manual", "--preferred-challenges", "dns",
               "--manual-auth-hook", str(HOOKS / "challtestsrv-auth.sh"),
               "--manual-cleanup-hook", str(HOOKS / "challtestsrv-cleanup.sh"),
               "--elliptic-curve", "secp384r1", "--deploy-hook", "systemctl reload nginx",
               *domains("dns.hooks.example.com"))
        obtain("--manual", "--preferred-challenges", "http",
               "--manual-auth-hook", f"{shlex.quote(str(COMPAT))} auth",
               "--manual-cleanup-hook", f"{shlex.quote(str(COMPAT))} cleanup",
               *domains("http.hooks.example.com"))
        obtain("--standalone", "--http-01-port", str(p.http_port), "--http-01-address",
               "127.0.0.1", *domains("faulted.example.com"), server=proxy.directory_url,
               ca_bundle=proxy.ca_bundle)

        renewal = root / "etc" / "renewal"
        # The site of gone.web moved: its old webroot is deleted, the web server serves another.
        shutil.rmtree(www / "gone")
        (www / "gone-new").mkdir()
        roots["gone.web.example.com"] = www / "gone-new"
        # A lineage certbot renews through nginx (this certbot has no nginx plugin: edited in,
        # with its own live/ links to the standalone lineage's archive).
        text = (renewal / "standalone.example.com.conf").read_text()
        live = root / "etc" / "live"
        (live / "nginxed.example.com").mkdir()
        for kind in ("cert", "privkey", "chain", "fullchain"):
            link = live / "standalone.example.com" / f"{kind}.pem"
            (live / "nginxed.example.com" / f"{kind}.pem").symlink_to(os.readlink(link))
        (renewal / "nginxed.example.com.conf").write_text(
            text.replace("authenticator = standalone", "authenticator = nginx\ninstaller = nginx")
            .replace("live/standalone.example.com/", "live/nginxed.example.com/"))
        # Broken files: a stray line, no [renewalparams], not UTF-8, a dangling link.
        (renewal / "broken-syntax.conf").write_text(text + "this line has no equals sign\n")
        (renewal / "no-params.conf").write_text(text.split("[renewalparams]")[0])
        (renewal / "latin1.conf").write_bytes(text.encode() + b"# caf\xe9\n")
        (renewal / "dangling.conf").symlink_to(root / "nowhere.conf")
        yield Installation(p, proxy, root, env, bundle, names)


def lines(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The JSON Lines a non-terminal stdout got, by lineage name."""
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    for record in records:
        if record["report"] is not None:
            validate_report(record["report"])
    return {r["lineage"]: r for r in records}


def fatal(record: dict[str, Any]) -> dict[str, Any]:
    problems = record["problems"] + (record["report"] or {}).get("problems", [])
    return next(p for p in problems if p["severity"] == "fatal")


# ------------------------------------------------------------------ the whole installation


@pytest.fixture(scope="module")
def whole(installation: Installation) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """One ``acmedryrun certbot`` over the whole installation, and what it left behind."""
    before = snapshot(installation.config_dir)
    started = time.monotonic()
    proc = installation.acmedryrun()
    took = time.monotonic() - started
    return proc, {"before": json.dumps(before), "after": json.dumps(
        snapshot(installation.config_dir)), "wall": f"{took:.1f}",
        "gone webroot left": str((installation.root / "www" / "gone").exists())}


def test_every_lineage_gets_its_verdict(
    installation: Installation, whole: tuple[subprocess.CompletedProcess[str], dict[str, str]]
) -> None:
    proc, _ = whole
    assert proc.returncode == 1, proc.stderr  # a client_error and broken files: exit 1
    got = lines(proc)
    expected = {
        "standalone.example.com": "likely_success",
        "a.web.example.com": "likely_success",
        "dns.hooks.example.com": "likely_success",
        "http.hooks.example.com": "likely_success",
        "faulted.example.com": "likely_success",  # through --directory, not the proxy
        "gone.web.example.com": "client_error",
    }
    assert {n: got[n]["verdict"] for n in expected} == expected, proc.stderr
    for name, verdict in expected.items():
        record = got[name]
        assert record["status"] == "checked"
        assert tuple(record["names"]) == installation.names[name]
        assert record["report"]["identifiers"] == list(installation.names[name])
        assert record["directory"] == installation.pebble.directory_url
        if verdict == "likely_success":
            # The issued certificate has the lineage's names and key type.
            certificate = record["report"]["certificate"]
            assert sorted(certificate["names"]) == sorted(installation.names[name])
    accounts = {got[n]["report"]["account_url"] for n in expected}
    assert len(accounts) == 1, "every lineage shares one staging account"
    assert got["a.web.example.com"]["report"]["certificate"]["key_type"] == "rsa3072"
    assert got["dns.hooks.example.com"]["report"]["certificate"]["key_type"] == "ec384"
    assert got["dns.hooks.example.com"]["challenge"] == "dns-01"
    assert got["http.hooks.example.com"]["challenge"] == "http-01"
    assert "deploy_hook not run: systemctl reload nginx" in got["dns.hooks.example.com"]["notes"]


def test_a_lineage_whose_webroot_was_removed_is_client_error_naming_it(
    whole: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    proc, trees = whole
    record = lines(proc)["gone.web.example.com"]
    problem = fatal(record)
    assert problem["cause"] == "client"
    assert problem["identifier"] == "gone.web.example.com"
    assert problem["step"] in ("challenge", "authorization")
    assert any("did not exist: created for the run" in n for n in record["notes"])
    assert trees["gone webroot left"] == "False"  # removed again after the run
    human = next(line for line in proc.stderr.splitlines()
                 if line.startswith("gone.web.example.com "))
    assert f"webroot  client_error  {problem['name']}: " in human


def test_authenticators_it_cannot_drive_are_not_checkable_with_what_to_do(
    whole: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    proc, _ = whole
    record = lines(proc)["nginxed.example.com"]
    assert record["status"] == "not_checkable"
    assert record["verdict"] is None
    assert "nginx's configuration" in record["reason"]
    assert "certbot renew --dry-run --cert-name nginxed.example.com" in record["reason"]
    assert "nginxed.example.com  nginx  not checkable here: " in proc.stderr


def test_malformed_and_unreadable_files_are_reported_with_their_path(
    installation: Installation, whole: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    proc, _ = whole
    got = lines(proc)
    renewal = installation.config_dir / "renewal"
    reasons = {
        "broken-syntax": "neither 'key = value' nor a [section]",
        "no-params": "lacks renewalparams",
        "latin1": "not UTF-8",
        "dangling": "cannot read it",
    }
    for name, reason in reasons.items():
        record = got[name]
        assert record["status"] == "unreadable"
        assert record["config"] == str(renewal / f"{name}.conf")
        assert reason in record["reason"]
        assert f"{renewal / name}.conf  unreadable: " in proc.stderr
    lines_before = len((renewal / "standalone.example.com.conf").read_text().splitlines())
    assert f"line {lines_before + 1}: neither" in got["broken-syntax"]["reason"]


def test_it_never_writes_under_the_config_dir(
    whole: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    _, trees = whole
    assert trees["before"] == trees["after"]


def test_the_human_summary_counts_and_says_which_hooks_did_not_run(
    whole: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    proc, _ = whole
    assert "not run (acmedryrun runs no certbot pre/post/deploy hook):" in proc.stderr
    assert "dns.hooks.example.com deploy_hook" in proc.stderr
    assert "total 11  likely_success 5  client_error 1  not_checkable 1  unreadable 4" \
        in proc.stderr


def test_json_is_the_whole_result_in_one_document(installation: Installation) -> None:
    proc = installation.acmedryrun("--json", "--cert-name", "standalone.example.com",
                                   "--cert-name", "nginxed.example.com")
    assert proc.returncode == 0, proc.stderr  # not checkable is no failure
    doc = json.loads(proc.stdout)
    assert [r["lineage"] for r in doc["lineages"]] == ["standalone.example.com",
                                                       "nginxed.example.com"]
    assert doc["summary"]["likely_success"] == 1
    assert doc["summary"]["not_checkable"] == 1
    assert doc["config_dir"] == str(installation.config_dir)


def test_a_faulted_staging_run_is_staging_unstable(installation: Installation) -> None:
    """The lineage's dry run goes through a FaultProxy answering newOrder with 504 pages."""
    installation.proxy.add_fault(parse_fault("order:html:504"))
    try:
        proc = installation.acmedryrun("--cert-name", "faulted.example.com", "--timeout", "3",
                                       directory=installation.proxy.directory_url)
    finally:
        installation.proxy.clear_faults()
    assert proc.returncode == 2, proc.stderr
    record = lines(proc)["faulted.example.com"]
    assert record["verdict"] == "staging_unstable"
    assert fatal(record)["cause"] == "staging"
    assert "faulted.example.com  standalone  staging_unstable  " in proc.stderr


def test_ctrl_c_stops_at_once_with_exit_130(installation: Installation) -> None:
    """A lineage stuck on a slow staging: SIGINT ends the command at once, no traceback."""
    import signal
    import sys

    installation.proxy.add_fault(parse_fault("order_poll:patch,status=pending"))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "acmedryrun", "certbot", "--config-dir",
             str(installation.config_dir), "--cert-name", "faulted.example.com",
             "--directory", installation.proxy.directory_url, "--ca-bundle",
             str(installation.bundle), "--dns-resolver", installation.pebble.dns_resolver],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **installation.env})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and installation.proxy.hits("order_poll") < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
    finally:
        installation.proxy.clear_faults()
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 5
    assert "Traceback" not in stderr


def test_a_standalone_port_in_use_is_client_error(installation: Installation) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", installation.pebble.http_port))
        busy.listen(1)
        proc = installation.acmedryrun("--cert-name", "standalone.example.com")
    assert proc.returncode == 1, proc.stderr
    record = lines(proc)["standalone.example.com"]
    assert record["verdict"] == "client_error"
    assert record["report"] is None  # found before any request
    assert fatal(record)["name"] == "SolverPortInUse"
    assert "already in use" in fatal(record)["detail"]


def edited(installation: Installation, tmp_path: Path, lineage: str,
           *changes: tuple[str, str]) -> Path:
    """A config dir holding one edited copy of ``lineage``'s renewal file (same cert)."""
    text = (installation.config_dir / "renewal" / f"{lineage}.conf").read_text()
    for old, new in changes:
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "renewal").mkdir(parents=True)
    (tmp_path / "renewal" / f"{lineage}.conf").write_text(text)
    return tmp_path


def run_on(installation: Installation, config_dir: Path) -> subprocess.CompletedProcess[str]:
    return cli("certbot", "--config-dir", str(config_dir), "--directory",
               installation.pebble.directory_url, "--ca-bundle", str(installation.bundle),
               "--dns-resolver", installation.pebble.dns_resolver, "--timeout", "60",
               env=installation.env)


def test_a_name_without_a_webroot_fails_before_any_request(installation: Installation,
                                                           tmp_path: Path) -> None:
    """certbot would prompt for the missing webroot, which renew cannot: client_error."""
    text = (installation.config_dir / "renewal" / "a.web.example.com.conf").read_text()
    path_line = next(line for line in text.splitlines() if line.startswith("webroot_path"))
    map_line = next(line for line in text.splitlines() if line.startswith("b.web.example.com"))
    config = edited(installation, tmp_path, "a.web.example.com", (path_line + "\n", ""),
                    (map_line + "\n", ""))
    proc = run_on(installation, config)
    assert proc.returncode == 1, proc.stderr
    record = lines(proc)["a.web.example.com"]
    assert record["report"] is None
    assert fatal(record)["name"] == "WebrootNotWritable"
    assert "no webroot for b.web.example.com" in fatal(record)["detail"]


def test_a_hook_whose_interpreter_is_gone_fails_before_any_request(
    installation: Installation, tmp_path: Path
) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text("#!/opt/python-retired/bin/python3\n")
    hook.chmod(0o755)
    conf = tmp_path / "conf"
    config = edited(installation, conf, "http.hooks.example.com",
                    (f"manual_auth_hook = {shlex.quote(str(COMPAT))} auth",
                     f"manual_auth_hook = {hook}"))
    proc = run_on(installation, config)
    assert proc.returncode == 1, proc.stderr
    record = lines(proc)["http.hooks.example.com"]
    assert record["report"] is None
    problem = fatal(record)
    assert problem["name"] == "HookFailed"
    assert f"manual_auth_hook: '{hook}' starts with '#!/opt/python-retired/bin/python3'" \
        in problem["detail"]


def test_standalone_behind_a_pre_hook_with_its_port_taken_is_not_checkable(
    installation: Installation, tmp_path: Path
) -> None:
    """certbot's pre_hook typically stops the web server on port 80; acmedryrun runs none."""
    config = edited(installation, tmp_path, "standalone.example.com",
                    ("[renewalparams]\n", "[renewalparams]\npre_hook = systemctl stop nginx\n"))
    (config / "renewal-hooks" / "post").mkdir(parents=True)
    (config / "renewal-hooks" / "post" / "start-nginx.sh").write_text("#!/bin/sh\n")
    (config / "renewal-hooks" / "post" / "start-nginx.sh").chmod(0o755)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", installation.pebble.http_port))
        busy.listen(1)
        proc = run_on(installation, config)
    assert proc.returncode == 0, proc.stderr
    record = lines(proc)["standalone.example.com"]
    assert record["status"] == "not_checkable"
    assert "pre_hook probably frees the port" in record["reason"]
    assert "pre_hook not run: systemctl stop nginx" in record["notes"]
    assert f"{config / 'renewal-hooks' / 'post' / 'start-nginx.sh'}" in proc.stderr.splitlines()[-2]


def test_a_certificate_ari_cannot_name_still_renews_with_a_note(
    installation: Installation, tmp_path: Path
) -> None:
    """A self-signed (or private CA's) certificate without an AKI: no renewalInfo question."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "noaki.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "noaki.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    live = installation.config_dir / "live" / "standalone.example.com" / "cert.pem"
    config = edited(installation, tmp_path / "conf", "standalone.example.com",
                    (f"cert = {live}", f"cert = {pem}"))
    proc = run_on(installation, config)
    assert proc.returncode == 0, proc.stderr
    record = lines(proc)["standalone.example.com"]
    assert record["names"] == ["noaki.example.com"]
    assert record["verdict"] == "likely_success"
    assert any(n.startswith("its certificate is not asked about") for n in record["notes"])


def test_unknown_cert_name_or_config_dir_is_exit_64(installation: Installation,
                                                    tmp_path: Path) -> None:
    proc = installation.acmedryrun("--cert-name", "nope.example.com")
    assert proc.returncode == 64
    assert "No certificate found with name nope.example.com" in proc.stderr
    assert proc.stderr.count("\n") == 1
    proc = cli("certbot", "--config-dir", str(tmp_path))
    assert proc.returncode == 64
    assert f"{tmp_path / 'renewal'} is not a directory" in proc.stderr
    (tmp_path / "renewal").mkdir()
    proc = cli("certbot", "--config-dir", str(tmp_path))
    assert proc.returncode == 64
    assert "holds no lineage" in proc.stderr


def test_bad_shared_options_are_exit_64_before_any_lineage_runs(
    installation: Installation, tmp_path: Path
) -> None:
    proc = cli("certbot", "--config-dir", str(installation.config_dir), "--directory",
               "not a url")
    assert proc.returncode == 64
    assert proc.stdout == ""
    proc = cli("certbot", "--config-dir", str(installation.config_dir), "--ca-bundle",
               str(tmp_path / "missing.pem"))
    assert proc.returncode == 64
    assert "--ca-bundle" in proc.stderr
    assert proc.stdout == ""


# ------------------------------------------------------------------ certbot renew --dry-run


CERTBOT_RESULT = re.compile(r"^\s+(\S+)/live/([^/]+)/fullchain\.pem \((success|failure)\)$")
CERTBOT_PARSE_FAILURE = re.compile(r"^\s+(\S+/renewal/([^/]+)\.conf) \(parsefail\)$")


def certbot_outcomes(output: str) -> dict[str, str]:
    """certbot renew's closing lists: lineage -> success, failure or parsefail."""
    outcomes = {}
    for line in output.splitlines():
        if m := CERTBOT_RESULT.match(line):
            outcomes[m.group(2)] = m.group(3)
        elif m := CERTBOT_PARSE_FAILURE.match(line):
            outcomes[m.group(2)] = "parsefail"
    return outcomes


def test_same_truth_as_certbot_renew_dry_run_plus_whose_fault(
    installation: Installation, whole: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    """Lineage by lineage: certbot's success/failure is our verdict; we also say why."""
    proc, trees = whole
    ours = lines(proc)
    started = time.monotonic()
    certbot = run_certbot(installation.pebble, installation.root, "renew", "--dry-run",
                          "--no-random-sleep-on-renew", env=installation.env, timeout=300)
    took = time.monotonic() - started
    theirs = certbot_outcomes(certbot.stdout + certbot.stderr)
    assert certbot.returncode == 1  # certbot: 1 for a broken webroot and a parse failure alike
    assert proc.returncode == 1
    table = []
    for name, record in ours.items():
        outcome = theirs.get(name)
        why = ""
        if record["verdict"] not in (None, "likely_success"):
            problem = fatal(record)
            why = f" {problem['name']} ({problem['cause']})"
        table.append(f"{name}: certbot {outcome}; acmedryrun {record['status']}"
                     f" {record['verdict'] or ''}{why}")
        if record["status"] == "unreadable":
            assert outcome == "parsefail", table  # certbot skips what it cannot parse too
        elif record["verdict"] == "likely_success":
            assert outcome == "success", table
        else:
            assert outcome == "failure", table
    # The comparison, in the test log (pytest -s).
    print(f"certbot renew --dry-run: exit {certbot.returncode} in {took:.1f} s;"
          f" acmedryrun certbot: exit {proc.returncode} in {trees['wall']} s", *table, sep="\n")
    assert theirs["gone.web.example.com"] == "failure"


# ------------------------------------------------------------------ the reader and the plan


def test_the_reader_parses_what_configobj_parses(installation: Installation) -> None:
    """certbot reads these files with ConfigObj (a dependency of certbot): same result."""
    configobj = pytest.importorskip("configobj")

    def plain(section: Any) -> Any:
        return {k: plain(v) if isinstance(v, dict) else v for k, v in section.items()}

    renewal = installation.config_dir / "renewal"
    samples = [(renewal / f"{name}.conf").read_text() for name in installation.names]
    samples += [
        "a = 1\nb = 'x, y'\nc = x, y,\nd = ,\ne = \"q\" # note\nf = a#b\n[s]\n[[t]]\nk = v\n"
        "[u]\nz = '''multi\nline\nend''' # x\n",
        "pre_hook = '''echo 'pre, x' \"q\"'''\nk = \"\"\nl = x , 'y' , \"z\"\nm =\n",
        "x = /bin/echo 'a' b\n  indented = 3\n['quoted section']\n\"quoted key\" = 5\n",
    ]
    assert len(samples) >= 9
    for text in samples:
        theirs = plain(configobj.ConfigObj(io.StringIO(text), interpolation=False))
        assert parse_configobj(text) == theirs


@pytest.mark.parametrize("text", [
    "a = 1\na = 2\n", "[s]\n[s]\n", "no equals\n", "a = 'x' y\n", "[[deep]]\n",
    "a = 'unterminated\n", "[s\n", "a = ,x\n", "a = x,,y\n", "a = '''never closed\n",
])
def test_the_reader_refuses_what_configobj_refuses(text: str) -> None:
    configobj = pytest.importorskip("configobj")
    with pytest.raises(configobj.ConfigObjError):
        configobj.ConfigObj(io.StringIO(text))
    with pytest.raises(RenewalConfError):
        parse_configobj(text)


CONF = """\
version = 5.8.0
archive_dir = /x/archive/n
cert = /x/live/n/cert.pem
privkey = /x/live/n/privkey.pem
chain = /x/live/n/chain.pem
fullchain = /x/live/n/fullchain.pem
[renewalparams]
authenticator = webroot
{extra}
"""


def lineage(extra: str = "", **changes: Any) -> Lineage:
    parsed = parse_renewal_conf(CONF.format(extra=extra), name="n", conf_path="/x/n.conf")
    return replace(parsed, **{"names": ("n.example.com",), **changes})


@pytest.mark.parametrize(("extra", "message"), [
    ("http01_port = eighty", "Expected a numeric value for http01_port"),
    ("pref_challs = smoke-01,", "Unrecognized challenges: smoke-01"),
    ("reuse_key = maybe", "Expected True or False for reuse_key but found maybe"),
    ("webroot_map = /srv", "[[webroot_map]] must map names to single paths"),
])
def test_typed_items_that_do_not_parse_are_certbots_errors(extra: str, message: str) -> None:
    with pytest.raises(RenewalConfError, match=re.escape(message)):
        lineage(extra)


def test_certbots_defaults_and_spellings() -> None:
    got = lineage("pref_challs = dns,\nhttp01_port = None\nrenew_hook = reload\n"
                  "webroot_path = /a, /b\n[[webroot_map]]\nn.example.com = /m")
    assert got.server == CERTBOT_DEFAULT_SERVER  # absent: certbot's default
    assert got.key_type == "rsa"  # absent: RSA, as certbot before 1.25 wrote
    assert got.pref_challs == ("dns-01",)
    assert got.http01_port == 80
    assert got.deploy_hook == "reload"
    assert got.webroot_for("n.example.com") == "/m"
    assert got.webroot_for("other.example.com") == "/b"  # the last webroot_path
    v1 = lineage("server = https://acme-v01.api.letsencrypt.org/directory")
    assert v1.server == CERTBOT_DEFAULT_SERVER


def test_a_conf_without_its_cert_is_a_lineage_error(tmp_path: Path) -> None:
    path = tmp_path / "n.conf"
    path.write_text(CONF.format(extra=""))
    got = read_lineage(path)
    assert isinstance(got, LineageError)
    assert got.reason.startswith("its cert /x/live/n/cert.pem cannot be read")


@pytest.mark.parametrize(("server", "staging"), [
    (directories.LETSENCRYPT, directories.LETSENCRYPT_STAGING),
    (directories.LETSENCRYPT_STAGING, directories.LETSENCRYPT_STAGING),
    (directories.GOOGLE, directories.GOOGLE_STAGING),
    (directories.BUYPASS + "/", directories.BUYPASS_STAGING),
    ("https://acme.example.net/directory", None),
])
def test_each_server_maps_to_its_staging_twin(server: str, staging: str | None) -> None:
    assert staging_directory(server) == staging
    plan = plan_lineage(lineage(server=server), directory=None)
    assert plan.directory == staging
    assert (plan.not_checkable is None) is (staging is not None)


def test_an_unknown_ca_is_checkable_with_directory() -> None:
    plan = plan_lineage(lineage(server="https://acme.example.net/directory"),
                        directory="https://127.0.0.1:14000/dir")
    assert plan.not_checkable is None
    assert plan.directory == "https://127.0.0.1:14000/dir"
    plan = plan_lineage(lineage(server="https://acme.example.net/directory"), directory=None)
    assert plan.not_checkable is not None
    assert "pass --directory" in plan.not_checkable


@pytest.mark.parametrize(("changes", "key_type"), [
    ({"key_type": "ecdsa"}, "ec256"),
    ({"key_type": "ecdsa", "elliptic_curve": "secp384r1"}, "ec384"),
    ({"key_type": "rsa"}, "rsa2048"),
    ({"key_type": "rsa", "rsa_key_size": 4096}, "rsa4096"),
    ({"key_type": "ecdsa", "elliptic_curve": "secp521r1"}, None),
    ({"key_type": "rsa", "rsa_key_size": 1024}, None),
])
def test_key_types_map_or_are_not_checkable(changes: dict[str, Any],
                                            key_type: str | None) -> None:
    plan = plan_lineage(lineage(**changes), directory=None)
    assert plan.key_type == key_type
    if key_type is None:
        assert plan.not_checkable is not None
        assert "is not one acmedryrun can make" in plan.not_checkable


@pytest.mark.parametrize(("authenticator", "words"), [
    ("dns-cloudflare", "calls the DNS provider's API"),
    ("apache", "editing apache's configuration"),
    ("certbot-dns-exotic:plugin", "cannot drive certbot's"),
])
def test_plugins_it_cannot_drive(authenticator: str, words: str) -> None:
    plan = plan_lineage(lineage(authenticator=authenticator), directory=None)
    assert plan.not_checkable is not None
    assert words in plan.not_checkable
    assert "--dns-01-auth-hook" in plan.not_checkable


def test_manual_without_a_hook_is_client_error_as_certbot_fails_it() -> None:
    plan = plan_lineage(lineage(authenticator="manual"), directory=None)
    assert [p.name for p in plan.problems] == ["ManualAuthHookMissing"]
    assert plan.problems[0].cause.value == "client"


@pytest.mark.parametrize(("pref", "names", "challenge"), [
    ((), ("a.example.com",), "http-01"),
    ((), ("*.a.example.com",), "dns-01"),
    (("dns-01", "http-01"), ("a.example.com",), "dns-01"),
    (("tls-alpn-01", "http-01"), ("a.example.com",), "http-01"),
])
def test_manual_answers_certbots_preferred_challenge(pref: tuple[str, ...],
                                                     names: tuple[str, ...],
                                                     challenge: str) -> None:
    plan = plan_lineage(lineage(authenticator="manual", manual_auth_hook="/bin/true",
                                pref_challs=pref, names=names), directory=None)
    assert plan.challenge == challenge


def test_status_values_are_the_documented_ones() -> None:
    assert [s.value for s in LineageStatus] == ["checked", "not_checkable", "unreadable",
                                                "invalid"]
