"""h11 reading one incoming message the fast lane did not take, with its events turned into ours.

Theory of operation
-------------------
The connection hands a message to h11 when the fast lane answers None: an
HTTP/1.0 or chunked message, bare-LF line ends, obs-text or odd whitespace
that needs h11's full grammar, a response framed by close, and every message
that is malformed (h11 gives the refusal and its status hint).  An `H11Lane`
lives for one incoming message: it starts from the bytes the connection holds
(the start of the head), reads until the message's EndOfMessage, and gives the
bytes after it back (`rest`), so the next message starts in the fast lane
again.

A server lane is a fresh `h11.Connection(SERVER)`: a request is the first
thing it reads.  A client lane must know what the response answers (HEAD has
no body), so it is first shown a stand-in request with the real method
(`_prime`); the bytes h11 writes for it are dropped.  We never write through
h11 (`wire.writer` does, byte for byte the same), so h11's own side of the
cycle never matters.

h11 keeps one number we need private: how many bytes of the current chunk are
still due (`ChunkedReader._bytes_in_chunk`).  Without it a chunk size of 20
hex digits would only meet the body cap after a megabyte arrived (row H-14c);
h11 has no supported way to read it, so `promised_chunk_bytes` reads it
defensively and `tests/wire/test_h11_lane.py` fails loudly if h11 moves it.
"""

from __future__ import annotations

import h11

from foobar_ref.wire.errors import RemoteProtocolError
from foobar_ref.wire.events import (
    CLOSED,
    END,
    NEED_DATA,
    Data,
    EndOfMessage,
    Incoming,
    Request,
    Response,
)
from foobar_ref.wire.head_checks import MAX_HEAD_BYTES


class H11Lane:
    """h11 reading one request (server) or one response (client)."""

    __slots__ = ("conn", "method", "chunked", "body_length", "keep_alive", "version")

    def __init__(self, conn: h11.Connection, data: bytes, eof: bool, method: bytes | None = None) -> None:
        self.conn = conn
        self.method = method  # what the response answers (client lanes)
        self.chunked = False  # the body is chunked (the chunk-size promise counts against the cap)
        self.body_length: int | None = None  # body bytes due; None: chunked, or until close
        self.keep_alive = True
        self.version = b"1.1"
        if data:
            conn.receive_data(data)
        if eof:
            conn.receive_data(b"")

    @classmethod
    def for_request(cls, data: bytes, eof: bool) -> H11Lane:
        return cls(h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES), data, eof)

    @classmethod
    def for_response(cls, method: bytes, keep_alive: bool, data: bytes, eof: bool) -> H11Lane:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        _prime(conn, method, keep_alive)
        return cls(conn, data, eof, method)

    def receive_data(self, data: bytes) -> None:
        self.conn.receive_data(data)

    def rest(self) -> bytes:
        """The bytes after the message (the next message's start), once it ended."""
        return self.conn.trailing_data[0]

    def next_event(self) -> Incoming:
        """Our event for h11's next one; RemoteProtocolError with h11's status hint."""
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as err:
                raise RemoteProtocolError(err.error_status_hint, str(err)) from None
            kind = type(event)
            if kind is h11.Data:
                return Data(bytes(event.data))  # type: ignore[union-attr]
            if kind is h11.EndOfMessage:
                trailers = event.headers  # type: ignore[union-attr]
                return EndOfMessage(list(trailers)) if trailers else END
            if kind is h11.Request or kind is h11.Response:
                return self._head(event)  # type: ignore[arg-type]
            if kind is h11.ConnectionClosed:
                return CLOSED
            if event is h11.NEED_DATA:
                return NEED_DATA
            if event is h11.PAUSED:
                raise RemoteProtocolError(400, "the connection is switching protocols")
            # an InformationalResponse (1xx): a client reads on to the final response

    def _head(self, event: h11.Request | h11.Response) -> Request | Response:
        headers = list(event.headers)
        self.version = event.http_version
        tokens = [t.strip() for name, value in headers if name == b"connection" for t in value.lower().split(b",")]
        self.keep_alive = self.version >= b"1.1" and b"close" not in tokens  # h11's _keep_alive
        self.chunked = any(name == b"transfer-encoding" for name, _ in headers)
        length = next((int(value) for name, value in headers if name == b"content-length"), None)
        if isinstance(event, h11.Request):
            self.body_length = None if self.chunked else (length or 0)
            return Request(event.method, event.target, headers, event.http_version)
        no_body = self.method == b"HEAD" or event.status_code in (204, 304)
        self.body_length = 0 if no_body else (None if self.chunked else length)
        if self.body_length is None and not self.chunked:
            self.keep_alive = False  # the body ends when the server closes
        return Response(event.status_code, headers, event.reason, event.http_version)

    def promised_chunk_bytes(self) -> int:
        """Bytes still due in the chunk h11 is reading: 0 outside a chunked body."""
        count = getattr(getattr(self.conn, "_reader", None), "_bytes_in_chunk", 0)
        return count if isinstance(count, int) else 0


def _prime(conn: h11.Connection, method: bytes, keep_alive: bool) -> None:
    """Make a client connection expect the response to a `method` request (its bytes are dropped)."""
    headers = [(b"host", b"lane")] + ([] if keep_alive else [(b"connection", b"close")])
    conn.send(h11.Request(method=method, target=b"/", headers=headers))
    conn.send(h11.EndOfMessage())
