"""What the CLI asks of the launcher: bring the stack up (or heal it), ask the supervisor, bring it down.

Theory of operation
-------------------
`up` checks every address the hops it will start bind (so a busy port is
named before anything starts; hops that still run are adopted, not checked),
makes the certificates, then runs a `Supervisor` (supervisor.py): in this
process with `foreground`, or as its own process in its own session with
`detach` (`python -m foobar_ref.launcher`), followed through the stack file
until every hop is up or the start failed.  A supervisor holds the state
folder's lock for its life, so there is never a second one; when one is
alive, `up` asks it to start whatever does not run (`heal`).

`ask` leaves a request (stop, start, restart one hop) for the live supervisor
and waits until the hop's record says it was carried out.

`down` stops the supervisor first (SIGTERM: a detached one exits and leaves
the hops; a foreground one stops them itself), then every hop still alive in
reverse start order: SIGTERM, a bound, then SIGKILL; then removes the stack
file.  A pid is signalled only while its create time matches the record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from foobar_ref import certs
from foobar_ref.launcher.plan import HopSpec, StatePaths, plan
from foobar_ref.launcher.policy import HopStatus, Phase
from foobar_ref.launcher.process import LaunchError, check_addresses_free, last_lines, signal_hop
from foobar_ref.launcher.stackfile import (
    ALL_HOPS,
    Running,
    post_request,
    read_file,
    read_stack,
    supervisor_alive,
    supervisor_lock,
    supervisor_pid,
)
from foobar_ref.launcher.supervisor import Supervisor
from foobar_ref.observe import log as logger
from foobar_ref.topology import Topology

__all__ = [
    "LaunchError", "Running", "read_stack", "check_addresses_free", "supervisor_alive", "supervisor_pid",
    "up", "heal", "ask", "down", "phase_of",
]  # fmt: skip

STOP_TIMEOUT_S = 10.0
UP_TIMEOUT_S = 300.0  # MariaDB's first start initialises its data directory
SUPERVISOR_STOP_TIMEOUT_S = 30.0  # a foreground supervisor stops every hop before it exits
ASK_TIMEOUT_S = {"stop": 30.0, "start": 120.0, "restart": 130.0, "pause": 10.0, "resume": 10.0}
POLL_S = 0.1

Say = Callable[[str], None]


def to_start(topo: Topology, state: StatePaths, capture: bool = False) -> tuple[list[HopSpec], list[Running]]:
    """(the hops `up` must start, the recorded hops that still run and will be adopted)."""
    alive = [r for r in read_stack(state) if r.alive()]
    running = {r.name for r in alive}
    return [s for s in plan(topo, state, capture) if s.name not in running], alive


def run_supervisor(topo: Topology, state: StatePaths, capture: bool, mode: str, say: Say, on_ready=None) -> int:  # type: ignore[no-untyped-def]
    """Hold the lock, adopt what runs, start the rest, supervise until stopped. 1: the start failed."""
    state.logs.mkdir(parents=True, exist_ok=True)
    logger.configure(state.supervisor_log)
    deadline = time.monotonic() + 2.0
    while True:
        with supervisor_lock(state, holder=True) as got:
            if got:
                supervisor = Supervisor(topo, state, capture=capture, mode=mode, say=say)
                supervisor.on_ready = on_ready
                supervisor.adopt()
                code = supervisor.run()
                if code:
                    raise LaunchError(supervisor.error)
                return code
        if time.monotonic() > deadline:
            raise LaunchError(f"another supervisor runs for {state.root}")
        time.sleep(POLL_S)


def prepare(topo: Topology, state: StatePaths, capture: bool, say: Say) -> None:
    """Check the addresses of the hops to start, make folders and certificates; say what is adopted."""
    starting, alive = to_start(topo, state, capture)
    check_addresses_free(starting)
    state.root.mkdir(parents=True, exist_ok=True)
    state.logs.mkdir(exist_ok=True)
    certs.ensure(state.root, topo.site_names)
    if alive:
        say(f"adopting {len(alive)} running hops; starting {', '.join(s.name for s in starting) or 'none'}")


def up(topo: Topology, state: StatePaths, capture: bool, detach: bool, say: Say, on_ready=None) -> None:  # type: ignore[no-untyped-def]
    """Start (or adopt) every hop under a new supervisor; raises LaunchError naming what failed."""
    prepare(topo, state, capture, say)
    if not detach:
        run_supervisor(topo, state, capture, "foreground", say, on_ready)
        return
    argv = [sys.executable, "-m", "foobar_ref.launcher", "--topology", str(topo.path), "--state", str(state.root)]
    out = state.logs / "supervisor.out"
    with open(out, "ab") as file:
        process = subprocess.Popen(
            [*argv, *(["--capture"] if capture else [])],
            stdout=file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    _follow(state, process, say)
    if on_ready is not None:
        on_ready()


def _follow(state: StatePaths, process: subprocess.Popen[bytes], say: Say) -> None:
    """Print each hop as it comes up, until the detached supervisor says the stack runs (or failed)."""
    shown: set[str] = set()
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        exited = process.poll() is not None
        data = read_file(state)
        supervisor = data.get("supervisor") or {}
        if supervisor.get("pid") == process.pid:
            for hop in data.get("hops", []):
                if hop.get("phase") == "running" and hop["name"] not in shown:
                    shown.add(hop["name"])
                    say(f"{hop['name']:<11} up   pid {hop['pid']:<7} {' '.join(hop['listen'])}")
            if supervisor.get("phase") == "running":
                return
            if supervisor.get("phase") == "failed":
                process.wait(SUPERVISOR_STOP_TIMEOUT_S)
                state.stack_file.unlink(missing_ok=True)
                raise LaunchError(str(supervisor.get("error")))
        if exited:
            tail = last_lines((state.logs / "supervisor.out").read_text(errors="replace"), 5)
            raise LaunchError(f"the supervisor exited with code {process.returncode}: {tail or 'no output'}")
        time.sleep(POLL_S)
    raise LaunchError(f"the stack did not come up within {UP_TIMEOUT_S:g} s; see {state.supervisor_log}")


def heal(state: StatePaths, say: Say) -> list[Running]:
    """A supervisor runs: ask it to start every hop that does not run; returns the hops, once settled."""
    request_id = post_request(state, "start", ALL_HOPS)
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        hops = read_stack(state)
        if hops and all(r.status is not None and r.status.answered == request_id for r in hops):
            return hops
        if not supervisor_alive(state):
            raise LaunchError("the supervisor went away; `foobar-ref up` starts another")
        time.sleep(POLL_S)
    raise LaunchError(f"the supervisor did not settle within {UP_TIMEOUT_S:g} s; see {state.supervisor_log}")


def ask(state: StatePaths, action: str, hop: str) -> HopStatus:
    """Have the live supervisor stop, start or restart one hop; returns its status once done."""
    names = [r.name for r in read_stack(state)]
    if hop not in names:
        known = ", ".join(names) or "none: no stack runs"
        raise LaunchError(f"no hop named {hop!r} in this stack (hops: {known})")
    if not supervisor_alive(state):
        raise LaunchError("no supervisor runs for this stack: `foobar-ref up` adopts the running hops and starts one")
    request_id = post_request(state, action, hop)
    deadline = time.monotonic() + ASK_TIMEOUT_S[action]
    while time.monotonic() < deadline:
        status = next((r.status for r in read_stack(state) if r.name == hop), None)
        if status is not None and status.answered == request_id:
            return status
        time.sleep(POLL_S)
    raise LaunchError(f"{action} {hop}: no answer within {ASK_TIMEOUT_S[action]:g} s; see {state.supervisor_log}")


def down(state: StatePaths, say: Say = print) -> int:
    """Stop the supervisor, then every hop of the stack in this state folder; returns how many hops ran."""
    alive_before = [r for r in read_stack(state) if r.alive()]
    _stop_supervisor(state, say)
    running = read_stack(state)  # again: the supervisor may have started one meanwhile
    _stop(list(reversed(running)), say)
    state.stack_file.unlink(missing_ok=True)
    return len(alive_before)


def _stop_supervisor(state: StatePaths, say: Say) -> None:
    pid, deadline = supervisor_pid(state), time.monotonic() + 2.0
    while pid is None and supervisor_alive(state) and time.monotonic() < deadline:
        time.sleep(POLL_S)  # one that has just started writes its pid at its first tick
        pid = supervisor_pid(state)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + SUPERVISOR_STOP_TIMEOUT_S
    while time.monotonic() < deadline and supervisor_alive(state):
        time.sleep(POLL_S)
    if supervisor_alive(state):
        say(f"supervisor (pid {pid}) did not stop within {SUPERVISOR_STOP_TIMEOUT_S:g} s, killing it")
        os.kill(pid, signal.SIGKILL)
    else:
        say(f"{'supervisor':<11} stopped")


def _stop(running: list[Running], say: Say) -> None:
    alive = [r for r in running if r.alive()]
    for r in alive:
        signal_hop(r.pid, signal.SIGTERM)
        signal_hop(r.pid, signal.SIGCONT)  # a paused hop sees its SIGTERM only once it runs
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(r.alive() for r in alive):
        time.sleep(0.05)
    for r in alive:
        if r.alive():
            say(f"{r.name}: did not stop within {STOP_TIMEOUT_S:g} s, killing")
            signal_hop(r.pid, signal.SIGKILL)
        else:
            say(f"{r.name:<11} stopped")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(r.alive() for r in alive):
        time.sleep(0.05)


def phase_of(running: Running) -> str:
    """What `status` shows: the recorded phase, unless the process is gone without the supervisor knowing."""
    if running.status is None:
        return "up" if running.alive() else "down"
    phase = running.status.phase
    if phase is Phase.RUNNING and not running.alive():
        return "down"
    return phase.value
