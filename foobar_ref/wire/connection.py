"""One HTTP/1.1 connection, sans-IO: bytes in, events out; calls in, bytes out.

Theory of operation
-------------------
A connection is a sequence of cycles, one request and its response each.  Both
sides of a cycle move IDLE -> BODY -> DONE (ERROR once broken; their side is
CLOSED when the peer closed between messages).  `ServerConnection` reads
requests and writes responses, `ClientConnection` writes requests and reads
responses.  Both:

- take bytes with `receive_data(data)` (b"" means the peer closed) and give
  events with `next_event()`: a head (`Request` / `Response`), the body as
  `Data` events, never larger than what was fed (so a driver that feeds one
  read at a time moves any body at constant memory), then `EndOfMessage`.
  NEED_DATA asks for bytes; PAUSED says their message is done and the bytes
  of the next one wait for this cycle to end (pipelining);
- turn calls into bytes: `respond(...)` / `request(...)` write a head, with
  the whole body and its end when `body` is given (one buffer for one send);
  `send_data(chunk)` and `end()` stream a body after a head;
- `start_next_cycle()` once both sides are DONE and keep-alive holds
  (`reusable`).  Keep-alive ends when either head says `Connection: close`,
  for HTTP/1.0, on `close_after_this()`, or after an error.

Reading a head: the fast lane (`fastlane`) parses simple heads with a few
regex calls; anything else goes to h11 for that one message (`h11_lane`),
which also gives every refusal of a malformed message with h11's status hint.
A server holds a request head to the limits on raw bytes before either lane
parses it (414, 431, obs-fold 400: `head_checks`), then to the checks on the
parsed head (505, 405, origin-form, ambiguous framing, 413 for a declared
body over `max_body_bytes`), and counts body bytes against the cap as they
arrive (a chunk's promised size too).  A client checks a response the same way
(version, framing, optional cap).

Writing: `writer` produces h11's exact bytes.  A whole-body response gets a
Content-Length when it has none (not for 204/304); a response to HEAD (or a
204/304) given a whole body sends the head only.

Errors: `RemoteProtocolError` from `next_event` (the peer broke the protocol
or a limit: answer `err.status` with `refusal()`, then close), and
`LocalProtocolError` from the writing calls (nothing was written; a bad head
leaves the side IDLE, so an error response can still follow).

No I/O and no clock: drivers own sockets, buffers and timeouts.
"""

from __future__ import annotations

from foobar_ref.wire.cycle import BODY, IDLE, Cycle, Phase
from foobar_ref.wire.errors import HttpError, LocalProtocolError, RemoteProtocolError
from foobar_ref.wire.events import CLOSED, NEED_DATA, HeaderInput, Incoming, Request, Response, reason_of
from foobar_ref.wire.fastlane import head_end, parse_request, parse_response
from foobar_ref.wire.h11_lane import H11Lane
from foobar_ref.wire.head_checks import (
    MAX_HEAD_BYTES,
    RequestHeadGuard,
    check_plain_request,
    check_request_head,
    check_response_head,
    check_whole_head,
)
from foobar_ref.wire.writer import request_head, response_head

__all__ = ["MAX_BODY_BYTES", "ClientConnection", "Phase", "ServerConnection"]

