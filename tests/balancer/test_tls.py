"""lb-01's TLS on real processes: the intermediate profile (sslyze), resumption, shared tickets, reload on SIGHUP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref import certs as certs_module
from foobar_ref import tls_profile
from foobar_ref.balancer import openssl_ctl
from foobar_ref.balancer.tls import server_context
from foobar_ref.topology_balancer import TlsSettings
from tests.balancer.harness import BalancerProcess, Certs, FakeWeb, HttpClient, LbPlan, free_port

SERVER_IP = "127.0.62.1"
CLIENT_IP = "127.0.62.100"
SITE = "www.foobar.com"
SSLYZE = Path(sys.executable).parent / "sslyze"
SCAN_TIMEOUT_S = 180.0
INTERMEDIATE_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}
INTERMEDIATE_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> certs_module.CertPaths:
    return certs_module.make(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def openssl_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tls_profile.write_openssl_conf(tmp_path_factory.mktemp("tls") / "openssl.cnf")


class TlsServer:
    """tests/balancer/tls_server.py as its own process (balancer/tls.py's contexts, SIGHUP reload)."""

    def __init__(self, cert: Path, key: Path, openssl_conf: Path | None, *flags: str) -> None:
        self.port = free_port(SERVER_IP)
        env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
        if openssl_conf is not None:
            env["OPENSSL_CONF"] = str(openssl_conf)
        argv = [sys.executable, "-m", "tests.balancer.tls_server", "--listen", f"{SERVER_IP}:{self.port}"]
        argv += ["--cert", str(cert), "--key", str(key), *flags]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(15.0):
            self.stop()
            raise AssertionError(f"tls server never ready: {self.lines}")

    def _read(self) -> None:
        for line in self.process.stdout or []:
            self.lines.append(line)
            if line.startswith("READY"):
                self._ready.set()

    def events(self, name: str) -> list[dict[str, object]]:
        return [r for line in list(self.lines) if line.startswith("{") and (r := json.loads(line))["event"] == name]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def client_context(*cas: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in cas:
        context.load_verify_locations(cafile=str(ca))
    context.set_alpn_protocols(["http/1.1"])
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def tls_connect(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
    sock = socket.socket()
    sock.settimeout(5.0)
    sock.bind((CLIENT_IP, 0))
    sock.connect((SERVER_IP, port))
    return context.wrap_socket(sock, server_hostname=SITE, session=session)


def get(sock: ssl.SSLSocket, client: HttpClient | None = None) -> bytes:
    reply = (client or HttpClient(sock)).request("GET", "/")
    assert reply.status == 200
    return reply.body


def scan(port: int, ca: Path, ip: str = SERVER_IP) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    """sslyze against Mozilla's intermediate profile: (exit code, the scan result, the text report)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"sslyze-{os.getpid()}-{port}.json"
    argv = [str(SSLYZE), "--mozilla_config=intermediate", "--certinfo_ca_file", str(ca), "--json_out", str(out)]
    done = subprocess.run([*argv, f"{SITE}:{port}{{{ip}}}"], capture_output=True, text=True, timeout=SCAN_TIMEOUT_S)
    result = json.loads(out.read_text())["server_scan_results"][0]["scan_result"]
    out.unlink()
    return done.returncode, result, done.stdout


# --- the context itself -----------------------------------------------------------------------


def test_the_context_holds_the_intermediate_profile(site: certs_module.CertPaths) -> None:
    context = server_context(site.site_cert, site.site_key)
    assert (context.minimum_version, context.maximum_version) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert context.options & ssl.OP_NO_RENEGOTIATION and context.options & ssl.OP_NO_COMPRESSION
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    names = {c["name"] for c in context.get_ciphers()}
    assert names == set(tls_profile.TLS12_CIPHERS) | set(tls_profile.TLS13_SUITES)


def test_the_openssl_handle_is_reached_safely_and_ticket_keys_and_cache_can_be_set(
    site: certs_module.CertPaths,
) -> None:
    one, two = (server_context(site.site_cert, site.site_key) for _ in range(2))
    assert openssl_ctl.ticket_keys(one) != openssl_ctl.ticket_keys(two)  # OpenSSL draws them per context
    keys = bytes(range(80))
    openssl_ctl.set_ticket_keys(one, keys)
    assert openssl_ctl.ticket_keys(one) == keys
    openssl_ctl.session_cache_off(two)
    with pytest.raises(ValueError, match="80 bytes"):
        openssl_ctl.set_ticket_keys(one, b"short")


def test_profile_problems_tell_whether_openssl_conf_was_in_the_environment_at_start(
    site: certs_module.CertPaths, openssl_conf: Path
) -> None:
    code = (
        "import sys; from pathlib import Path; from foobar_ref.balancer.tls import server_context, profile_problems;"
        f"print(profile_problems(server_context(Path({str(site.site_cert)!r}), Path({str(site.site_key)!r}))))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    without = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "secp521r1 is accepted" in without.stdout
    env["OPENSSL_CONF"] = str(openssl_conf)
    within = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert within.stdout.strip() == "[]"


# --- the scanner --------------------------------------------------------------------------------


def assert_intermediate_exactly(code: int, result: dict, report: str) -> None:  # type: ignore[type-arg]
    assert code == 0 and "OK - Compliant" in report, report
    accepted = {
        key: {s["cipher_suite"]["name"] for s in result[key]["result"]["accepted_cipher_suites"]}
        for key in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites")
    }
    assert accepted == dict.fromkeys(accepted, set())
    tls12 = {s["cipher_suite"]["name"] for s in result["tls_1_2_cipher_suites"]["result"]["accepted_cipher_suites"]}
    tls13 = {s["cipher_suite"]["name"] for s in result["tls_1_3_cipher_suites"]["result"]["accepted_cipher_suites"]}
    assert tls12 == INTERMEDIATE_TLS12 and tls13 == INTERMEDIATE_TLS13  # all of them for an ECDSA key
    curves = {c["name"] for c in result["elliptic_curves"]["result"]["supported_curves"]}
    assert curves == {"X25519", "secp256r1", "secp384r1"}
    assert result["tls_compression"]["result"]["supports_compression"] is False
    renegotiation = result["session_renegotiation"]["result"]
    assert renegotiation["client_renegotiations_success_count"] == 0
    assert renegotiation["is_vulnerable_to_client_renegotiation_dos"] is False


def test_sslyze_finds_the_intermediate_profile_exactly(site: certs_module.CertPaths, openssl_conf: Path) -> None:
    server = TlsServer(site.site_cert, site.site_key, openssl_conf)
    try:
        assert server.events("profile") == [{"event": "profile", "problems": []}]
        assert_intermediate_exactly(*scan(server.port, site.ca_cert))
    finally:
        server.stop()


def test_sslyze_fails_the_groups_without_the_openssl_configuration(site: certs_module.CertPaths) -> None:
    server = TlsServer(site.site_cert, site.site_key, None)
    try:
        code, result, report = scan(server.port, site.ca_cert)
    finally:
        server.stop()
    assert code != 0 and "Not compliant" in report
    curves = {c["name"] for c in result["elliptic_curves"]["result"]["supported_curves"]}
    assert "secp521r1" in curves


def test_sslyze_passes_today_s_balancer_process_started_with_openssl_conf(
    tmp_path: Path, site: certs_module.CertPaths, openssl_conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSSL_CONF", str(openssl_conf))  # the balancer's environment, as the launcher sets it
    web = FakeWeb("web-01", "127.0.62.20")
    ports = free_port("127.0.62.1"), free_port("127.0.62.1")
    plan = LbPlan("127.0.62.1", None, False, [("web-01", web.ip, web.port)], *ports)
    lb = BalancerProcess(tmp_path, plan, Certs(site.ca_cert, site.site_cert, site.site_key))
    try:
        assert_intermediate_exactly(*scan(plan.https_port, site.ca_cert, plan.address))
    finally:
        lb.stop()
        web.stop()


# --- resumption -----------------------------------------------------------------------------------


def resumed(port: int, ca: Path, version: ssl.TLSVersion, other_port: int | None = None) -> bool:
    """Full handshake, one request (TLS 1.3 tickets come after it), then a second connection offering the session."""
    context = client_context(ca, version=version)
    with tls_connect(port, context) as first:
        get(first)
        session = first.session
    with tls_connect(other_port or port, context, session) as second:
        get(second)
        return second.session_reused


@pytest.fixture(scope="module")
def servers(site: certs_module.CertPaths, openssl_conf: Path) -> Iterator[dict[str, TlsServer]]:
    cert, key = site.site_cert, site.site_key
    made = {
        "default": TlsServer(cert, key, openssl_conf),
        "ids-only": TlsServer(cert, key, openssl_conf, "--no-tickets"),
        "none": TlsServer(cert, key, openssl_conf, "--no-tickets", "--no-session-cache"),
    }
    yield made
    for server in made.values():
        server.stop()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_session_is_resumed_with_tickets(
    servers: dict[str, TlsServer], site: certs_module.CertPaths, version: ssl.TLSVersion
) -> None:
    assert resumed(servers["default"].port, site.ca_cert, version)


def test_a_tls_1_2_session_is_resumed_by_its_id_without_tickets(
    servers: dict[str, TlsServer], site: certs_module.CertPaths
) -> None:
    assert resumed(servers["ids-only"].port, site.ca_cert, ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_with_tickets_and_cache_off_every_handshake_is_full(
    servers: dict[str, TlsServer], site: certs_module.CertPaths, version: ssl.TLSVersion
) -> None:
    assert not resumed(servers["none"].port, site.ca_cert, version)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_workers_sharing_the_ticket_key_file_resume_each_other_s_tickets(
    tmp_path: Path, site: certs_module.CertPaths, openssl_conf: Path, version: ssl.TLSVersion
) -> None:
    keys = tls_profile.ensure_ticket_keys(tmp_path / "ticket.keys")
    assert keys.stat().st_mode & 0o777 == 0o600 and keys.stat().st_size == 80
    shared = [TlsServer(site.site_cert, site.site_key, openssl_conf, "--ticket-keys", str(keys)) for _ in range(2)]
    alone = TlsServer(site.site_cert, site.site_key, openssl_conf)
    try:
        assert resumed(shared[0].port, site.ca_cert, version, other_port=shared[1].port)
        assert not resumed(shared[0].port, site.ca_cert, version, other_port=alone.port)
    finally:
        for server in [*shared, alone]:
            server.stop()


# --- certificate reload -------------------------------------------------------------------------


def test_sighup_with_a_new_certificate_keeps_100_open_connections_and_new_ones_see_the_new_one(
    tmp_path: Path, site: certs_module.CertPaths, openssl_conf: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(site.site_cert, live / "site.crt")
    shutil.copy(site.site_key, live / "site.key")
    renewed = certs_module.make(tmp_path / "renewed")
    server = TlsServer(live / "site.crt", live / "site.key", openssl_conf)
    context = client_context(site.ca_cert, renewed.ca_cert)
    try:
        kept = [tls_connect(server.port, context) for _ in range(100)]
        clients = [HttpClient(sock) for sock in kept]
        assert {get(sock, client) for sock, client in zip(kept, clients, strict=True)} == {b"generation 1"}
        old_der = kept[0].getpeercert(binary_form=True)

        shutil.copy(renewed.site_cert, live / "site.crt")
        shutil.copy(renewed.site_key, live / "site.key")
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: server.events("reloaded"))
        assert server.events("reloaded") == [{"event": "reloaded", "generation": 2, "error": None}]

        assert {get(sock, client) for sock, client in zip(kept, clients, strict=True)} == {b"generation 1"}
        with tls_connect(server.port, context) as fresh:
            assert get(fresh) == b"generation 2"
            new_der = fresh.getpeercert(binary_form=True)
        assert new_der != old_der and new_der == pem_to_der(renewed.site_cert)

        (live / "site.key").write_text("not a key\n")
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(server.events("reloaded")) == 2)
        failed = server.events("reloaded")[1]
        assert failed["generation"] == 2 and "cannot load" in str(failed["error"])
        with tls_connect(server.port, context) as after_bad_file:
            assert get(after_bad_file) == b"generation 2"  # the last good chain stays in service
        for sock in kept:
            sock.close()
    finally:
        server.stop()


def wait_for(condition, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def pem_to_der(chain: Path) -> bytes:
    first = chain.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    return ssl.PEM_cert_to_DER_cert(first)


def test_a_shared_ticket_key_file_of_the_wrong_size_is_refused_with_its_name(
    tmp_path: Path, site: certs_module.CertPaths
) -> None:
    bad = tmp_path / "ticket.keys"
    bad.write_bytes(b"x" * 10)
    with pytest.raises(Exception, match=r"ticket keys .*ticket\.keys: expected 80 bytes, found 10"):
        server_context(site.site_cert, site.site_key, TlsSettings(), bad)
