"""The byte pump of one tracked connection: two directions over raw non-blocking sockets.

Theory of operation
-------------------
Each direction `recv_into`s one reused buffer and `send`s it all before reading
again, waiting for readiness only when a call would block.  So each direction
holds at most `BUFFER_BYTES`, and a slow reader slows its writer through the
kernel's windows (back-pressure).  EOF one way becomes `shutdown(SHUT_WR)` the
other way while the other direction keeps flowing (half-close); an error one
way aborts both (the shell then closes both with RST).  The client->server
direction runs in the caller's task and the other in one child task, so a
connection costs one extra task.  Readiness comes from readiness.py (one
edge-triggered epoll registration per socket for the relay's life) rather than
trio's wait_readable, which re-arms epoll on every wait: that saves two
`epoll_ctl` calls per keep-alive request.

A read that did not fill the buffer most likely emptied the socket (a whole
request or answer), so a pump then waits for readiness before reading again
instead of paying for a read that fails with EAGAIN.  The server->client pump
starts by reading again at once, since a server that closes sends its FIN
right behind its last bytes (one wake-up less per short connection), and stops
doing so the first time that read finds nothing (a keep-alive connection);
even then a read of `BULK_READ_BYTES` or more (a download streaming in) is
followed by another read at once.
Measured with benchmarks/firewall.py.  Buffers are reused across connections.

A subclass may hand a direction over to another pump once it has moved
`copy_limit_bytes` in reads of at least `BULK_READ_BYTES` (splice_relay.py
does, for `--relay auto`), so a long keep-alive connection of small messages
stays on the copy pump: the copy pump returns True after a whole chunk was
sent, so nothing is left in its buffer.

Per chunk the pump only adds to the connection's byte count, sets `moved`, and
writes to the capture tap when one is open; the shell's sweeper reads `moved`
to tell idle relays apart (`check_idle`), so no timer is re-armed per chunk.
"""

from __future__ import annotations

import contextlib
import math
import socket as stdsocket
import struct

import trio

from foobar_ref.firewall.capture import ConnectionCapture
from foobar_ref.firewall.core import Connection, Direction
from foobar_ref.firewall.readiness import Ready, readiness, wait_readable, wait_writable

BUFFER_BYTES = 64 * 1024
BULK_READ_BYTES = 16 * 1024  # reads at least this large count towards `copy_limit_bytes`
CHUNKS_PER_CHECKPOINT = 16  # let other tasks run at least every 1 MiB of a fast relay
MAX_SPARE_BUFFERS = 256  # buffers kept for reuse: a new connection should not allocate and zero 128 KiB
_LINGER_RESET = struct.pack("ii", 1, 0)
_spare: list[bytearray] = []


