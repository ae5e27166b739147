"""HTTP/1.1 over trio streams: the server and client drivers of `http_server` / `http_client` for trio.

    async for exchange in http_trio.server(stream, limits, refuse):   # a hop's handler
        await exchange.respond(200, headers, body)

    client = http_trio.client(stream, limits)                        # one connection (pool it yourself)
    response, body = await client.exchange(b"GET", b"/", [(b"Host", b"web-01")])

A deadline wakes the pending read or send by telling trio the socket is
closing (`trio.lowlevel.notify_closing`): the wait fails with
ClosedResourceError while the socket, and a TLS stream over it, can still send
the 408 before the close.  That works for a `trio.SocketStream`, a stream over
one (`transport_stream`, as `trio.SSLStream`), and trio's in-memory test streams.
Any other stream falls back to a cancel scope per read and send (correct,
slower).  The timer is one task per trio run (`deadlines.trio_timer`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from foobar_ref.runtime.deadlines import INF, NO_TIMER, trio_timer
from foobar_ref.runtime.http_client import DEFAULT_LIMITS as CLIENT_LIMITS
from foobar_ref.runtime.http_client import HttpClient
from foobar_ref.runtime.http_server import DEFAULT_LIMITS as SERVER_LIMITS
from foobar_ref.runtime.http_server import HttpServer, Shut
from foobar_ref.wire.limits import ClientLimits, Refuse, ServerLimits, plain_refusal

GONE: tuple[type[BaseException], ...] = (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)


def server(
    stream: trio.abc.Stream,
    limits: ServerLimits = SERVER_LIMITS,
    refuse: Refuse = plain_refusal,
    initial: bytes = b"",
) -> HttpServer:
    """The requests arriving on `stream` (iterate it); the caller closes the stream afterwards.

    `initial`: bytes already read from the stream that belong to HTTP (those after a PROXY line).
    """
    shut = shutter(stream)
    driver = HttpServer(
        stream.receive_some,  # type: ignore[arg-type]
        stream.send_all,
        shut or _no_shut,
        _linger(stream),
        trio_timer() if shut else NO_TIMER,
        trio.current_time,
        GONE,
        limits,
        refuse,
        initial,
    )
    if shut is None:
        _scope_each_call(driver, stream)
    return driver


def client(stream: trio.abc.Stream, limits: ClientLimits = CLIENT_LIMITS) -> HttpClient:
    """Exchanges on `stream`, one at a time."""
    shut = shutter(stream)
    driver = HttpClient(
        stream.receive_some,  # type: ignore[arg-type]
        stream.send_all,
        shut or _no_shut,
        trio_timer() if shut else NO_TIMER,
        trio.current_time,
        GONE,
        limits,
    )
    if shut is None:
        _scope_each_call(driver, stream)
    return driver


# --- waking a pending read or send ----------------------------------------------------------


def shutter(stream: object) -> Shut | None:
    """How to wake what waits on `stream`: an end of file for a read (an error for a send, when asked)."""
    if isinstance(stream, trio.SocketStream):
        return _socket_shutter(stream.socket)
    if isinstance(stream, trio.StapledStream):
        return _memory_shutter(stream)
    inner = getattr(stream, "transport_stream", None)
    return shutter(inner) if inner is not None else None


def _socket_shutter(sock: trio.socket.SocketType) -> Shut:
    def shut(both: bool) -> None:
        """Wake what waits on the socket with ClosedResourceError; the socket stays usable until closed.

        Not an end of file: a TLS stream above would take that for a broken
        connection and refuse to send the 408; a failed transport read leaves it intact.
        """
        if sock.fileno() >= 0:
            trio.lowlevel.notify_closing(sock)

    return shut


def _memory_shutter(stream: trio.StapledStream[Any, Any]) -> Shut | None:
    """trio.testing's memory streams: our receive side closed (a pending read fails), the send side too when asked."""
    close_receiving = getattr(stream.receive_stream, "close", None)
    close_sending = getattr(stream.send_stream, "close", None)
    if not callable(close_receiving) or not callable(close_sending):
        return None

    def shut(both: bool) -> None:
        close_receiving()
        if both:
            close_sending()

    return shut


def _no_shut(both: bool) -> None:
    pass


def _scope_each_call(driver: HttpServer | HttpClient, stream: trio.abc.Stream) -> None:
    """For a stream that cannot be shut: each read and send runs under the driver's deadline."""

    def bounded(call: Callable[..., Awaitable[Any]], empty: object) -> Callable[..., Awaitable[Any]]:
        async def run(arg: Any) -> Any:
            deadline = driver.deadline
            if deadline == INF:
                return await call(arg)
            with trio.move_on_at(deadline):
                return await call(arg)
            driver.expire()
            return empty

        return run

    driver._receive = bounded(stream.receive_some, b"")
    driver._send = bounded(stream.send_all, None)


def _linger(stream: trio.abc.Stream) -> Callable[[float, int], Awaitable[None]]:
    async def linger(seconds: float, max_bytes: int) -> None:
        """Say we are done sending, then read and drop what still comes, within bounds."""
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        with trio.move_on_after(seconds):
            while max_bytes > 0:
                data = await stream.receive_some(65536)
                if not data:
                    return
                max_bytes -= len(data)

    return linger
