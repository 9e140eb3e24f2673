"""Real certbot (PyPI, installed with the test extras) against a LocalPebble, for the tests.

``run_certbot`` runs the ``certbot`` next to this interpreter with its three
directories under one root, trusting Pebble's TLS anchor; ``HostWebServer`` is
the subscriber's web server: one document root per ``Host``, on one address.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from acmedryrun.testing import LocalPebble

CERTBOT = Path(sys.executable).with_name("certbot")
HOOKS = Path(__file__).parent / "hooks"


def certbot_dirs(root: Path) -> list[str]:
    """certbot's config, work and logs directories, all under ``root``."""
    return ["--config-dir", str(root / "etc"), "--work-dir", str(root / "work"),
            "--logs-dir", str(root / "logs")]


def run_certbot(p: LocalPebble, root: Path, *args: str, server: str | None = None,
                ca_bundle: str | None = None, env: Mapping[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``certbot ARGS`` non-interactively against ``server`` (default: ``p``'s directory)."""
    assert CERTBOT.exists(), f"{CERTBOT} missing: pip install -e '.[test]' installs certbot"
    cmd = [str(CERTBOT), *certbot_dirs(root), "--non-interactive", *args,
           "--server", server or p.directory_url]
    if args and args[0] in ("certonly", "run"):
        cmd += ["--agree-tos", "--register-unsafely-without-email"]
    full_env = {**os.environ, "REQUESTS_CA_BUNDLE": ca_bundle or p.ca_bundle,
                "CHALLTESTSRV_URL": p.challtestsrv_url, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          check=False)


class _Handler(http.server.SimpleHTTPRequestHandler):
    roots: Mapping[str, Path]

    def translate_path(self, path: str) -> str:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        root = self.roots.get(host)
        if root is None:
            return "/nonexistent"
        return str(root) + path.split("?", 1)[0]

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def host_web_server(address: str, port: int, roots: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """A web server on ``address:port`` serving ``roots[Host]`` (the dict may change later)."""
    handler = type("Handler", (_Handler,), {"roots": roots})
    server = http.server.ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield roots
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
