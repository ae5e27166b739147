"""The relay with `os.splice` through a pipe: bytes move socket -> pipe -> socket inside the kernel.

Theory of operation
-------------------
`SpliceRelay` keeps everything of `relay.Relay` (the two directions in two
tasks, half-close, abort, idle flag, counters) and replaces only the pump.  Each
direction owns one pipe whose capacity is set to `PIPE_BYTES` (F_SETPIPE_SZ),
so a direction holds at most that much, like the copy relay's buffer:

* splice(src socket -> pipe) with SPLICE_F_NONBLOCK on an empty pipe: EAGAIN
  can then only mean "the socket is empty", so the pump waits for readable;
  0 is the sender's EOF, passed on as `shutdown(SHUT_WR)` (half-close);
* splice(pipe -> dst socket) until the pipe is empty again, waiting for
  writable on EAGAIN; the pump reads nothing more meanwhile (back-pressure).

splice returns the byte count, so the connection's counters and the `moved`
flag are kept exactly as in the copy relay; there is no user-space copy, so
capture (which needs the bytes) always uses the copy relay.  The same "a short
read emptied the client socket" heuristic decides when to wait first.

Pipes are reused across connections (two fds and an fcntl saved per
direction), but only when the pump ended with its pipe empty; a pipe left
holding bytes (abort, idle timeout, stop) is closed.

`--relay auto` (the default) starts each direction in the copy pump and moves
it to splice once it has relayed `AUTO_SPLICE_AFTER_BYTES` in bulk reads (at
least relay.BULK_READ_BYTES each; a keep-alive connection of small messages
never gets there however long it lives): small
request/response traffic keeps the copy path (splice measured ~5 % more CPU per
small request: the same two calls per chunk, plus the pipe's page bookkeeping,
for a copy of a few hundred bytes saved), bulk transfers get splice (~30-40 %
less CPU per MiB: nothing is copied through user space).  Measured
with benchmarks/firewall.py (see benchmarks/README-firewall.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket as stdsocket
from collections.abc import Callable

import trio

from foobar_ref.firewall.core import Connection, Direction
from foobar_ref.firewall.readiness import Ready, wait_readable, wait_writable
from foobar_ref.firewall.relay import CHUNKS_PER_CHECKPOINT, Relay

PIPE_BYTES = 64 * 1024
AUTO_SPLICE_AFTER_BYTES = 256 * 1024  # per direction, in bulk reads; below this the copy pump is cheaper (measured)
MAX_SPARE_PIPES = 256
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_spare: list[tuple[int, int]] = []

RELAY_MODES = ("copy", "splice", "auto")


def available() -> bool:
    return hasattr(os, "splice")


RelayMaker = Callable[[stdsocket.socket, stdsocket.socket, Connection], Relay]


def relay_factory(mode: str) -> RelayMaker:
    """What makes the relay for `--relay MODE` (copy, splice, auto)."""
    if mode == "copy":
        return Relay
    splice_after = 0 if mode == "splice" else AUTO_SPLICE_AFTER_BYTES

    def make(client: stdsocket.socket, server: stdsocket.socket, conn: Connection) -> Relay:
        return SpliceRelay(client, server, conn, splice_after)

    return make


class SpliceRelay(Relay):
    def __init__(
        self, client: stdsocket.socket, server: stdsocket.socket, conn: Connection, splice_after: int = 0
    ) -> None:
        super().__init__(client, server, conn)
        self.splice_after = splice_after
        if splice_after > 0:
            self.copy_limit_bytes = splice_after

    async def _pump(self, src: stdsocket.socket, dst: stdsocket.socket, direction: Direction, wait: bool) -> bool:
        if self.splice_after > 0:
            if not await super()._pump(src, dst, direction, wait):
                return False  # closed or aborted before it was worth splicing
            wait = False  # bulk data is flowing: try at once, EAGAIN makes it wait
        pipe = _spare.pop() if _spare else _new_pipe()
        empty = False
        try:
            empty = await self._splice(pipe, src, dst, direction, wait)
        finally:
            if empty and len(_spare) < MAX_SPARE_PIPES:
                _spare.append(pipe)
            else:
                os.close(pipe[0])
                os.close(pipe[1])
        return False

    async def _splice(
        self, pipe: tuple[int, int], src: stdsocket.socket, dst: stdsocket.socket, direction: Direction, wait: bool
    ) -> bool:
        """Relay until EOF (True: the pipe is empty and reusable) or an error (False)."""
        inbound = direction is Direction.IN
        sender, receiver = ("client", "server") if inbound else ("server", "client")
        pipe_out, pipe_in = pipe
        src_ready, dst_ready = self._readiness(inbound)
        src_fd, dst_fd = src.fileno(), dst.fileno()
        conn, chunks, drained = self.conn, 0, wait
        while True:
            if drained:
                await wait_readable(src_ready)
            try:
                size = os.splice(src_fd, pipe_in, PIPE_BYTES, flags=_FLAGS)
            except BlockingIOError:
                drained = True
                continue
            except OSError as err:
                self._abort(f"{sender} reset: {err.strerror or err}")
                return True
            drained = inbound and size < PIPE_BYTES
            if size == 0:
                with contextlib.suppress(OSError):
                    dst.shutdown(stdsocket.SHUT_WR)
                return True
            if inbound:
                conn.bytes_in += size
            else:
                conn.bytes_out += size
            self.moved = True
            try:
                await _drain(pipe_out, dst_ready, dst_fd, size)
            except OSError as err:
                self._abort(f"{receiver} reset: {err.strerror or err}")
                return False
            chunks += 1
            if chunks % CHUNKS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()


async def _drain(pipe_out: int, dst_ready: Ready, dst_fd: int, size: int) -> None:
    """Move `size` bytes from the pipe into the socket, waiting whenever the socket is full."""
    while size:
        try:
            size -= os.splice(pipe_out, dst_fd, size, flags=_FLAGS)
        except BlockingIOError:
            await wait_writable(dst_ready)


def _new_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # the default (64 KiB on Linux) is fine where resizing is refused
        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
    return read_end, write_end
