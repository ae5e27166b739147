"""The trio drivers over real sockets on 127.0.0.1: keep-alive, pipelining, streaming, back-pressure, timeouts."""

from __future__ import annotations

import math
import tracemalloc

import pytest
import trio
import trio.testing

from foobar_ref.runtime import http_trio
from foobar_ref.runtime.http_server import HttpServer, Wait
from foobar_ref.wire.errors import BadResponse, NoResponse, ProtocolError, ResponseTimeout, SendTimeout
from foobar_ref.wire.limits import ClientLimits, ServerLimits
from tests.runtime.trio_util import echo, read_until_closed, serving

HOST = [(b"Host", b"t")]
TEST_TIMEOUT_S = 20.0
MIB = 1024 * 1024


async def test_keep_alive_exchanges_share_one_connection() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            client = http_trio.client(stream)
            for number in (1, 2, 3):
                response, body = await client.exchange(b"POST", b"/", HOST, b"n%d" % number)
                assert response.status_code == 200 and body == b"n%d" % number
                assert response.header(b"x-number") == b"%d" % number
                assert client.reusable
            await stream.aclose()


async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            one = b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\none"
            two = b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo"
            await stream.send_all(one + two)
            data = await read_until_closed(stream)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b"one") < data.index(b"two") and data.endswith(b"two")
    assert b"X-Number: 2" in data and b"Connection: close" in data


async def test_connection_close_ends_the_connection_after_the_answer() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.count(b"HTTP/1.1") == 1


async def test_the_last_allowed_request_is_told_the_connection_closes() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo, ServerLimits(max_requests=2)) as (ip, port):
            client = http_trio.client(await trio.open_tcp_stream(ip, port))
            first, _ = await client.exchange(b"GET", b"/", HOST)
            second, _ = await client.exchange(b"GET", b"/", HOST)
    assert first.header(b"connection") is None
    assert second.header(b"connection") == b"close" and not client.reusable


async def test_a_bad_request_is_refused_with_the_hops_answer() -> None:
    seen: list[ProtocolError] = []

    def refuse(err: ProtocolError) -> tuple[list[tuple[bytes, bytes]], bytes]:
        seen.append(err)
        return [(b"Content-Type", b"application/json")], b'{"status": %d}' % err.status

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo, refuse=refuse) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n")
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and data.endswith(b'{"status": 405}')
    assert b"Connection: close" in data and [err.status for err in seen] == [405]


async def test_a_handler_that_does_not_answer_gets_a_500() -> None:
    async def silent(server: HttpServer) -> None:
        async for _ in server:
            pass

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(silent) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


async def test_an_unread_small_body_is_dropped_and_the_connection_kept() -> None:
    async def ignore_body(server: HttpServer) -> None:
        async for exchange in server:
            await exchange.respond(200, [], b"ok")

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(ignore_body, ServerLimits(discard_bytes=1000)) as (ip, port):
            client = http_trio.client(await trio.open_tcp_stream(ip, port))
            for _ in range(2):
                response, body = await client.exchange(b"POST", b"/", HOST, b"x" * 500)
                assert body == b"ok" and response.header(b"connection") is None and client.reusable
            response, body = await client.exchange(b"POST", b"/", HOST, b"x" * 5000)
    assert body == b"ok" and response.header(b"connection") == b"close" and not client.reusable


# --- streaming ------------------------------------------------------------------------


