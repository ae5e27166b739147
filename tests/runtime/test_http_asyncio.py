"""The asyncio drivers over real sockets on 127.0.0.1 (each test runs its own event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from foobar_ref.runtime import http_asyncio
from foobar_ref.runtime.http_server import HttpServer, Wait
from foobar_ref.wire.errors import NoResponse, ResponseTimeout, SendTimeout
from foobar_ref.wire.limits import ClientLimits, ServerLimits

HOST = [(b"Host", b"t")]
TEST_TIMEOUT_S = 20.0
MIB = 1024 * 1024
Handler = Callable[[HttpServer], Awaitable[None]]

DEFAULTS = ServerLimits()


def run(main: Callable[[], Coroutine[Any, Any, None]], timeout_s: float = TEST_TIMEOUT_S) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout_s):
            await main()

    asyncio.run(bounded())


@asynccontextmanager
async def serving(handler: Handler, limits: ServerLimits = DEFAULTS) -> AsyncIterator[tuple[str, int]]:
    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(http_asyncio.server(reader, writer, limits))
        except (ConnectionError, SendTimeout):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(one, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[:2]


async def echo(server: HttpServer) -> None:
    async for exchange in server:
        body = await exchange.read_body()
        await exchange.respond(200, [(b"X-Number", b"%d" % exchange.number)], body)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()


def test_keep_alive_exchanges_and_pipelining() -> None:
    async def main() -> None:
        async with serving(echo) as (ip, port):
            reader, writer = await asyncio.open_connection(ip, port)
            client = http_asyncio.client(reader, writer)
            for number in (1, 2, 3):
                response, body = await client.exchange(b"POST", b"/", HOST, b"n%d" % number)
                assert body == b"n%d" % number and response.header(b"x-number") == b"%d" % number
            writer.close()
            reader, writer = await asyncio.open_connection(ip, port)
            writer.write(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = await read_until_closed(reader)
            assert data.count(b"HTTP/1.1 200 OK") == 2 and b"X-Number: 2" in data
            writer.close()

    run(main)


def test_a_bad_request_is_refused_and_the_connection_ends() -> None:
    async def main() -> None:
        async with serving(echo) as (ip, port):
            reader, writer = await asyncio.open_connection(ip, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
            data = await read_until_closed(reader)
            assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in data
            writer.close()

    run(main)


def test_64_mib_each_way_streams_at_bounded_memory() -> None:
    total = 64 * MIB

    async def stream_back(server: HttpServer) -> None:
        async for exchange in server:
            received = 0
            while chunk := await exchange.receive_data():
                received += len(chunk)
            await exchange.respond(200, [(b"Content-Length", b"%d" % received)])
            piece = b"y" * 65536
            for _ in range(received // len(piece)):
                await exchange.send_data(piece)
            await exchange.end()

    async def main() -> None:
        async with serving(stream_back, ServerLimits(max_body_bytes=None, request_s=60)) as (ip, port):
            reader, writer = await asyncio.open_connection(ip, port)
            client = http_asyncio.client(reader, writer)
            await client.request(b"PUT", b"/big", [*HOST, (b"Content-Length", b"%d" % total)])
            piece = b"x" * 65536
            for _ in range(total // len(piece)):
                await client.send_data(piece)
            await client.end()
            response = await client.response()
            got = 0
            while chunk := await client.receive_data():
                got += len(chunk)
            assert response.header(b"content-length") == b"%d" % total and got == total
            writer.close()

    tracemalloc.start()
    try:
        run(main, timeout_s=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, f"peak traced memory {peak} bytes"


def test_idle_closes_silently_and_a_late_request_is_408() -> None:
    servers: list[HttpServer] = []

    async def keep(server: HttpServer) -> None:
        servers.append(server)
        await echo(server)

    async def main() -> None:
        async with serving(keep, ServerLimits(idle_s=0.3, request_s=0.3)) as (ip, port):
            reader, writer = await asyncio.open_connection(ip, port)
            client = http_asyncio.client(reader, writer)
            await client.exchange(b"GET", b"/", HOST)
            assert await read_until_closed(reader) == b""
            writer.close()
            reader, writer = await asyncio.open_connection(ip, port)
            writer.write(b"GET / HTTP/1.1\r\n")
            data = await read_until_closed(reader)
            assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            writer.close()

    run(main)
    assert [server.expired for server in servers] == [Wait.IDLE, Wait.REQUEST]


def test_a_client_that_does_not_read_times_the_server_out() -> None:
    outcome: list[BaseException] = []

    async def flood(server: HttpServer) -> None:
        async for exchange in server:
            await exchange.respond(200, [])
            try:
                for _ in range(10_000):
                    await exchange.send_data(b"z" * 65536)
            except SendTimeout as err:
                outcome.append(err)
                return

    async def main() -> None:
        async with serving(flood, ServerLimits(send_s=0.5)) as (ip, port):
            reader, writer = await asyncio.open_connection(ip, port, limit=65536)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(2.0)
            writer.close()

    run(main)
    assert outcome and isinstance(outcome[0], SendTimeout)


def test_the_client_tells_no_response_from_a_timeout() -> None:
    async def main() -> None:
        async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            writer.close()

        async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        for handler, failure in [(close_at_once, NoResponse), (never, ResponseTimeout)]:
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            async with server:
                ip, port = server.sockets[0].getsockname()[:2]
                reader, writer = await asyncio.open_connection(ip, port)
                client = http_asyncio.client(reader, writer, ClientLimits(head_s=0.3))
                with pytest.raises(failure) as caught:
                    await client.exchange(b"GET", b"/", HOST)
                assert caught.value.nothing_received  # type: ignore[attr-defined]
                writer.close()

    run(main)


def _trickle(address: tuple[str, int]) -> bytes:
    """A request head one byte per 0.1 s, on until the server answers and closes; what came back."""
    with socket.create_connection(address, TEST_TIMEOUT_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        sock.settimeout(0.1)
        data = b""
        for _ in range(50):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")
                continue
            except ConnectionError:
                break
            if not chunk:
                break
            data += chunk
        return data


def test_a_client_still_trickling_after_the_deadline_gets_its_408_and_the_loop_stays_clean() -> None:
    loop_errors: list[dict[str, object]] = []
    answers: list[bytes] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
        async with serving(echo, ServerLimits(request_s=0.3)) as address:
            answers.append(await asyncio.to_thread(_trickle, address))

    run(main)
    assert answers[0].startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert not loop_errors
