"""Reliability matrix B1 (HTTP) and B2 (TLS) against the real balancer process, on 127.0.53.0/24.

One balancer without a firewall in front (so any client, and `openssl s_client`,
can speak TLS to it at once), two fake web servers behind it that record every
request they get, and a 1 s TLS handshake timeout (`--handshake-timeout-s`) so
the stalled-handshake row runs in about a second.  Each row checks what the
matrix asks: the status, whether the connection is closed after it, and for a
refused request that no backend saw it ("0 upstream").
"""

from __future__ import annotations

import os
import random
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.balancer import tls_probe
from tests.balancer.harness import (
    CLIENT_IP,
    SITE,
    BalancerProcess,
    Certs,
    FakeWeb,
    HttpClient,
    LbPlan,
    client_context,
    connect,
    free_port,
    make_certs,
    read_reply,
    tls_connect,
)
from tests.wire.rows import LB_ACCEPTED, PARSER, case

LB_IP = "127.0.53.30"
WEB_IPS = ("127.0.53.31", "127.0.53.32")
HANDSHAKE_TIMEOUT_S = 1.0
STALLED_SOCKETS = 20
CLOSE_WITHIN_S = 1.0
ECDSA_AES128_GCM = 0xC02B  # ECDHE-ECDSA-AES128-GCM-SHA256: what a good TLS 1.2 offer looks like


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("row-certs"))


@pytest.fixture(scope="module")
def webs() -> Iterator[list[FakeWeb]]:
    servers = [FakeWeb(f"web-0{i + 1}", ip) for i, ip in enumerate(WEB_IPS)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory, certs: Certs, webs: list[FakeWeb]) -> Iterator[BalancerProcess]:
    https = free_port(LB_IP)
    http = free_port(LB_IP)
    plan = LbPlan(LB_IP, None, False, [(w.name, w.ip, w.port) for w in webs], https, http)
    flags = ("--handshake-timeout-s", f"{HANDSHAKE_TIMEOUT_S:g}")
    process = BalancerProcess(tmp_path_factory.mktemp("lb-rows"), plan, certs, flags)
    yield process
    process.stop()
    assert not [line for line in process.errors if "Traceback" in line], process.errors
    assert not process.events("handler_error")


def upstream(webs: list[FakeWeb]) -> int:
    return sum(len(w.seen) for w in webs)


def closed_after(sock: socket.socket) -> bool:
    """The balancer closed the connection (TLS close_notify, FIN or RST) without sending more."""
    try:
        return sock.recv(65536) == b""
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return True
    except TimeoutError:
        return False


def alive(lb: BalancerProcess) -> bool:
    if lb.process.poll() is not None:
        return False
    return HttpClient(tls_connect(lb.https, lb.certs.ca)).request("GET", "/").status == 200


# --- B1: HTTP bad input over TLS ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PARSER))
def test_http_row(lb: BalancerProcess, webs: list[FakeWeb], name: str) -> None:
    before = upstream(webs)
    sock = tls_connect(lb.https, lb.certs.ca)
    sock.sendall(case(name))
    reply = read_reply(sock)
    expected = PARSER[name] or {LB_ACCEPTED[name]}
    assert reply.status in expected, f"{name}: {reply.status} {reply.body!r}"
    if PARSER[name]:  # bad framing or syntax: nothing after it on this connection can be trusted
        assert reply.header("connection") == "close"
        assert closed_after(sock), f"{name}: still open after {reply.status}"
    if reply.status >= 400:
        assert upstream(webs) == before, f"{name}: reached a backend"
    else:
        assert upstream(webs) == before + 1
    assert all(seen.target != "/admin" for web in webs for seen in web.seen)  # H-01's smuggled request
    sock.close()


def test_h18_bare_lf_request_is_forwarded_with_crlf(lb: BalancerProcess, webs: list[FakeWeb]) -> None:
    sock = tls_connect(lb.https, lb.certs.ca)
    sock.sendall(case("H-18"))
    reply = read_reply(sock)
    web = next(w for w in webs if w.name == reply.header("x-served-by"))
    seen = web.seen[-1]
    assert (reply.status, seen.method, seen.target, seen.header("host")) == (200, "GET", "/", "a")
    assert re.search(rb"(?<!\r)\n", bytes(web.received)) is None  # never a bare LF upstream


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GET /" + b"a" * 9 * 1024 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),  # H-20
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9 * 1024 + b"\r\n\r\n", 431),  # H-21: one 9 KiB header
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"p" * 4000 + b"\r\n\r\n", 200),  # control
    ],
    ids=["H-20-9KiB-line", "H-21-9KiB-header", "control-4KB-header"],
)
def test_h20_h21_limits_over_tls(lb: BalancerProcess, webs: list[FakeWeb], line: bytes, status: int) -> None:
    before = upstream(webs)
    sock = tls_connect(lb.https, lb.certs.ca)
    sock.sendall(line)
    assert read_reply(sock).status == status
    assert upstream(webs) == before + (status == 200)


