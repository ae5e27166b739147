"""What a keep-alive request costs the drivers, counted: reads, sends and timer work per request.

These are the numbers the balancer's CPU budget rests on (issue 8): one read and
one send per small request on each side, no timer work per request.
"""

from __future__ import annotations

import trio

from foobar_ref.runtime import deadlines, http_trio
from foobar_ref.runtime.http_server import HttpServer

REQUESTS = 200
TEST_TIMEOUT_S = 30.0


class Counting(trio.abc.Stream):
    """A stream that counts the calls reaching the one below it (reachable as `transport_stream`)."""

    def __init__(self, transport_stream: trio.SocketStream) -> None:
        self.transport_stream = transport_stream
        self.receives = 0
        self.sends = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self.receives += 1
        return await self.transport_stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends += 1
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


async def test_a_keep_alive_request_costs_one_read_and_one_send_each_side(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    schedules = [0]
    schedule = deadlines.TrioTimer.schedule

    def counted(self: deadlines.TrioTimer, item: deadlines.Deadlined, when: float) -> None:
        schedules[0] += 1
        schedule(self, item, when)

    monkeypatch.setattr(deadlines.TrioTimer, "schedule", counted)
    server_side: list[Counting] = []

    async def answer(server: HttpServer) -> None:
        async for exchange in server:
            await exchange.respond(200, [(b"Content-Type", b"text/plain")], b"hello")

    async def counted_server(stream: trio.SocketStream) -> None:
        counting = Counting(stream)
        server_side.append(counting)
        await answer(http_trio.server(counting))

    with trio.fail_after(TEST_TIMEOUT_S):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, counted_server, listeners)
            stream = Counting(await trio.open_tcp_stream(*listeners[0].socket.getsockname()[:2]))
            client = http_trio.client(stream)
            for _ in range(REQUESTS):
                response, body = await client.exchange(b"GET", b"/", [(b"Host", b"t")])
                assert body == b"hello"
            nursery.cancel_scope.cancel()
    server = server_side[0]
    assert (stream.sends, stream.receives) == (REQUESTS, REQUESTS)
    assert server.sends == REQUESTS and server.receives <= REQUESTS + 1
    assert schedules[0] <= 4, f"{schedules[0]} timer schedules for {REQUESTS} requests"