async def test_64_mib_each_way_streams_at_bounded_memory() -> None:
    total = 64 * MIB

    async def stream_back(server: HttpServer) -> None:
        async for exchange in server:
            received = 0
            while chunk := await exchange.receive_data():
                assert len(chunk) <= 64 * 1024
                received += len(chunk)
            await exchange.respond(200, [(b"X-Received", b"%d" % received)])
            piece = b"y" * 65536
            for _ in range(total // len(piece)):
                await exchange.send_data(piece)
            await exchange.end()

    limits = ServerLimits(max_body_bytes=None, request_s=60.0)
    tracemalloc.start()
    try:
        with trio.fail_after(120):
            async with serving(stream_back, limits) as (ip, port):
                client = http_trio.client(await trio.open_tcp_stream(ip, port))
                await client.request(b"PUT", b"/big", [*HOST, (b"Content-Length", b"%d" % total)])
                piece = b"x" * 65536
                for _ in range(total // len(piece)):
                    await client.send_data(piece)
                await client.end()
                response = await client.response()
                got = 0
                while chunk := await client.receive_data():
                    got += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.header(b"x-received") == b"%d" % total and got == total
    assert response.header(b"transfer-encoding") == b"chunked"
    assert peak < 8 * MIB, f"peak traced memory {peak} bytes"


async def test_a_client_that_does_not_read_holds_the_server_back_then_times_out() -> None:
    sent = [0]
    outcome: list[BaseException] = []

    async def flood(server: HttpServer) -> None:
        async for exchange in server:
            await exchange.respond(200, [])
            try:
                for _ in range(10_000):
                    await exchange.send_data(b"z" * 65536)
                    sent[0] += 65536
            except SendTimeout as err:
                outcome.append(err)
                return

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(flood, ServerLimits(send_s=1.0)) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await trio.sleep(0.5)
            held = sent[0]
            await trio.sleep(2.0)
            await stream.aclose()
    assert held < 32 * MIB, f"{held} bytes sent to a client that reads nothing"
    assert outcome and isinstance(outcome[0], SendTimeout)


# --- timeouts ---------------------------------------------------------------------------


async def test_keep_alive_idle_closes_silently() -> None:
    servers: list[HttpServer] = []

    async def keep(server: HttpServer) -> None:
        servers.append(server)
        await echo(server)

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(keep, ServerLimits(idle_s=0.3)) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            client = http_trio.client(stream)
            await client.exchange(b"GET", b"/", HOST)
            started = trio.current_time()
            rest = await read_until_closed(stream)
            waited = trio.current_time() - started
    assert rest == b"" and 0.25 < waited < 2.0
    assert servers[0].expired is Wait.IDLE and servers[0].refused is None


async def test_a_request_started_but_not_finished_is_408() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo, ServerLimits(request_s=0.3, idle_s=5)) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHo")
            started = trio.current_time()
            data = await read_until_closed(stream)
            waited = trio.current_time() - started
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and 0.25 < waited < 2.0


async def test_a_body_that_stops_coming_is_408_and_the_handler_hears_of_it() -> None:
    heard: list[int] = []

    async def reader(server: HttpServer) -> None:
        async for exchange in server:
            try:
                await exchange.read_body()
            except ProtocolError as err:
                heard.append(err.status)
                raise

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(reader, ServerLimits(request_s=0.3)) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 408 ") and heard == [408]


async def test_a_slow_handler_is_not_a_slow_client() -> None:
    async def slow(server: HttpServer) -> None:
        async for exchange in server:
            await trio.sleep(0.6)
            await exchange.respond(200, [], await exchange.read_body())

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(slow, ServerLimits(request_s=0.2, idle_s=0.2)) as (ip, port):
            client = http_trio.client(await trio.open_tcp_stream(ip, port))
            response, body = await client.exchange(b"POST", b"/", HOST, b"abc")
    assert response.status_code == 200 and body == b"abc"


# --- the client's failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (b"", NoResponse),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", BadResponse),
        (b"HTTP/1.1 200 OK\r\nContent-", BadResponse),
        (b"NOT HTTP\r\n\r\n", BadResponse),
    ],
    ids=["closed-at-once", "cut-short", "head-cut-short", "garbage"],
)
async def test_the_client_tells_nothing_received_from_a_partial_answer(answer: bytes, failure: type[Exception]) -> None:
    received = len(answer)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def answer_once() -> None:
        stream = await listener.accept()
        await stream.receive_some(65536)
        if answer:
            await stream.send_all(answer)
        await stream.aclose()

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_once)
            client = http_trio.client(await trio.open_tcp_stream("127.0.0.1", port))
            with pytest.raises(failure) as caught:
                await client.exchange(b"GET", b"/", HOST)
    await listener.aclose()
    assert caught.value.received_bytes == received  # type: ignore[attr-defined]
    assert caught.value.nothing_received == (received == 0)  # type: ignore[attr-defined]
    assert client.broken and not client.reusable