MAX_BODY_BYTES = 1024 * 1024  # a request body larger than this -> 413 (servers' default)
_FIRST_LINE_BYTE = 0x21  # a head starting below '!' is refused by h11 at once (a TLS hello, a space)
_METHODS_WITH_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ServerConnection(Cycle):
    """The server's side: requests in, responses out."""

    __slots__ = ("_guard", "_continued")

    def __init__(self, max_body_bytes: int | None = MAX_BODY_BYTES) -> None:
        super().__init__(max_body_bytes)
        self._guard: RequestHeadGuard | None = None  # while a request head arrives in pieces
        self._continued = False  # 100 Continue sent for this request

    def _new_cycle(self) -> None:
        self._continued = False

    @property
    def request(self) -> Request | None:
        head = self.their_head
        return head if isinstance(head, Request) else None

    @property
    def client_waits_for_continue(self) -> bool:
        """The client asked `Expect: 100-continue` and has had neither `interim_continue()` nor a response."""
        request = self.request
        if request is None or self._continued or self._our is not IDLE or request.http_version != b"1.1":
            return False
        expect = request.header(b"expect")
        return expect is not None and b"100-continue" in expect.lower()

    def interim_continue(self) -> bytes:
        """`100 Continue` when the client waits for it (once per request), else b""."""
        if not self.client_waits_for_continue:
            return b""
        self._continued = True
        return CONTINUE

    def close_after_this(self) -> None:
        """No further cycle: the response (if not started) says `Connection: close`."""
        self._keep_alive = False

    def _fed(self, data: bytes) -> None:
        if self._guard is not None and self._their is IDLE:
            try:
                self._guard.feed(data)
            except HttpError as err:
                self._error = RemoteProtocolError(err.status, err.reason)
                self._their = Phase.ERROR
                self._keep_alive = False

    def _head(self) -> Incoming:
        buf = self._buf
        if not buf:
            if self._eof:
                self._their = Phase.CLOSED
                return CLOSED
            return NEED_DATA
        end = head_end(buf)
        if end < 0:
            if self._guard is None:
                self._guard = RequestHeadGuard()
                self._guard.feed(bytes(buf))
            if buf[0] < _FIRST_LINE_BYTE or len(buf) > MAX_HEAD_BYTES:
                return self._to_lane(H11Lane.for_request(bytes(buf), self._eof))
            if self._eof:  # a head cut short: the client gave up, nothing to answer
                self._their = Phase.CLOSED
                return CLOSED
            return NEED_DATA
        if self._guard is None:
            check_whole_head(buf, end)
        self._guard = None
        parsed = parse_request(buf, end)
        if parsed is None:
            return self._to_lane(H11Lane.for_request(bytes(buf), self._eof))
        head, length, keep_alive = parsed
        check_plain_request(head.method, head.target, length, self.max_body_bytes)
        self._took_head(end, head, length, keep_alive)
        return head

    def _check(self, head: Request | Response) -> None:
        self._guard = None
        assert isinstance(head, Request)
        check_request_head(head, self.max_body_bytes)

    def respond(
        self, status: int, headers: HeaderInput = (), body: bytes | None = None, reason: bytes | None = None
    ) -> bytes:
        """A response head; with `body`, the whole response (Content-Length added when missing)."""
        if self._our is not IDLE:
            raise LocalProtocolError(500, "a response was already started in this cycle")
        request = self.request
        head, writer, keep_alive = response_head(
            status,
            reason_of(status) if reason is None else reason,
            headers,
            request.method if request is not None else None,
            request.http_version if request is not None else None,
            self._keep_alive,
            None if body is None else len(body),
        )
        self._writer = writer
        self._keep_alive = keep_alive
        self._our = BODY
        return head if body is None else self._whole(head, body)

    def refusal(self, status: int, headers: HeaderInput = (), body: bytes = b"") -> bytes:
        """A whole error response that ends the connection; b"" when a response already started."""
        if self._our is not IDLE:
            return b""
        self._keep_alive = False
        return self.respond(status, headers, body)


class ClientConnection(Cycle):
    """The client's side: requests out, responses in."""

    __slots__ = ("_method",)

    def __init__(self, max_body_bytes: int | None = None) -> None:
        super().__init__(max_body_bytes)
        self._method: bytes | None = None  # of the request in this cycle

    @property
    def response(self) -> Response | None:
        head = self.their_head
        return head if isinstance(head, Response) else None

    def _new_cycle(self) -> None:
        self._method = None

    def request(self, method: bytes, target: bytes, headers: HeaderInput = (), body: bytes | None = None) -> bytes:
        """A request head; with `body`, the whole request (Content-Length added when there is a body)."""
        if self._our is not IDLE:
            raise LocalProtocolError(500, "a request was already started in this cycle")
        if method == b"CONNECT":
            raise LocalProtocolError(500, "CONNECT is not supported (no tunnels)")
        length = len(body) if body is not None and (body or method in _METHODS_WITH_BODY) else None
        head, writer, keep_alive = request_head(method, target, headers, length)
        self._method = method
        self._writer = writer
        self._keep_alive = self._keep_alive and keep_alive
        self._our = BODY
        return head if body is None else self._whole(head, body)

    def _head(self) -> Incoming:
        buf = self._buf
        if not buf:
            if self._eof:
                self._their = Phase.CLOSED
                return CLOSED
            return NEED_DATA
        method = self._method
        if method is None:
            raise RemoteProtocolError(400, "bytes arrived before any request was sent")
        end = head_end(buf)
        if end < 0:
            if self._eof or buf[0] < _FIRST_LINE_BYTE or len(buf) > MAX_HEAD_BYTES:
                return self._to_lane(H11Lane.for_response(method, self._keep_alive, bytes(buf), self._eof))
            return NEED_DATA
        parsed = parse_response(buf, end, method)
        if parsed is None:
            return self._to_lane(H11Lane.for_response(method, self._keep_alive, bytes(buf), self._eof))
        head, length, keep_alive = parsed
        cap = self.max_body_bytes
        if cap is not None and length > cap:
            raise RemoteProtocolError(413, f"declared body of {length} bytes, limit {cap}")
        self._took_head(end, head, length, keep_alive)
        return head

    def _check(self, head: Request | Response) -> None:
        check_response_head(head, self.max_body_bytes)
