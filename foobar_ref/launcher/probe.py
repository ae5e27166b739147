"""Liveness probes (the watchdog's questions) and blocking work run beside the supervisor's loop.

Theory of operation
-------------------
A hop that hangs without exiting (a deadlock, a busy loop, SIGSTOP) answers
nothing.  Every `watchdog_interval_s` the supervisor asks each running hop
one question with a `watchdog_timeout_s` bound: `GET /metrics` on its admin
socket (a Unix socket in the state folder, served by the hop's own event
loop, so an answer means the loop turns), and for MariaDB `SELECT 1` over its
socket.  Each probe runs in a daemon thread (`in_thread`), so a hung hop never
stalls the loop; at most one probe per hop is in flight.  The policy
(`policy.probed`) decides how many misses in a row mean "kill it".
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from foobar_ref.runtime.admin_socket import admin_socket_path

T = TypeVar("T")


def in_thread(work: Callable[[], T]) -> Future[T]:
    """Run `work` in a daemon thread (never joined at exit); its result or exception lands in the future."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as err:  # noqa: BLE001 - handed to whoever reads the future
            future.set_exception(err)

    threading.Thread(target=run, daemon=True, name="supervisor-work").start()
    return future


def admin_answers(state_dir: Path, hop: str, timeout_s: float) -> bool:
    """GET /metrics on the hop's admin socket answered 200 within `timeout_s`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(admin_socket_path(state_dir, hop)))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.1 200")


class SqlPing:
    """`SELECT 1` over one MariaDB instance's Unix socket, on a connection kept between probes.

    Opening a connection costs about 35 ms of CPU (PyMySQL's handshake in Python), a query on an open one
    well under 1 ms; a connection that fails is closed and the next probe opens a new one."""

    def __init__(self, state_dir: Path, hop: str, timeout_s: float) -> None:
        self.state_dir, self.hop, self.timeout_s = state_dir, hop, timeout_s
        self.held: contextlib.ExitStack | None = None
        self.cursor: Any = None

    def __call__(self) -> bool:
        from foobar_ref.mysql import setup  # PyMySQL is needed only when a stack runs

        try:
            if self.held is None:
                self.held = contextlib.ExitStack()
                self.cursor = self.held.enter_context(setup.admin(self.state_dir, self.hop, self.timeout_s))
            self.cursor.execute("SELECT 1")
            return bool(self.cursor.fetchone() == (1,))
        except Exception:  # noqa: BLE001 - pymysql.Error, OSError: no answer either way
            self.close()
            return False

    def close(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            with contextlib.suppress(Exception):
                held.close()


class Watchdog:
    """One probe in flight per hop at most; results are collected by the loop."""

    def __init__(self, state_dir: Path, timeout_s: float) -> None:
        self.state_dir, self.timeout_s = state_dir, timeout_s
        self.in_flight: dict[str, tuple[int, Future[bool]]] = {}  # hop -> (pid probed, answer)
        self.pings: dict[str, SqlPing] = {}

    def ask(self, hop: str, pid: int, database: bool) -> None:
        if hop in self.in_flight:
            return
        if database:
            ping = self.pings.setdefault(hop, SqlPing(self.state_dir, hop, self.timeout_s))
            self.in_flight[hop] = (pid, in_thread(ping))
        else:
            self.in_flight[hop] = (pid, in_thread(lambda: admin_answers(self.state_dir, hop, self.timeout_s)))

    def forget(self, hop: str) -> None:
        """A new process: the kept SQL connection (if any) belonged to the old one."""
        ping = self.pings.pop(hop, None)
        if ping is not None:
            ping.close()

    def answers(self) -> list[tuple[str, int, bool]]:
        """(hop, pid probed, answered) of the probes that are done."""
        done = [(hop, pid, future) for hop, (pid, future) in self.in_flight.items() if future.done()]
        for hop, _, _ in done:
            del self.in_flight[hop]
        return [(hop, pid, future.exception() is None and bool(future.result())) for hop, pid, future in done]
