"""The farm driven from trio: a request takes a backend, waits in the queue, retries, gives its slot back.

Theory of operation
-------------------
`Dispatcher` owns the farm for the shell and turns the farm's commands into
wake-ups.  A request calls `await take()`: most of the time the farm says
`Forward` at once; when it says `Queued`, the request sleeps on its own
`trio.Event` until a `Forward` or `Refuse` for its ticket comes out of some
other call (a slot freed by `done`, a backend coming up through `carry_out`
from the health checker or the admin socket), or until its deadline, when
`farm.expire` refuses it (503, `sQ`).  A request cancelled while waiting (its
client left) withdraws from the queue.  `Changed` commands go to the shell's
`on_change` (log a backend going down or up, set its gauge).

Every call is synchronous but `take`; no lock is needed, since trio runs one
task at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from foobar_ref.balancer.farm import Changed, Command, Farm, Forward, Observation, Queued, Refuse


class Dispatcher:
    def __init__(self, farm: Farm, on_change: Callable[[Changed], None] = lambda change: None) -> None:
        self.farm = farm
        self.on_change = on_change
        self._waiting: dict[int, tuple[trio.Event, list[Forward | Refuse]]] = {}

    async def take(self) -> Forward | Refuse:
        """A backend for one request (`Forward`), or why there is none (`Refuse`: 503, Retry-After)."""
        decision = self.farm.arrive(trio.current_time())
        if not isinstance(decision, Queued):
            return decision
        event, outcome = trio.Event(), list[Forward | Refuse]()
        self._waiting[decision.ticket] = (event, outcome)
        try:
            with trio.move_on_at(decision.deadline_s):
                await event.wait()
            if not outcome:
                self.carry_out(self.farm.expire(trio.current_time()))
            return outcome[0]
        finally:
            self._waiting.pop(decision.ticket, None)
            if not outcome:  # cancelled while waiting: leave the queue
                self.carry_out(self.farm.finish(decision.ticket, trio.current_time()))

    def retry(self, ticket: int, tried: Sequence[str]) -> Forward | None:
        """Another backend after a failed attempt (None: none left; answer with the failure's status)."""
        forward, commands = self.farm.redispatch(ticket, tried, trio.current_time())
        self.carry_out(commands)
        return forward

    def done(self, ticket: int) -> None:
        """The exchange is over (answered, failed for good, or the client left): the slot goes on."""
        self.carry_out(self.farm.finish(ticket, trio.current_time()))

    def observe(self, backend: str, observation: Observation) -> None:
        self.carry_out(self.farm.observe(backend, observation, trio.current_time()))

    def carry_out(self, commands: list[Command], why: str = "") -> None:
        for command in commands:
            if isinstance(command, Changed):
                self.on_change(command)
            elif isinstance(command, Forward | Refuse):
                waiting = self._waiting.get(command.ticket)
                if waiting is not None and not waiting[1]:
                    waiting[1].append(command)
                    waiting[0].set()
