"""Client writer -> bytes cut anywhere -> server reader, and back: what was sent is what is read, in order.

Requests and responses are drawn with Content-Length or chunked bodies (so both
lanes carry them), then pipelined on one connection and cut into random pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foobar_ref.wire.connection import ClientConnection, ServerConnection
from foobar_ref.wire.events import NEED_DATA, PAUSED, Data, EndOfMessage, Request, Response

MAX_STEPS = 10_000


@dataclass(frozen=True)
class Message:
    method: bytes
    target: bytes
    body: bytes
    chunked: bool
    pieces: int  # how many send_data calls the body takes


messages = st.builds(
    Message,
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]),
    target=st.sampled_from([b"/", b"/a/b?c=d", b"/%20x"]),
    body=st.binary(max_size=300),
    chunked=st.booleans(),
    pieces=st.integers(1, 4),
)


def _write(conn: ClientConnection | ServerConnection, message: Message) -> bytes:
    framing = (b"Transfer-Encoding", b"chunked") if message.chunked else (b"Content-Length", b"%d" % len(message.body))
    headers = [(b"Host", b"h"), framing]
    out = conn.request(message.method, message.target, headers) if isinstance(conn, ClientConnection) else b""
    if isinstance(conn, ServerConnection):
        out = conn.respond(200, [framing])
    step = max(1, len(message.body) // message.pieces)
    for at in range(0, len(message.body), step):
        out += conn.send_data(message.body[at : at + step])
    return out + conn.end()


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    pieces, at = [], 0
    for size in cuts * (len(data) // max(1, sum(cuts)) + 1):
        if at >= len(data):
            break
        pieces.append(data[at : at + size])
        at += size
    return pieces + ([data[at:]] if at < len(data) else [])


def _read_all(conn: ServerConnection | ClientConnection, pieces: list[bytes], count: int) -> list[tuple[object, bytes]]:
    """Read `count` messages, answering each request (server) before the next is read."""
    got: list[tuple[object, bytes]] = []
    body = bytearray()
    for _ in range(MAX_STEPS):
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(pieces.pop(0) if pieces else b"")
        elif isinstance(event, Request | Response):
            head: object = event
        elif isinstance(event, Data):
            body += event.data
        elif isinstance(event, EndOfMessage):
            got.append((head, bytes(body)))
            body.clear()
            if len(got) == count:
                return got
            if isinstance(conn, ServerConnection):
                conn.respond(204, [], b"")
            conn.start_next_cycle()
        else:
            assert event is PAUSED, event
            conn.respond(204, [], b"")  # type: ignore[union-attr]
            conn.start_next_cycle()
    raise AssertionError("did not read every message")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(messages, min_size=1, max_size=5), cuts=st.lists(st.integers(1, 97), min_size=1, max_size=8))
def test_pipelined_requests_cut_anywhere_arrive_whole_and_in_order(sent: list[Message], cuts: list[int]) -> None:
    client = ClientConnection()
    wire = b""
    for message in sent:
        wire += _write(client, message)
        client.receive_data(b"HTTP/1.1 204 No Content\r\n\r\n")
        while not isinstance(client.next_event(), EndOfMessage):
            pass
        client.start_next_cycle()
    got = _read_all(ServerConnection(max_body_bytes=None), _cut(wire, cuts), len(sent))
    assert [(head.method, head.target, body) for head, body in got] == [  # type: ignore[attr-defined]
        (m.method, m.target, m.body) for m in sent
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=messages, cuts=st.lists(st.integers(1, 97), min_size=1, max_size=8))
def test_a_response_cut_anywhere_arrives_whole(sent: Message, cuts: list[int]) -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert isinstance(server.next_event(), Request) and isinstance(server.next_event(), EndOfMessage)
    wire = _write(server, sent)
    client = ClientConnection()
    client.request(b"GET", b"/", [(b"Host", b"h")], b"")
    got = _read_all(client, _cut(wire, cuts), 1)
    assert got[0][1] == sent.body and client.reusable