def test_h21_a_17_kib_head_sent_in_one_write_is_431(lb: BalancerProcess, webs: list[FakeWeb]) -> None:
    before = upstream(webs)
    sock = tls_connect(lb.https, lb.certs.ca)
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%02d: " % i + b"v" * 200 + b"\r\n" for i in range(85))
    assert 17 * 1024 <= len(head) < 18 * 1024
    sock.sendall(head + b"\r\n")  # more than one TLS record: h11 alone would take it
    reply = read_reply(sock)
    assert (reply.status, closed_after(sock), upstream(webs)) == (431, True, before)


def test_h27_a_client_x_forwarded_for_is_replaced(lb: BalancerProcess, webs: list[FakeWeb]) -> None:
    headers = [("X-Forwarded-For", "1.2.3.4"), ("X-Real-IP", "1.2.3.4"), ("Forwarded", "for=1.2.3.4")]
    reply = HttpClient(tls_connect(lb.https, lb.certs.ca)).request("GET", "/xff", headers)
    seen = next(w for w in webs if w.name == reply.header("x-served-by")).seen[-1]
    assert seen.all("x-forwarded-for") == [CLIENT_IP]
    assert seen.header("x-real-ip") is None
    assert "1.2.3.4" not in " ".join(v for k, v in seen.headers if k.startswith("x-"))


def test_h26_traversal_never_reaches_a_backend_in_any_spelling(lb: BalancerProcess, webs: list[FakeWeb]) -> None:
    before = upstream(webs)
    client = HttpClient(tls_connect(lb.https, lb.certs.ca))
    for target in ("/static/../../etc/passwd", "/%2E%2E/etc/passwd", "/a/%2e/b", "/a%5c..%5cetc/passwd"):
        assert client.request("GET", target).status == 400
        client = HttpClient(tls_connect(lb.https, lb.certs.ca))
    assert upstream(webs) == before
    assert client.request("GET", "/a/b..c/?next=../x").status == 200  # dots that are not segments pass


def test_h29_tls_bytes_on_the_plain_http_port_get_400_and_close(lb: BalancerProcess, webs: list[FakeWeb]) -> None:
    before = upstream(webs)
    sock = connect(lb.http)
    sock.sendall(tls_probe.client_hello(tls_probe.TLS_1_2, [ECDSA_AES128_GCM]))
    reply = read_reply(sock)
    assert (reply.status, reply.header("connection"), closed_after(sock)) == (400, "close", True)
    assert upstream(webs) == before


def _settled_lines(lb: BalancerProcess, quiet_s: float = 0.3) -> int:
    """The number of log lines once none arrived for `quiet_s`."""
    count, since = len(lb.lines), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        if len(lb.lines) != count:
            count, since = len(lb.lines), time.monotonic()
    return count


def _null_connections(lb: BalancerProcess) -> dict[str, Callable[[], object]]:
    def close(reset: bool) -> None:
        sock = connect(lb.https)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()

    def half_close(data: bytes) -> bytes:
        with connect(lb.https) as sock:
            return tls_probe.request_then_half_close(sock, client_context(lb.certs.ca), SITE, data)

    return {
        "connect-close": lambda: close(reset=False),
        "connect-rst": lambda: close(reset=True),
        "half-close-after-head": lambda: half_close(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        "half-close-mid-head": lambda: half_close(b"GET / HTTP/1.1\r\nHost: a\r\n"),
    }


@pytest.mark.parametrize("kind", ["connect-close", "connect-rst", "half-close-after-head", "half-close-mid-head"])
def test_h30_null_and_half_closed_connections_log_at_most_one_line(lb: BalancerProcess, kind: str) -> None:
    before = _settled_lines(lb)
    result = _null_connections(lb)[kind]()
    after = _settled_lines(lb)
    assert after - before <= 1, lb.lines[before:]
    if kind == "half-close-after-head":
        assert isinstance(result, bytes) and result.startswith(b"HTTP/1.1 200 ")  # the answer still comes back
    assert not [line for line in lb.errors if "Traceback" in line]
    assert alive(lb)


def test_h32_http_1_0_get_with_a_body_is_413_and_not_forwarded(lb: BalancerProcess, webs: list[FakeWeb]) -> None:
    before = upstream(webs)
    sock = tls_connect(lb.https, lb.certs.ca)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    assert (read_reply(sock).status, closed_after(sock), upstream(webs)) == (413, True, before)


# --- B2: TLS bad input ------------------------------------------------------------------------


def test_t01_plain_http_on_the_tls_port_is_closed_within_1_s(lb: BalancerProcess) -> None:
    sock = connect(lb.https)
    started = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
    verdict = tls_probe.server_verdict(sock)
    assert verdict.kind in ("closed", "alert"), verdict  # never an HTTP answer, never a session
    assert closed_after(sock)
    assert time.monotonic() - started < CLOSE_WITHIN_S


PROTOCOL_VERSION = tls_probe.Verdict("alert", tls_probe.ALERT_PROTOCOL_VERSION)
HANDSHAKE_FAILURE = tls_probe.Verdict("alert", tls_probe.ALERT_HANDSHAKE_FAILURE)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (tls_probe.TLS_1_0, {PROTOCOL_VERSION}),
        (tls_probe.TLS_1_1, {PROTOCOL_VERSION}),
        (tls_probe.SSL_3, {PROTOCOL_VERSION, HANDSHAKE_FAILURE}),  # T-03: OpenSSL 3 lacks SSLv3 altogether
        (tls_probe.TLS_1_2, {tls_probe.Verdict("server_hello", ECDSA_AES128_GCM)}),  # control: the same offer at 1.2
    ],
    ids=["T-02-tls1.0", "T-02-tls1.1", "T-03-ssl3", "control-tls1.2"],
)
def test_t02_only_tls_1_2_and_up_are_spoken(
    lb: BalancerProcess, version: int, expected: set[tls_probe.Verdict]
) -> None:
    with connect(lb.https) as sock:
        sock.sendall(tls_probe.client_hello(version, [ECDSA_AES128_GCM, 0xC009, 0x002F]))
        assert tls_probe.server_verdict(sock) in expected


