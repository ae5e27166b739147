"""lb-01 as a real process on 127.0.53.0/24, with fake web servers behind it and TLS clients in front."""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics
from tests.balancer.harness import (
    CLIENT_IP,
    SITE,
    BalancerProcess,
    Certs,
    Closer,
    FakeWeb,
    HttpClient,
    LbPlan,
    closed_without_answer,
    connect,
    free_port,
    make_certs,
    read_reply,
    tls_connect,
)

FIREWALL_IP = "127.0.53.1"  # lb-01's public address: firewall-1 relays from it
REAL_CLIENT = "203.0.113.7"  # what firewall-1's PROXY line says
DEAD_IPS = ("127.0.53.23", "127.0.53.24")  # nothing listens there
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _ports(ip: str) -> tuple[int, int]:
    https = free_port(ip)
    http = free_port(ip)
    while http == https:
        http = free_port(ip)
    return https, http


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def webs() -> Iterator[dict[str, FakeWeb]]:
    servers = {name: FakeWeb(name, ip) for name, ip in (("web-01", "127.0.53.21"), ("web-02", "127.0.53.22"))}
    yield servers
    for server in servers.values():
        server.stop()


def _start(tmp: Path, certs: Certs, plan: LbPlan) -> BalancerProcess:
    https, http = _ports(plan.listen_ip)
    return BalancerProcess(
        tmp, LbPlan(plan.address, plan.inner, plan.proxy_protocol, plan.backends, https, http), certs
    )


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory, certs: Certs, webs: dict[str, FakeWeb]) -> Iterator[BalancerProcess]:
    """Behind firewall-1 (inner address, PROXY protocol on), backends web-01 then web-02."""
    backends = [(w.name, w.ip, w.port) for w in webs.values()]
    process = _start(tmp_path_factory.mktemp("lb"), certs, LbPlan(FIREWALL_IP, "127.0.53.11", True, backends))
    yield process
    process.stop()


def _via_firewall(lb: BalancerProcess, client: str = REAL_CLIENT) -> HttpClient:
    return HttpClient(tls_connect(lb.https, lb.certs.ca, source_ip=FIREWALL_IP, proxy_from=client))


def _metric(lb: BalancerProcess, name: str, **labels: str) -> float:
    samples = parse_exposition(read_metrics(admin_socket_path(lb.state, "lb-01")))
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


# --- the request path ------------------------------------------------------------


def test_get_over_tls_returns_the_backends_body(lb: BalancerProcess) -> None:
    client = _via_firewall(lb)
    reply = client.request("GET", "/")
    assert reply.status == 200
    assert reply.body in (b"hello from web-01", b"hello from web-02")
    assert reply.header("x-served-by") == reply.body.decode().removeprefix("hello from ")
    assert TRACE_ID.match(reply.header("x-request-id") or "")
    assert reply.header("strict-transport-security") == "max-age=63072000"
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
    assert client.sock.selected_alpn_protocol() == "http/1.1"  # type: ignore[attr-defined]


def test_requests_alternate_backends_on_one_and_on_new_connections(lb: BalancerProcess) -> None:
    client = _via_firewall(lb)
    kept = [client.request("GET", "/").header("x-served-by") for _ in range(4)]
    fresh = [_via_firewall(lb).request("GET", "/").header("x-served-by") for _ in range(2)]
    for pair in (kept[:2], kept[2:], fresh):
        assert sorted(pair) == ["web-01", "web-02"]  # type: ignore[type-var]


def test_forwarding_headers_reach_the_backend_and_a_forged_one_is_replaced(
    lb: BalancerProcess, webs: dict[str, FakeWeb]
) -> None:
    before = {name: len(w.seen) for name, w in webs.items()}
    headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Request-Id", "forged"), ("Connection", "keep-alive, X-Secret")]
    reply = _via_firewall(lb).request("GET", "/page?q=1", headers + [("X-Secret", "hop only")])
    backend = webs[reply.header("x-served-by") or ""]
    assert len(backend.seen) == before[backend.name] + 1
    seen = backend.seen[-1]
    assert seen.all("x-forwarded-for") == [REAL_CLIENT]
    assert seen.header("x-forwarded-proto") == "https"
    assert seen.header("x-request-id") == reply.header("x-request-id")
    assert (seen.header("traceparent") or "").startswith(f"00-{reply.header('x-request-id')}-")
    assert seen.header("host") == SITE and seen.target == "/page?q=1"
    assert seen.header("x-secret") is None and seen.header("connection") is None
    assert seen.peer == FIREWALL_IP  # connected from source_for(lb-01)


