"""One hop as an operating-system process: spawn it with its limits, see it ready, see it exit, stop it.

Theory of operation
-------------------
`spawn` starts the hop's argv in its own session (a Ctrl-C in the terminal
and the supervisor's death reach no hop; a signal to the hop reaches what it
started, such as MariaDB's installer, see `signal_hop`), stdin from /dev/null, stdout and
stderr appended to `<state>/logs/<hop>.out`: a hop writes only READY and a
fatal error there (its log lines go to its own rotated log, `--log`), so the
file stays small; it is rotated once to `.out.1` past `OUT_MAX_BYTES` at a
spawn.  Right after the spawn the open-files limit is set with prlimit (the
child has just exec'd Python, long before it opens a socket); setting it in
the child with `preexec_fn` would not be safe in a process with threads.

A `Child` started here has its `Popen`, so its exit status is known (code, or
the signal that killed it).  A child adopted from the stack file (started by
a supervisor that died) is not ours to wait for: its death is seen by its pid
and create time, and its exit is described from the tail of its `.out`.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from foobar_ref.launcher.plan import HopSpec, StatePaths
from foobar_ref.launcher.stackfile import create_time, process_alive

OUT_MAX_BYTES = 64 * 1024
TAIL_BYTES = 4096


class LaunchError(Exception):
    """The stack could not start; the message says which hop and why."""


@dataclass
class Child:
    spec: HopSpec
    pid: int
    started: float  # create time
    out: Path
    out_offset: int  # where this run's output starts in `out`
    popen: subprocess.Popen[bytes] | None = None  # None: adopted, not our child

    def exit_reason(self) -> str | None:
        """None while it runs; else how it ended (exit code or signal, and its last words)."""
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return None
            how = f"killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        elif process_alive(self.pid, self.started):
            return None
        else:
            how = "exited (adopted: its exit status went to init)"
        words = last_lines(self.output())
        return how if not words else f"{how}: {words}"

    def output(self) -> str:
        """What this run wrote on stdout and stderr so far (the last TAIL_BYTES of it)."""
        try:
            with self.out.open("rb") as file:
                size = file.seek(0, 2)
                file.seek(max(self.out_offset, size - TAIL_BYTES))
                return file.read().decode(errors="replace")
        except OSError:
            return ""

    def said_ready(self) -> bool:
        return f"READY hop={self.spec.name}" in self.output()

    def signal(self, signum: int) -> None:
        signal_hop(self.pid, signum)


def signal_hop(pid: int, signum: int) -> None:
    """Signal a hop and everything it started (its own process group: MariaDB's set-up tools, its relay)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def spawn(spec: HopSpec, state: StatePaths) -> Child:
    out = state.out(spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and out.stat().st_size > OUT_MAX_BYTES:
        out.replace(out.with_name(out.name + ".1"))
    offset = out.stat().st_size if out.exists() else 0
    with open(out, "ab") as file:
        popen = subprocess.Popen(
            spec.argv, stdout=file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        resource.prlimit(popen.pid, resource.RLIMIT_NOFILE, (spec.limits.open_files, spec.limits.open_files))
    except (OSError, ValueError):
        pass  # above the hard limit we may set, or already gone: the exit says so
    try:
        started = create_time(popen.pid)
    except Exception:  # noqa: BLE001 - gone already; psutil.Error or OSError
        started = 0.0
    return Child(spec, popen.pid, started, out, offset, popen)


def adopt(spec: HopSpec, state: StatePaths, pid: int, started: float) -> Child:
    out = state.out(spec.name)
    offset = out.stat().st_size if out.exists() else 0
    return Child(spec, pid, started, out, offset, None)


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


def last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() and not line.startswith("READY ")]
    return " | ".join(lines[-count:])


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
