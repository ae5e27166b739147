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
connection costs one extra task.

A client->server read that did not fill the buffer most likely emptied the
socket (a whole request), so that pump waits for readiness before reading
again instead of paying for a read that fails with EAGAIN; the server->client
pump reads again at once, since a server that closes sends its FIN right
behind its last bytes (one wake-up less per short connection).  Measured with
benchmarks/firewall.py.  Buffers are reused across connections.

A subclass may hand a direction over to another pump once it has moved
`copy_limit_bytes` (splice_relay.py does, for `--relay auto`): the copy pump
returns True after a whole chunk was sent, so nothing is left in its buffer.

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

BUFFER_BYTES = 64 * 1024
CHUNKS_PER_CHECKPOINT = 16  # let other tasks run at least every 1 MiB of a fast relay
MAX_SPARE_BUFFERS = 256  # buffers kept for reuse: a new connection should not allocate and zero 128 KiB
_LINGER_RESET = struct.pack("ii", 1, 0)
_spare: list[bytearray] = []


class Relay:
    copy_limit_bytes: float = math.inf  # a direction that moved this much leaves the copy pump (see above)

    def __init__(self, client: stdsocket.socket, server: stdsocket.socket, conn: Connection) -> None:
        self.client, self.server, self.conn = client, server, conn
        self.tap: ConnectionCapture | None = None
        self.scope = trio.CancelScope()
        self.aborted = ""
        self.idle = False
        self.moved = False
        self.last_moved = trio.current_time()

    async def run(self) -> str:
        """Relay until both sides closed, either side failed, or the sweeper found it idle."""
        with self.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, self.server, self.client, Direction.OUT, True)
                await self._pump(self.client, self.server, Direction.IN, False)
        if self.aborted:
            return self.aborted
        if self.idle:
            return "idle timeout"
        return "closed both ways"

    def check_idle(self, now: float, idle_timeout_s: float) -> None:
        if self.moved:
            self.moved, self.last_moved = False, now
        elif now - self.last_moved >= idle_timeout_s and not self.idle:
            self.idle = True
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
        view = memoryview(buffer)
        conn, chunks, drained, limit = self.conn, 0, wait, self.copy_limit_bytes
        while True:
            if drained:  # nothing expected yet: wait first
                await trio.lowlevel.wait_readable(src)
            try:
                size = src.recv_into(buffer)
            except BlockingIOError:
                drained = True
                continue
            except OSError as err:
                return self._abort(f"{sender} reset: {err.strerror or err}")
            drained = inbound and size < BUFFER_BYTES
            if size == 0:
                with contextlib.suppress(OSError):  # already gone: the other pump will see it
                    dst.shutdown(stdsocket.SHUT_WR)
                return False
            if inbound:
                conn.bytes_in += size
            else:
                conn.bytes_out += size
            self.moved = True
            if self.tap is not None:
                self.tap.write(direction, view[:size])
            try:
                sent = dst.send(view[:size])
            except BlockingIOError:
                sent = 0
            except OSError as err:
                return self._abort(f"{receiver} reset: {err.strerror or err}")
            if sent < size:
                try:
                    await send_all(dst, view[sent:size])
                except OSError as err:
                    return self._abort(f"{receiver} reset: {err.strerror or err}")
            if (conn.bytes_in if inbound else conn.bytes_out) >= limit:
                return True
            chunks += 1
            if chunks % CHUNKS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()

    def _abort(self, reason: str) -> bool:
        self.aborted = self.aborted or reason
        self.scope.cancel()
        return False


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
