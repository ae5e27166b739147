"""The web hop's HTTP series and access log, on a real process (the seed moved to 127.70.x.y)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref.observe.access_log import access_log_path, parse_line
from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics
from tests.e2e.stackutil import connect_from
from tests.web.webproc import FIREWALL_SOURCE, INNER, exchange, web_process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
IDLE_S = 1.5


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    state = tmp_path_factory.mktemp("web-metrics")
    with web_process(state) as (proc, log):
        yield proc, log, state


def samples(state: Path) -> Samples:
    return parse_exposition(read_metrics(admin_socket_path(state, "web-01")))


def value(page: Samples, name: str, **labels: str) -> float:
    wanted = tuple(sorted({"hop": "web-01", **labels}.items()))
    return page.get((name, wanted), 0.0)


def answered(page: Samples) -> float:
    """Every request counted so far (a request is counted just after its response was sent)."""
    names = ("foobar_http_requests_total", "foobar_http_health_checks_total")
    return sum(v for (name, _), v in page.items() if name in names)


def samples_once_counted(state: Path, before: Samples, count: int) -> Samples:
    deadline = time.monotonic() + 5
    while answered(page := samples(state)) < answered(before) + count and time.monotonic() < deadline:
        time.sleep(0.02)
    return page


def get(method: str, path: str, extra: str = "") -> bytes:
    return exchange(f"{method} {path} HTTP/1.1\r\nHost: www.foobar.com\r\n{extra}Connection: close\r\n\r\n".encode())


def read_reply(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body, on a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_requests_are_counted_by_method_and_code_and_health_checks_apart(web: tuple) -> None:
    _, _, state = web
    before = samples(state)
    sent = [("GET", "/", 200)] * 3 + [("HEAD", "/", 200)] * 2 + [("GET", "/nope", 404)] * 4
    sent += [("DELETE", "/", 405), ("BREW", "/", 405), ("GET", "/health", 200), ("GET", "/health", 200)]
    for method, path, status in sent:
        assert get(method, path).startswith(b"HTTP/1.1 %d " % status)
    assert exchange(b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    after = samples_once_counted(state, before, len(sent) + 1)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("foobar_http_requests_total", method="GET", code="200") == 3
    assert delta("foobar_http_requests_total", method="HEAD", code="200") == 2
    assert delta("foobar_http_requests_total", method="GET", code="404") == 4
    assert delta("foobar_http_requests_total", method="DELETE", code="405") == 1
    assert delta("foobar_http_requests_total", method="other", code="405") == 1  # BREW: not a standard method
    assert delta("foobar_http_requests_total", method="other", code="400") == 1  # no head to read a method from
    assert delta("foobar_http_requests_total", method="GET", code="200") == 3  # /health is not in here
    assert delta("foobar_http_health_checks_total", code="200") == 2
    assert delta("foobar_http_request_duration_seconds_count") == 12  # user requests only
    assert delta("foobar_requests_total", outcome="200") == 7  # the hop-wide count keeps everything
    assert delta("foobar_http_request_bytes_total") > 0 and delta("foobar_http_response_bytes_total") > 0
    assert value(after, "foobar_http_requests_in_flight") == 0


def test_duration_starts_at_the_first_byte_on_a_reused_connection(web: tuple) -> None:
    """The second request waits IDLE_S on a kept-alive connection: its duration must not include that wait."""
    _, log, state = web
    before = samples(state)
    with connect_from(FIREWALL_SOURCE, INNER, timeout_s=10) as sock:
        sock.sendall(b"GET /?first HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_reply(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(IDLE_S)
        sock.sendall(b"GET /?second HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_reply(sock).startswith(b"HTTP/1.1 200 ")
    after = samples_once_counted(state, before, 2)
    name = "foobar_http_request_duration_seconds"
    assert value(after, f"{name}_count") - value(before, f"{name}_count") == 2
    within_1s = value(after, f"{name}_bucket", le="1.0") - value(before, f"{name}_bucket", le="1.0")
    assert within_1s == 2, "a duration included the idle time before the request"
    assert value(after, f"{name}_sum") - value(before, f"{name}_sum") < 1.0
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (second,) = [r for r in records if r.get("event") == "request" and r.get("target") == "/?second"]
    assert second["duration_ms"] < 1000


def test_pipelined_requests_are_each_counted_once(web: tuple) -> None:
    _, _, state = web
    first = samples(state)
    before = value(first, "foobar_http_requests_total", method="GET", code="200")
    with connect_from(FIREWALL_SOURCE, INNER) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 5 + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 ") == 6
    after = samples_once_counted(state, first, 6)
    assert value(after, "foobar_http_requests_total", method="GET", code="200") == before + 6


def test_every_answer_is_one_access_log_line(web: tuple) -> None:
    _, _, state = web
    path = access_log_path(state, "web-01")
    lines_before = path.read_bytes().count(b"\n")
    assert get("GET", "/health", extra='User-Agent: probe "1"\r\nX-Forwarded-For: 127.70.0.10\r\n').startswith(
        b"HTTP/1.1 200 "
    )
    assert get("GET", "/nope?x=1").startswith(b"HTTP/1.1 404 ")
    lines = path.read_bytes().splitlines()
    assert len(lines) == lines_before + 2
    health, missing = lines[-2], lines[-1]
    assert health.startswith(b"127.70.0.10 - - [") and b'"GET /health HTTP/1.1" 200 ' in health
    assert b'"probe \\x221\\x22"' in health  # the quotes in the User-Agent are escaped, as nginx does
    assert missing.startswith(FIREWALL_SOURCE.encode() + b" - - [") and b'"GET /nope?x=1 HTTP/1.1" 404 ' in missing
    assert parse_line(health) == ("200", True) and parse_line(missing) == ("404", False)
    body = b'{"status": "ok", "server": "web-01"}'
    assert health.split(b'"')[2].split() == [b"200", str(len(body)).encode()]  # the body's bytes, not the head's
    assert float(health.rsplit(b" ", 1)[1]) < 1.0
