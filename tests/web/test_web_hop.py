"""The web hop as a real process (on a copy of the seed moved to 127.70.x.y), over real sockets."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.stackutil import connect_from
from tests.web.webproc import FIREWALL_SOURCE, INNER, exchange, web_process


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    with web_process(tmp_path_factory.mktemp("web")) as (proc, _):
        yield proc


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return exchange(f"{method} {path} HTTP/1.1\r\nHost: www.foobar.com\r\n{extra}Connection: close\r\n\r\n".encode())


def test_home_page_names_the_server_and_the_forwarded_facts(web: subprocess.Popen[str]) -> None:
    reply = get("/", extra="X-Forwarded-For: 127.0.0.10\r\nX-Request-Id: abc123\r\nX-Forwarded-Proto: https\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"x-served-by: web-01" in reply.lower()
    assert b"served by web-01" in reply and b"abc123" in reply and b"127.0.0.10" in reply


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", b"200"),
        ("HEAD", "/", b"200"),
        ("GET", "/static/style.css", b"200"),
        ("GET", "/static/../../etc/passwd", b"404"),
        ("GET", "/nope", b"404"),
        ("DELETE", "/", b"405"),
    ],
)
def test_routes(web: subprocess.Popen[str], method: str, path: str, status: bytes) -> None:
    assert get(path, method).startswith(b"HTTP/1.1 " + status)


def test_bad_request_gets_400_and_the_server_lives_on(web: subprocess.Popen[str]) -> None:
    smuggle = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert exchange(smuggle).startswith(b"HTTP/1.1 400 ")
    assert exchange(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert get("/health").startswith(b"HTTP/1.1 200 ")


def test_store_down_gives_502(web: subprocess.Popen[str]) -> None:
    assert get("/api/messages").startswith(b"HTTP/1.1 502 ")


def test_only_its_own_host_may_connect(web: subprocess.Popen[str]) -> None:
    try:
        assert exchange(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", source="127.70.0.10") == b""
    except ConnectionResetError:
        pass


def test_the_last_request_of_a_connection_says_close(web: subprocess.Popen[str]) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
    data = b""
    with connect_from(FIREWALL_SOURCE, INNER) as sock:
        for batch in range(10):  # pipelined in batches, reading as we go, so neither side's buffer fills
            sock.sendall(request * 100)
            while data.count(b"HTTP/1.1 200 ") < 100 * (batch + 1):
                chunk = sock.recv(1 << 20)
                assert chunk, "closed early"
                data += chunk
        assert sock.recv(1 << 20) == b""  # closed after the 1000th
    replies = data.count(b"HTTP/1.1 200 ")
    assert replies == 1000
    assert data.lower().count(b"connection: close") == 1
    assert data.rsplit(b"HTTP/1.1 200 ", 1)[1].lower().count(b"connection: close") == 1


def test_sigterm_stops_it_cleanly(web: subprocess.Popen[str]) -> None:
    web.send_signal(signal.SIGTERM)
    assert web.wait(5) == 0