def test_t03_an_sslv2_format_hello_is_refused(lb: BalancerProcess) -> None:
    suites = bytes.fromhex("0700c0 050080 030080 010080 080080 060040 040080 020080")
    hello = b"\x01\x00\x02" + len(suites).to_bytes(2, "big") + b"\x00\x00\x00\x10" + suites + os.urandom(16)
    with connect(lb.https) as sock:
        sock.sendall(bytes([0x80 | (len(hello) >> 8), len(hello) & 0xFF]) + hello)
        assert tls_probe.server_verdict(sock).kind in ("alert", "closed")


WEAK_SUITES = {
    "RC4": [0xC007, 0x0005, 0x0004],  # ECDHE-ECDSA-RC4-SHA, RC4-SHA, RC4-MD5
    "3DES": [0xC008, 0x000A],  # ECDHE-ECDSA-DES-CBC3-SHA, DES-CBC3-SHA
    "NULL": [0xC006, 0x0002, 0x003B],  # ECDHE-ECDSA-NULL-SHA, NULL-SHA, NULL-SHA256
    "EXPORT": [0x0003, 0x0008, 0x0014],  # EXP-RC4-MD5, EXP-DES-CBC-SHA, EXP-EDH-RSA-DES-CBC-SHA
    "CBC-SHA1": [0xC009, 0xC00A, 0x002F, 0x0035],  # ECDHE-ECDSA-AES128/256-SHA, AES128/256-SHA
}


@pytest.mark.parametrize("family", sorted(WEAK_SUITES))
def test_t04_weak_cipher_suites_get_handshake_failure(lb: BalancerProcess, family: str) -> None:
    """A hand-built offer, because this machine's OpenSSL cannot even offer RC4, 3DES or EXPORT."""
    with connect(lb.https) as sock:
        sock.sendall(tls_probe.client_hello(tls_probe.TLS_1_2, WEAK_SUITES[family]))
        assert tls_probe.server_verdict(sock) == HANDSHAKE_FAILURE


def test_t04_the_weak_offer_next_to_a_good_suite_gets_the_good_one(lb: BalancerProcess) -> None:
    offer = [s for suites in WEAK_SUITES.values() for s in suites] + [ECDSA_AES128_GCM]
    with connect(lb.https) as sock:
        sock.sendall(tls_probe.client_hello(tls_probe.TLS_1_2, offer))
        assert tls_probe.server_verdict(sock) == tls_probe.Verdict("server_hello", ECDSA_AES128_GCM)