class Relay:
    copy_limit_bytes: float = math.inf  # a direction that moved this much in bulk reads leaves the copy pump
    client_ready: Ready
    server_ready: Ready

    def __init__(self, client: stdsocket.socket, server: stdsocket.socket, conn: Connection) -> None:
        self.client, self.server, self.conn = client, server, conn
        self.tap: ConnectionCapture | None = None
        self.scope = trio.CancelScope()
        self.aborted = ""
        self.swept = ""  # why the shell's sweeper ended it (idle, silent under pressure)
        self.idle = False
        self.moved = False
        self.last_moved = trio.current_time()

    async def run(self) -> str:
        """Relay until both sides closed, either side failed, or the sweeper found it idle."""
        watched = readiness()
        self.client_ready, self.server_ready = watched.watch(self.client), watched.watch(self.server)
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, self.server, self.client, Direction.OUT, True)
                    await self._pump(self.client, self.server, Direction.IN, False)
        finally:
            watched.forget(self.client)
            watched.forget(self.server)
        if self.aborted:
            return self.aborted
        return self.swept or "closed both ways"

    def check_idle(self, now: float, idle_timeout_s: float) -> None:
        if self.moved:
            self.moved, self.last_moved = False, now
        elif now - self.last_moved >= idle_timeout_s and not self.idle:
            self.idle = True
            self.sweep("idle timeout")

    def sweep(self, reason: str) -> None:
        """End the relay from outside (the sweeper): both sockets are closed, `run` returns `reason`."""
        self.swept = self.swept or reason
        self.scope.cancel()

    def idle_for(self, now: float) -> float:
        return 0.0 if self.moved else now - self.last_moved

    async def _pump(self, src: stdsocket.socket, dst: stdsocket.socket, direction: Direction, wait: bool) -> bool:
        """`wait`: nothing is expected yet (the server speaks after the client), so wait before reading.

        True: the direction moved `copy_limit_bytes` and is still open (the caller goes on with it)."""
        buffer = _spare.pop() if _spare else bytearray(BUFFER_BYTES)
        try:
            return await self._pump_with(buffer, src, dst, direction, wait)
        finally:
            if len(_spare) < MAX_SPARE_BUFFERS:
                _spare.append(buffer)

    async def _pump_with(
        self, buffer: bytearray, src: stdsocket.socket, dst: stdsocket.socket, direction: Direction, wait: bool
    ) -> bool:
        inbound = direction is Direction.IN
        sender, receiver = ("client", "server") if inbound else ("server", "client")
        src_ready, dst_ready = self._readiness(inbound)
        view, recv_into, send = memoryview(buffer), src.recv_into, dst.send
        conn, chunks, drained, limit, bulk = self.conn, 0, wait, self.copy_limit_bytes, 0
        eager = not inbound  # read again at once after a short read, until that once finds nothing
        while True:
            if drained:  # nothing expected yet: wait first
                await wait_readable(src_ready)
            try:
                size = recv_into(buffer)
            except BlockingIOError:
                drained, eager = True, False
                continue
            except OSError as err:
                return self._abort(f"{sender} reset: {err.strerror or err}")
            if size == 0:
                with contextlib.suppress(OSError):  # already gone: the other pump will see it
                    dst.shutdown(stdsocket.SHUT_WR)
                return False
            drained = size < BUFFER_BYTES if inbound else not eager and size < BULK_READ_BYTES
            if inbound:
                conn.bytes_in += size
            else:
                conn.bytes_out += size
            self.moved = True
            if self.tap is not None:
                self.tap.write(direction, view[:size])
            try:
                sent = send(view[:size])
            except BlockingIOError:
                sent = 0
            except OSError as err:
                return self._abort(f"{receiver} reset: {err.strerror or err}")
            if sent < size:
                try:
                    await _send_rest(dst, dst_ready, view[sent:size])
                except OSError as err:
                    return self._abort(f"{receiver} reset: {err.strerror or err}")
            if size >= BULK_READ_BYTES:
                bulk += size
                if bulk >= limit:
                    return True
            chunks += 1
            if chunks % CHUNKS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()

    def _readiness(self, inbound: bool) -> tuple[Ready, Ready]:
        """(source, destination) of one direction."""
        return (self.client_ready, self.server_ready) if inbound else (self.server_ready, self.client_ready)

    def _abort(self, reason: str) -> bool:
        self.aborted = self.aborted or reason
        self.scope.cancel()
        return False


async def _send_rest(sock: stdsocket.socket, ready: Ready, view: memoryview) -> None:
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await wait_writable(ready)
            continue
        view = view[sent:]


async def send_all(sock: stdsocket.socket, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        view = view[sent:]


def close_socket(sock: stdsocket.socket, abort: bool) -> None:
    """Close once; with `abort`, SO_LINGER 0 makes the close send RST (a reset passed on)."""
    if sock.fileno() == -1:
        return
    if abort:
        with contextlib.suppress(OSError):
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, _LINGER_RESET)
    trio.lowlevel.notify_closing(sock)
    sock.close()