def test_an_incoming_traceparent_keeps_its_trace(lb: BalancerProcess, webs: dict[str, FakeWeb]) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = _via_firewall(lb).request("GET", "/", [("traceparent", f"00-{trace}-00f067aa0ba902b7-01")])
    assert reply.header("x-request-id") == trace
    seen = webs[reply.header("x-served-by") or ""].seen[-1]
    assert (seen.header("traceparent") or "").startswith(f"00-{trace}-")
    assert seen.header("traceparent") != f"00-{trace}-00f067aa0ba902b7-01"  # a new span for the next hop


def test_a_post_body_reaches_the_backend(lb: BalancerProcess, webs: dict[str, FakeWeb]) -> None:
    reply = _via_firewall(lb).request("POST", "/api/messages", [("Content-Type", "application/json")], b'{"t":1}')
    assert reply.status == 200
    seen = webs[reply.header("x-served-by") or ""].seen[-1]
    assert (seen.method, seen.body, seen.header("content-length")) == ("POST", b'{"t":1}', "7")


def test_plain_http_port_redirects_to_https(lb: BalancerProcess, webs: dict[str, FakeWeb]) -> None:
    before = sum(len(w.seen) for w in webs.values())
    client = HttpClient(connect(lb.http, source_ip=FIREWALL_IP, proxy_from=REAL_CLIENT))
    reply = client.request("GET", "/some/page?x=1")
    assert reply.status == 301
    assert reply.header("location") == f"https://{SITE}:{lb.plan.https_port}/some/page?x=1"
    assert reply.body == b""
    assert client.request("POST", "/", body=b"x").status == 301  # keep-alive, still no content
    assert sum(len(w.seen) for w in webs.values()) == before


def test_a_bad_backend_response_is_a_502(lb: BalancerProcess) -> None:
    reply = _via_firewall(lb).request("GET", "/garbage")
    assert reply.status == 502
    assert TRACE_ID.match(reply.header("x-request-id") or "")


def test_counters_and_log_lines(lb: BalancerProcess) -> None:
    before = _metric(lb, "foobar_requests_total", outcome="200")
    reply = _via_firewall(lb).request("GET", "/counted")
    backend = reply.header("x-served-by") or ""
    assert _metric(lb, "foobar_requests_total", hop="lb-01", outcome="200") == before + 1
    assert _metric(lb, "foobar_balancer_upstream_requests_total", backend=backend, status="200") >= 1
    assert _metric(lb, "foobar_request_seconds_count", hop="lb-01") >= 1
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        logged = [r for r in lb.events("request") if r["trace_id"] == reply.header("x-request-id")]
        if logged:
            break
        time.sleep(0.05)
    (record,) = logged
    assert record["client"] == REAL_CLIENT and record["method"] == "GET" and record["target"] == "/counted"
    assert record["backend"] == backend and record["status"] == 200 and record["duration_ms"] >= 0
    assert record["tls"] in ("TLSv1.2", "TLSv1.3") and record["cipher"]


# --- bad input -------------------------------------------------------------------------


def test_te_and_cl_together_is_400_and_closes(lb: BalancerProcess, webs: dict[str, FakeWeb]) -> None:
    before = sum(len(w.seen) for w in webs.values())
    sock = tls_connect(lb.https, lb.certs.ca, source_ip=FIREWALL_IP, proxy_from=REAL_CLIENT)
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n"
    )
    reply = read_reply(sock)
    assert reply.status == 400 and reply.header("connection") == "close"
    assert closed_without_answer(sock)
    assert sum(len(w.seen) for w in webs.values()) == before


def test_a_body_over_1_mib_is_413(lb: BalancerProcess) -> None:
    sock = tls_connect(lb.https, lb.certs.ca, source_ip=FIREWALL_IP, proxy_from=REAL_CLIENT)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 1048577\r\n\r\n")
    assert read_reply(sock).status == 413
    assert closed_without_answer(sock)


def test_a_request_head_not_complete_in_5_s_is_408(lb: BalancerProcess) -> None:
    sock = tls_connect(lb.https, lb.certs.ca, source_ip=FIREWALL_IP, proxy_from=REAL_CLIENT)
    sock.settimeout(8.0)
    started = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n")  # never finished
    assert read_reply(sock).status == 408
    assert 4.5 < time.monotonic() - started < 7.0


