"""The client side of one HTTP/1.1 connection, for any event loop: requests out, responses in.

Theory of operation
-------------------
`HttpClient` drives a `wire.connection.ClientConnection` over the runtime's
`receive` and `send` (see `http_trio`, `http_asyncio`).  One exchange at a time:

    await client.request(b"GET", b"/", [(b"Host", b"web-01")], b"")   # whole: one send
    response = await client.response()                               # the head
    while chunk := await client.receive_data(): ...                  # or: await client.read_body()

or `response, body = await client.exchange(...)`.  A streamed request body:
`request(..., body=None)` with a Content-Length or `Transfer-Encoding: chunked`
header, then `send_data(chunk)` ... `end()`; the head leaves with the first chunk.
After a complete exchange `reusable` says whether the connection may carry the
next one (the next `request` starts its cycle); keeping idle connections is the
caller's business (a pool), as is opening and closing the stream.

What failed is told by type, and by whether any response byte came back
(`err.received_bytes`, `err.nothing_received`): `NoResponse` (closed or reset
before the first byte: an idempotent request whose body has not started
streaming may be retried on another connection), `BadResponse` (cut short,
malformed, over the body cap), `ResponseTimeout` (the server did not take the
request within `send_s`, no whole head came within `head_s` after the request
went out, or no body progress within `read_s`).  After any of them the
connection is `broken`.  Deadlines work as in `http_server`: the
runtime's timer shuts the socket when one passes.
"""

from __future__ import annotations

from collections.abc import Callable

from foobar_ref.runtime.deadlines import INF, Deadlined, Timer
from foobar_ref.runtime.http_server import Receive, Send, Shut
from foobar_ref.wire.connection import ClientConnection, Phase
from foobar_ref.wire.errors import (
    BadResponse,
    ExchangeFailed,
    LocalProtocolError,
    NoResponse,
    RemoteProtocolError,
    ResponseTimeout,
)
from foobar_ref.wire.events import CLOSED, NEED_DATA, Data, EndOfMessage, HeaderInput, Incoming, Response
from foobar_ref.wire.limits import ClientLimits

DEFAULT_LIMITS = ClientLimits()


