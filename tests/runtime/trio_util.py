"""A trio HTTP server on 127.0.0.1 (an ephemeral port) around a handler, and raw-socket helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from foobar_ref.runtime import http_trio
from foobar_ref.runtime.http_server import HttpServer
from foobar_ref.wire.limits import Refuse, ServerLimits, plain_refusal

Handler = Callable[[HttpServer], Awaitable[None]]
MAX_READS = 10_000  # a raw read loop gives up after this many reads

DEFAULTS = ServerLimits()


@asynccontextmanager
async def serving(
    handler: Handler, limits: ServerLimits = DEFAULTS, refuse: Refuse = plain_refusal
) -> AsyncIterator[tuple[str, int]]:
    """Serve each connection with `handler(http_trio.server(stream))`; yields (ip, port)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    done: list[HttpServer] = []

    async def one(stream: trio.SocketStream) -> None:
        server = http_trio.server(stream, limits, refuse)
        try:
            await handler(server)
        finally:
            done.append(server)
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, one, listeners)
        ip, port = listeners[0].socket.getsockname()[:2]
        yield ip, port
        nursery.cancel_scope.cancel()


async def read_until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    for _ in range(MAX_READS):
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def echo(server: HttpServer) -> None:
    """Answer every request with its own body and its number on the connection."""
    async for exchange in server:
        body = await exchange.read_body()
        await exchange.respond(200, [(b"X-Number", b"%d" % exchange.number)], body)
