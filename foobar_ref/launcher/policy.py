"""When to start a hop again, and when to give up: systemd's Restart=, RestartSec=, StartLimitBurst= in spirit. Pure.

Theory of operation
-------------------
The supervisor keeps one `HopStatus` per hop, in one `Phase`:

    PENDING   -> STARTING   spawned (`started`); waits for READY, MariaDB for SQL and its set-up
    STARTING  -> RUNNING    ready (`ready`)
    STARTING  -> BACKOFF    exited, or not ready in time (`exited`)
    RUNNING   -> BACKOFF    exited, or killed by the watchdog or the memory check (`exited`)
    BACKOFF   -> STARTING   once `due` has passed and no upstream is on its way up (`may_start`)
    ...       -> FAILED     the next start would pass the budget: given up, loudly
    any       -> STOPPING -> STOPPED    asked (`foobar-ref stop HOP`); it stays stopped
    STOPPED, FAILED -> PENDING          `start HOP`, `restart HOP` or `up` (a fresh budget)

Every exit the supervisor did not ask for is unexpected (a server has no
reason to end by itself), so it is restarted, as with `Restart=always`.

Back-off: `restart_s` after an exit, doubled for each further exit of a hop
that had not stayed up `stable_s`, up to `restart_max_s`.  Budget: at most
`burst` starts within `interval_s` (the first start counts); an exit that
would need one more makes the hop FAILED.

Dependency order: a hop does not start while one of its upstreams is
PENDING, STARTING or BACKOFF, since that one will be up soon; an upstream
that is FAILED or STOPPED is not waited for: the hop copes with a peer that
is down, as it must anyway.

Time comes in as `now` (wall-clock seconds, so it can be written to the
stack file and read by the next supervisor); nothing here reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class Phase(enum.Enum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    PAUSED = "paused"  # SIGSTOPped on request (`foobar-ref pause HOP`): a hang the watchdog leaves alone


ON_THE_WAY = frozenset({Phase.PENDING, Phase.STARTING, Phase.BACKOFF})


@dataclass(frozen=True)
class RestartPolicy:
    restart_s: float = 0.5  # RestartSec: the first restart's delay
    restart_max_s: float = 8.0  # the delay doubles up to this
    stable_s: float = 30.0  # up this long: the next exit starts the back-off afresh
    burst: int = 5  # StartLimitBurst: starts allowed ...
    interval_s: float = 60.0  # ... within StartLimitIntervalSec
    ready_timeout_s: float = 30.0  # from spawn to READY
    database_ready_timeout_s: float = 90.0  # from spawn to SQL answering and set-up done
    stop_timeout_s: float = 10.0  # SIGTERM, then SIGKILL after this
    watchdog_interval_s: float = 2.0  # WatchdogSec, roughly: a liveness probe this often
    watchdog_timeout_s: float = 2.0  # one probe's bound
    watchdog_misses: int = 3  # probes missed in a row: the hop hangs, it is killed and restarted
    memory_strikes: int = 3  # checks in a row over the memory limit: restarted


@dataclass
class HopStatus:
    """What the supervisor knows of one hop; written to the stack file for `status` and the monitoring."""

    name: str
    phase: Phase = Phase.PENDING
    wanted: str = "up"  # up | stopped (by `foobar-ref stop`)
    pid: int = 0
    started: float = 0.0  # the process's create time (psutil): tells our process from a recycled pid
    restarts: int = 0  # starts after an unexpected exit or a `restart HOP`: foobar_hop_restarts_total
    last_exit: str = ""
    last_exit_at: float = 0.0
    up_since: float = 0.0  # when the current process became ready (0: not up)
    starts: list[float] = field(default_factory=list)  # within the budget's interval
    exits_in_row: int = 0  # exits without a stable run between them: the back-off's exponent
    due: float = 0.0  # BACKOFF: not before
    restart_next: bool = False  # the next start is a restart (counted)
    probe_misses: int = 0
    memory_strikes: int = 0
    answered: str = ""  # the last request (stop, start, restart) carried out


def started(status: HopStatus, now: float, pid: int, create_time: float, policy: RestartPolicy) -> None:
    status.phase, status.pid, status.started, status.up_since = Phase.STARTING, pid, create_time, 0.0
    status.starts = [t for t in status.starts if now - t < policy.interval_s] + [now]
    status.probe_misses = status.memory_strikes = 0
    if status.restart_next:
        status.restarts += 1
        status.restart_next = False


def ready(status: HopStatus, now: float) -> None:
    status.phase, status.up_since = Phase.RUNNING, now


def exited(status: HopStatus, now: float, reason: str, policy: RestartPolicy) -> float | None:
    """Record an exit; returns the delay before the restart, or None (stopped, or FAILED: budget spent)."""
    stable = status.up_since and now - status.up_since >= policy.stable_s
    status.exits_in_row = 1 if stable else status.exits_in_row + 1
    status.pid, status.started, status.up_since = 0, 0.0, 0.0
    status.last_exit, status.last_exit_at = reason, now
    if status.wanted == "stopped" or status.phase is Phase.STOPPING:
        status.phase = Phase.STOPPED
        return None
    recent = [t for t in status.starts if now - t < policy.interval_s]
    if len(recent) >= policy.burst:
        status.phase = Phase.FAILED
        status.last_exit = f"{reason}; gave up: {len(recent)} starts within {policy.interval_s:g} s"
        return None
    delay = min(policy.restart_s * 2 ** (status.exits_in_row - 1), policy.restart_max_s)
    status.phase, status.due, status.restart_next = Phase.BACKOFF, now + delay, True
    return delay


def may_start(status: HopStatus, now: float, upstream_phases: Iterable[Phase]) -> bool:
    if status.phase not in (Phase.PENDING, Phase.BACKOFF) or status.wanted != "up" or now < status.due:
        return False
    return not any(phase in ON_THE_WAY for phase in upstream_phases)


def asked_to_start(status: HopStatus, restart: bool) -> None:
    """`start HOP` or `up`: a STOPPED or FAILED hop is pending again, with a fresh budget."""
    status.wanted = "up"
    if status.phase in (Phase.STOPPED, Phase.FAILED, Phase.BACKOFF):
        status.phase, status.due, status.starts, status.exits_in_row = Phase.PENDING, 0.0, [], 0
        status.restart_next = status.restart_next or restart


def probed(status: HopStatus, answered: bool, policy: RestartPolicy) -> bool:
    """One liveness probe's result; True when the hop missed too many in a row (it hangs: kill it)."""
    status.probe_misses = 0 if answered else status.probe_misses + 1
    return status.probe_misses >= policy.watchdog_misses