async def test_a_server_that_never_answers_is_a_response_timeout() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            accepted: list[trio.SocketStream] = []

            async def accept() -> None:
                accepted.append(await listener.accept())

            nursery.start_soon(accept)
            client = http_trio.client(await trio.open_tcp_stream("127.0.0.1", port), ClientLimits(head_s=0.3))
            started = trio.current_time()
            with pytest.raises(ResponseTimeout) as caught:
                await client.exchange(b"GET", b"/", HOST)
            assert 0.25 < trio.current_time() - started < 2.0
    assert caught.value.nothing_received
    await listener.aclose()


# --- other streams ------------------------------------------------------------------------


async def test_memory_streams_carry_exchanges_and_time_out() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        near, far = trio.testing.memory_stream_pair()
        server = http_trio.server(far, ServerLimits(idle_s=0.2))

        async def serve_then_close() -> None:
            await echo(server)
            await far.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_then_close)
            client = http_trio.client(near)
            response, body = await client.exchange(b"POST", b"/", HOST, b"hi")
            assert body == b"hi"
            assert await read_until_closed(near) == b""  # idle: the server's loop ended
        assert server.expired is Wait.IDLE


async def test_a_stream_that_cannot_be_shut_still_times_out() -> None:
    """Lockstep streams have no socket to shut: each read runs under a cancel scope instead."""
    with trio.fail_after(TEST_TIMEOUT_S):
        near, far = trio.testing.lockstep_stream_pair()
        server = http_trio.server(far, ServerLimits(idle_s=0.2))
        assert server.deadline == math.inf
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo, server)
            client = http_trio.client(near)
            response, _ = await client.exchange(b"GET", b"/", HOST)
            assert response.status_code == 200
        assert server.expired is Wait.IDLE


# --- what hops need beyond the basics -------------------------------------------------------


async def test_100_continue_is_sent_when_the_handler_waits_for_the_body() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(
                b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
            )
            interim = await stream.receive_some(65536)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            await stream.send_all(b"body")
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"body")


async def test_a_refusal_before_the_body_spares_the_upload_and_no_100_is_sent() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(echo, ServerLimits(max_body_bytes=10)) as (ip, port):
            stream = await trio.open_tcp_stream(ip, port)
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 413 Content Too Large\r\n") and b"100 Continue" not in data


async def test_bytes_read_before_http_are_given_to_the_server_and_counted() -> None:
    counted: list[tuple[int, int]] = []

    async def count(server: HttpServer) -> None:
        async for exchange in server:
            body = await exchange.read_body()
            await exchange.respond(200, [], body)
            counted.append((exchange.bytes_in, exchange.bytes_out))

    with trio.fail_after(TEST_TIMEOUT_S):
        near, far = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(count, http_trio.server(far, initial=b"POST / HTTP/1.1\r\nHost: t\r\nCont"))
            await near.send_all(b"ent-Length: 3\r\n\r\nabc")
            response = await near.receive_some(65536)
            await near.aclose()  # the server's loop ends at the end of file
    assert response.endswith(b"\r\n\r\nabc") and counted == [(3, len(response))]


async def test_a_streamed_answer_to_head_sends_the_head_only() -> None:
    async def stream_file(server: HttpServer) -> None:
        async for exchange in server:
            await exchange.respond(200, [(b"Content-Length", b"6")])
            await exchange.send_data(b"abc")
            await exchange.send_data(b"def")
            await exchange.end()

    with trio.fail_after(TEST_TIMEOUT_S):
        async with serving(stream_file) as (ip, port):
            client = http_trio.client(await trio.open_tcp_stream(ip, port))
            head, body = await client.exchange(b"HEAD", b"/", HOST)
            assert (head.header(b"content-length"), body, client.reusable) == (b"6", b"", True)
            _, body = await client.exchange(b"GET", b"/", HOST)
    assert body == b"abcdef"
