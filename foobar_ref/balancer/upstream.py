"""lb-01's side of the backends: keep-alive HTTP/1.1 connections through the web servers' firewalls.

Theory of operation
-------------------
`Upstream.exchange(backend, ...)` sends one whole request and reads one whole
response.  The connection comes from an `IdlePool` (newest first) or is opened
from the balancer's own address (`source_for`) to the backend's public address
(its firewall), so the firewall's rules by source mean something.  A pooled
socket that the web server already closed is readable (EOF); it is checked
with a zero-timeout poll before reuse and thrown away, so a request is never
written into a dead connection.

What went wrong is reported as an `UpstreamFailure` carrying a `core.Failure`
and whether the connection was fresh; the shell decides about retries and
health with the core's rules.  After a complete exchange the connection goes
back to the pool only if both sides of h11 agree it can carry another request.
Pooled connections idle at most 8 s, below the web servers' 15 s keep-alive,
so the web never closes one the balancer is about to use.
"""

from __future__ import annotations

import select
from collections.abc import Mapping

import h11
import trio

from foobar_ref.balancer.core import Failure, IdlePool
from foobar_ref.runtime.trio_shell import connect_tcp
from foobar_ref.wire.http import Headers, HttpError, Message, new_connection, read_message, request_bytes

CONNECT_TIMEOUT_S = 4.0
RESPONSE_TIMEOUT_S = 10.0
POOL_IDLE_S = 8.0
POOL_MAX_IDLE = 32
MAX_RESPONSE_BODY_BYTES = 8 * 1024 * 1024
REAP_INTERVAL_S = 1.0

Connection = tuple[trio.SocketStream, h11.Connection]


class UpstreamFailure(Exception):
    def __init__(self, failure: Failure, fresh: bool, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.fresh = fresh
        self.detail = detail


class Upstream:
    def __init__(self, addresses: Mapping[str, tuple[str, int]], source_ip: str) -> None:
        self.addresses = dict(addresses)
        self.source_ip = source_ip
        self.pool: IdlePool[Connection] = IdlePool(POOL_MAX_IDLE, POOL_IDLE_S)

    async def exchange(self, backend: str, method: str, target: bytes, headers: Headers, body: bytes) -> Message:
        """One request/response on a pooled or new connection; raises UpstreamFailure."""
        stream, conn, fresh = await self._checkout(backend)
        received = 0

        async def receive(max_bytes: int) -> bytes:
            nonlocal received
            data = await stream.receive_some(max_bytes)
            received += len(data)
            return data

        try:
            with trio.fail_after(RESPONSE_TIMEOUT_S):
                await stream.send_all(request_bytes(conn, method, target, headers, body))  # type: ignore[arg-type]
                reply = await read_message(conn, receive, MAX_RESPONSE_BODY_BYTES)
        except trio.TooSlowError:
            _close(stream)
            raise UpstreamFailure(Failure.TIMEOUT, fresh, f"no response within {RESPONSE_TIMEOUT_S:g} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, HttpError) as err:
            _close(stream)
            failure = Failure.NO_RESPONSE if received == 0 else Failure.BAD_RESPONSE
            raise UpstreamFailure(failure, fresh, _describe(err)) from None
        if reply is None:
            _close(stream)
            raise UpstreamFailure(Failure.NO_RESPONSE, fresh, "closed without a response")
        self._check_in(backend, stream, conn)
        return reply

    async def _checkout(self, backend: str) -> tuple[trio.SocketStream, h11.Connection, bool]:
        while True:
            pooled, expired = self.pool.take(backend, trio.current_time())
            for stale, _ in expired:
                _close(stale)
            if pooled is None:
                break
            if _still_open(pooled[0]):
                return pooled[0], pooled[1], False
            _close(pooled[0])
        ip, port = self.addresses[backend]
        try:
            stream = await connect_tcp(ip, port, self.source_ip, CONNECT_TIMEOUT_S)
        except (OSError, trio.TooSlowError) as err:
            raise UpstreamFailure(Failure.CONNECT, True, f"connect to {ip}:{port}: {_describe(err)}") from None
        return stream, new_connection(h11.CLIENT), True

    def _check_in(self, backend: str, stream: trio.SocketStream, conn: h11.Connection) -> None:
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            _close(stream)
            return
        conn.start_next_cycle()
        refused = self.pool.put(backend, (stream, conn), trio.current_time())
        if refused is not None:
            _close(refused[0])

    async def reap(self) -> None:
        """Close pooled connections idle longer than POOL_IDLE_S, once a second."""
        try:
            while True:
                await trio.sleep(REAP_INTERVAL_S)
                for stream, _ in self.pool.expire(trio.current_time()):
                    _close(stream)
        finally:
            for stream, _ in self.pool.drain():
                _close(stream)


def _still_open(stream: trio.SocketStream) -> bool:
    """An idle keep-alive socket must have nothing to read: readable means EOF, reset or junk."""
    try:
        poller = select.poll()
        poller.register(stream.socket.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _close(stream: trio.SocketStream) -> None:
    stream.socket.close()


def _describe(err: BaseException) -> str:
    cause = err.__cause__ or err.__context__
    text = str(err) or type(err).__name__
    return f"{text} ({cause!r})" if cause is not None and not str(err) else text