def test_head_keeps_the_length_and_sends_no_body(lb: BalancerProcess) -> None:
    client = _via_firewall(lb)
    reply = client.request("HEAD", "/")
    assert reply.status == 200 and reply.body == b"" and reply.header("content-length") == "17"
    assert client.request("GET", "/").body.startswith(b"hello from ")  # the connection is still in step


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_only_client_is_refused(lb: BalancerProcess) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(lb.certs.ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL 3 offer TLS 1.1 at all
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    sock = connect(lb.https, source_ip=FIREWALL_IP, proxy_from=REAL_CLIENT)
    with pytest.raises(ssl.SSLError) as refused:
        context.wrap_socket(sock, server_hostname=SITE)
    assert "PROTOCOL_VERSION" in str(refused.value).upper()
    sock.close()


def test_plain_http_on_the_tls_port_fails_the_handshake_and_closes(lb: BalancerProcess) -> None:
    sock = connect(lb.https, source_ip=FIREWALL_IP, proxy_from=REAL_CLIENT)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
    assert closed_without_answer(sock)  # nothing like an HTTP answer comes back
    sock.close()


def test_a_connection_without_the_proxy_line_is_closed(lb: BalancerProcess) -> None:
    sock = connect(lb.https, source_ip=FIREWALL_IP)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client_side = ssl.create_default_context(cafile=str(lb.certs.ca))
        client_side.wrap_socket(sock, server_hostname=SITE)
    assert _metric(lb, "foobar_balancer_rejected_connections_total", reason="proxy_header") >= 1


def test_a_peer_other_than_the_firewall_is_reset(lb: BalancerProcess) -> None:
    before = _metric(lb, "foobar_refused_peers_total", hop="lb-01")
    with pytest.raises(ConnectionResetError):
        sock = connect(lb.https, source_ip=CLIENT_IP, proxy_from=REAL_CLIENT)
        with sock:
            sock.sendall(b"\x16\x03\x01" + b"x" * 1024)
            sock.recv(1)  # the reset arrives here at the latest
    assert _metric(lb, "foobar_refused_peers_total", hop="lb-01") == before + 1


# --- without a firewall: dead backends --------------------------------------------------


def test_a_dead_backend_is_skipped(tmp_path: Path, certs: Certs, webs: dict[str, FakeWeb]) -> None:
    web = webs["web-01"]
    backends = [("web-dead", DEAD_IPS[0], 80), (web.name, web.ip, web.port)]
    lb = _start(tmp_path, certs, LbPlan("127.0.53.2", None, False, backends))
    try:
        first = HttpClient(tls_connect(lb.https, certs.ca)).request("POST", "/api/messages", body=b"{}")
        assert first.status == 200 and first.header("x-served-by") == "web-01"  # connect failed: retried
        assert web.seen[-1].header("x-forwarded-for") == CLIENT_IP  # no PROXY line: the peer is the client
        client = HttpClient(tls_connect(lb.https, certs.ca))
        assert [client.request("GET", "/").header("x-served-by") for _ in range(3)] == ["web-01"] * 3
        failed = _metric(lb, "foobar_balancer_upstream_requests_total", backend="web-dead", status="connect_failed")
        assert failed == 1  # held down after the first failure
        assert [r["backend"] for r in lb.events("backend_down")] == ["web-dead"]
    finally:
        lb.stop()


@pytest.mark.parametrize(("method", "status"), [("GET", 200), ("POST", 502)])
def test_a_backend_that_closes_unanswered_is_marked_down_and_only_idempotent_requests_move_on(
    tmp_path: Path, certs: Certs, webs: dict[str, FakeWeb], method: str, status: int
) -> None:
    closer, web = Closer("127.0.53.25"), webs["web-02"]
    backends = [("web-closer", closer.ip, closer.port), (web.name, web.ip, web.port)]
    lb = _start(tmp_path, certs, LbPlan("127.0.53.4", None, False, backends))
    try:
        client = HttpClient(tls_connect(lb.https, certs.ca))
        seen_before = len(web.seen)
        first = client.request(method, "/first", body=b"{}" if method == "POST" else b"")
        assert first.status == status  # a POST was sent: the backend may have acted on it, so no replay
        assert len(web.seen) == seen_before + (1 if method == "GET" else 0)
        assert [client.request("GET", "/").header("x-served-by") for _ in range(3)] == ["web-02"] * 3
        assert closer.accepted == 1  # marked down by the first failure, skipped since
        counted = _metric(lb, "foobar_balancer_upstream_requests_total", backend="web-closer", status="no_response")
        assert counted == 1
    finally:
        lb.stop()
        closer.stop()


def test_all_backends_dead_is_502_and_sigterm_exits_0(tmp_path: Path, certs: Certs) -> None:
    backends = [("web-dead-1", DEAD_IPS[0], 80), ("web-dead-2", DEAD_IPS[1], 80)]
    lb = _start(tmp_path, certs, LbPlan("127.0.53.3", None, False, backends))
    try:
        client = HttpClient(tls_connect(lb.https, certs.ca))
        assert [client.request("GET", "/").status for _ in range(2)] == [502, 502]
        assert _metric(lb, "foobar_requests_total", outcome="502") == 2
    finally:
        took = lb.stop()
    assert lb.process.returncode == 0, lb.errors
    assert took < 5.0
