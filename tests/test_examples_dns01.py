"""examples/dns01_check.py runs as a user would run it, against a local Pebble's DNS.

Both forms: the custom ``DNS01Callback`` solver (``DnsApi`` in the example) and the
certbot hook form (``examples/dns01_hook.sh`` through ``DNS01Hook``), each for a
wildcard and its base name, which share one TXT owner name (RFC 8555 section 8.4).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import dns.rdatatype
import dns.resolver
import pytest

from acmedryrun.testing import LocalPebble

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def dns01_check(p: LocalPebble, *args: str, api_url: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACMEDRYRUN_DIRECTORY": p.directory_url,
           "ACMEDRYRUN_CA_BUNDLE": p.ca_bundle, "ACMEDRYRUN_DNS_RESOLVER": p.dns_resolver,
           "DNS_API_URL": api_url or p.challtestsrv_url}
    return subprocess.run([sys.executable, str(EXAMPLES / "dns01_check.py"), *args],
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=EXAMPLES.parent, check=False)


def txt_values(p: LocalPebble, name: str) -> list[str]:
    """The TXT values at ``name`` as the Pebble's DNS server (challtestsrv) answers now."""
    host, port = p.dns_resolver.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    answer = resolver.resolve(name, dns.rdatatype.TXT, raise_on_no_answer=False, lifetime=5)
    return [b"".join(r.strings).decode() for r in answer.rrset or ()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("form", [(), ("--hooks",)], ids=["callback", "hooks"])
def test_dns01_example_validates_a_wildcard_and_its_base_and_removes_the_records(
    pebble: LocalPebble, unique_name: str, form: tuple[str, ...]
) -> None:
    proc = dns01_check(pebble, *form, f"*.{unique_name}", unique_name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("verdict: likely_success (production likely to succeed: yes)")
    record = f"_acme-challenge.{unique_name}"
    if not form:  # the custom solver's own functions published both values, then cleared
        assert proc.stderr.count(f"dns01: set TXT {record} ") == 2, proc.stderr
        assert proc.stderr.count(f"dns01: clear TXT {record}") == 2, proc.stderr
    # dns-01 validated only because the records were there; now they are gone again.
    assert txt_values(pebble, record) == []


@pytest.mark.parametrize("form", [(), ("--hooks",)], ids=["callback", "hooks"])
def test_dns01_example_with_its_dns_api_down_is_the_subscribers_fault(
    pebble: LocalPebble, unique_name: str, form: tuple[str, ...]
) -> None:
    proc = dns01_check(pebble, *form, unique_name,
                       api_url=f"http://127.0.0.1:{closed_port()}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verdict: client_error (production likely to succeed: no)" in proc.stdout
    assert "HookFailed (client's fault)" in proc.stdout
    # The problem names what failed: the callable, or the hook with its output's tail.
    assert ("DnsApi.set_txt" in proc.stdout) if not form else ("curl" in proc.stdout)


def test_dns01_example_without_a_dns_api_is_exit_64(pebble: LocalPebble) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DNS_API_URL"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / "dns01_check.py"), "a.example.com"],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 64
    assert "DNS_API_URL" in proc.stderr
