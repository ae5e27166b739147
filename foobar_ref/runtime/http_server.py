"""The server side of one HTTP/1.1 connection, for any event loop: requests in, responses out.

Theory of operation
-------------------
`HttpServer` drives a `wire.connection.ServerConnection` over two awaitables
the runtime gives it (`receive(max_bytes)`, `send(data)`; see `http_trio` and
`http_asyncio`), and enforces the server's limits:

    async for exchange in server:          # one per request, until the connection ends
        body = await exchange.read_body()  # or: while chunk := await exchange.receive_data(): ...
        await exchange.respond(200, headers, body)   # whole: one send
        # or: await exchange.respond(200, headers); await exchange.send_data(chunk) ...; await exchange.end()

- Waiting for a request: `idle_s` with no byte ends the iteration silently;
  once a byte arrived the whole request (head and body) must arrive within
  `request_s`, else 408.  Every protocol error of the request (400, 408, 413,
  414, 431, 501, 505 ...) is answered by the server itself with
  `refuse(err)` (the hop's body for it; the hop logs and counts there), then
  the connection lingers briefly and ends; `server.refused` keeps the error.
  An error found while the handler reads the body is answered the same way and
  raised from the read, so the handler stops.
- A request that says `Expect: 100-continue` gets `100 Continue` when the
  handler first waits for its body (not before: a handler that answers at
  once, a 413 say, spares the client the upload).
- A response head waits for the first body chunk (or the end) so they leave in
  one send; a whole response is one send; `send_s` bounds each send (then
  `SendTimeout`).  The response to the last allowed request (`max_requests`)
  says `Connection: close`.
- Between exchanges: a handler that did not answer gets a 500 (then close); a
  request body it left unread is read and dropped up to `discard_bytes` so the
  connection can stay (a larger one: the response said `Connection: close`);
  pipelined requests are read from what is buffered.

Timeouts cost no timer per read: the driver writes its `deadline` and the
runtime's timer (`deadlines`) wakes the pending read or send when it passes
(the runtime's `shut`: an end of file or an error from the wait, never a
closed TLS session); `expired` says which wait timed out.  Transport errors
(a reset) propagate to the caller as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import NoReturn

from foobar_ref.runtime.deadlines import INF, Deadlined, Timer
from foobar_ref.wire.connection import Phase, ServerConnection
from foobar_ref.wire.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, SendTimeout
from foobar_ref.wire.events import NEED_DATA, PAUSED, Data, EndOfMessage, HeaderInput, Request
from foobar_ref.wire.limits import Refuse, ServerLimits, plain_refusal

Receive = Callable[[int], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]
Shut = Callable[[bool], None]  # wake a pending read with EOF (and a pending send with an error, when True)
Linger = Callable[[float, int], Awaitable[None]]  # half-close, then read and drop (seconds, bytes)


DEFAULT_LIMITS = ServerLimits()


class Wait(Enum):
    """What the server waits for: what a passed deadline means."""

    IDLE = "idle"  # a next request: close silently
    REQUEST = "request"  # the rest of a request: 408
    SEND = "send"  # the client to take our bytes: close


class HttpServer(Deadlined):
    """The requests of one connection; iterate it for `Exchange`s."""

    __slots__ = (
        "limits",
        "refused",
        "expired",
        "requests",
        "_conn",
        "_receive",
        "_send",
        "_shut",
        "_linger",
        "_timer",
        "_now",
        "_refuse",
        "_gone",
        "_waiting",
        "_request_deadline",
        "_exchange",
        "_pending",
        "bytes_in",
        "bytes_out",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        shut: Shut,
        linger: Linger,
        timer: Timer,
        now: Callable[[], float],
        gone: tuple[type[BaseException], ...],
        limits: ServerLimits = DEFAULT_LIMITS,
        refuse: Refuse = plain_refusal,
        initial: bytes = b"",
    ) -> None:
        super().__init__()
        self.limits = limits
        self.refused: ProtocolError | None = None  # the error answered, when the connection ended on one
        self.expired: Wait | None = None  # the wait that timed out
        self.requests = 0
        self._conn = ServerConnection(limits.max_body_bytes)
        self._receive = receive
        self._send = send
        self._shut = shut
        self._linger = linger
        self._timer = timer
        self._now = now
        self._refuse = refuse
        self._gone = gone  # the runtime's errors for "the peer went away"
        self._waiting = Wait.IDLE
        self._request_deadline = INF
        self._exchange: Exchange | None = None
        self._pending = b""  # a response head waiting for its first body bytes
        self.bytes_in = 0  # request body bytes of the current exchange
        self.bytes_out = 0  # response bytes (head included) of the current exchange
        if initial:
            self._conn.receive_data(initial)  # bytes a caller read before HTTP (after a PROXY line, say)

    # --- deadlines --------------------------------------------------------------------

    def expire(self) -> None:
        self.expired = self._waiting
        self._shut(self._waiting is Wait.SEND)

    def _arm(self, deadline: float) -> None:
        self.deadline = deadline
        if deadline < self._wake:
            self._timer.schedule(self, deadline)

    async def _read(self) -> bytes:
        """One read; b"" at EOF.  A passed deadline shows as `expired`."""
        try:
            data = await self._receive(self.limits.receive_bytes)
        except Exception:
            if self.expired is None:
                raise
            data = b""
        self.deadline = INF
        return b"" if self.expired is not None else data

    # --- the iteration ----------------------------------------------------------------

    def __aiter__(self) -> HttpServer:
        return self

    async def __anext__(self) -> Exchange:
        if self._exchange is not None and not await self._next_cycle():
            self._stop()
        try:
            request = await self._read_head()
        except RemoteProtocolError as err:
            await self.refuse(err)
            self._stop()
        if request is None:
            self._stop()
        self.requests += 1
        self.bytes_in = self.bytes_out = 0
        if self.requests >= self.limits.max_requests:
            self._conn.close_after_this()
        self._exchange = Exchange(self, request, self.requests)
        return self._exchange

    def _stop(self) -> NoReturn:
        self.deadline = INF
        self._timer.cancel(self)
        raise StopAsyncIteration

    async def _read_head(self) -> Request | None:
        conn = self._conn
        event = conn.next_event()
        if event is NEED_DATA:
            self._waiting = Wait.REQUEST if conn.buffered_bytes else Wait.IDLE
            now = self._now()
            self._request_deadline = now + self.limits.request_s
            self._arm(self._request_deadline if conn.buffered_bytes else now + self.limits.idle_s)
            while event is NEED_DATA:
                data = await self._read()
                if self.expired is not None:
                    if self.expired is Wait.IDLE:
                        return None
                    raise RemoteProtocolError(408, f"request not complete within {self.limits.request_s:g} s")
                if data and self._waiting is Wait.IDLE:
                    self._waiting = Wait.REQUEST
                    self._request_deadline = self._now() + self.limits.request_s
                conn.receive_data(data)
                event = conn.next_event()
                if event is NEED_DATA:
                    self._arm(self._request_deadline)
        else:
            self._request_deadline = self._now() + self.limits.request_s
        return event if type(event) is Request else None  # type: ignore[return-value]

    async def _next_cycle(self) -> bool:
        """Close the exchange that ended; True when the connection carries another."""
        conn = self._conn
        self._exchange = None
        if conn.our_phase is Phase.IDLE and self.refused is None:
            await self.refuse(LocalProtocolError(500, "the server did not answer this request"))
            return False
        if conn.our_phase is not Phase.DONE:
            return False  # a response left open: nothing more can follow it
        if conn.their_phase is Phase.BODY and not await self._discard():
            return False
        if not conn.reusable:
            return False
        conn.start_next_cycle()
        return True

    async def _discard(self) -> bool:
        """Read and drop the rest of a request body the handler left, up to `discard_bytes`."""
        left = self.limits.discard_bytes
        try:
            while left >= 0:
                chunk = await self._body_piece()
                if not chunk:
                    return True
                left -= len(chunk)
        except RemoteProtocolError:
            return False
        return False

    # --- the request body -------------------------------------------------------------

    async def _body_piece(self) -> bytes:
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as err:
                await self.refuse(err)
                raise
            kind = type(event)
            if kind is Data:
                self.bytes_in += len(event.data)  # type: ignore[union-attr]
                return event.data  # type: ignore[union-attr]
            if kind is EndOfMessage or event is PAUSED:
                return b""
            if conn.client_waits_for_continue:
                await self._write(conn.interim_continue())
            self._waiting = Wait.REQUEST
            self._arm(self._request_deadline)
            data = await self._read()
            if self.expired is not None:
                late = RemoteProtocolError(408, f"request not complete within {self.limits.request_s:g} s")
                await self.refuse(late)
                raise late
            conn.receive_data(data)

    # --- responses --------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        self._waiting = Wait.SEND
        self._arm(self._now() + self.limits.send_s)
        try:
            await self._send(data)
        except Exception:
            if self.expired is not Wait.SEND:
                raise
        finally:
            self.deadline = INF
        if self.expired is Wait.SEND:
            raise SendTimeout(f"the client did not take the response within {self.limits.send_s:g} s")
        self.bytes_out += len(data)

    async def _respond(self, status: int, headers: HeaderInput, body: bytes | None, reason: bytes | None) -> None:
        conn = self._conn
        unread = conn.unread_body_bytes
        if unread is None or unread > self.limits.discard_bytes:
            conn.close_after_this()  # the rest of the request will not be read: say so now
        out = conn.respond(status, headers, body, reason)
        if body is None:
            self._pending = out
        else:
            await self._write(out)

    async def _send_data(self, chunk: bytes) -> None:
        conn = self._conn
        request = conn.request
        if request is not None and request.method == b"HEAD":
            return  # the head says how long the body would be; none is sent (RFC 9110 9.3.2)
        out = conn.send_data(chunk)
        if self._pending:
            out, self._pending = self._pending + out, b""
        if out:
            await self._write(out)

    async def _end(self, trailers: HeaderInput) -> None:
        out = self._pending + self._conn.end(trailers)
        self._pending = b""
        if out:
            await self._write(out)

    async def refuse(self, err: ProtocolError) -> None:
        """Answer a protocol error (when no response started), then linger; the connection ends."""
        self.refused = err
        self._conn.close_after_this()
        if self._conn.our_phase is not Phase.IDLE:
            return  # a response already started: nothing more can be said
        headers, body = self._refuse(err)
        try:
            await self._write(self._conn.refusal(err.status, headers, body))
            if self.expired is None:
                await self._linger(self.limits.linger_s, self.limits.linger_bytes)
        except Exception as gone:
            if not isinstance(gone, (SendTimeout, *self._gone)):
                raise
            # the client went away: nothing more to say


class Exchange:
    """One request and its response."""

    __slots__ = ("request", "number", "_server")

    def __init__(self, server: HttpServer, request: Request, number: int) -> None:
        self.request = request
        self.number = number  # 1 for the connection's first request
        self._server = server

    def header(self, name: bytes) -> bytes | None:
        """The first value of request header `name` (lower case)."""
        return self.request.header(name)

    @property
    def body_length(self) -> int | None:
        """The request body's declared length (0: none), None for a chunked body."""
        return self._server._conn.body_length

    @property
    def bytes_in(self) -> int:
        """Request body bytes received so far."""
        return self._server.bytes_in

    @property
    def bytes_out(self) -> int:
        """Response bytes sent so far, head included."""
        return self._server.bytes_out

    @property
    def closing(self) -> bool:
        """The connection ends after this exchange (either side said close, or the last allowed request)."""
        return not self._server._conn.keep_alive

    async def receive_data(self) -> bytes:
        """The next piece of the request body; b"" at its end.  RemoteProtocolError when refused (answered)."""
        return await self._current()._body_piece()

    async def read_body(self) -> bytes:
        """The whole (rest of the) request body, within the server's body cap."""
        server = self._current()
        pieces = []
        while chunk := await server._body_piece():
            pieces.append(chunk)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def respond(
        self, status: int, headers: HeaderInput = (), body: bytes | None = None, reason: bytes | None = None
    ) -> None:
        """The response head; with `body`, the whole response in one send (Content-Length added if missing)."""
        await self._current()._respond(status, headers, body, reason)

    async def send_data(self, chunk: bytes) -> None:
        """A piece of the response body (the first one leaves with the head; none is sent to a HEAD request)."""
        await self._current()._send_data(chunk)

    async def end(self, trailers: HeaderInput = ()) -> None:
        """The end of a streamed response."""
        await self._current()._end(trailers)

    def _current(self) -> HttpServer:
        server = self._server
        if server._exchange is not self:
            raise RuntimeError("this exchange is over: its connection moved on")
        return server
