"""Socket readiness for the relays: one edge-triggered epoll set, registered once per socket.

Theory of operation
-------------------
`trio.lowlevel.wait_readable` arms a one-shot epoll registration on every call
(an `epoll_ctl` per wait, two calls and an exception the first time an fd is
seen), which on a keep-alive relay is two system calls per request.  Here each
relayed socket joins one private epoll set once, edge-triggered for in and out
(`EPOLLET`), and the epoll fd itself is the only thing trio waits on: one
system task per trio run (`_dispatch`) wakes when any relayed socket became
ready, drains the set with `poll(0)` and reschedules the waiting pumps.

Edge-triggered means an event reports a change once, so none may be lost: an
event for a direction nobody waits on sets that direction's `ready` latch, and
`wait_readable`/`wait_writable` consume the latch instead of parking.  A pump
waits only after a call would have blocked or after a short read (the socket
was empty when read, so any later byte makes a new edge), so a latch left over
from an older edge costs at most one read that says EAGAIN.  A short read does
not show a FIN queued behind the data, though, and no edge follows it: so the
end of the peer's stream (EPOLLRDHUP, EPOLLHUP, EPOLLERR) is remembered for
good (`read_ended`), since from then on no read blocks.  Errors and hang-ups
wake both directions, as in trio.

A socket is forgotten (`forget`) before it is closed; closing the fd takes it
out of the epoll set.  Waiting is cancellable like any trio wait.
"""

from __future__ import annotations

import select
import socket as stdsocket

import trio

_MASK = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_READ_FLAGS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_WRITE_FLAGS = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_READ_ENDED = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR  # a read can no longer block
_WRITE_ENDED = select.EPOLLHUP | select.EPOLLERR  # a write can no longer block
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED


class Ready:
    """One registered socket: who waits for which direction, and edges nobody waited for."""

    __slots__ = ("read_task", "write_task", "readable", "writable", "read_ended", "write_ended")

    def __init__(self) -> None:
        self.read_task: trio.lowlevel.Task | None = None
        self.write_task: trio.lowlevel.Task | None = None
        self.readable = False
        self.writable = False
        self.read_ended = False  # sticky: after EOF or an error every read returns at once
        self.write_ended = False

    def _abort_read(self, _: object) -> trio.lowlevel.Abort:
        self.read_task = None
        return _SUCCEEDED

    def _abort_write(self, _: object) -> trio.lowlevel.Abort:
        self.write_task = None
        return _SUCCEEDED


class Readiness:
    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.entries: dict[int, Ready] = {}

    def watch(self, sock: stdsocket.socket) -> Ready:
        fd = sock.fileno()
        ready = self.entries[fd] = Ready()
        try:
            self.epoll.register(fd, _MASK)
        except FileExistsError:  # a reused fd whose socket was closed without `forget`: start afresh
            self.epoll.modify(fd, _MASK)
        return ready

    def forget(self, sock: stdsocket.socket) -> None:
        """Before the socket is closed (closing removes it from the epoll set)."""
        self.entries.pop(sock.fileno(), None)

    async def _dispatch(self) -> None:
        poll, entries, reschedule = self.epoll.poll, self.entries, trio.lowlevel.reschedule
        try:
            while True:
                await trio.lowlevel.wait_readable(self.epoll.fileno())
                for fd, flags in poll(0):
                    ready = entries.get(fd)
                    if ready is None:
                        continue
                    if flags & _READ_ENDED:
                        ready.read_ended = True
                        ready.write_ended = ready.write_ended or bool(flags & _WRITE_ENDED)
                    if flags & _READ_FLAGS:
                        task = ready.read_task
                        if task is None:
                            ready.readable = True
                        else:
                            ready.read_task = None
                            reschedule(task)
                    if flags & _WRITE_FLAGS:
                        task = ready.write_task
                        if task is None:
                            ready.writable = True
                        else:
                            ready.write_task = None
                            reschedule(task)
        finally:
            trio.lowlevel.notify_closing(self.epoll.fileno())
            self.epoll.close()


async def wait_readable(ready: Ready) -> None:
    if ready.readable or ready.read_ended:
        ready.readable = False
        return
    ready.read_task = trio.lowlevel.current_task()
    await trio.lowlevel.wait_task_rescheduled(ready._abort_read)


async def wait_writable(ready: Ready) -> None:
    if ready.writable or ready.write_ended:
        ready.writable = False
        return
    ready.write_task = trio.lowlevel.current_task()
    await trio.lowlevel.wait_task_rescheduled(ready._abort_write)


_RUN: trio.lowlevel.RunVar[Readiness] = trio.lowlevel.RunVar("firewall_readiness")


def readiness() -> Readiness:
    """This trio run's set, started on first use (its task ends with the run)."""
    try:
        return _RUN.get()
    except LookupError:
        pass
    current = Readiness()
    _RUN.set(current)
    trio.lowlevel.spawn_system_task(current._dispatch, name="firewall readiness")
    return current
