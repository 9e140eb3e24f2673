"""Tests for acmedryrun.testing._pebble.LocalPebble against the real Pebble binaries.

No mocks: every test talks to real ``pebble`` / ``pebble-challtestsrv``
processes on loopback.  One module-scoped instance serves the read-mostly
tests; tests about lifecycle start their own.  Without the binaries the
tests skip locally but fail under CI (``CI`` set), so a missing install step
in CI cannot hide behind a green run.
"""

from __future__ import annotations

import datetime
import http.server
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest
import requests
from acme import challenges, crypto_util, messages
from acme import client as acme_client
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from acmedryrun.testing import _pebble
from acmedryrun.testing._pebble import (
    LocalPebble,
    LocalPebbleError,
    ManagementAPIError,
    PebbleNotInstalled,
    PebbleStartError,
)

EAB_KID = "kid-1"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def _skip_without_pebble() -> None:
    if not LocalPebble.is_installed() and not os.environ.get("CI"):
        pytest.skip("Debian package 'pebble' is not installed")


def _start_or_skip(pebble: LocalPebble) -> LocalPebble:
    _skip_without_pebble()
    return pebble.start()


@pytest.fixture(scope="module")
def pebble() -> Iterator[LocalPebble]:
    instance = _start_or_skip(LocalPebble())
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def eab_pebble() -> Iterator[LocalPebble]:
    instance = _start_or_skip(
        LocalPebble(
            eab_required=True,
            eab_keys={EAB_KID: EAB_HMAC},
            blocklist=["blocked.example"],
        )
    )
    try:
        yield instance
    finally:
        instance.stop()


def _session() -> requests.Session:
    # trust_env=False: REQUESTS_CA_BUNDLE would otherwise override verify=.
    session = requests.Session()
    session.trust_env = False
    return session


def _resolver(pebble: LocalPebble) -> dns.resolver.Resolver:
    host, port = pebble.dns_resolver.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 3.0
    resolver.cache = None
    return resolver


def _answers(pebble: LocalPebble, name: str, rdtype: str) -> list[str]:
    try:
        return sorted(rr.to_text() for rr in _resolver(pebble).resolve(name, rdtype))
    except dns.resolver.NoAnswer:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _acme_client(pebble: LocalPebble) -> tuple[acme_client.ClientV2, JWKEC]:
    key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    # verify_ssl is annotated bool but is handed to requests' verify=, so a CA path works.
    net = acme_client.ClientNetwork(
        key,
        alg=ES256,
        verify_ssl=pebble.ca_bundle,  # type: ignore[arg-type]
    )
    net.session.trust_env = False
    directory = messages.Directory.from_json(net.get(pebble.directory_url).json())
    return acme_client.ClientV2(directory, net), key


