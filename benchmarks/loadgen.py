"""A closed-model load generator on trio: N clients, each sending its next request when the last answered.

Closed-model generators understate tail latency under overload (coordinated omission), so the p99
here is the latency a client saw at this concurrency, not at a fixed arrival rate.  Every loop is
bounded by a deadline; every read by a timeout.
"""

from __future__ import annotations

import os
import socket
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio

READ_TIMEOUT_S = 5.0


@dataclass
class Result:
    name: str
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies_s)

    @property
    def qps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    def summary(self) -> dict[str, float | int | str]:
        return {
            "name": self.name,
            "requests": self.count,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "qps": round(self.qps, 1),
            "p50_ms": round(self.percentile_ms(0.50), 3),
            "p99_ms": round(self.percentile_ms(0.99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_s) * 1000, 3) if self.latencies_s else float("nan"),
        }


Exchange = Callable[[], Awaitable[bool]]  # True: the connection can carry the next request


async def run_closed(name: str, make_client: Callable[[], Awaitable[Exchange]], clients: int, seconds: float) -> Result:
    """`clients` tasks, each opening one client and repeating its exchange until the deadline."""
    result = Result(name)
    deadline = trio.current_time() + seconds

    async def one_client() -> None:
        try:
            exchange = await make_client()
        except (OSError, trio.TooSlowError, ssl.SSLError):
            result.errors += 1
            return
        while trio.current_time() < deadline:
            started = time.perf_counter()
            try:
                with trio.fail_after(READ_TIMEOUT_S):
                    reusable = await exchange()
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, h11.ProtocolError, ssl.SSLError, ValueError):
                result.errors += 1
                try:
                    exchange = await make_client()
                except (OSError, trio.TooSlowError, ssl.SSLError):
                    return
                continue
            result.latencies_s.append(time.perf_counter() - started)
            if not reusable:  # the server said Connection: close (e.g. its per-connection limit)
                try:
                    exchange = await make_client()
                except (OSError, trio.TooSlowError, ssl.SSLError):
                    return

    begun = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(one_client)
    result.seconds = time.perf_counter() - begun
    return result


async def _connect(address: tuple[str, int], source_ip: str) -> trio.SocketStream:
    sock = trio.socket.socket()
    await sock.bind((source_ip, 0))
    with trio.fail_after(READ_TIMEOUT_S):
        await sock.connect(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return trio.SocketStream(sock)


def http_client(
    address: tuple[str, int],
    source_ip: str,
    target: str,
    host: str,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    proxy_line: bool = False,
    method: str = "GET",
    body: bytes = b"",
) -> Callable[[], Awaitable[Exchange]]:
    """A keep-alive HTTP/1.1 client (optionally TLS, optionally after a PROXY v1 line)."""

    async def make() -> Exchange:
        raw = await _connect(address, source_ip)
        stream: trio.abc.Stream = raw
        if proxy_line:
            local = raw.socket.getsockname()
            await raw.send_all(f"PROXY TCP4 {local[0]} {address[0]} {local[1]} {address[1]}\r\n".encode())
        if tls is not None:
            stream = trio.SSLStream(raw, tls, server_hostname=server_hostname or host, https_compatible=True)
            with trio.fail_after(READ_TIMEOUT_S):
                await stream.do_handshake()
        conn = h11.Connection(h11.CLIENT)
        headers = [("Host", host), ("User-Agent", "foobar-ref-bench")]
        if body:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

        async def exchange() -> bool:
            out = conn.send(h11.Request(method=method, target=target, headers=headers))
            if body:
                out += conn.send(h11.Data(data=body))
            await stream.send_all(out + conn.send(h11.EndOfMessage()))
            status = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise OSError("server closed the connection")
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.EndOfMessage):
                    break
            if status >= 400:
                raise ValueError(f"status {status}")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return False
            conn.start_next_cycle()
            return True

        return exchange

    return make


def dns_client(address: tuple[str, int], source_ip: str, query: bytes) -> Callable[[], Awaitable[Exchange]]:
    """One UDP socket per client; the answer's id must match the query's."""

    async def make() -> Exchange:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind((source_ip, 0))
        await sock.connect(address)

        async def exchange() -> bool:
            query_id = os.urandom(2)
            await sock.send(query_id + query[2:])
            while True:
                reply = await sock.recv(4096)
                if reply[:2] == query_id:
                    return True

        return exchange

    return make
