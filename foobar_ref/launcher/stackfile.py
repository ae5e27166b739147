"""The stack file (`<state>/stack.json`), the supervisor's lock, and the requests left for it.

Theory of operation
-------------------
`stack.json` says what runs: the topology, the supervisor (pid, create time,
mode, phase, error) and one record per hop (policy.HopStatus: pid and its
create time, phase, restarts, last exit, up since, ...).  The live supervisor
is its only writer; it rewrites it atomically (a temporary file renamed over
it) whenever something changed, so readers (`status`, `down`, the monitoring
clients, the next supervisor) never see half a file.  A pid counts as ours
only while its create time matches (`Running.alive`), never a recycled pid.

One supervisor per state folder: it holds an exclusive `flock` on
`run/supervisor.lock` for its whole life.  The kernel drops the lock when the
process dies, however it dies, so "is a supervisor alive" is one try of that
lock, not a guess from a pid.

`foobar-ref stop|start|restart HOP` write a request file into `run/requests/`
(atomically, named so they sort in order); the supervisor takes them at its
next tick, carries them out and records the request id in the hop's
`answered` field, which the command waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from foobar_ref.launcher.plan import StatePaths
from foobar_ref.launcher.policy import HopStatus, from_record

ACTIONS = ("stop", "start", "restart", "pause", "resume")
ALL_HOPS = "*"


@dataclass(frozen=True)
class Running:
    """A hop as the stack file records it, with its supervision status."""

    name: str
    role: str
    pid: int
    started: float  # psutil create_time, to tell our process from a recycled pid
    listen: tuple[str, ...]
    status: HopStatus | None = None

    def alive(self) -> bool:
        return process_alive(self.pid, self.started)


def process_alive(pid: int, started: float) -> bool:
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def create_time(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


def read_file(state: StatePaths) -> dict[str, Any]:
    """The stack file's content; {} when there is none (or it cannot be read)."""
    try:
        data = json.loads(state.stack_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_stack(state: StatePaths) -> list[Running]:
    hops = []
    for h in read_file(state).get("hops", []):
        try:
            status = from_record(h["name"], h)
            hops.append(Running(h["name"], h["role"], int(h["pid"]), float(h["started"]), tuple(h["listen"]), status))
        except (KeyError, TypeError, ValueError):
            continue
    return hops


def write_file(state: StatePaths, data: dict[str, Any]) -> None:
    state.root.mkdir(parents=True, exist_ok=True)
    tmp = state.stack_file.with_name(f".stack.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(state.stack_file)


# --- the supervisor's lock -----------------------------------------------------------


@contextlib.contextmanager
def supervisor_lock(state: StatePaths, holder: bool = False) -> Iterator[bool]:
    """Hold the lock for the body; yields False (and holds nothing) when another supervisor has it.

    `holder`: the supervisor itself, which writes its pid and create time into the lock file."""
    state.run.mkdir(parents=True, exist_ok=True)
    fd = os.open(state.supervisor_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        if holder:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "started": create_time(os.getpid())}).encode())
        yield True
    finally:
        os.close(fd)


def supervisor_alive(state: StatePaths) -> bool:
    if not state.supervisor_lock.exists():
        return False
    with supervisor_lock(state) as got:
        return not got


def supervisor_pid(state: StatePaths) -> int | None:
    """The live supervisor's pid (the lock holder's, checked against its create time), if any."""
    try:
        info = json.loads(state.supervisor_lock.read_text())
        pid, started = int(info["pid"]), float(info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if supervisor_alive(state) and process_alive(pid, started) else None


# --- requests ----------------------------------------------------------------------


def post_request(state: StatePaths, action: str, hop: str) -> str:
    """Leave a request for the supervisor; returns its id."""
    assert action in ACTIONS
    state.requests.mkdir(parents=True, exist_ok=True)
    request_id = uuid.uuid4().hex[:12]
    name = f"{time.time_ns():020d}-{request_id}.json"
    tmp = state.requests / f".{name}.tmp"
    tmp.write_text(json.dumps({"id": request_id, "action": action, "hop": hop}))
    tmp.replace(state.requests / name)
    return request_id


def take_requests(state: StatePaths) -> list[dict[str, str]]:
    """The requests waiting, oldest first; each is removed as it is read."""
    try:
        names = sorted(n for n in os.listdir(state.requests) if n.endswith(".json") and not n.startswith("."))
    except OSError:
        return []
    taken = []
    for name in names:
        path = state.requests / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        path.unlink(missing_ok=True)
        if isinstance(data, dict) and data.get("action") in ACTIONS and isinstance(data.get("hop"), str):
            taken.append({"id": str(data.get("id", "")), "action": data["action"], "hop": data["hop"]})
    return taken
