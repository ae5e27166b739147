"""HTTP/1.1 over asyncio streams: the server and client drivers of `http_server` / `http_client` for asyncio.

    async for exchange in http_asyncio.server(reader, writer, limits, refuse):
        await exchange.respond(200, headers, body)

    client = http_asyncio.client(reader, writer, limits)
    response, body = await client.exchange(b"GET", b"/", [(b"Host", b"store-01")])

Writes go to the transport at once and wait (`drain`) only when its buffer
holds more than `WRITE_BUFFER_BYTES`: back-pressure without an await per send.
A deadline wakes a pending read with `reader.feed_eof()`, a pending drain by
aborting the transport; each driver has one `loop.call_at` handle
(`deadlines.AsyncioTimer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from foobar_ref.runtime.deadlines import AsyncioTimer
from foobar_ref.runtime.http_client import DEFAULT_LIMITS as CLIENT_LIMITS
from foobar_ref.runtime.http_client import HttpClient
from foobar_ref.runtime.http_server import DEFAULT_LIMITS as SERVER_LIMITS
from foobar_ref.runtime.http_server import HttpServer, Shut
from foobar_ref.wire.limits import ClientLimits, Refuse, ServerLimits, plain_refusal

GONE: tuple[type[BaseException], ...] = (ConnectionError, asyncio.IncompleteReadError)
WRITE_BUFFER_BYTES = 64 * 1024  # more than this waiting in the transport -> wait for the peer to read


def server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    limits: ServerLimits = SERVER_LIMITS,
    refuse: Refuse = plain_refusal,
    initial: bytes = b"",
) -> HttpServer:
    """The requests arriving on (reader, writer); the caller closes the writer afterwards."""
    loop = asyncio.get_running_loop()
    return HttpServer(
        reader.read,
        _sender(writer),
        _shutter(reader, writer),
        _linger(reader, writer),
        AsyncioTimer(loop),
        loop.time,
        GONE,
        limits,
        refuse,
        initial,
    )


def client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: ClientLimits = CLIENT_LIMITS
) -> HttpClient:
    """Exchanges on (reader, writer), one at a time."""
    loop = asyncio.get_running_loop()
    return HttpClient(
        reader.read, _sender(writer), _shutter(reader, writer), AsyncioTimer(loop), loop.time, GONE, limits
    )


def _sender(writer: asyncio.StreamWriter) -> Callable[[bytes], Awaitable[None]]:
    transport = writer.transport

    async def send(data: bytes) -> None:
        writer.write(data)
        if transport.get_write_buffer_size() > WRITE_BUFFER_BYTES:
            await writer.drain()

    return send


def _shutter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Shut:
    def shut(both: bool) -> None:
        if both:
            writer.transport.abort()
        elif isinstance(writer.transport, asyncio.ReadTransport):
            writer.transport.pause_reading()  # nothing more reaches the reader after its end of file
        reader.feed_eof()

    return shut


def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Callable[[float, int], Awaitable[None]]:
    async def linger(seconds: float, max_bytes: int) -> None:
        """Say we are done sending, then read and drop what still comes, within bounds."""
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        try:
            async with asyncio.timeout(seconds):
                while max_bytes > 0 and (data := await reader.read(65536)):
                    max_bytes -= len(data)
        except TimeoutError:
            pass

    return linger
