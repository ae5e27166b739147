"""The supervisor: starts the hops in dependency order, restarts those that exit or hang, carries out requests.

Theory of operation
-------------------
One loop, ticking every `TICK_S`, owns every hop's `policy.HopStatus` and
does only non-blocking things per tick: take the requests waiting
(stackfile.take_requests), move each hop along its phase (start it when the
policy allows, see READY or its exit, kill it past a deadline), ask the
watchdog's probes and read their answers, check resident memory, and rewrite
the stack file when anything changed.  Blocking work (MariaDB's readiness and
set-up, a probe) runs in threads (probe.in_thread) and is read when done.

Started with `adopt()`, it takes over the hops the stack file records that
still run (pid and create time match) and starts the others: that is how a
new `up` heals a stack whose supervisor died.  With nothing adopted (a fresh
start), a hop that fails its first start stops everything, as `up` always
did: a stack that cannot start says why instead of retrying.  After that
every exit it did not ask for is restarted under the policy's back-off and
budget, in dependency order.

Memory: a hop's resident set (RSS) is read with each probe and checked against
its limit (plan.Limits); `memory_strikes` readings over it in a row kill and
restart it, as systemd's MemoryMax would.  RSS rather than RLIMIT_AS: the
address space of a Python hop (thread stacks, malloc arenas) and of mariadbd
is several times what it uses, so an address-space cap either fails
allocations of a healthy hop or is too loose to matter; RSS is the memory a
hop actually holds, needs no cgroup, and a restart is a cleaner end than a
MemoryError in the middle of a request.

Modes: `detached` (`up --detach`: its own process and session) exits on
SIGTERM and leaves every hop running: `down` stops it first, then the hops.
`foreground` (`up` in a terminal) stops every hop on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future

import psutil

from foobar_ref.launcher import policy
from foobar_ref.launcher.plan import HopSpec, MiB, StatePaths, plan
from foobar_ref.launcher.policy import HopStatus, Phase, RestartPolicy
from foobar_ref.launcher.probe import Watchdog, in_thread
from foobar_ref.launcher.process import Child, LaunchError, adopt, spawn
from foobar_ref.launcher.stackfile import create_time, read_stack, take_requests, write_file
from foobar_ref.observe.log import log
from foobar_ref.runtime.admin_socket import admin_socket_path
from foobar_ref.topology import Topology

TICK_S = 0.1
ME = "supervisor"
Say = Callable[[str], None]


def rejoin_role(topo: Topology, hop: str) -> str:
    """The role a (re)started MariaDB instance takes: the one place a database monitor will decide it.

    The seed has no database monitor yet, so an instance comes back in its topology role (`primary`, or
    `replica` of its `replica_of`), and the replica's replication is set up again after either one
    restarts.  Once the data tier has a monitor (dbmon/), this asks it: after a failover the old primary
    must rejoin as a replica of the new one (fenced, never blindly primary), and the supervisor refuses a
    role that set-up cannot give (see `_set_up_database`).
    """
    return "replica" if topo.service(hop).replica_of else "primary"


class Supervisor:
    def __init__(
        self,
        topo: Topology,
        state: StatePaths,
        rules: RestartPolicy | None = None,
        capture: bool = False,
        mode: str = "detached",
        say: Say = print,
    ) -> None:
        self.topo, self.state, self.rules, self.capture, self.mode, self.say = (
            topo, state, rules or RestartPolicy(), capture, mode, say,
        )  # fmt: skip
        self.specs: dict[str, HopSpec] = {s.name: s for s in plan(topo, state, capture)}
        self.status = {name: HopStatus(name) for name in self.specs}
        self.children: dict[str, Child] = {}
        self.setups: dict[str, Future[object]] = {}
        self.deadlines: dict[str, float] = {}  # STARTING: ready by; STOPPING: SIGKILL at
        self.kill_reasons: dict[str, str] = {}
        self.pending: dict[str, tuple[str, Phase]] = {}  # hop -> (request id, the phase that answers it)
        self.restart_after_stop: set[str] = set()
        self.ever_ready: set[str] = set()
        self.watchdog = Watchdog(state.root, self.rules.watchdog_timeout_s)
        self.next_probe = 0.0
        self.phase, self.error, self.fresh, self.stop_asked = "starting", "", True, False
        self.on_ready: Callable[[], None] | None = None
        self.started_at, self.written = time.time(), ""
        self.identity = (os.getpid(), create_time(os.getpid()))

    # --- the loop -------------------------------------------------------------------
    def adopt(self) -> list[str]:
        """Take over the recorded hops that still run; keep every hop's counters. Returns the adopted."""
        adopted = []
        for recorded in read_stack(self.state):
            if recorded.name not in self.specs or recorded.status is None:
                continue
            status = self.status[recorded.name]
            old = recorded.status
            status.restarts, status.last_exit, status.last_exit_at = old.restarts, old.last_exit, old.last_exit_at
            if recorded.alive():
                self.children[recorded.name] = adopt(
                    self.specs[recorded.name], self.state, recorded.pid, recorded.started
                )
                paused = old.phase is Phase.PAUSED  # still frozen: adopted as such, left to `resume`
                status.phase = Phase.PAUSED if paused else Phase.RUNNING
                status.pid, status.started = recorded.pid, recorded.started
                status.up_since = old.up_since or time.time()
                self.ever_ready.add(recorded.name)
                adopted.append(recorded.name)
            elif old.phase in (Phase.RUNNING, Phase.STARTING, Phase.BACKOFF):
                status.restart_next = True  # it ran and died unsupervised: starting it again is a restart
            elif old.phase is Phase.STOPPED and old.wanted == "stopped":
                status.phase, status.wanted = Phase.STOPPED, "stopped"
        self.fresh = not adopted
        if adopted:
            log(ME, "adopted", hops=adopted)
        return adopted

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (or a failed fresh start); 0, or 1 when the start failed."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._asked_to_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log(ME, "started", pid=os.getpid(), mode=self.mode, hops=len(self.specs))
        try:
            while not self.stop_asked and self.phase != "failed":
                self.tick(time.time())
                time.sleep(TICK_S)
        finally:
            self._finish()
        return 1 if self.phase == "failed" else 0

    def _asked_to_stop(self, signum: int, frame: object) -> None:
        self.stop_asked = True

    def _finish(self) -> None:
        log(ME, "stopping", mode=self.mode, phase=self.phase)
        if self.mode == "foreground" or self.phase == "failed":
            self.stop_all()
        if self.mode == "foreground":
            self.state.stack_file.unlink(missing_ok=True)
        else:
            self.save()

    def tick(self, now: float) -> None:
        for request in take_requests(self.state):
            self._carry_out(request, now)
        for name in self.specs:
            self._step(name, now)
            if self.phase == "failed":
                return
        if now >= self.next_probe:
            self._probe()
            self.next_probe = now + self.rules.watchdog_interval_s
        self._read_probes(now)
        self._answer_requests()
        self._update_phase(now)
        self.save()

    # --- one hop ----------------------------------------------------------------------
    def _step(self, name: str, now: float) -> None:
        status, child = self.status[name], self.children.get(name)
        if status.phase in (Phase.PENDING, Phase.BACKOFF):
            upstreams = (self.status[u].phase for u in self.specs[name].upstreams if u in self.status)
            if policy.may_start(status, now, upstreams):
                self._start(name, now)
        elif status.phase is Phase.STARTING and child is not None:
            self._check_starting(name, child, now)
        elif status.phase in (Phase.RUNNING, Phase.STOPPING, Phase.PAUSED) and child is not None:
            reason = child.exit_reason()
            if reason is not None:
                self._exited(name, now, reason)
            elif now >= self.deadlines.get(name, float("inf")):
                self._kill(name, f"did not stop within {self.rules.stop_timeout_s:g} s")

    def _start(self, name: str, now: float) -> None:
        spec, status = self.specs[name], self.status[name]
        child = self.children[name] = spawn(spec, self.state)
        self.watchdog.forget(name)
        policy.started(status, now, child.pid, child.started, self.rules)
        timeout = self.rules.database_ready_timeout_s if spec.is_database else self.rules.ready_timeout_s
        self.deadlines[name] = now + timeout
        if spec.is_database:
            self.setups[name] = in_thread(lambda: self._set_up_database(name, timeout))
        log(ME, "hop_started", name=name, pid=child.pid, attempt=len(status.starts), restarts=status.restarts)

    def _check_starting(self, name: str, child: Child, now: float) -> None:
        reason = child.exit_reason()
        if reason is not None:
            self._exited(name, now, reason)
            return
        if self.specs[name].is_database:
            setup = self.setups.get(name)
            if setup is not None and setup.done():
                del self.setups[name]
                error = setup.exception()
                if error is None:
                    self._ready(name, now)
                else:
                    self._kill(name, f"set-up failed: {error}")
        elif child.said_ready():
            self._ready(name, now)
        if self.status[name].phase is Phase.STARTING and now >= self.deadlines.get(name, float("inf")):
            self._kill(name, f"not ready within {self.deadlines[name] - self.status[name].starts[-1]:.0f} s")

    def _ready(self, name: str, now: float) -> None:
        status, spec = self.status[name], self.specs[name]
        policy.ready(status, now)
        self.deadlines.pop(name, None)
        again = name in self.ever_ready
        self.ever_ready.add(name)
        down_s = round(now - status.last_exit_at, 3) if again and status.last_exit_at else None
        log(ME, "hop_ready", name=name, pid=status.pid, start_s=round(now - status.starts[-1], 3), down_s=down_s)
        verb = "restarted" if again else "up"
        self.say(f"{name:<11} {verb:<4} pid {status.pid:<7} {' '.join(spec.listen)}")
        if again and spec.role == "mariadb-primary":
            self._reconfigure_replicas(name)

    def _exited(self, name: str, now: float, reason: str) -> None:
        status = self.status[name]
        killed_for = self.kill_reasons.pop(name, "")
        reason = f"{killed_for} ({reason})" if killed_for else reason
        self.children.pop(name, None)
        self.setups.pop(name, None)
        self.deadlines.pop(name, None)
        first_start = self.fresh and self.phase == "starting" and name not in self.ever_ready
        if first_start and status.phase is not Phase.STOPPING:
            self.error = f"{name}: {reason}; see {self.state.out(name)}"
            self.phase = "failed"
            log(ME, "start_failed", name=name, reason=reason)
            return
        delay = policy.exited(status, now, reason, self.rules)
        if status.phase is Phase.STOPPED:
            log(ME, "hop_stopped", name=name, reason=reason)
            self.say(f"{name:<11} stopped")
            if name in self.restart_after_stop:
                self.restart_after_stop.discard(name)
                policy.asked_to_start(status, restart=True)
        elif status.phase is Phase.FAILED:
            log(ME, "hop_failed", name=name, reason=status.last_exit, restarts=status.restarts)
            self.say(f"{name:<11} FAILED: {status.last_exit}")
        else:
            log(ME, "hop_exited", name=name, reason=reason, restart_in_s=delay)

    def _kill(self, name: str, why: str) -> None:
        """SIGKILL now; the exit, seen at a later tick, carries `why`."""
        child = self.children.get(name)
        if child is None:
            return
        self.kill_reasons.setdefault(name, why)
        self.deadlines[name] = float("inf")
        child.signal(signal.SIGKILL)

    # --- databases ----------------------------------------------------------------------
    def _set_up_database(self, name: str, timeout_s: float) -> object:
        from foobar_ref.mysql import setup  # PyMySQL is needed only when a stack starts

        role = rejoin_role(self.topo, name)
        if role != ("replica" if self.topo.service(name).replica_of else "primary"):
            raise LaunchError(f"{name} should rejoin as {role}; set-up knows only the topology's roles")
        try:
            setup.wait_ready(self.topo, name, self.state.root, timeout_s)
            return setup.configure(self.topo, name, self.state.root)
        except setup.MysqlSetupError as err:
            raise LaunchError(str(err)) from None

    def _reconfigure_replicas(self, primary: str) -> None:
        from foobar_ref.mysql import setup

        for name, spec in self.specs.items():
            replica = spec.is_database and self.topo.service(name).replica_of == primary
            if replica and self.status[name].phase is Phase.RUNNING:
                in_thread(lambda name=name: setup.configure(self.topo, name, self.state.root))  # type: ignore[misc]
                log(ME, "replication_reconfigured", name=name, primary=primary)

    # --- watchdog and memory ---------------------------------------------------------------
    def _probe(self) -> None:
        for name, status in self.status.items():
            if status.phase is not Phase.RUNNING:
                continue
            spec = self.specs[name]
            if spec.is_database or admin_socket_path(self.state.root, name).exists():
                self.watchdog.ask(name, status.pid, spec.is_database)  # a hop without an admin socket is not probed
            try:
                rss = psutil.Process(status.pid).memory_info().rss
            except psutil.Error:
                continue
            if policy.memory_checked(status, rss, spec.limits.memory_bytes, self.rules):
                limit_mb = spec.limits.memory_bytes // MiB
                why = f"memory: resident {rss // MiB} MB over its {limit_mb} MB limit {status.memory_strikes} times"
                log(ME, "memory_exceeded", name=name, rss_bytes=rss, limit_bytes=spec.limits.memory_bytes)
                self._kill(name, why)

    def _read_probes(self, now: float) -> None:
        for name, pid, answered in self.watchdog.answers():
            status = self.status[name]
            if status.phase is not Phase.RUNNING or status.pid != pid:
                continue
            if policy.probed(status, answered, self.rules):
                why = f"watchdog: no answer to {status.probe_misses} probes in a row"
                log(ME, "watchdog_killed", name=name, pid=pid, misses=status.probe_misses)
                self._kill(name, why)
            elif not answered:  # ask again at once: a hang is found in misses x timeout, not more
                self.watchdog.ask(name, pid, self.specs[name].is_database)

    # --- requests -------------------------------------------------------------------------
    def _carry_out(self, request: dict[str, str], now: float) -> None:
        names = list(self.specs) if request["hop"] == "*" else [request["hop"]]
        log(ME, "request", action=request["action"], name=request["hop"], id=request["id"])
        for name in names:
            if name not in self.status:
                continue
            status, action = self.status[name], request["action"]
            if action in ("pause", "resume"):
                self._pause(name, action == "pause")
                self.pending[name] = (request["id"], Phase.PAUSED if action == "pause" else Phase.RUNNING)
                continue
            if action == "stop":
                status.wanted = "stopped"
                self._stop_one(name, now)
            elif action == "restart" and status.phase in (Phase.RUNNING, Phase.STARTING):
                self.restart_after_stop.add(name)
                self._stop_one(name, now)
            else:
                policy.asked_to_start(status, restart=action == "restart")
            self.pending[name] = (request["id"], Phase.STOPPED if action == "stop" else Phase.RUNNING)

    def _pause(self, name: str, pause: bool) -> None:
        """SIGSTOP (or SIGCONT) a running hop on request: a hang that drills and tests make on purpose,
        which the watchdog must not cure (it probes RUNNING hops only)."""
        status, child = self.status[name], self.children.get(name)
        if child is None:
            return
        if pause and status.phase is Phase.RUNNING:
            child.signal(signal.SIGSTOP)
            status.phase = Phase.PAUSED
            log(ME, "hop_paused", name=name, pid=status.pid)
        elif not pause and status.phase is Phase.PAUSED:
            child.signal(signal.SIGCONT)
            status.phase = Phase.RUNNING
            status.probe_misses = 0
            self.watchdog.forget(name)
            log(ME, "hop_resumed", name=name, pid=status.pid)

    def _stop_one(self, name: str, now: float) -> None:
        status, child = self.status[name], self.children.get(name)
        if status.phase is Phase.PAUSED and child is not None:
            child.signal(signal.SIGCONT)  # a stopped process would never see the SIGTERM
            status.phase = Phase.RUNNING
        if status.phase in (Phase.RUNNING, Phase.STARTING) and child is not None:
            status.phase = Phase.STOPPING
            self.deadlines[name] = now + self.rules.stop_timeout_s
            child.signal(signal.SIGTERM)
        elif status.phase in (Phase.PENDING, Phase.BACKOFF, Phase.FAILED):
            status.phase = Phase.STOPPED

    def _answer_requests(self) -> None:
        for name, (request_id, target) in list(self.pending.items()):
            status = self.status[name]
            if status.phase is target or status.phase is Phase.FAILED:
                status.answered = request_id
                del self.pending[name]

    # --- the whole stack -------------------------------------------------------------------
    def _update_phase(self, now: float) -> None:
        if self.phase != "starting":
            return
        settled = (Phase.RUNNING, Phase.STOPPED, Phase.FAILED, Phase.PAUSED)
        if all(s.phase in settled for s in self.status.values()):
            self.phase = "running"
            log(ME, "stack_ready", after_s=round(now - self.started_at, 3))
            if self.on_ready is not None:
                self.on_ready()

    def stop_all(self) -> None:
        """SIGTERM every hop in reverse start order, SIGKILL what is left after the bound."""
        order = list(reversed(self.specs))
        alive = [n for n in order if n in self.children and self.children[n].exit_reason() is None]
        for name in alive:
            self.children[name].signal(signal.SIGTERM)
            self.children[name].signal(signal.SIGCONT)  # a paused hop sees its SIGTERM only once it runs
        deadline = time.monotonic() + self.rules.stop_timeout_s
        while time.monotonic() < deadline and any(self.children[n].exit_reason() is None for n in alive):
            time.sleep(0.05)
        for name in alive:
            if self.children[name].exit_reason() is None:
                self.say(f"{name}: did not stop within {self.rules.stop_timeout_s:g} s, killing")
                self.children[name].signal(signal.SIGKILL)
            else:
                self.say(f"{name:<11} stopped")
        deadline = time.monotonic() + self.rules.stop_timeout_s
        while time.monotonic() < deadline and any(self.children[n].exit_reason() is None for n in alive):
            time.sleep(0.05)
        for name in alive:
            self.status[name].phase, self.status[name].pid = Phase.STOPPED, 0

    def save(self) -> None:
        supervisor = {
            "pid": self.identity[0],
            "started": self.identity[1],
            "mode": self.mode,
            "phase": self.phase,
            "error": self.error,
            "log": str(self.state.supervisor_log),
        }
        hops = [
            {"name": name, "role": spec.role, "listen": list(spec.listen), **policy.to_record(self.status[name])}
            for name, spec in self.specs.items()
        ]
        data = {"topology": str(self.topo.path), "capture": self.capture, "supervisor": supervisor, "hops": hops}
        text = repr(data)
        if text != self.written:
            write_file(self.state, data)
            self.written = text
