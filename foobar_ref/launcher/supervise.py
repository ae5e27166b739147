"""Start, watch and stop the hops as real processes.

Theory of operation
-------------------
`up` checks every address the plan will bind (so a busy port is named before
anything starts), makes the certificates, then starts the hops in plan order.
Each hop runs in its own session with stdout+stderr appended to
`<state>/logs/<hop>.log`; the supervisor waits for the hop's READY line there
(MariaDB: until it answers SQL, then sets up users and replication).  After each
start the stack file (`<state>/stack.json`) is rewritten with every pid and its
start time, so `down` can always find what `up` started, even after a crash, and
never signals a recycled pid.  Any failure stops what was started.

`down` sends SIGTERM to each hop in reverse order, waits up to a bound, then
SIGKILLs what is left and removes the stack file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from foobar_ref import certs
from foobar_ref.launcher.plan import HopSpec, StatePaths, plan
from foobar_ref.topology import Topology

READY_TIMEOUT_S = 30.0
DATABASE_READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


class LaunchError(Exception):
    """The stack could not start; the message says which hop and why."""


@dataclass(frozen=True)
class Running:
    name: str
    role: str
    pid: int
    started: float  # psutil create_time, to tell our process from a recycled pid
    listen: tuple[str, ...]

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


Say = Callable[[str], None]


def read_stack(state: StatePaths) -> list[Running]:
    try:
        data = json.loads(state.stack_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [Running(h["name"], h["role"], h["pid"], h["started"], tuple(h["listen"])) for h in data["hops"]]


def _write_stack(state: StatePaths, topo: Topology, running: list[Running]) -> None:
    data = {
        "topology": str(topo.path),
        "hops": [
            {"name": r.name, "role": r.role, "pid": r.pid, "started": r.started, "listen": list(r.listen)}
            for r in running
        ],
    }
    tmp = state.stack_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(state.stack_file)


def up(topo: Topology, state: StatePaths, capture: bool = False, say: Say = print) -> list[Running]:
    """Start every hop; return them running. Raises LaunchError (after stopping what started)."""
    already = [r for r in read_stack(state) if r.alive()]
    if already:
        raise AlreadyRunning(already)
    specs = plan(topo, state, capture)
    check_addresses_free(specs)
    state.root.mkdir(parents=True, exist_ok=True)
    state.logs.mkdir(exist_ok=True)
    certs.ensure(state.root, topo.site_names)
    running: list[Running] = []
    try:
        for spec in specs:
            running.append(_start(topo, state, spec, say))
            _write_stack(state, topo, running)
    except BaseException:
        say("stopping what was started")
        _stop(running, say)
        state.stack_file.unlink(missing_ok=True)
        raise
    return running


class AlreadyRunning(LaunchError):
    def __init__(self, running: list[Running]) -> None:
        super().__init__(f"a stack is already running ({len(running)} hops up); `foobar-ref down` stops it")
        self.running = running


def check_addresses_free(specs: list[HopSpec]) -> None:
    """Try every bind the plan needs; the first busy one is named with its hop."""
    for spec in specs:
        for proto, ip, port in spec.binds:
            kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, kind) as sock:
                if proto == "tcp":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((ip, port))
                except OSError as err:
                    raise LaunchError(
                        f"{spec.name}: cannot listen on {ip}:{port} ({proto}): {err.strerror}; nothing was started"
                    ) from None


def _start(topo: Topology, state: StatePaths, spec: HopSpec, say: Say) -> Running:
    log_path = state.log(spec.name)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            spec.argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    running = Running(spec.name, spec.role, proc.pid, psutil.Process(proc.pid).create_time(), spec.listen)
    try:
        if spec.is_database:
            _wait_database(topo, state, spec, proc)
        else:
            _wait_ready_line(spec, proc, log_path, offset)
    except BaseException:
        _stop([running], say)
        raise
    say(f"{spec.name:<11} up   pid {proc.pid:<7} {' '.join(spec.listen)}")
    return running


def _wait_ready_line(spec: HopSpec, proc: subprocess.Popen[bytes], log_path: Path, offset: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        if f"READY hop={spec.name}" in text:
            return
        if proc.poll() is not None:
            raise LaunchError(f"{spec.name} exited with code {proc.returncode}: {_last_lines(text)}")
        time.sleep(0.05)
    raise LaunchError(f"{spec.name} did not become ready within {READY_TIMEOUT_S:g} s; see {log_path}")


def _wait_database(topo: Topology, state: StatePaths, spec: HopSpec, proc: subprocess.Popen[bytes]) -> None:
    from foobar_ref.mysql import setup  # PyMySQL is needed only when a stack starts

    try:
        setup.wait_ready(topo, spec.name, state.root, DATABASE_READY_TIMEOUT_S, process=proc)
        setup.configure(topo, spec.name, state.root)
    except setup.MysqlSetupError as err:
        raise LaunchError(f"{spec.name}: {err}; see {state.log(spec.name)}") from None


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


def down(state: StatePaths, say: Say = print) -> int:
    """Stop every hop of the stack in this state folder; returns how many were running."""
    running = read_stack(state)
    alive = [r for r in running if r.alive()]
    _stop(list(reversed(running)), say)
    state.stack_file.unlink(missing_ok=True)
    return len(alive)


def _stop(running: list[Running], say: Say) -> None:
    alive = [r for r in running if r.alive()]
    for r in alive:
        try:
            os.kill(r.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(r.alive() for r in alive):
        _reap()
        time.sleep(0.05)
    for r in alive:
        if r.alive():
            say(f"{r.name}: did not stop within {STOP_TIMEOUT_S:g} s, killing")
            try:
                os.kill(r.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            say(f"{r.name:<11} stopped")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(r.alive() for r in alive):
        _reap()
        time.sleep(0.05)


def _reap() -> None:
    """Collect exit statuses of children we started, so they do not linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
