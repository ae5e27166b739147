"""The blocking drivers over real sockets on 127.0.0.1, and TLS: a blocking TLS client before the trio driver."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from foobar_ref.runtime import http_blocking, http_trio
from foobar_ref.runtime.http_blocking import BlockingExchange
from foobar_ref.runtime.http_server import HttpServer, Wait
from foobar_ref.wire.errors import NoResponse, ResponseTimeout
from foobar_ref.wire.limits import ClientLimits, ServerLimits
from tests.balancer.harness import SITE, make_certs
from tests.runtime.trio_util import echo

HOST = [(b"Host", b"t")]
IO_TIMEOUT_S = 10.0
THREAD_JOIN_S = 10.0

DEFAULTS = ServerLimits()


@contextmanager
def blocking_server(
    handler: Callable[[Iterator[BlockingExchange]], None], limits: ServerLimits = DEFAULTS
) -> Iterator[tuple[str, int]]:
    """One connection served by `handler(http_blocking.server(sock))` on a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT_S)

    def serve() -> None:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        with sock:
            handler(http_blocking.server(sock, limits))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        thread.join(THREAD_JOIN_S)
        listener.close()
    assert not thread.is_alive()


def blocking_echo(exchanges: Iterator[BlockingExchange]) -> None:
    for exchange in exchanges:
        exchange.respond(200, [(b"X-Path", exchange.request.target)], exchange.read_body())


def test_keep_alive_and_a_streamed_request() -> None:
    with blocking_server(blocking_echo) as address, socket.create_connection(address, IO_TIMEOUT_S) as sock:
        client = http_blocking.client(sock)
        response, body = client.exchange(b"POST", b"/a", HOST, b"abc")
        assert (response.status_code, body, response.header(b"x-path")) == (200, b"abc", b"/a")
        client.request(b"PUT", b"/b", [*HOST, (b"Transfer-Encoding", b"chunked"), (b"Connection", b"close")])
        for piece in (b"one ", b"two ", b"three"):
            client.send_data(piece)
        client.end()
        response = client.response()
        assert client.read_body() == b"one two three" and response.header(b"connection") == b"close"
        assert not client.reusable


def test_a_blocking_server_refuses_and_times_out() -> None:
    with blocking_server(blocking_echo) as address, socket.create_connection(address, IO_TIMEOUT_S) as sock:
        sock.sendall(b"GET http://elsewhere/ HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    with (
        blocking_server(blocking_echo, ServerLimits(request_s=0.3)) as address,
        socket.create_connection(address, IO_TIMEOUT_S) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost")
        assert sock.recv(65536).startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_the_blocking_client_tells_no_response_from_a_timeout() -> None:
    def close_at_once(exchanges: Iterator[BlockingExchange]) -> None:
        pass

    with (
        blocking_server(close_at_once) as address,
        socket.create_connection(address, IO_TIMEOUT_S) as sock,
        pytest.raises(NoResponse),
    ):
        http_blocking.client(sock).exchange(b"GET", b"/", HOST)

    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()[:2], IO_TIMEOUT_S) as sock:
        started = time.monotonic()
        with pytest.raises(ResponseTimeout) as caught:
            http_blocking.client(sock, ClientLimits(head_s=0.3)).exchange(b"GET", b"/", HOST)
        assert 0.25 < time.monotonic() - started < 3.0 and caught.value.nothing_received


# --- TLS: the trio driver over trio.SSLStream, a blocking client over ssl ---------------------------


def _contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    certs = make_certs(folder)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certs.chain, certs.key)
    client = ssl.create_default_context(cafile=str(certs.ca))
    return server, client


async def test_tls_exchanges_idle_close_and_408_through_ssl(tmp_path: Path) -> None:
    server_context, client_context = _contexts(tmp_path)
    servers: list[HttpServer] = []
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def one(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, server_context, server_side=True, https_compatible=True)
        server = http_trio.server(tls, ServerLimits(idle_s=0.3, request_s=0.3))
        servers.append(server)
        try:
            await echo(server)
        finally:
            await trio.aclose_forcefully(tls)

    def client_side() -> tuple[bytes, bytes, bytes]:
        with (
            socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S) as raw,
            client_context.wrap_socket(raw, server_hostname=SITE) as sock,
        ):
            response, body = http_blocking.client(sock).exchange(b"POST", b"/", HOST, b"secret")
            idle_end = sock.recv(100)  # the server's close after the idle time
        with (
            socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S) as raw,
            client_context.wrap_socket(raw, server_hostname=SITE) as sock,
        ):
            sock.sendall(b"GET / HTTP/1.1\r\n")
            late = sock.recv(65536)
        return body, idle_end, late

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, one, [listener])
            body, idle_end, late = await trio.to_thread.run_sync(client_side)
            nursery.cancel_scope.cancel()
    assert body == b"secret" and idle_end == b""
    assert late.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert [server.expired for server in servers] == [Wait.IDLE, Wait.REQUEST]
