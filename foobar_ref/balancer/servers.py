"""One backend as the balancer sees it: health counter, admin state, weights, slow start, load. Pure.

Theory of operation
-------------------
Health follows HAProxy's check counter (src/check.c): `health` runs from 0 to
`rise + fall - 1`; the backend is *up* while `health >= rise`.

- a passed check adds one; on reaching `rise` it jumps to the top
  (`rise + fall - 1`), so a down backend needs `rise` good checks in a row;
- a failed check takes one away; falling below `rise` drops it to 0, so an up
  backend at the top needs `fall` bad checks in a row;
- a backend starts up at `health = rise` ("up, but will fall down at first
  failure", as HAProxy starts its servers), and so does one leaving `maint`.

Passive observations (a failed connect, a response timeout, a fresh connection
closed without an answer: HAProxy's `observe layer4/layer7` with
`on-error fail-check`) count exactly like failed checks.

The admin state is separate (HAProxy's `set server state`): `ready`, `drain`
(up or down as checks say, but no new requests; open ones finish) and `maint`
(no requests, no checks).  What `stats` and the logs show, `State`, combines
both: maint, then drain, then up or down.

Slow start: a backend that comes back up (not at start) ramps its effective
weight linearly from 1 to its weight over `slowstart_s` (HAProxy's
`slowstart`).  Times are plain floats passed in (`now_s`), never read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class Admin(Enum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


class State(Enum):
    UP = "up"
    DOWN = "down"
    DRAIN = "drain"
    MAINT = "maint"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check (or a passive observation), in HAProxy's check status words.

    `code`: L4OK, L4CON (connect failed or closed), L4TOUT, L7OK, L7STS (bad status),
    L7RSP (not a valid HTTP response), L7TOUT (no response in time).
    """

    passed: bool
    code: str
    status: int | None = None
    duration_s: float = 0.0
    detail: str = ""


@dataclass
class LastCheck:
    result: CheckResult
    at_s: float


@dataclass
class Server:
    """One backend; `served` is its requests in flight, `total` how often it was chosen."""

    name: str
    weight: int
    rise: int
    fall: int
    slowstart_s: float
    health: int = 0
    admin: Admin = Admin.READY
    ramp_from_s: float | None = None  # slow start began here (None: at full weight)
    last_change_s: float = 0.0
    served: int = 0
    max_served: int = 0
    total: int = 0
    failed_checks: int = 0
    downs: int = 0
    down_since_s: float | None = None
    downtime_s: float = 0.0
    last_check: LastCheck | None = None
    observed_errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.health = self.rise  # up, but will fall down at first failure

    # --- what it is ----------------------------------------------------------------------

    @property
    def top(self) -> int:
        return self.rise + self.fall - 1

    @property
    def up(self) -> bool:
        return self.health >= self.rise

    @property
    def state(self) -> State:
        if self.admin is Admin.MAINT:
            return State.MAINT
        if self.admin is Admin.DRAIN:
            return State.DRAIN
        return State.UP if self.up else State.DOWN

    def status_text(self) -> str:
        """As HAProxy's stats page: UP, DOWN, `UP 1/3` (going down), `DOWN 1/2` (coming up), DRAIN, MAINT.

        HAProxy's numbers: going down, health - rise + 1 out of fall; coming up, health out of rise.
        """
        state = self.state
        if state in (State.MAINT, State.DRAIN):
            return state.value.upper()
        if self.up and self.health < self.top:
            return f"UP {self.health - self.rise + 1}/{self.fall}"  # failed checks it can still take
        if not self.up and self.health > 0:
            return f"DOWN {self.health}/{self.rise}"
        return state.value.upper()

    def usable(self) -> bool:
        """May take new requests (weight aside)."""
        return self.admin is Admin.READY and self.up

    def effective_weight(self, now_s: float) -> int:
        """The weight the algorithms use: 0 when not usable, ramping during slow start."""
        if not self.usable() or self.weight == 0:
            return 0
        if self.ramp_from_s is None or self.slowstart_s <= 0:
            return self.weight
        elapsed = now_s - self.ramp_from_s
        if elapsed >= self.slowstart_s:
            return self.weight
        return max(1, math.ceil(self.weight * max(elapsed, 0.0) / self.slowstart_s))

    # --- what happens to it ------------------------------------------------------------------

    def checked(self, result: CheckResult, now_s: float, active: bool = True) -> tuple[State, State]:
        """Apply one check result (`active`) or passive observation; returns (state before, state after)."""
        before = self.state
        was_up = self.up
        if active:
            self.last_check = LastCheck(result, now_s)
        if result.passed:
            if self.health < self.top:
                self.health += 1
                if self.health >= self.rise:
                    self.health = self.top
        else:
            self.failed_checks += active
            if self.health > 0:
                self.health -= 1
                if self.health < self.rise:
                    self.health = 0
        if was_up != self.up:
            self._went(self.up, now_s)
        return before, self.state

    def set_admin(self, admin: Admin, now_s: float) -> tuple[State, State]:
        before = self.state
        if self.admin is Admin.MAINT and admin is not Admin.MAINT:
            self.health = self.rise  # HAProxy: back from maint up, checked again at once
            self._start_ramp(now_s)
            self._end_downtime(now_s)
        elif admin is Admin.MAINT and self.admin is not Admin.MAINT and self.down_since_s is None:
            self.down_since_s = now_s
        self.admin = admin
        if before is not self.state:
            self.last_change_s = now_s
        return before, self.state

    def took(self) -> None:
        self.served += 1
        self.total += 1
        self.max_served = max(self.max_served, self.served)

    def released(self) -> None:
        self.served = max(0, self.served - 1)

    def _went(self, up: bool, now_s: float) -> None:
        self.last_change_s = now_s
        if up:
            self._start_ramp(now_s)
            self._end_downtime(now_s)
        else:
            self.downs += 1
            self.ramp_from_s = None
            self.down_since_s = now_s

    def _start_ramp(self, now_s: float) -> None:
        self.ramp_from_s = now_s if self.slowstart_s > 0 else None

    def _end_downtime(self, now_s: float) -> None:
        if self.down_since_s is not None:
            self.downtime_s += now_s - self.down_since_s
            self.down_since_s = None

    def total_downtime_s(self, now_s: float) -> float:
        ongoing = now_s - self.down_since_s if self.down_since_s is not None else 0.0
        return self.downtime_s + ongoing
