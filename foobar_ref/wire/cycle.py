"""What both sides of an HTTP/1.1 connection share: the receive buffer, the lanes, body framing, the cycle.

The base of `connection.ServerConnection` and `connection.ClientConnection`
(read the theory of operation there).  A role supplies how a head is read
(`_head`) and checked (`_check`); everything else is here.
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
)
from foobar_ref.wire.h11_lane import H11Lane
from foobar_ref.wire.writer import BodyWriter, Framing


class Phase(Enum):
    IDLE = "idle"
    BODY = "body"
    DONE = "done"
    CLOSED = "closed"
    ERROR = "error"


IDLE, BODY, DONE = Phase.IDLE, Phase.BODY, Phase.DONE


class Cycle:
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
