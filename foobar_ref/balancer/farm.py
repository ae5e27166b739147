"""The backends behind lb-01 as one farm: who takes a request, who waits, who is out. Pure.

Theory of operation
-------------------
The shell holds one `Farm` and tells it what happens; the farm answers with
commands (or, for the hot path, a single decision).  Nothing here does I/O or
reads a clock: every call carries `now_s`.

A request's life, by ticket (an int the farm hands out):

- `arrive(now_s)` -> `Forward(ticket, backend)`: go; `Queued(ticket,
  deadline_s)`: every usable backend is at its `backend_maxconn`, wait (FIFO,
  at most `queue.size` waiting, newcomers behind those already waiting);
  `Refuse(ticket, 503, retry_after_s, termination)`: no backend can take it
  (down, drained, in maint or at weight 0: `SC`)
  or the queue is full (`PQ`).
- `redispatch(ticket, tried, now_s)` after a failure the shell may retry
  (core.may_retry): another backend not in `tried`, or None (answer with the
  failure's own status).  The failed backend's slot is released.
- `finish(ticket, now_s)` when the exchange is over (or a queued client left):
  the slot goes to the oldest waiting ticket, as `Forward` commands the shell
  must carry out (wake that request).
- `expire(now_s)`: waiting tickets past `queue.timeout_s` -> `Refuse(...,
  termination="sQ")`; `next_deadline()` says when to call it.  A request
  that waits with its own deadline may call `finish` instead.

Health (see servers.py): `checked(backend, result, now_s)` for an active
check, `observe(backend, observation, now_s)` for what real traffic showed;
both may return `Changed(backend, before, after, reason)` for the log, and
`Forward`/`Refuse` for waiting tickets (a backend that comes up takes some;
when none is left up they all get 503 at once, not after the queue timeout).
`check_interval_s(backend)` gives HAProxy's next interval (inter, fastinter
while changing state, downinter while down; None in maint or with checks off).
With checks off (HAProxy: a server without `check`) backends are always up.

Run-time changes: `set_weight`, `set_admin` (ready, drain, maint).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from foobar_ref.balancer import algorithms
from foobar_ref.balancer.core import Failure
from foobar_ref.balancer.servers import Admin, CheckResult, Server, State
from foobar_ref.topology_balancer import MAX_WEIGHT, BalancerSettings

QUEUE_RETRY_AFTER_S = 1  # an overloaded farm frees slots within seconds


# --- commands (what the shell must do) ------------------------------------------------------


@dataclass(frozen=True)
class Forward:
    ticket: int
    backend: str


@dataclass(frozen=True)
class Queued:
    ticket: int
    deadline_s: float


@dataclass(frozen=True)
class Refuse:
    ticket: int
    status: int
    retry_after_s: int
    termination: str  # HAProxy's two letters: SC no backend, sQ queue timeout, PQ queue full
    reason: str


@dataclass(frozen=True)
class Changed:
    backend: str
    before: State
    after: State
    reason: str


Decision = Forward | Queued | Refuse
Command = Forward | Queued | Refuse | Changed


class Observation(Enum):
    """What real traffic showed of a backend (HAProxy's `observe`)."""

    ANSWERED = "answered"
    CONNECT_FAILED = "connect_failed"
    NO_ANSWER = "no_answer"  # a fresh connection closed or reset before any response byte
    TIMED_OUT = "timed_out"  # no response within the server timeout


_PASSIVE_CODES = {
    Observation.CONNECT_FAILED: "L4CON",
    Observation.NO_ANSWER: "L7RSP",
    Observation.TIMED_OUT: "L7TOUT",
}


def observation_of(failure: Failure, fresh_connection: bool) -> Observation | None:
    """How a failed upstream attempt counts for health; None when it says nothing about the backend's life.

    A closed or reset keep-alive connection may just have been idle too long; a bad response shows the
    backend alive (HAProxy's layer-7 observation would count it; a 502 per bad page is enough here).
    """
    if failure is Failure.CONNECT:
        return Observation.CONNECT_FAILED
    if failure is Failure.TIMEOUT:
        return Observation.TIMED_OUT
    if failure is Failure.NO_RESPONSE and fresh_connection:
        return Observation.NO_ANSWER
    return None


class Farm:
    def __init__(self, backends: Sequence[str], settings: BalancerSettings) -> None:
        if not backends:
            raise ValueError("a farm needs at least one backend")
        check = settings.check
        self.settings = settings
        self.servers = {
            name: Server(name, settings.weight(name), check.rise, check.fall, settings.slowstart_s) for name in backends
        }
        self._order = list(self.servers.values())
        self._algorithm = algorithms.make(settings.algorithm, backends)
        self._queue: OrderedDict[int, float] = OrderedDict()  # ticket -> deadline_s, oldest first
        self._holding: dict[int, str] = {}
        self._next_ticket = 1
        self.queue_max = 0
        self.refusals: dict[str, int] = {"SC": 0, "sQ": 0, "PQ": 0}

    # --- requests -----------------------------------------------------------------------------

    def arrive(self, now_s: float) -> Decision:
        ticket = self._next_ticket
        self._next_ticket += 1
        backend = None if self._queue else self._pick(now_s, ())
        if backend is not None:
            self._hold(ticket, backend)
            return Forward(ticket, backend)
        if not self._any_usable(now_s):
            return self._refuse(ticket, "SC", "no backend available")
        if len(self._queue) >= self.settings.queue.size:
            return self._refuse(ticket, "PQ", f"the queue is full ({self.settings.queue.size} waiting)")
        deadline_s = now_s + self.settings.queue.timeout_s
        self._queue[ticket] = deadline_s
        self.queue_max = max(self.queue_max, len(self._queue))
        return Queued(ticket, deadline_s)

    def redispatch(self, ticket: int, tried: Sequence[str], now_s: float) -> tuple[Forward | None, list[Command]]:
        """Another backend for a request whose attempt failed, and what the freed slot caused."""
        backend = self._pick(now_s, tried)
        self._release(ticket)
        if backend is not None:
            self._hold(ticket, backend)
        return (Forward(ticket, backend) if backend else None), self._dispatch(now_s)

    def finish(self, ticket: int, now_s: float) -> list[Command]:
        if self._queue.pop(ticket, None) is not None:
            return []
        self._release(ticket)
        return self._dispatch(now_s)

    def expire(self, now_s: float) -> list[Command]:
        expired: list[Command] = []
        while self._queue:
            ticket, deadline_s = next(iter(self._queue.items()))
            if deadline_s > now_s:
                break
            del self._queue[ticket]
            expired.append(self._refuse(ticket, "sQ", f"no backend slot within {self.settings.queue.timeout_s:g} s"))
        return expired

    def next_deadline(self) -> float | None:
        return next(iter(self._queue.values()), None)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def backend_of(self, ticket: int) -> str | None:
        return self._holding.get(ticket)

    # --- health ---------------------------------------------------------------------------------

    def checked(self, backend: str, result: CheckResult, now_s: float) -> list[Command]:
        server = self.servers[backend]
        if not self.settings.check.enabled or server.admin is Admin.MAINT:
            return []
        reason = f"check {result.code}" + (f": {result.detail}" if result.detail else "")
        return self._after(server, *server.checked(result, now_s), reason, now_s)

    def observe(self, backend: str, observation: Observation, now_s: float) -> list[Command]:
        """Passive health: failures count as failed checks (HAProxy's observe + on-error fail-check)."""
        server = self.servers[backend]
        if observation is Observation.ANSWERED:
            return []
        server.observed_errors[observation.value] = server.observed_errors.get(observation.value, 0) + 1
        if not self.settings.check.enabled or server.admin is Admin.MAINT:
            return []
        result = CheckResult(False, _PASSIVE_CODES[observation], detail=f"traffic: {observation.value}")
        return self._after(server, *server.checked(result, now_s, active=False), f"traffic {observation.value}", now_s)

    def check_interval_s(self, backend: str) -> float | None:
        """HAProxy's srv_getinter: inter at full health, downinter when down, fastinter in between."""
        check = self.settings.check
        server = self.servers[backend]
        if not check.enabled or server.admin is Admin.MAINT:
            return None
        if server.health == server.top:
            return check.inter_s
        if server.health == 0:
            return check.downinter_s or check.inter_s
        return check.fastinter_s or check.inter_s

    def first_check_delay_s(self, backend: str) -> float:
        """Checks of different backends spread over one interval (HAProxy spreads them too)."""
        index = list(self.servers).index(backend)
        return self.settings.check.inter_s * index / len(self.servers)

    def retry_after_s(self) -> int:
        """Seconds a client is told to wait when no backend is available: the time for `rise` good checks."""
        check = self.settings.check
        return max(1, math.ceil(check.inter_s * check.rise)) if check.enabled else 1

    # --- run-time changes --------------------------------------------------------------------------

    def set_weight(self, backend: str, weight: int, now_s: float) -> list[Command]:
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight must be an integer in [0, {MAX_WEIGHT}], not {weight!r}")
        server = self.servers[backend]
        server.weight = weight
        if weight == 0:
            self._algorithm.forget(backend)
        return self._dispatch(now_s)

    def set_admin(self, backend: str, admin: Admin, now_s: float) -> list[Command]:
        server = self.servers[backend]
        return self._after(server, *server.set_admin(admin, now_s), f"set state {admin.value}", now_s)

    # --- inside --------------------------------------------------------------------------------------

    def _pick(self, now_s: float, tried: Sequence[str]) -> str | None:
        limit = self.settings.backend_maxconn
        candidates = []
        for server in self._order:
            if server.name in tried or (limit and server.served >= limit):
                continue
            weight = server.effective_weight(now_s)
            if weight > 0:
                candidates.append((server, weight))
        return self._algorithm.pick(candidates)

    def _any_usable(self, now_s: float) -> bool:
        return any(server.effective_weight(now_s) > 0 for server in self._order)

    def _hold(self, ticket: int, backend: str) -> None:
        self._holding[ticket] = backend
        self.servers[backend].took()

    def _release(self, ticket: int) -> None:
        backend = self._holding.pop(ticket, None)
        if backend is not None:
            self.servers[backend].released()

    def _refuse(self, ticket: int, termination: str, reason: str) -> Refuse:
        self.refusals[termination] += 1
        retry_after_s = self.retry_after_s() if termination == "SC" else QUEUE_RETRY_AFTER_S
        return Refuse(ticket, 503, retry_after_s, termination, reason)

    def _dispatch(self, now_s: float) -> list[Command]:
        """Free slots to the oldest waiting tickets; when no backend is left up, 503 to all of them."""
        commands: list[Command] = []
        while self._queue:
            backend = self._pick(now_s, ())
            if backend is None:
                break
            ticket, _ = self._queue.popitem(last=False)
            self._hold(ticket, backend)
            commands.append(Forward(ticket, backend))
        if self._queue and not self._any_usable(now_s):
            for ticket in list(self._queue):
                del self._queue[ticket]
                commands.append(self._refuse(ticket, "SC", "no backend available"))
        return commands

    def _after(self, server: Server, before: State, after: State, reason: str, now_s: float) -> list[Command]:
        if before is after:
            return []
        if after is not State.UP:
            self._algorithm.forget(server.name)
        return [Changed(server.name, before, after, reason), *self._dispatch(now_s)]


# --- events, for transcripts (`drive(farm, [Arrived(0.0), ...]) == [Forward(1, "web-01"), ...]`) -----


@dataclass(frozen=True)
class Arrived:
    now_s: float


@dataclass(frozen=True)
class Retried:
    ticket: int
    tried: tuple[str, ...]
    now_s: float


@dataclass(frozen=True)
class Finished:
    ticket: int
    now_s: float


@dataclass(frozen=True)
class TimePassed:
    now_s: float


@dataclass(frozen=True)
class Checked:
    backend: str
    result: CheckResult
    now_s: float


@dataclass(frozen=True)
class Observed:
    backend: str
    observation: Observation
    now_s: float


@dataclass(frozen=True)
class WeightSet:
    backend: str
    weight: int
    now_s: float


@dataclass(frozen=True)
class AdminSet:
    backend: str
    admin: Admin
    now_s: float


Event = Arrived | Retried | Finished | TimePassed | Checked | Observed | WeightSet | AdminSet


def handle(farm: Farm, event: Event) -> list[Command]:
    """One event in, the commands it causes out."""
    match event:
        case Arrived(now_s):
            return [farm.arrive(now_s)]
        case Retried(ticket, tried, now_s):
            forward, commands = farm.redispatch(ticket, tried, now_s)
            return ([forward] if forward else []) + commands
        case Finished(ticket, now_s):
            return farm.finish(ticket, now_s)
        case TimePassed(now_s):
            return farm.expire(now_s)
        case Checked(backend, result, now_s):
            return farm.checked(backend, result, now_s)
        case Observed(backend, observation, now_s):
            return farm.observe(backend, observation, now_s)
        case WeightSet(backend, weight, now_s):
            return farm.set_weight(backend, weight, now_s)
        case AdminSet(backend, admin, now_s):
            return farm.set_admin(backend, admin, now_s)
    raise TypeError(f"not a farm event: {event!r}")


def drive(farm: Farm, events: Sequence[Event]) -> list[Command]:
    return [command for event in events for command in handle(farm, event)]