class HttpClient(Deadlined):
    """Exchanges on one client connection."""

    __slots__ = (
        "limits",
        "received_bytes",
        "sent_bytes",
        "exchanges",
        "broken",
        "_conn",
        "_receive",
        "_send",
        "_shut",
        "_timer",
        "_now",
        "_gone",
        "_sending",
        "_timed_out",
        "_head_deadline",
        "_pending",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        shut: Shut,
        timer: Timer,
        now: Callable[[], float],
        gone: tuple[type[BaseException], ...],
        limits: ClientLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self.limits = limits
        self.received_bytes = 0  # of the current exchange's response
        self.sent_bytes = 0  # of the current exchange's request, handed to the transport
        self.exchanges = 0  # started on this connection (1 while the first runs: it is fresh)
        self.broken = False
        self._conn = ClientConnection(limits.max_body_bytes)
        self._receive = receive
        self._send = send
        self._shut = shut
        self._timer = timer
        self._now = now
        self._gone = gone  # the runtime's errors for "the peer went away"
        self._sending = False
        self._timed_out = False
        self._head_deadline = INF
        self._pending = b""

    @property
    def reusable(self) -> bool:
        """The connection may carry another request now."""
        conn = self._conn
        idle = conn.our_phase is Phase.IDLE and conn.their_phase is Phase.IDLE
        return not self.broken and (conn.reusable or (idle and not conn.buffered_bytes))

    def expire(self) -> None:
        self._timed_out = True
        self._shut(self._sending)

    def _arm(self, deadline: float) -> None:
        self.deadline = deadline
        if deadline < self._wake:
            self._timer.schedule(self, deadline)

    def _fail(self, kind: type[ExchangeFailed], detail: str) -> ExchangeFailed:
        self.broken = True
        self._timer.cancel(self)
        return kind(detail, self.received_bytes, self.sent_bytes)

    # --- the request ------------------------------------------------------------------

    async def request(self, method: bytes, target: bytes, headers: HeaderInput = (), body: bytes | None = None) -> None:
        """Send a request head; with `body`, the whole request in one send (Content-Length added)."""
        conn = self._conn
        if self.broken:
            raise LocalProtocolError(500, "this connection failed earlier: open another")
        if conn.reusable:
            conn.start_next_cycle()
        elif conn.our_phase is not Phase.IDLE:
            raise LocalProtocolError(500, "this connection cannot carry another request (`reusable` is False)")
        self.received_bytes = self.sent_bytes = 0
        self._head_deadline = INF
        out = conn.request(method, target, headers, body)
        self.exchanges += 1
        if body is None:
            self._pending = out
        else:
            await self._write(out)

    async def send_data(self, chunk: bytes) -> None:
        out = self._conn.send_data(chunk)
        if self._pending:
            out, self._pending = self._pending + out, b""
        if out:
            await self._write(out)

    async def end(self, trailers: HeaderInput = ()) -> None:
        out = self._pending + self._conn.end(trailers)
        self._pending = b""
        if out:
            await self._write(out)

    async def _write(self, data: bytes) -> None:
        self._sending = True
        self._arm(self._now() + self.limits.send_s)
        try:
            await self._send(data)
        except Exception as err:
            if not self._timed_out and not isinstance(err, self._gone):
                raise
            if not self._timed_out:
                kind = NoResponse if self.received_bytes == 0 else BadResponse
                raise self._fail(kind, f"the connection closed while the request was sent ({err!r})") from err
        finally:
            self.deadline = INF
            self._sending = False
        if self._timed_out:
            raise self._fail(ResponseTimeout, f"the request was not taken within {self.limits.send_s:g} s")
        self.sent_bytes += len(data)
        if self._conn.our_phase is Phase.DONE:
            self._head_deadline = self._now() + self.limits.head_s

    # --- the response -----------------------------------------------------------------

    async def response(self) -> Response:
        """The response head (1xx skipped)."""
        while True:
            event = self._next()
            if type(event) is Response:
                return event  # type: ignore[return-value]
            if event is CLOSED:
                kind = NoResponse if self.received_bytes == 0 else BadResponse
                raise self._fail(kind, "the server closed the connection without answering")
            deadline = self._head_deadline
            await self._read(self._now() + self.limits.head_s if deadline is INF else deadline, "head")

    async def receive_data(self) -> bytes:
        """The next piece of the response body; b"" at its end (and after it)."""
        conn = self._conn
        while conn.their_phase is not Phase.DONE:
            event = self._next()
            kind = type(event)
            if kind is Data:
                return event.data  # type: ignore[union-attr]
            if kind is EndOfMessage:
                break
            if event is not NEED_DATA:
                if kind is Response:
                    raise LocalProtocolError(500, "read the response head (response()) first")
                raise self._fail(BadResponse, "the response ended early")
            await self._read(self._now() + self.limits.read_s, "body")
        return b""

    async def read_body(self) -> bytes:
        pieces = []
        while chunk := await self.receive_data():
            pieces.append(chunk)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def exchange(
        self, method: bytes, target: bytes, headers: HeaderInput = (), body: bytes = b""
    ) -> tuple[Response, bytes]:
        """One whole request and its whole response."""
        await self.request(method, target, headers, body)
        response = await self.response()
        return response, await self.read_body()

    def _next(self) -> Incoming:
        try:
            return self._conn.next_event()
        except RemoteProtocolError as err:
            raise self._fail(BadResponse, f"bad response: {err.reason}") from None

    async def _read(self, deadline: float, what: str) -> None:
        self._arm(deadline)
        try:
            data = await self._receive(self.limits.receive_bytes)
        except Exception as err:
            if not self._timed_out and not isinstance(err, self._gone):
                raise
            data = b""
            if not self._timed_out:
                kind = NoResponse if self.received_bytes == 0 else BadResponse
                raise self._fail(kind, f"the connection failed while reading the response ({err!r})") from err
        finally:
            self.deadline = INF
        if self._timed_out:
            limit = self.limits.head_s if what == "head" else self.limits.read_s
            raise self._fail(ResponseTimeout, f"no response {what} within {limit:g} s")
        self.received_bytes += len(data)
        self._conn.receive_data(data)
