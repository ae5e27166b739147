"""Transcripts of the one HTTP core: bytes in -> events out, calls in -> bytes out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foobar_ref.wire.connection import ClientConnection, Phase, ServerConnection
from foobar_ref.wire.errors import LocalProtocolError, RemoteProtocolError
from foobar_ref.wire.events import (
    CLOSED,
    END,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Incoming,
    Request,
    Response,
)

GET = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
HOST = [(b"host", b"h")]


def drain(conn: ServerConnection | ClientConnection, data: bytes = b"") -> list[Incoming]:
    """Feed `data`, then every event up to the first NEED_DATA or PAUSED (included)."""
    if data:
        conn.receive_data(data)
    events: list[Incoming] = []
    for _ in range(1000):
        event = conn.next_event()
        events.append(event)
        if event is NEED_DATA or event is PAUSED or event is CLOSED:
            return events
    raise AssertionError("no NEED_DATA within 1000 events")


# --- server ---------------------------------------------------------------------------


def test_a_get_then_a_whole_response_in_one_buffer() -> None:
    server = ServerConnection()
    assert drain(server, GET) == [Request(b"GET", b"/a", HOST), END, NEED_DATA]
    out = server.respond(200, [(b"Content-Type", b"text/plain")], b"hello")
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    assert server.reusable
    server.start_next_cycle()
    server.receive_data(b"")
    assert drain(server) == [CLOSED]


def test_pipelined_requests_wait_until_the_cycle_ends() -> None:
    server = ServerConnection()
    post = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxy"
    assert drain(server, GET + post) == [Request(b"GET", b"/a", HOST), END, PAUSED]
    server.respond(204, [], b"")
    server.start_next_cycle()
    events = drain(server)
    assert events == [Request(b"POST", b"/b", [*HOST, (b"content-length", b"2")]), Data(b"xy"), END, NEED_DATA]


def test_a_body_arrives_as_the_pieces_fed_and_a_response_streams() -> None:
    server = ServerConnection()
    head = b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nab"
    assert drain(server, head)[1:] == [Data(b"ab"), NEED_DATA]
    assert drain(server, b"cd") == [Data(b"cd"), NEED_DATA]
    assert drain(server, b"efGET") == [Data(b"ef"), END, PAUSED]  # the next request's first bytes wait
    assert server.body_length == 6
    out = server.respond(200, [(b"X-A", b"1")]) + server.send_data(b"12") + server.send_data(b"") + server.end()
    assert out == b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n12\r\n0\r\n\r\n"


def test_connection_close_from_the_client_ends_keep_alive() -> None:
    server = ServerConnection()
    drain(server, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert server.respond(200, [], b"") == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert not server.reusable
    with pytest.raises(LocalProtocolError):
        server.start_next_cycle()


def test_close_after_this_says_so_in_the_response() -> None:
    server = ServerConnection()
    drain(server, GET)
    server.close_after_this()
    assert b"Connection: close\r\n" in server.respond(200, [], b"ok")
    assert not server.reusable


def test_http_1_0_goes_through_h11_and_is_answered_close_delimited() -> None:
    server = ServerConnection()
    assert drain(server, b"GET / HTTP/1.0\r\n\r\n") == [Request(b"GET", b"/", [], b"1.0"), END, NEED_DATA]
    out = server.respond(200, []) + server.send_data(b"stream") + server.end()
    assert out == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstream"
    assert not server.reusable


def test_a_chunked_request_goes_through_h11_and_comes_back() -> None:
    server = ServerConnection()
    chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    events = drain(server, chunked + GET)
    assert events[1:] == [Data(b"abc"), END, PAUSED]
    assert server.body_length is None
    server.respond(200, [], b"")
    server.start_next_cycle()
    assert drain(server) == [Request(b"GET", b"/a", HOST), END, NEED_DATA]


def test_a_head_request_gets_the_length_but_not_the_body() -> None:
    server = ServerConnection()
    drain(server, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert server.respond(200, [], b"hello") == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    assert server.reusable


def test_a_bad_header_of_ours_is_local_and_leaves_room_for_an_error_response() -> None:
    server = ServerConnection()
    drain(server, GET)
    with pytest.raises(LocalProtocolError):
        server.respond(200, [(b"X-A", b"a\r\nSet-Cookie: x")], b"")
    assert server.our_phase is Phase.IDLE
    out = server.refusal(502, [(b"Content-Type", b"text/plain")], b"no\n")
    assert out.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and out.endswith(b"Connection: close\r\n\r\nno\n")


def test_too_much_body_of_ours_is_local() -> None:
    server = ServerConnection()
    drain(server, GET)
    server.respond(200, [(b"Content-Length", b"1")])
    with pytest.raises(LocalProtocolError):
        server.send_data(b"ab")


def test_a_remote_error_stays_and_carries_its_status() -> None:
    server = ServerConnection()
    with pytest.raises(RemoteProtocolError) as caught:
        drain(server, b"GET / HTTP/1.1\r\n\r\n")  # no Host
    assert caught.value.status == 400
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    assert server.their_phase is Phase.ERROR and not server.keep_alive
    out = server.refusal(400, [], b"bad\n")
    assert out == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbad\n"


def test_eof_in_the_middle_of_a_body_is_a_400() -> None:
    server = ServerConnection()
    drain(server, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.status == 400


def test_a_head_cut_short_by_eof_is_a_quiet_close() -> None:
    server = ServerConnection()
    assert drain(server, b"GET / HTTP/1.1\r\nHo") == [NEED_DATA]
    server.receive_data(b"")
    assert server.next_event() == CLOSED


def test_the_head_guard_sees_bytes_before_any_parser() -> None:
    server = ServerConnection()
    assert drain(server, b"GET /" + b"a" * 5000) == [NEED_DATA]
    server.receive_data(b"a" * 5000)
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.status == 414


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(1, 200), min_size=1, max_size=20))
def test_a_body_moves_in_pieces_no_larger_than_fed(cuts: list[int]) -> None:
    body = bytes(range(256)) * 8
    server = ServerConnection(max_body_bytes=None)
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    got = bytearray()
    at = 0
    for step in range(len(data)):
        cut = cuts[step % len(cuts)]
        events = drain(server, data[at : at + cut])
        at += cut
        assert all(len(e.data) <= cut for e in events if isinstance(e, Data))
        got += b"".join(e.data for e in events if isinstance(e, Data))
        if END in events:
            break
    assert bytes(got) == body


def test_64_mib_through_the_core_holds_one_piece_at_a_time() -> None:
    piece = b"z" * 65536
    total = 64 * 1024 * 1024
    server = ServerConnection(max_body_bytes=None)
    server.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % total)
    assert isinstance(server.next_event(), Request)
    moved = 0
    while (event := server.next_event()) is NEED_DATA:
        server.receive_data(piece)
        data = server.next_event()
        assert isinstance(data, Data) and data.data is piece and server.buffered_bytes == 0
        moved += len(data.data)
    assert event == END and moved == total


def test_the_body_cap_applies_to_a_declared_length_and_to_chunks() -> None:
    server = ServerConnection(max_body_bytes=4)
    with pytest.raises(RemoteProtocolError) as caught:
        drain(server, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
    assert caught.value.status == 413
    server = ServerConnection(max_body_bytes=4)
    with pytest.raises(RemoteProtocolError) as caught:
        drain(server, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\n")
    assert caught.value.status == 413


# --- client ---------------------------------------------------------------------------


def test_a_client_exchange_and_reuse() -> None:
    client = ClientConnection()
    assert client.request(b"GET", b"/", [(b"Host", b"h")], b"") == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    events = drain(client, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert events == [Response(200, [(b"content-length", b"2")], b"OK"), Data(b"ok"), END, NEED_DATA]
    assert client.reusable
    client.start_next_cycle()
    out = client.request(b"POST", b"/m", [(b"Host", b"h")], b"")
    assert out == b"POST /m HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"


def test_a_client_streams_a_chunked_request() -> None:
    client = ClientConnection()
    head = client.request(b"PUT", b"/f", [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")])
    out = head + client.send_data(b"abc") + client.end()
    assert out == b"PUT /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


def test_a_response_to_head_has_no_body_whatever_it_says() -> None:
    client = ClientConnection()
    client.request(b"HEAD", b"/", [(b"Host", b"h")], b"")
    events = drain(client, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
    assert events[1:] == [END, NEED_DATA] and client.reusable


def test_informational_responses_are_skipped_and_close_delimited_bodies_read_through_h11() -> None:
    client = ClientConnection()
    client.request(b"GET", b"/", [(b"Host", b"h")], b"")
    events = drain(client, b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\nall of")
    assert events == [Response(200, [], b"OK"), Data(b"all of"), NEED_DATA]
    assert client.body_length is None
    assert drain(client, b" it") == [Data(b" it"), NEED_DATA]
    client.receive_data(b"")
    assert client.next_event() == EndOfMessage()
    assert not client.reusable


def test_a_response_cut_short_is_a_remote_error() -> None:
    client = ClientConnection()
    client.request(b"GET", b"/", [(b"Host", b"h")], b"")
    drain(client, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_a_client_refuses_a_tunnel() -> None:
    with pytest.raises(LocalProtocolError):
        ClientConnection().request(b"CONNECT", b"a:443", [(b"Host", b"a:443")], b"")
