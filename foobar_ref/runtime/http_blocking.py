"""HTTP/1.1 over a blocking socket (plain or TLS): for tools, the browser and the admin clients.

    with socket.create_connection(address) as sock:
        client = http_blocking.client(sock, limits)
        response, body = client.exchange(b"GET", b"/metrics", [(b"Host", b"admin")])

    for exchange in http_blocking.server(sock, limits):      # one connection, on a thread
        exchange.respond(200, headers, body)

The drivers are the same as the async runtimes' (`http_server`, `http_client`):
their reads and sends are coroutines that never suspend here (a socket call
with a timeout), so each call runs to its end at once.  Every socket call gets
the time left before the driver's deadline as its timeout; when it runs out
the driver sees the same expiry as under trio or asyncio.  TLS errors
(`ssl.SSLError`) propagate as they are, so a caller can tell them apart.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from foobar_ref.runtime.deadlines import INF, NO_TIMER
from foobar_ref.runtime.http_client import DEFAULT_LIMITS as CLIENT_LIMITS
from foobar_ref.runtime.http_client import HttpClient
from foobar_ref.runtime.http_server import DEFAULT_LIMITS as SERVER_LIMITS
from foobar_ref.runtime.http_server import Exchange, HttpServer
from foobar_ref.wire.events import HeaderInput, Request, Response
from foobar_ref.wire.limits import ClientLimits, Refuse, ServerLimits, plain_refusal

GONE: tuple[type[BaseException], ...] = (ConnectionError,)
_T = TypeVar("_T")


def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a driver call whose awaits are all blocking socket calls to its result."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a blocking driver call suspended")


def _no_shut(both: bool) -> None:
    pass


class _Socket:
    """A socket's reads and sends, each bounded by the driver's deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.driver: HttpServer | HttpClient | None = None

    def _timeout(self) -> float | None:
        assert self.driver is not None
        deadline = self.driver.deadline
        return None if deadline == INF else deadline - time.monotonic()

    async def receive(self, max_bytes: int) -> bytes:
        left = self._timeout()
        try:
            if left is not None and left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            return self.sock.recv(max_bytes)
        except TimeoutError:
            assert self.driver is not None
            self.driver.expire()
            return b""

    async def send(self, data: bytes) -> None:
        left = self._timeout()
        try:
            if left is not None and left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            self.sock.sendall(data)
        except TimeoutError:
            assert self.driver is not None
            self.driver.expire()

    async def linger(self, seconds: float, max_bytes: int) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(seconds)
            ends = time.monotonic() + seconds
            while max_bytes > 0 and time.monotonic() < ends and (data := self.sock.recv(65536)):
                max_bytes -= len(data)
        except OSError:
            pass


class BlockingClient:
    """Exchanges on one blocking socket: `HttpClient`'s calls, without await."""

    def __init__(self, sock: socket.socket, limits: ClientLimits = CLIENT_LIMITS) -> None:
        io = _Socket(sock)
        self.driver = HttpClient(io.receive, io.send, _no_shut, NO_TIMER, time.monotonic, GONE, limits)
        io.driver = self.driver
        self.sock = sock

    @property
    def reusable(self) -> bool:
        return self.driver.reusable

    def request(self, method: bytes, target: bytes, headers: HeaderInput = (), body: bytes | None = None) -> None:
        run(self.driver.request(method, target, headers, body))

    def send_data(self, chunk: bytes) -> None:
        run(self.driver.send_data(chunk))

    def end(self, trailers: HeaderInput = ()) -> None:
        run(self.driver.end(trailers))

    def response(self) -> Response:
        return run(self.driver.response())

    def receive_data(self) -> bytes:
        return run(self.driver.receive_data())

    def read_body(self) -> bytes:
        return run(self.driver.read_body())

    def exchange(
        self, method: bytes, target: bytes, headers: HeaderInput = (), body: bytes = b""
    ) -> tuple[Response, bytes]:
        return run(self.driver.exchange(method, target, headers, body))


def client(sock: socket.socket, limits: ClientLimits = CLIENT_LIMITS) -> BlockingClient:
    return BlockingClient(sock, limits)


class BlockingExchange:
    """One request and its response: `Exchange`'s calls, without await."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.request: Request = exchange.request

    def header(self, name: bytes) -> bytes | None:
        return self.request.header(name)

    def receive_data(self) -> bytes:
        return run(self.exchange.receive_data())

    def read_body(self) -> bytes:
        return run(self.exchange.read_body())

    def respond(
        self, status: int, headers: HeaderInput = (), body: bytes | None = None, reason: bytes | None = None
    ) -> None:
        run(self.exchange.respond(status, headers, body, reason))

    def send_data(self, chunk: bytes) -> None:
        run(self.exchange.send_data(chunk))

    def end(self, trailers: HeaderInput = ()) -> None:
        run(self.exchange.end(trailers))


def server(
    sock: socket.socket, limits: ServerLimits = SERVER_LIMITS, refuse: Refuse = plain_refusal
) -> Iterator[BlockingExchange]:
    """The requests arriving on `sock`, one at a time; the caller closes the socket afterwards."""
    io = _Socket(sock)
    driver = HttpServer(io.receive, io.send, _no_shut, io.linger, NO_TIMER, time.monotonic, GONE, limits, refuse)
    io.driver = driver
    while True:
        try:
            exchange = run(driver.__anext__())
        except StopAsyncIteration:
            return
        yield BlockingExchange(exchange)
