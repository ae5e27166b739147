"""HTTP/1.1 messages over h11, shared by the trio hops and the asyncio store.

Theory of operation
-------------------
h11 is a sans-IO state machine: bytes in, events out.  This module adds the
one loop every hop needs on top of it, `read_message`, which takes an async
`receive(max_bytes) -> bytes` callable so the same code drives a trio stream,
an asyncio reader or a test's list of chunks.  It returns one whole message
(head + body) or raises `HttpError` carrying the status to answer with:

- h11's own protocol errors keep h11's status hint (400, 431, 501 ...);
- a body larger than `max_body_bytes` is refused with 413 before it is read
  (a declared Content-Length, or the size of the chunk being read, is checked
  up front);
- the checks h11 leaves to us (reliability-matrix [P1], [P2]) live in
  `head_checks`: head size limits on the raw bytes of a request (414, 431),
  obs-fold, versions other than 1.x (505), CONNECT/TRACE (405), targets that
  are not origin-form, ambiguous framing.

Callers bound the whole read with their loop's timeout (trio.fail_after or
asyncio.wait_for) and answer 408 when it fires.

The trace context helpers live in `trace_context` (re-exported here).  The one
HTTP core that replaces this module is `wire.connection`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import h11

from foobar_ref.wire.errors import HttpError
from foobar_ref.wire.head_checks import (
    MAX_HEAD_BYTES,
    RequestHeadGuard,
    check_request_head,
    check_response_head,
)
from foobar_ref.wire.trace_context import new_trace_id, trace_id_of, traceparent

__all__ = ["HttpError", "MAX_HEAD_BYTES", "new_trace_id", "trace_id_of", "traceparent"]

MAX_BODY_BYTES = 1024 * 1024
RECEIVE_CHUNK = 64 * 1024

Receive = Callable[[int], Awaitable[bytes]]
Headers = list[tuple[bytes, bytes]]

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


@dataclass
class Message:
    """One whole request or response: the h11 head event and the body bytes."""

    head: h11.Request | h11.Response
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        name = name.lower()
        return next((v for k, v in self.head.headers if k == name), None)

    @property
    def headers(self) -> Headers:
        return [(bytes(k), bytes(v)) for k, v in self.head.headers]


def new_connection(role: type[h11.CLIENT] | type[h11.SERVER]) -> h11.Connection:
    return h11.Connection(role, max_incomplete_event_size=MAX_HEAD_BYTES)


async def read_message(conn: h11.Connection, receive: Receive, max_body_bytes: int = MAX_BODY_BYTES) -> Message | None:
    """Read one whole message; None when the peer closed cleanly between messages."""
    reading = _Reading(conn, max_body_bytes)
    while True:
        reading.check_chunk()
        event = _next_event(conn)
        if event is h11.NEED_DATA:
            # we never send 100-continue: a client waiting for it sends the body after a short wait
            data = await receive(RECEIVE_CHUNK)
            reading.received(data)
            conn.receive_data(data)
            if not data and reading.head is None and conn.their_state in (h11.IDLE, h11.DONE):
                return None
            continue
        if isinstance(event, h11.ConnectionClosed) and reading.head is None:
            return None
        message = reading.take(event)
        if message is not None:
            return message


def _next_event(conn: h11.Connection) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as err:
        raise HttpError(err.error_status_hint, str(err)) from None
    if event is h11.PAUSED:
        raise HttpError(400, "the connection is switching protocols")
    return event


class _Reading:
    """One message being assembled from h11 events, with the checks h11 leaves to us."""

    def __init__(self, conn: h11.Connection, max_body_bytes: int) -> None:
        self.conn = conn
        self.max_body_bytes = max_body_bytes
        self.head: h11.Request | h11.Response | None = None
        self.body = bytearray()
        self.guard = RequestHeadGuard() if conn.our_role is h11.SERVER else None
        self.received(conn.trailing_data[0])  # a pipelined request's first bytes, already buffered

    def received(self, data: bytes) -> None:
        """Raw bytes about to go to h11: a request head's limits apply before h11 parses it."""
        if self.guard is not None and self.head is None:
            self.guard.feed(data)

    def check_chunk(self) -> None:
        """A chunk size h11 has read counts against the body limit before its bytes arrive."""
        if self.head is not None and len(self.body) + _promised_chunk_bytes(self.conn) > self.max_body_bytes:
            raise HttpError(413, f"chunked body larger than {self.max_body_bytes} bytes")

    def take(self, event: object) -> Message | None:
        if isinstance(event, h11.Request):
            check_request_head(event, self.max_body_bytes)
            self.head = event
        elif isinstance(event, h11.Response):
            check_response_head(event, self.max_body_bytes)
            self.head = event
        elif isinstance(event, h11.Data):
            self.body += event.data
            if len(self.body) > self.max_body_bytes:
                raise HttpError(413, f"body larger than {self.max_body_bytes} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert self.head is not None
            return Message(self.head, bytes(self.body))
        elif isinstance(event, h11.ConnectionClosed) and self.head is not None:
            raise HttpError(400, "connection closed in the middle of a message")
        return None  # InformationalResponse


def _promised_chunk_bytes(conn: h11.Connection) -> int:
    """Bytes still due in the chunk h11 is reading: 0 outside a chunked body.

    h11 keeps this count private (ChunkedReader._bytes_in_chunk); a chunk size of
    20 hex digits is legal to it, so without a look the body cap would only
    bite after a megabyte arrived.  tests/wire pins this (row H-14c).
    """
    count = getattr(getattr(conn, "_reader", None), "_bytes_in_chunk", 0)
    return count if isinstance(count, int) else 0


def response_bytes(
    conn: h11.Connection, status: int, headers: Iterable[tuple[str | bytes, str | bytes]], body: bytes = b""
) -> bytes:
    """Serialise a whole response through h11 (which rejects CR/LF in header values)."""
    all_headers = [(_b(k), _b(v)) for k, v in headers]
    if b"content-length" not in {k.lower() for k, _ in all_headers}:
        all_headers.append((b"Content-Length", str(len(body)).encode()))
    out = conn.send(h11.Response(status_code=status, headers=all_headers, reason=_REASONS.get(status, "")))
    if body:
        out += conn.send(h11.Data(data=body))
    out += conn.send(h11.EndOfMessage())
    return out


def request_bytes(
    conn: h11.Connection,
    method: str,
    target: str,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    body: bytes = b"",
) -> bytes:
    all_headers = [(_b(k), _b(v)) for k, v in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        all_headers.append((b"Content-Length", str(len(body)).encode()))
    out = conn.send(h11.Request(method=method, target=target, headers=all_headers))
    if body:
        out += conn.send(h11.Data(data=body))
    out += conn.send(h11.EndOfMessage())
    return out


def _b(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def error_response(conn: h11.Connection, status: int, message: str) -> bytes:
    """A short plain-text error; the connection is closed after it."""
    body = f"{status} {_REASONS.get(status, '')}: {message}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
    try:
        return response_bytes(conn, status, headers, body)
    except h11.LocalProtocolError:
        # h11 cannot send in its state (e.g. the request head never parsed): serialise by hand
        head = f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        return (head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def json_body(payload: object) -> tuple[list[tuple[str, str]], bytes]:
    return [("Content-Type", "application/json")], json.dumps(payload).encode()
