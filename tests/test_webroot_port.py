"""``--webroot-port N``: the self-check asks the web server behind ``--webroot`` on port N.

Without it the self-check dials port 80, where (behind another port) nothing
answers, and warns although the CA (which here dials N too) validates fine.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, report_json
from counting_listener import CountingListener

from acmedryrun.testing import LocalPebble


class _Quiet(http.server.SimpleHTTPRequestHandler):
    seen: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(f"{self.headers.get('User-Agent')} {self.path}")
        super().do_GET()


@pytest.fixture
def web_server(pebble: LocalPebble, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A static web server on Pebble's validation port (not 80) serving a document root."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []
    handler = functools.partial(type("Handler", (_Quiet,), {"seen": seen}), directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", pebble.http_port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, seen
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def check(p: LocalPebble, name: str, root: Path, *extra: str) -> dict[str, Any]:
    proc = cli("check", "-d", name, "--directory", p.directory_url, "--ca-bundle", p.ca_bundle,
               "--dns-resolver", p.dns_resolver, "--webroot", str(root), "--timeout", "60",
               "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return report_json(proc)


def test_the_self_check_asks_the_webroot_port_and_does_not_warn(
    pebble: LocalPebble, web_server: tuple[Path, list[str]], unique_name: str
) -> None:
    root, seen = web_server
    report = check(pebble, unique_name, root, "--webroot-port", str(pebble.http_port))
    assert report["verdict"] == "likely_success"
    assert report["problems"] == []
    # The self-check's GET reached the web server behind the webroot (as did the CA's).
    assert any(get.startswith("acmedryrun-self-check /.well-known/acme-challenge/")
               for get in seen), seen
    assert list(root.iterdir()) == [], "challenge files and created directories removed"


def test_without_it_the_self_check_dials_80_and_warns(
    pebble: LocalPebble, web_server: tuple[Path, list[str]], unique_name: str
) -> None:
    """What --webroot-port fixes: behind another port, the port-80 self-check warns."""
    root, seen = web_server
    report = check(pebble, unique_name, root)
    assert report["verdict"] == "likely_success"
    warnings = [(p["name"], p["severity"]) for p in report["problems"]]
    assert warnings == [("SelfCheckConnectionRefused", "warning")]
    assert f"GET http://{unique_name}/.well-known/" in report["problems"][0]["detail"], \
        "it asked port 80 (no port in the URL)"
    assert not any(get.startswith("acmedryrun-self-check") for get in seen), seen


@pytest.mark.parametrize(("extra", "needle"), [
    (["--webroot-port", "8080"], "--webroot-port needs --webroot"),
    (["--webroot", "/tmp", "--webroot-port", "0"], "--webroot-port"),
    (["--webroot", "/tmp", "--webroot-port", "65536"], "--webroot-port"),
    (["--webroot", "/tmp", "--webroot-port", "http"], "--webroot-port"),
])
def test_a_bad_webroot_port_is_exit_64_before_any_request(
    extra: list[str], needle: str, tmp_path: Path
) -> None:
    with CountingListener() as listener:
        proc = cli("check", "-d", "a.example.com", "--directory", listener.url, *extra)
    assert proc.returncode == 64, proc.stderr
    assert needle in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert listener.connections == 0