def _csr(*names: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return crypto_util.make_csr(pem, list(names))


# --------------------------------------------------------------------- ACME API


def test_directory_is_served_on_loopback_and_trusted_via_ca_bundle(pebble: LocalPebble) -> None:
    assert pebble.directory_url.startswith("https://127.0.0.1:")
    assert pebble.directory_url.endswith("/dir")
    resp = _session().get(pebble.directory_url, verify=pebble.ca_bundle, timeout=5)
    assert resp.status_code == 200
    directory = resp.json()
    for key in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert directory[key].startswith("https://127.0.0.1:")
    assert not directory.get("meta", {}).get("externalAccountRequired", False)


def test_directory_request_without_ca_bundle_fails_tls_verification(pebble: LocalPebble) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        _session().get(pebble.directory_url, verify=True, timeout=5)


def test_server_certificate_covers_loopback_names_and_key_file_is_private(
    pebble: LocalPebble,
) -> None:
    tmpdir = Path(pebble.ca_bundle).parent
    cert = x509.load_pem_x509_certificate((tmpdir / "server-cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    ca = x509.load_pem_x509_certificate(Path(pebble.ca_bundle).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca)
    key_mode = stat.S_IMODE((tmpdir / "server-key.pem").stat().st_mode)
    assert key_mode == 0o600
    assert stat.S_IMODE(tmpdir.stat().st_mode) == 0o700


def test_env_knobs_reach_pebble_nonce_reject_authz_reuse_and_nosleep(pebble: LocalPebble) -> None:
    logs = pebble.logs()
    assert "Configured to reject 0% of good nonces" in logs
    assert "authz reuse for each identifier 0% of the time" in logs
    assert "Disabling random VA sleeps" in logs
    assert f"Using custom DNS resolver for ACME challenges: {pebble.dns_resolver}" in logs
    assert Path(pebble.log_path).is_file()


def test_http_and_tls_ports_are_distinct_free_ports_on_start(pebble: LocalPebble) -> None:
    ports = {
        pebble.http_port,
        pebble.tls_port,
        pebble.dns_port,
        int(pebble.directory_url.split(":")[2].split("/")[0]),
        int(pebble.management_url.rsplit(":", 1)[1]),
        int(pebble.challtestsrv_url.rsplit(":", 1)[1]),
    }
    assert len(ports) == 6
    assert pebble.dns_resolver == f"127.0.0.1:{pebble.dns_port}"


def test_roots_and_intermediates_return_pem_issuing_chain(pebble: LocalPebble) -> None:
    root = x509.load_pem_x509_certificate(pebble.roots().encode())
    intermediate = x509.load_pem_x509_certificate(pebble.intermediates().encode())
    assert "Pebble Root CA" in root.subject.rfc4514_string()
    assert intermediate.issuer == root.subject
    intermediate.verify_directly_issued_by(root)


# ---------------------------------------------------------------------- mock DNS


def test_unmocked_names_resolve_to_default_ipv4_and_have_no_aaaa(pebble: LocalPebble) -> None:
    assert _answers(pebble, "anything.example", "A") == ["127.0.0.1"]
    assert _answers(pebble, "anything.example", "AAAA") == []


def test_add_a_overrides_and_clear_a_restores_default(pebble: LocalPebble) -> None:
    pebble.add_a("a-host.example", ["192.0.2.1", "192.0.2.2"])
    assert _answers(pebble, "a-host.example", "A") == ["192.0.2.1", "192.0.2.2"]
    pebble.clear_a("a-host.example")
    assert _answers(pebble, "a-host.example", "A") == ["127.0.0.1"]


def test_add_aaaa_and_clear_aaaa(pebble: LocalPebble) -> None:
    pebble.add_aaaa("aaaa-host.example.", ["2001:db8::1"])
    assert _answers(pebble, "aaaa-host.example", "AAAA") == ["2001:db8::1"]
    pebble.clear_aaaa("aaaa-host.example.")
    assert _answers(pebble, "aaaa-host.example", "AAAA") == []


def test_set_txt_without_trailing_dot_accumulates_values_until_clear_txt(
    pebble: LocalPebble,
) -> None:
    name = "_acme-challenge.txt-host.example"
    pebble.set_txt(name, "first-value")
    pebble.set_txt(name, "second-value")
    assert _answers(pebble, name, "TXT") == ['"first-value"', '"second-value"']
    pebble.clear_txt(name)
    assert _answers(pebble, name, "TXT") == []


def test_add_caa_accepts_tuples_and_mappings_and_clear_caa_removes(pebble: LocalPebble) -> None:
    pebble.add_caa("caa-host.example", [("issue", "other-ca.example")])
    assert _answers(pebble, "caa-host.example", "CAA") == ['0 issue "other-ca.example"']
    pebble.add_caa("caa-map.example", [{"tag": "issuewild", "value": ";"}])
    assert _answers(pebble, "caa-map.example", "CAA") == ['0 issuewild ";"']
    pebble.clear_caa("caa-host.example")
    pebble.clear_caa("caa-map.example")
    assert _answers(pebble, "caa-host.example", "CAA") == []


def test_set_servfail_makes_queries_fail_until_cleared(pebble: LocalPebble) -> None:
    pebble.set_servfail("broken.example")
    with pytest.raises(dns.resolver.NoNameservers) as excinfo:
        _resolver(pebble).resolve("broken.example", "A")
    assert "SERVFAIL" in str(excinfo.value)
    pebble.clear_servfail("broken.example")
    assert _answers(pebble, "broken.example", "A") == ["127.0.0.1"]


def test_set_cname_aliases_host_to_target_records(pebble: LocalPebble) -> None:
    pebble.add_a("cname-target.example", ["198.51.100.7"])
    pebble.set_cname("alias.example", "cname-target.example")
    try:
        assert _answers(pebble, "alias.example", "CNAME") == ["cname-target.example."]
        assert _answers(pebble, "alias.example", "A") == ["198.51.100.7"]
    finally:
        pebble.clear_cname("alias.example")
        pebble.clear_a("cname-target.example")
    assert _answers(pebble, "alias.example", "CNAME") == []


def test_set_default_ipv4_changes_answers_for_unmocked_names(pebble: LocalPebble) -> None:
    pebble.set_default_ipv4("203.0.113.9")
    try:
        assert _answers(pebble, "default-v4.example", "A") == ["203.0.113.9"]
    finally:
        pebble.set_default_ipv4("127.0.0.1")
    assert _answers(pebble, "default-v4.example", "A") == ["127.0.0.1"]


def test_challtestsrv_non_2xx_raises_management_api_error_with_status(
    pebble: LocalPebble,
) -> None:
    with pytest.raises(ManagementAPIError) as excinfo:
        pebble._challtestsrv_post("no-such-endpoint", {"host": "x.example."})
    assert excinfo.value.status_code == 404
    assert "no-such-endpoint" in str(excinfo.value)


def test_helpers_reject_empty_input_before_calling_challtestsrv(pebble: LocalPebble) -> None:
    with pytest.raises(ValueError, match="addresses"):
        pebble.add_a("empty.example", [])
    with pytest.raises(ValueError, match="policy"):
        pebble.add_caa("empty.example", [])
    with pytest.raises(ValueError, match="host"):
        pebble.set_txt("", "value")


# ----------------------------------------------------------- EAB and blocklist


def test_eab_required_is_advertised_in_directory_meta(eab_pebble: LocalPebble) -> None:
    directory = _session().get(eab_pebble.directory_url, verify=eab_pebble.ca_bundle, timeout=5)
    assert directory.json()["meta"]["externalAccountRequired"] is True


def test_eab_key_registers_account_and_blocklisted_domain_is_rejected(
    eab_pebble: LocalPebble,
) -> None:
    acme, key = _acme_client(eab_pebble)
    with pytest.raises(messages.Error, match="externalAccountRequired"):
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=key.public_key(),
        kid=EAB_KID,
        hmac_key=EAB_HMAC,
        directory=acme.directory,
    )
    acme.new_account(
        messages.NewRegistration.from_data(
            terms_of_service_agreed=True, external_account_binding=eab
        )
    )
    with pytest.raises(acme_errors.Error, match="rejectedIdentifier"):
        acme.new_order(_csr("www.blocked.example"))
    order = acme.new_order(_csr("allowed.example"))
    assert order.body.status == messages.STATUS_PENDING


# ------------------------------------------------------------------- lifecycle


def test_stop_kills_both_pids_frees_ports_removes_files_and_is_idempotent() -> None:
    instance = _start_or_skip(LocalPebble(nonce_reject=100, authz_reuse=100, chain_length=2))
    pids = instance.pids
    tmpdir = Path(instance.ca_bundle).parent
    tcp_ports = [
        int(instance.directory_url.split(":")[2].split("/")[0]),
        int(instance.management_url.rsplit(":", 1)[1]),
        int(instance.challtestsrv_url.rsplit(":", 1)[1]),
        instance.dns_port,
    ]
    assert len(pids) == 2
    assert all(_pid_alive(pid) for pid in pids)
    assert "Configured to reject 100% of good nonces" in instance.logs()

    instance.stop()

    assert not any(_pid_alive(pid) for pid in pids)
    assert instance.pids == ()
    assert not instance.running
    assert not tmpdir.exists()
    for port in tcp_ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # SO_REUSEADDR as every server sets it: our own probe connections may
        # leave TIME_WAIT entries, which do not stop a new listener.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", instance.dns_port))
    assert "Listening on: 127.0.0.1" in instance.logs()  # kept after stop
    instance.stop()  # second stop is a no-op


def test_context_manager_starts_and_stops() -> None:
    _skip_without_pebble()
    with LocalPebble() as instance:
        pids = instance.pids
        assert instance.running
    assert not instance.running
    assert not any(_pid_alive(pid) for pid in pids)


def test_missing_binary_on_path_raises_pebble_not_installed_naming_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ACMEDRYRUN_PEBBLE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PebbleNotInstalled) as excinfo:
        LocalPebble().start()
    assert str(excinfo.value) == (
        "pebble binary not found on PATH: "
        "install Debian's package 'pebble' (apt-get install pebble)"
    )
    assert isinstance(excinfo.value, RuntimeError)


def test_binary_overrides_by_argument_and_env_var_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(PebbleNotInstalled, match=r"/nonexistent/pebble.*apt-get install pebble"):
        LocalPebble(pebble_bin="/nonexistent/pebble").start()
    monkeypatch.setenv("ACMEDRYRUN_CHALLTESTSRV", "/nonexistent/challtestsrv")
    with pytest.raises(PebbleNotInstalled, match=r"ACMEDRYRUN_CHALLTESTSRV.*package 'pebble'"):
        LocalPebble().start()


def test_process_exiting_early_raises_start_error_with_log_tail_and_leaves_no_orphans() -> None:
    _skip_without_pebble()
    instance = LocalPebble(pebble_bin="false")
    with pytest.raises(PebbleStartError, match="pebble exited early with status 1") as excinfo:
        instance.start()
    assert "log tail" in str(excinfo.value)
    assert "pebble-challtestsrv" in str(excinfo.value)  # challtestsrv's own log lines
    assert instance.pids == ()
    time.sleep(0.05)
    assert _processes_mentioning(f"127.0.0.1:{instance.dns_port}") == []
    assert "start attempt 1" in instance.logs()


def test_port_taken_between_choice_and_bind_is_retried_with_new_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_reserve = _pebble._reserve_ports
    squatters: list[socket.socket] = []

    def reserve_then_squat(count: int, *, dns: bool) -> tuple[list[int], int | None]:
        ports, dns_port = real_reserve(count, dns=dns)
        if not squatters:  # first attempt: occupy challtestsrv's management port
            squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            squatter.bind(("127.0.0.1", ports[2]))
            squatter.listen()
            squatters.append(squatter)
        return ports, dns_port

    monkeypatch.setattr(_pebble, "_reserve_ports", reserve_then_squat)
    try:
        _skip_without_pebble()
        with LocalPebble() as instance:
            assert "start attempt 2" in instance.logs()
            assert "address already in use" in instance.logs()
            assert _answers(instance, "retry.example", "A") == ["127.0.0.1"]
    finally:
        for squatter in squatters:
            squatter.close()


def test_attributes_and_helpers_before_start_raise_clear_error() -> None:
    instance = LocalPebble()
    with pytest.raises(LocalPebbleError, match="after start"):
        _ = instance.directory_url
    with pytest.raises(LocalPebbleError, match="not running"):
        instance.add_a("x.example", ["192.0.2.1"])
    assert instance.logs() == ""
    instance.stop()  # stop before start is harmless


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nonce_reject": 101}, "nonce_reject must be a percentage"),
        ({"authz_reuse": -1}, "authz_reuse must be a percentage"),
        ({"chain_length": 0}, "chain_length must be >= 1"),
        ({"default_ipv4": "not-an-ip"}, "IPv4"),
        ({"eab_keys": {"kid": "not base64!"}}, "EAB key for kid 'kid'"),
        ({"http_port": 70000}, "http_port must be a TCP port"),
    ],
)
def test_invalid_options_are_rejected_at_construction(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LocalPebble(**kwargs)  # type: ignore[arg-type]


def test_servfail_rcode_is_visible_to_raw_queries(pebble: LocalPebble) -> None:
    pebble.set_servfail("raw-servfail.example")
    try:
        query = dns.message.make_query("raw-servfail.example.", "A")
        response = dns.query.udp(query, "127.0.0.1", port=pebble.dns_port, timeout=3)
        assert response.rcode() == dns.rcode.SERVFAIL
    finally:
        pebble.clear_servfail("raw-servfail.example")


def test_startup_timeout_raises_start_error_and_leaves_no_orphans() -> None:
    _skip_without_pebble()
    instance = LocalPebble(startup_timeout=0.001)
    with pytest.raises(PebbleStartError, match="did not become ready within") as excinfo:
        instance.start()
    assert "still waiting for" in str(excinfo.value)
    assert instance.pids == ()
    assert _processes_mentioning(f"127.0.0.1:{instance.dns_port}") == []


def test_full_issuance_validates_http01_on_http_port_and_dns01_via_set_txt(
    pebble: LocalPebble,
) -> None:
    acme, _ = _acme_client(pebble)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    order = acme.new_order(_csr("http01.example", "dns01.example"))

    tokens: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = tokens.get(self.path.rsplit("/", 1)[-1])
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", pebble.http_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for authz in order.authorizations:
            name = authz.body.identifier.value
            wanted = challenges.HTTP01 if name.startswith("http01") else challenges.DNS01
            challb = next(c for c in authz.body.challenges if isinstance(c.chall, wanted))
            response, validation = challb.response_and_validation(acme.net.key)
            if wanted is challenges.HTTP01:
                tokens[challb.chall.encode("token")] = validation.encode()
            else:
                pebble.set_txt(challb.chall.validation_domain_name(name), validation)
            acme.answer_challenge(challb, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=20)
        final = acme.poll_and_finalize(order, deadline=deadline)
    finally:
        server.shutdown()
        server.server_close()
        pebble.clear_txt("_acme-challenge.dns01.example")

    chain = x509.load_pem_x509_certificates(final.fullchain_pem.encode())
    leaf_names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(leaf_names.get_values_for_type(x509.DNSName)) == [
        "dns01.example",
        "http01.example",
    ]
    root = x509.load_pem_x509_certificate(pebble.roots().encode())
    chain[-1].verify_directly_issued_by(root)