def memory_checked(status: HopStatus, rss_bytes: int, limit_bytes: int, policy: RestartPolicy) -> bool:
    """One resident-memory reading; True when it was over the limit too many times in a row."""
    status.memory_strikes = status.memory_strikes + 1 if rss_bytes > limit_bytes else 0
    return status.memory_strikes >= policy.memory_strikes


FIELDS = (
    "phase",
    "wanted",
    "pid",
    "started",
    "restarts",
    "last_exit",
    "last_exit_at",
    "up_since",
    "starts",
    "exits_in_row",
    "due",
    "restart_next",
    "answered",
)


def to_record(status: HopStatus) -> dict[str, object]:
    record: dict[str, object] = {name: getattr(status, name) for name in FIELDS}
    record["phase"] = status.phase.value
    return record


def from_record(name: str, record: dict[str, object]) -> HopStatus:
    """A status from the stack file; unknown or missing fields take their defaults."""
    status = HopStatus(name)
    for key in FIELDS:
        if key not in record:
            continue
        value = record[key]
        if key == "phase":
            try:
                status.phase = Phase(value)
            except ValueError:
                pass
            continue
        default = getattr(status, key)
        if isinstance(default, float) and isinstance(value, int | float) and not isinstance(value, bool):
            setattr(status, key, float(value))
        elif type(value) is type(default):
            setattr(status, key, value)
    return status
