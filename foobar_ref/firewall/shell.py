"""firewall-1/-2/-3: a TCP proxy on the guarded host's public address, deciding each connection.

Theory of operation
-------------------
The firewall listens on the guarded host's public address, on every port of
every service of that host.  For each accepted connection `core.ConnectionTable`
decides (rules, then policy, then limits) and the shell carries the command out:

* RELAY: connect to the same port on the host's inner address *from* the public
  address (the inner services accept only their own host as peer), optionally
  send a PROXY v1 line, then copy bytes both ways until both sides have closed.
* RESET: close with RST, so the client sees "connection reset" at once.
* HOLD: say nothing and read nothing until the client leaves or the hold time
  passes (a `drop`); CLOSE: the same, but the hold table is full.

The relay works on the raw (non-blocking) sockets: `recv_into` one reused
buffer per direction, `send` it all, and only when a call would block wait for
readiness.  Nothing is read before the previous chunk is sent, so each direction
buffers at most `BUFFER_BYTES` and a slow reader slows its writer (back-pressure
through the kernel's windows).  EOF one way becomes `shutdown(SHUT_WR)` the other
way while the other direction keeps flowing; an error one way resets both;
no byte either way for `idle_timeout_s` closes both.
"""

from __future__ import annotations

import contextlib
import math
import socket as stdsocket
import struct
import time
from collections.abc import Callable

import trio

from foobar_ref.firewall.capture import Capture, ConnectionCapture
from foobar_ref.firewall.core import Address, Command, Connection, ConnectionTable, Direction, Limits, proxy_v1_line
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_shell import Listener, connect_tcp, log, open_tcp_listener, reset
from foobar_ref.topology import Topology

BUFFER_BYTES = 64 * 1024
CHUNKS_PER_CHECKPOINT = 16  # let other tasks run at least every 1 MiB of a fast relay
HOLD_POLL_S = 1.0
TCP_CLOSE_WAIT = 8  # tcp_info.tcpi_state once the peer's FIN has arrived (linux/tcp_states.h)
TCP_CLOSE = 7


class FirewallHop:
    def __init__(self, topo: Topology, name: str, metrics: Metrics, limits: Limits, capture: Capture | None) -> None:
        fw = topo.firewall(name)
        host = topo.host(fw.guards)
        assert host.inner is not None, "topology validation guarantees a guarded host has an inner address"
        self.hop, self.public, self.inner = name, host.address, host.inner
        self.ports = sorted({port for service in host.services for port in service.ports.values()})
        self.proxy_protocol = fw.proxy_protocol
        self.limits = limits
        self.capture = capture
        self.table = ConnectionTable(fw, limits, next_id=capture.first_id if capture else 1)
        self.metrics = metrics
        self.connections = metrics.counter(
            "foobar_firewall_connections", "New connections by decision", ["hop", "action", "rule"]
        )
        relayed = metrics.counter("foobar_firewall_bytes", "Bytes relayed, in = client to server", ["hop", "direction"])
        self.bytes = {d: relayed.labels(hop=name, direction=d.value) for d in Direction}
        self.upstream_failures = metrics.counter(
            "foobar_firewall_upstream_failures", "Accepted connections whose inner service did not answer", ["hop"]
        ).labels(hop=name)

    def listeners(self) -> list[Listener]:
        """Bind every port now (raises BindError naming the address)."""
        return [Listener(open_tcp_listener(self.public, port), self.handle, None, str(port)) for port in self.ports]

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            src, dst = _address(stream.socket.getpeername()), _address(stream.socket.getsockname())
        except OSError:
            return  # the client left before we looked
        conn = self.table.open(src, dst, time.time())
        self.connections.labels(hop=self.hop, action=conn.action, rule=conn.rule).inc()
        self.metrics.requests.labels(hop=self.hop, outcome=conn.action).inc()
        log(self.hop, "decision", conn=conn.id, line=conn.kernel_line())
        reason = "error"
        try:
            reason = await self._carry_out(stream, conn)
        except BaseException as err:
            # Cancelled may arrive wrapped in an exception group: ask the scope, not the exception.
            cancelled = trio.current_effective_deadline() == -math.inf
            reason = "firewall stopping" if cancelled else f"error: {err!r}"
            raise
        finally:
            self._finished(conn, reason)

    async def _carry_out(self, stream: trio.SocketStream, conn: Connection) -> str:
        if conn.command is Command.RELAY:
            return await self._relay(stream, conn)
        if conn.command is Command.HOLD:
            return await self._hold(stream)
        if conn.command is Command.RESET:
            reset(stream)
            return "reset"
        return "closed: too many held connections"

    def _finished(self, conn: Connection, reason: str) -> None:
        self.table.close(conn, time.time(), reason)
        record = conn.record()
        log(self.hop, "closed", conn=conn.id, **{k: v for k, v in record.items() if k != "id"})
        if self.capture is not None:
            self.capture.closed(conn)

    # --- drop -------------------------------------------------------------
    async def _hold(self, stream: trio.SocketStream) -> str:
        """Keep the socket open and silent; notice when the client closes it."""
        sock = stream.socket
        with trio.move_on_after(self.limits.drop_hold_s):
            await trio.lowlevel.wait_readable(sock)
            try:
                peeked = await sock.recv(1, stdsocket.MSG_PEEK)
            except OSError:
                return "client reset"
            if not peeked:
                return "client closed"
            while _tcp_state(sock) not in (TCP_CLOSE_WAIT, TCP_CLOSE):  # data came first: left unread
                await trio.sleep(HOLD_POLL_S)
            return "client closed"
        return f"hold time {self.limits.drop_hold_s:g} s passed"

    # --- accept -----------------------------------------------------------
    async def _relay(self, stream: trio.SocketStream, conn: Connection) -> str:
        target = (self.inner, conn.dst[1])
        try:
            upstream = await connect_tcp(*target, source_ip=self.public, timeout_s=self.limits.connect_timeout_s)
        except (OSError, trio.TooSlowError) as err:
            error = "timed out" if isinstance(err, trio.TooSlowError) else (err.strerror or repr(err))
            self.upstream_failures.inc()
            log(self.hop, "upstream_failed", conn=conn.id, upstream=f"{target[0]}:{target[1]}", error=error)
            reset(stream)
            return f"upstream failed: {error}"
        client, server = _own(stream), _own(upstream)
        tap: ConnectionCapture | None = None
        relay = _Relay(client, server, self.limits.idle_timeout_s)
        try:
            self.table.connected(conn, _address(server.getsockname()), target)
            log(self.hop, "relaying", conn=conn.id, src=conn.record()["src"], upstream=conn.record()["upstream"])
            tap = self.capture.opened(conn) if self.capture is not None else None
            if self.proxy_protocol:
                await _send_all(server, proxy_v1_line(conn.src, conn.dst))
            return await relay.run(self._counter(conn, tap))
        finally:
            _close(client, abort=relay.aborted)
            _close(server, abort=relay.aborted)
            if tap is not None:
                tap.close()
                if tap.error:
                    log(self.hop, "capture_failed", conn=conn.id, error=tap.error)

    def _counter(self, conn: Connection, tap: ConnectionCapture | None) -> Callable[[Direction, memoryview], None]:
        count, counters = self.table.count, self.bytes

        def counted(direction: Direction, data: memoryview) -> None:
            count(conn, direction, len(data))
            counters[direction].inc(len(data))
            if tap is not None:
                tap.write(direction, data)

        return counted


