"""Reliability matrix B1, parser-level rows, sent raw straight to web-01 (seed moved to 127.70.x.y).

A refused case must get its status and a close from the server itself (we keep
our side open); an accepted case gets what the route gives.  Afterwards the hop
is alive, logged no traceback, and never ran the smuggled `/admin` of H-01.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.webproc import exchange, web_process
from tests.wire.rows import PARSER, WEB_ACCEPTED, case


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    with web_process(tmp_path_factory.mktemp("web-rows")) as started:
        yield started


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])


def headers_of(reply: bytes) -> list[tuple[bytes, bytes]]:
    head = reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(b":") for line in head)]


@pytest.mark.parametrize("name", sorted(PARSER))
def test_http_row(web: tuple[subprocess.Popen[str], Path], name: str) -> None:
    refused = bool(PARSER[name])
    reply = exchange(case(name), half_close=not refused)  # a refused request: the server must close by itself
    expected = PARSER[name] or {WEB_ACCEPTED[name]}
    assert status_of(reply) in expected, reply[:300]
    assert reply.count(b"HTTP/1.1 ") == 1  # one answer: nothing after a refused head is read as a request
    if refused:
        assert (b"connection", b"close") in headers_of(reply)
    assert b"root:" not in reply  # H-26: /etc/passwd is never served


def test_h28_an_encoded_crlf_in_the_path_injects_no_header(web: tuple[subprocess.Popen[str], Path]) -> None:
    reply = exchange(case("H-28"))
    names = [name for name, _ in headers_of(reply)]
    assert status_of(reply) == 404 and b"set-cookie" not in names
    assert all(b"\r" not in value and b"\n" not in value for _, value in headers_of(reply))


def test_h28_request_values_echoed_into_the_page_are_escaped(web: tuple[subprocess.Popen[str], Path]) -> None:
    probe = b"<script>alert(1)</script>"
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: " + probe + b"\r\nX-Forwarded-For: " + probe + b"\r\n\r\n"
    reply = exchange(raw)
    assert status_of(reply) == 200
    assert probe not in reply and b"&lt;script&gt;" in reply
    assert all(probe not in value for _, value in headers_of(reply))


def test_the_web_server_lived_through_every_row(web: tuple[subprocess.Popen[str], Path]) -> None:
    proc, log = web
    assert status_of(exchange(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")) == 200
    assert proc.poll() is None
    text = log.read_text()
    assert "Traceback" not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert not [r for r in records if r["event"] == "handler_error"]
    assert not [r for r in records if r["event"] == "request" and r["target"] == "/admin"]
    refused = [r for r in records if r["event"] == "bad_request"]
    assert len(refused) >= sum(1 for statuses in PARSER.values() if statuses)
