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

from enum import Enum

from foobar_ref.wire.errors import HttpError, LocalProtocolError, RemoteProtocolError
from foobar_ref.wire.events import (
    CLOSED,
    END,
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    HeaderInput,
    Incoming,
    Request,
    Response,
    reason_of,
)
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
from foobar_ref.wire.writer import BodyWriter, Framing, request_head, response_head

MAX_BODY_BYTES = 1024 * 1024  # a request body larger than this -> 413 (servers' default)
_FIRST_LINE_BYTE = 0x21  # a head starting below '!' is refused by h11 at once (a TLS hello, a space)
_METHODS_WITH_BODY = frozenset({b"POST", b"PUT", b"PATCH"})


class Phase(Enum):
    IDLE = "idle"
    BODY = "body"
    DONE = "done"
    CLOSED = "closed"
    ERROR = "error"


IDLE, BODY, DONE = Phase.IDLE, Phase.BODY, Phase.DONE


class _Connection:
    """What both roles share: the receive buffer, the lanes, body framing and the cycle."""

    __slots__ = (
        "max_body_bytes",
        "_buf",
        "_eof",
        "_their",
        "_our",
        "_lane",
        "_remaining",
        "_received",
        "_keep_alive",
        "_writer",
        "_error",
        "their_head",
        "body_length",
    )

    def __init__(self, max_body_bytes: int | None) -> None:
        self.max_body_bytes = max_body_bytes
        self._buf: bytes | bytearray = b""  # received, not yet parsed
        self._eof = False
        self._their = IDLE
        self._our = IDLE
        self._lane: H11Lane | None = None  # h11 reading their current message
        self._remaining = 0  # fast lane: body bytes still due
        self._received = 0  # body bytes of their current message so far
        self._keep_alive = True
        self._writer: BodyWriter | None = None
        self._error: RemoteProtocolError | None = None
        self.their_head: Request | Response | None = None  # the head of their current message
        self.body_length: int | None = None  # its body length when known (None: chunked or until close)

    # --- state -------------------------------------------------------------------------

    @property
    def their_phase(self) -> Phase:
        return self._their

    @property
    def our_phase(self) -> Phase:
        return self._our

    @property
    def keep_alive(self) -> bool:
        return self._keep_alive

    @property
    def reusable(self) -> bool:
        """Both messages of the cycle are complete and the connection may carry another."""
        return self._our is DONE and self._their is DONE and self._keep_alive and not self._eof

    @property
    def unread_body_bytes(self) -> int | None:
        """Body bytes of their message not given out yet (0 once it ended), None when unknown (chunked)."""
        if self._their is not BODY:
            return 0
        if self._lane is None:
            return self._remaining
        return None if self.body_length is None else self.body_length - self._received

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not turned into events yet (outside an h11 lane)."""
        return len(self._buf)

    def start_next_cycle(self) -> None:
        if not self.reusable:
            raise LocalProtocolError(500, f"cannot reuse the connection (ours {self._our}, theirs {self._their})")
        self._our = self._their = IDLE
        self._writer = None
        self._received = 0
        self.their_head = None
        self.body_length = None
        self._new_cycle()

    def _new_cycle(self) -> None:
        """Role-specific reset at the start of a cycle."""

    # --- reading -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; b"" when it closed its side."""
        if not data:
            self._eof = True
            if self._lane is not None:
                self._lane.receive_data(b"")
            return
        if self._eof:
            raise LocalProtocolError(500, "data received after the peer closed")
        self._fed(data)
        if self._lane is not None:
            self._lane.receive_data(data)
        elif self._buf:
            if type(self._buf) is bytes:
                self._buf = bytearray(self._buf)
            self._buf += data  # type: ignore[operator]
        else:
            self._buf = data

    def _fed(self, data: bytes) -> None:
        """A server's head guard sees raw bytes as they arrive."""

    def next_event(self) -> Incoming:
        if self._error is not None:
            raise self._error
        try:
            if self._lane is not None:
                return self._from_lane(self._lane)
            their = self._their
            if their is BODY:
                return self._body()
            if their is IDLE:
                return self._head()
            if their is DONE:
                return PAUSED if self._buf else (CLOSED if self._eof else NEED_DATA)
            return CLOSED
        except HttpError as err:
            self._their = Phase.ERROR
            self._keep_alive = False
            self._error = err if isinstance(err, RemoteProtocolError) else RemoteProtocolError(err.status, err.reason)
            raise self._error from None

    def _head(self) -> Incoming:
        raise NotImplementedError

    def _body(self) -> Incoming:
        remaining = self._remaining
        if not remaining:
            self._their = DONE
            return END
        buf = self._buf
        if not buf:
            if self._eof:
                raise RemoteProtocolError(
                    400,
                    "peer closed connection without sending complete message body "
                    f"(received {self._received} bytes, expected {self._received + remaining})",
                )
            return NEED_DATA
        if len(buf) <= remaining:
            self._buf = b""
            chunk = buf
        else:
            chunk, self._buf = buf[:remaining], buf[remaining:]
        self._remaining = remaining - len(chunk)
        self._received += len(chunk)
        return Data(chunk if type(chunk) is bytes else bytes(chunk))

    def _took_head(self, end: int, head: Request | Response, length: int, keep_alive: bool) -> None:
        """The fast lane read `head` from `self._buf[:end]`."""
        buf = self._buf
        self._buf = buf[end:] if end < len(buf) else b""
        self._their = BODY
        self._remaining = length
        self.body_length = length
        self._keep_alive = self._keep_alive and keep_alive
        self.their_head = head

    def _to_lane(self, lane: H11Lane) -> Incoming:
        self._buf = b""
        self._lane = lane
        return self._from_lane(lane)

    def _from_lane(self, lane: H11Lane) -> Incoming:
        event = lane.next_event()
        kind = type(event)
        cap = self.max_body_bytes
        if kind is Data:
            self._received += len(event.data)  # type: ignore[union-attr]
            if cap is not None and self._received > cap:
                raise RemoteProtocolError(413, f"body larger than {cap} bytes")
        if cap is not None and lane.chunked and self._received + lane.promised_chunk_bytes() > cap:
            raise RemoteProtocolError(413, f"chunked body larger than {cap} bytes")  # before the chunk's bytes
        if kind is EndOfMessage:
            self._their = DONE
            self._buf = lane.rest()
            self._lane = None
        elif kind is Request or kind is Response:
            self._lane_head(lane, event)  # type: ignore[arg-type]
        elif kind is ConnectionClosed:
            if self._their is BODY:
                raise RemoteProtocolError(400, "connection closed in the middle of a message")
            self._their = Phase.CLOSED
            self._lane = None
        return event

    def _lane_head(self, lane: H11Lane, head: Request | Response) -> None:
        self._check(head)
        self._their = BODY
        self.body_length = lane.body_length
        self._keep_alive = self._keep_alive and lane.keep_alive
        self.their_head = head

    def _check(self, head: Request | Response) -> None:
        """The checks on a parsed head (raise HttpError)."""

    # --- writing -----------------------------------------------------------------------

    def send_data(self, chunk: bytes) -> bytes:
        """A piece of our body, framed."""
        writer = self._writer
        if self._our is not BODY or writer is None:
            raise LocalProtocolError(500, "no message body is open for sending")
        try:
            return writer.data(chunk)
        except LocalProtocolError:
            self._our = Phase.ERROR
            raise

    def end(self, trailers: HeaderInput = ()) -> bytes:
        """The end of our message (a chunked body's last chunk and trailers)."""
        writer = self._writer
        if self._our is not BODY or writer is None:
            raise LocalProtocolError(500, "no message body is open for sending")
        try:
            out = writer.end(trailers)
        except LocalProtocolError:
            self._our = Phase.ERROR
            raise
        self._our = DONE
        return out

    def _whole(self, head: bytes, body: bytes) -> bytes:
        """Head, body and end in one buffer (the caller set `_writer` and `_our`)."""
        writer = self._writer
        assert writer is not None
        if writer.framing is Framing.LENGTH and writer.remaining == 0:
            body = b""  # HEAD, 204, 304: the head says how long; the body stays here
        out = head + writer.data(body) + writer.end() if body else head + writer.end()
        self._our = DONE
        return out


class ServerConnection(_Connection):
    """The server's side: requests in, responses out."""

    __slots__ = ("_guard",)

    def __init__(self, max_body_bytes: int | None = MAX_BODY_BYTES) -> None:
        super().__init__(max_body_bytes)
        self._guard: RequestHeadGuard | None = None  # while a request head arrives in pieces

    @property
    def request(self) -> Request | None:
        head = self.their_head
        return head if isinstance(head, Request) else None

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


class ClientConnection(_Connection):
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