@pytest.mark.parametrize(("offer", "chosen"), [(["h2"], None), (["h2", "http/1.1"], "http/1.1")])
def test_t05_alpn_never_selects_h2(lb: BalancerProcess, offer: list[str], chosen: str | None) -> None:
    context = ssl.create_default_context(cafile=str(lb.certs.ca))
    context.set_alpn_protocols(offer)
    sock = context.wrap_socket(connect(lb.https), server_hostname=SITE)
    assert sock.selected_alpn_protocol() == chosen
    assert HttpClient(sock).request("GET", "/").status == 200  # and HTTP/1.1 is what it speaks


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_t06_stalled_handshakes_are_closed_at_the_timeout_while_others_are_served(lb: BalancerProcess) -> None:
    fds_before = _fd_count(lb.process.pid)
    rejected_before = len([e for e in lb.events("connection_rejected") if e["reason"] == "tls_timeout"])
    first_bytes = tls_probe.client_hello(tls_probe.TLS_1_2, [ECDSA_AES128_GCM])[:10]
    stalled = [connect(lb.https) for _ in range(STALLED_SOCKETS)]
    started = time.monotonic()
    for sock in stalled:
        sock.sendall(first_bytes)
    latencies = []
    while time.monotonic() - started < HANDSHAKE_TIMEOUT_S * 0.8:
        begun = time.monotonic()
        assert HttpClient(tls_connect(lb.https, lb.certs.ca)).request("GET", "/").status == 200
        latencies.append(time.monotonic() - begun)
    closed_at = []
    for sock in stalled:
        sock.settimeout(HANDSHAKE_TIMEOUT_S * 3)
        assert tls_probe.server_verdict(sock).kind in ("closed", "alert")
        closed_at.append(time.monotonic() - started)
        sock.close()
    assert min(closed_at) > HANDSHAKE_TIMEOUT_S * 0.9 and max(closed_at) < HANDSHAKE_TIMEOUT_S + 1.0, closed_at
    assert latencies and max(latencies) < 0.5, latencies
    _settled_lines(lb)
    rejected = [e for e in lb.events("connection_rejected") if e["reason"] == "tls_timeout"]
    assert len(rejected) - rejected_before == STALLED_SOCKETS
    assert _fd_count(lb.process.pid) <= fds_before + 2  # every stalled socket's descriptor is gone


def test_t07_client_initiated_renegotiation_is_refused(lb: BalancerProcess) -> None:
    """`R` on s_client's stdin renegotiates (TLS 1.2); OpenSSL has no Python API for it."""
    argv = ["openssl", "s_client", "-connect", f"{lb.https[0]}:{lb.https[1]}", "-tls1_2"]
    argv += ["-servername", SITE, "-CAfile", str(lb.certs.ca)]
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert client.stdin is not None
    timer = threading.Timer(10.0, client.kill)
    timer.start()
    try:
        time.sleep(0.5)
        client.stdin.write(b"R\n")
        client.stdin.flush()
        time.sleep(0.5)
        output, _ = client.communicate(timeout=5)
    finally:
        timer.cancel()
    text = output.decode("latin-1")
    assert "Verify return code: 0 (ok)" in text and "RENEGOTIATING" in text, text[-2000:]
    assert "no renegotiation" in text, text[-2000:]
    assert alive(lb)


@pytest.mark.parametrize("start", [b"", b"\x16\x03\x03\x3f\xff"], ids=["random", "record-header-then-random"])
def test_t08_a_megabyte_of_random_bytes_is_closed_within_1_s(lb: BalancerProcess, start: bytes) -> None:
    noise = start + random.Random(8).randbytes(1 << 20)
    sock = connect(lb.https)
    started = time.monotonic()
    try:
        sock.sendall(noise)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still sending: that is the point
    verdict = tls_probe.server_verdict(sock)
    assert verdict.kind in ("closed", "alert"), verdict
    assert time.monotonic() - started < CLOSE_WITHIN_S
    sock.close()
    assert alive(lb)


def _leaf_der(certs: Certs) -> bytes:
    first = certs.chain.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    return ssl.PEM_cert_to_DER_cert(first)


@pytest.mark.parametrize("server_name", [None, "unknown.example"], ids=["no-SNI", "unknown-SNI"])
def test_t09_no_or_unknown_sni_gets_the_certificate_or_an_alert(lb: BalancerProcess, server_name: str | None) -> None:
    context = ssl.create_default_context(cafile=str(lb.certs.ca))
    context.check_hostname = False  # the name check is what fails here, by design; the chain is still verified
    sock = connect(lb.https)
    try:
        tls = context.wrap_socket(sock, server_hostname=server_name)
    except ssl.SSLError as err:
        assert "UNRECOGNIZED_NAME" in str(err).upper()
    else:
        assert tls.getpeercert(binary_form=True) == _leaf_der(lb.certs)
        tls.close()
    assert alive(lb)


def test_t11_port_80_redirects_and_never_serves_content(lb: BalancerProcess, webs: list[FakeWeb]) -> None:
    before = upstream(webs)
    client = HttpClient(connect(lb.http))
    for method, target, body in (("GET", "/", b""), ("GET", "/static/style.css", b""), ("POST", "/api", b"x")):
        reply = client.request(method, target, body=body)
        assert reply.status == 301 and reply.body == b""
        assert reply.header("location") == f"https://{SITE}:{lb.plan.https_port}{target}"
    assert upstream(webs) == before


def test_the_balancer_survived_every_row(lb: BalancerProcess) -> None:
    assert alive(lb)
    assert not lb.events("handler_error")
