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
  (a declared Content-Length is checked up front);
- checks h11 leaves to us (see reliability-matrix [P2]): Transfer-Encoding and
  Content-Length together, an HTTP version other than 1.x, a request target
  that is not origin-form.

Callers bound the whole read with their loop's timeout (trio.fail_after or
asyncio.wait_for) and answer 408 when it fires.

`traceparent` (W3C Trace Context) ties one request's events together across
hops; the trace id doubles as the request id a learner sees on the page.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import h11

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
RECEIVE_CHUNK = 64 * 1024

Receive = Callable[[int], Awaitable[bytes]]
Headers = list[tuple[bytes, bytes]]

_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
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


class HttpError(Exception):
    """A message we must refuse; `status` is what to answer (h11's hint style)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
    head: h11.Request | h11.Response | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as err:
            raise HttpError(err.error_status_hint, str(err)) from None
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                pass  # we never send 100-continue: the client sends the body after a short wait
            data = await receive(RECEIVE_CHUNK)
            conn.receive_data(data)
            if not data and head is None and conn.their_state in (h11.IDLE, h11.DONE):
                return None
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Request | h11.Response):
            head = event
            _check_head(event, max_body_bytes)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body_bytes:
                raise HttpError(413, f"body larger than {max_body_bytes} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return Message(head, bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            if head is None:
                return None
            raise HttpError(400, "connection closed in the middle of a message")


def _check_head(head: h11.Request | h11.Response, max_body_bytes: int) -> None:
    names = [k for k, _ in head.headers]
    if b"transfer-encoding" in names and b"content-length" in names:
        raise HttpError(400, "both Transfer-Encoding and Content-Length (request smuggling guard)")
    if head.http_version not in (b"1.1", b"1.0"):
        raise HttpError(505, f"HTTP/{head.http_version.decode()} is not supported")
    if head.http_version == b"1.0" and b"transfer-encoding" in names:
        raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 message")
    if isinstance(head, h11.Request) and not head.target.startswith(b"/"):
        raise HttpError(400, "request target must be origin-form (/path)")
    length = next((v for k, v in head.headers if k == b"content-length"), None)
    if length is not None and int(length) > max_body_bytes:
        raise HttpError(413, f"declared body of {int(length)} bytes, limit {max_body_bytes}")


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


# --- trace context --------------------------------------------------------


def new_trace_id() -> str:
    return secrets.token_hex(16)


def traceparent(trace_id: str) -> bytes:
    """A traceparent for the next hop: same trace, a fresh span id."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01".encode()


def trace_id_of(value: bytes | None) -> str | None:
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip())
    return match.group(1).decode() if match else None
