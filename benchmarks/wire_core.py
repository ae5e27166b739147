"""The one HTTP core's cost per request, pure CPU (no sockets), beside h11 doing the same job.

    .venv/bin/python benchmarks/wire_core.py [--cycles N]

One server cycle = a browser-like GET with eight headers parsed, then a small
whole response written; one client cycle = a request written, then a
Content-Length response parsed.  The balancer does one of each per request.
h11 is timed on the same bytes with its own API.  Reported: microseconds per
cycle, best of five runs (the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import h11

from foobar_ref.wire.connection import ClientConnection, ServerConnection

REQUEST = (
    b"GET /index.html HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
    b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Request-Id: 0123456789abcdef0123456789abcdef\r\n"
    b"traceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\nConnection: keep-alive\r\n\r\n"
)
RESPONSE_HEADERS = [(b"Content-Type", b"text/html; charset=utf-8"), (b"X-Served-By", b"web-01")]
REQUEST_HEADERS = [(b"Host", b"web-01"), (b"X-Forwarded-For", b"127.0.0.1"), (b"X-Request-Id", b"0123456789abcdef")]
BODY = b"hello world\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\nX-Served-By: web-01\r\n\r\n" + BODY
RUNS = 5


def core_server(cycles: int) -> None:
    conn = ServerConnection()
    for _ in range(cycles):
        conn.receive_data(REQUEST)
        conn.next_event()
        conn.next_event()
        conn.respond(200, RESPONSE_HEADERS, BODY)
        conn.start_next_cycle()


def h11_server(cycles: int) -> None:
    conn = h11.Connection(h11.SERVER)
    for _ in range(cycles):
        conn.receive_data(REQUEST)
        conn.next_event()
        conn.next_event()
        headers = [*RESPONSE_HEADERS, (b"Content-Length", b"12")]
        out = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
        out += conn.send(h11.Data(data=BODY)) + conn.send(h11.EndOfMessage())
        conn.start_next_cycle()


def core_client(cycles: int) -> None:
    conn = ClientConnection()
    for _ in range(cycles):
        conn.request(b"GET", b"/index.html", REQUEST_HEADERS, b"")
        conn.receive_data(RESPONSE)
        conn.next_event()
        conn.next_event()
        conn.next_event()
        conn.start_next_cycle()


def h11_client(cycles: int) -> None:
    conn = h11.Connection(h11.CLIENT)
    for _ in range(cycles):
        conn.send(h11.Request(method=b"GET", target=b"/index.html", headers=REQUEST_HEADERS))
        conn.send(h11.EndOfMessage())
        conn.receive_data(RESPONSE)
        conn.next_event()
        conn.next_event()
        conn.next_event()
        conn.start_next_cycle()


def per_cycle_us(job: Callable[[int], None], cycles: int) -> float:
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        job(cycles)
        best = min(best, time.perf_counter() - started)
    return best / cycles * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000)
    cycles = parser.parse_args().cycles
    for role, ours, theirs in [("server", core_server, h11_server), ("client", core_client, h11_client)]:
        core_us, h11_us = per_cycle_us(ours, cycles), per_cycle_us(theirs, cycles)
        print(f"{role}: core {core_us:6.1f} us/cycle   h11 {h11_us:6.1f} us/cycle   ({h11_us / core_us:.1f} x)")


if __name__ == "__main__":
    main()
