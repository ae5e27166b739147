"""Deadlines for many connections, without a cancel scope or timer per read and send.

Theory of operation
-------------------
A trio cancel scope costs about 20 us to enter and leave on the reference
machine, an asyncio timeout about 11 us; a keep-alive request used to pay for
three of them.  Here a driver (a `Deadlined`) only writes its `deadline`
attribute (clock seconds, `inf` for none) when its phase changes, and a timer
looks at it lazily:

- the timer keeps, per item, the time it will look next (`_wake`); a driver
  asks it to look earlier (`schedule`) only when a new deadline comes before
  that, which in steady keep-alive traffic is about once per idle period, not
  once per request (a later deadline needs nothing: the early look re-arms);
- when it looks and the deadline has passed, it calls `item.expire()`, which
  wakes the blocked read or write with an end of file or an error (trio: the
  socket is announced closing; asyncio: the reader gets an end of file, the
  transport is aborted while sending) and the driver turns that into its
  timeout: a silent close, a 408, a ResponseTimeout.

`TrioTimer` is one system task per trio run (a heap of weak references, so a
finished connection is freed at once), found with `trio_timer()`.
`AsyncioTimer` uses one `loop.call_at` handle per item.  Both read the clock of
their loop; expiry is exact, never early, and late only by scheduling delay.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import weakref
from typing import Protocol

import trio

INF = math.inf


class Deadlined:
    """Base of what a timer watches: `deadline` is read when the timer looks; `expire()` is called when due."""

    __slots__ = ("deadline", "_wake", "_handle", "__weakref__")

    def __init__(self) -> None:
        self.deadline = INF
        self._wake = INF  # when the timer looks next (INF: it does not)
        self._handle: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        raise NotImplementedError


class Timer(Protocol):
    def schedule(self, item: Deadlined, when: float) -> None:
        """Look at `item` at `when` (earlier than it would otherwise)."""

    def cancel(self, item: Deadlined) -> None:
        """The item is done: look at it no more."""


class NoTimer:
    """For drivers that bound each call themselves (blocking sockets, streams that cannot be shut)."""

    def schedule(self, item: Deadlined, when: float) -> None:
        pass

    def cancel(self, item: Deadlined) -> None:
        pass


NO_TIMER = NoTimer()


class TrioTimer:
    """One task that looks at every item when due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Deadlined]]] = []
        self._order = itertools.count()
        self._target = INF  # when the task wakes next
        self._poke = trio.Event()

    def schedule(self, item: Deadlined, when: float) -> None:
        item._wake = when
        heapq.heappush(self._heap, (when, next(self._order), weakref.ref(item)))
        if when < self._target:
            self._target = when
            self._poke.set()

    def cancel(self, item: Deadlined) -> None:
        item.deadline = INF
        item._wake = INF  # its heap entry, if any, is skipped when due

    async def run(self) -> None:
        while True:
            self._poke = trio.Event()
            self._target = self._heap[0][0] if self._heap else INF
            with trio.move_on_at(self._target):
                await self._poke.wait()
            self._look(trio.current_time())

    def _look(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, ref = heapq.heappop(heap)
            item = ref()
            if item is None or item._wake != when:
                continue  # gone, or a later look replaced this one
            _look_at(self, item, now)


def _look_at(timer: Timer, item: Deadlined, now: float) -> None:
    item._wake = INF
    deadline = item.deadline
    if deadline <= now:
        try:
            item.expire()
        except Exception:  # noqa: BLE001 - a timer must outlive a bad item
            pass
    elif deadline < INF:
        timer.schedule(item, deadline)


_TRIO_TIMER: trio.lowlevel.RunVar[TrioTimer] = trio.lowlevel.RunVar("foobar_ref_http_timer")


def trio_timer() -> TrioTimer:
    """The timer of the current trio run, started on first use."""
    try:
        return _TRIO_TIMER.get()
    except LookupError:
        timer = TrioTimer()
        _TRIO_TIMER.set(timer)
        trio.lowlevel.spawn_system_task(timer.run, name="foobar_ref http deadlines")
        return timer


class AsyncioTimer:
    """One call_at handle per item, on the running loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def schedule(self, item: Deadlined, when: float) -> None:
        if item._handle is not None:
            item._handle.cancel()
        item._wake = when
        item._handle = self._loop.call_at(when, self._look, item)

    def _look(self, item: Deadlined) -> None:
        item._handle = None
        _look_at(self, item, self._loop.time())

    def cancel(self, item: Deadlined) -> None:
        """The item is done: drop its handle."""
        item.deadline = INF
        if item._handle is not None:
            item._handle.cancel()
            item._handle = None
        item._wake = INF