class _Relay:
    """Two pumps over one pair of raw sockets, sharing an idle deadline."""

    def __init__(
        self,
        client: stdsocket.socket,
        server: stdsocket.socket,
        idle_timeout_s: float,
    ) -> None:
        self.client, self.server = client, server
        self.idle_timeout_s = idle_timeout_s
        self.on_bytes: Callable[[Direction, memoryview], None] = lambda direction, data: None
        self.scope = trio.CancelScope()
        self.aborted = ""

    async def run(self, on_bytes: Callable[[Direction, memoryview], None]) -> str:
        """Relay until both sides closed, either side failed, or nothing moved for the idle timeout."""
        self.on_bytes = on_bytes
        with self.scope:
            self.scope.deadline = trio.current_time() + self.idle_timeout_s
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, self.client, self.server, Direction.IN)
                nursery.start_soon(self._pump, self.server, self.client, Direction.OUT)
        if self.aborted:
            return self.aborted
        if self.scope.cancelled_caught:
            return f"idle for {self.idle_timeout_s:g} s"
        return "closed both ways"

    async def _pump(self, src: stdsocket.socket, dst: stdsocket.socket, direction: Direction) -> None:
        sender, receiver = ("client", "server") if direction is Direction.IN else ("server", "client")
        buffer = bytearray(BUFFER_BYTES)
        view = memoryview(buffer)
        chunks = 0
        while True:
            try:
                size = src.recv_into(buffer)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(src)
                continue
            except OSError as err:
                return self._abort(f"{sender} reset: {err.strerror or err}")
            if size == 0:
                _shutdown_write(dst)
                return None
            self.on_bytes(direction, view[:size])
            try:
                await _send_all(dst, view[:size])
            except OSError as err:
                return self._abort(f"{receiver} reset: {err.strerror or err}")
            self.scope.deadline = trio.current_time() + self.idle_timeout_s
            chunks += 1
            if chunks % CHUNKS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()

    def _abort(self, reason: str) -> None:
        self.aborted = self.aborted or reason
        self.scope.cancel()


async def _send_all(sock: stdsocket.socket, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        view = view[sent:]


def _own(stream: trio.SocketStream) -> stdsocket.socket:
    """Take the stream's file descriptor as a plain non-blocking socket (the stream is left closed)."""
    sock = stdsocket.socket(fileno=stream.socket.detach())
    sock.setblocking(False)
    return sock


def _close(sock: stdsocket.socket, abort: str) -> None:
    if abort:  # pass a reset on: SO_LINGER 0 makes close send RST
        with contextlib.suppress(OSError):
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    trio.lowlevel.notify_closing(sock)
    sock.close()


def _shutdown_write(sock: stdsocket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone: the other pump will see it
        sock.shutdown(stdsocket.SHUT_WR)


def _tcp_state(sock: trio.socket.SocketType) -> int:
    try:
        return sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_INFO, 8)[0]
    except (OSError, AttributeError):
        return 0  # no TCP_INFO here: hold until the hold time passes


def _address(sockaddr: tuple[str, int]) -> Address:
    return str(sockaddr[0]), int(sockaddr[1])
