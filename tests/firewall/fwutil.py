"""Helpers for the firewall's real-socket tests: a small topology, an echo server, the hop as a process.

Addresses: only 127.0.51.0/24.  The guarded host's public/inner pair is chosen per
test module so several firewalls can run at once without sharing a port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics, request
from tests.topologies import firewall as firewall_block
from tests.topologies import host, resolver, service, topology_text, web_store_db

FRONT = "127.0.51.1"  # the balancer host: accepted on the web port
CLIENT = "127.0.51.10"  # the client host: rejected
STRANGER = "127.0.51.30"  # in no rule: the policy (drop)
WEB_PORT, STORE_PORT, DB_PORT = 18080, 18100, 13307
HOP = "fw-test"
READY_TIMEOUT_S = 10.0
EOF_TRAILER = b"<eof>"

RULES = """# the test firewall
policy drop
tcp dport {web} ip saddr @front accept comment "web"
tcp dport {store} ip saddr @front accept
ip saddr @client log prefix "test reject: " reject
log prefix "test drop: "
"""
WEB_RULE = f"tcp dport {WEB_PORT} ip saddr @front accept"
REJECT_RULE = 'ip saddr @client log prefix "test reject: " reject'


def write_rules(folder: Path, text: str | None = None) -> Path:
    path = folder / "fw.rules"
    path.write_text(text if text is not None else RULES.format(web=WEB_PORT, store=STORE_PORT))
    return path


def write_topology(folder: Path, public: str, inner: str, proxy: bool = False, rules: str | None = None) -> Path:
    (folder / "test.hints").write_text("; not read by the firewall\n")
    write_rules(folder, rules)
    path = folder / "topology.toml"
    front = [service("front-lb", "balancer", {"https": 18443}, backends=["app-web"])]
    app = web_store_db("app-web", "app-store", "app-db", (WEB_PORT, STORE_PORT, DB_PORT))
    hosts = [
        host("client", "client", CLIENT),
        resolver("127.0.51.3", 18053, root_hints="test.hints"),
        host("front", "balancer", FRONT, services=front),
        host("app", "server", public, inner, services=app),
    ]
    firewalls = [firewall_block(HOP, "app", rules_file="fw.rules", proxy_protocol=proxy)]
    text = topology_text({"domain": "example.test", "entry": "front-lb"}, hosts, firewalls)
    path.write_text(text)
    return path


@dataclass
class EchoServer:
    """Echoes each connection's bytes; on EOF sends EOF_TRAILER then closes (a half-close answered)."""

    address: tuple[str, int]
    peers: list[tuple[str, int]] = field(default_factory=list)
    sock: socket.socket | None = None

    def start(self) -> EchoServer:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(self.address)
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self.sock is not None
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        conn.settimeout(30)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.sendall(EOF_TRAILER)
            except OSError:
                return

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    state: Path
    log_path: Path

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_exposition(read_metrics(admin_socket_path(self.state, HOP)))

    def counter(self, name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in self.metrics().items() if n == name and labels.items() <= dict(ls).items())

    def admin(self, method: str, target: str) -> tuple[int, str]:
        code, body = request(admin_socket_path(self.state, HOP), method, target)
        return code, body.decode()

    def tracked(self) -> list[str]:
        """The conntrack listing's entry lines (without the totals line)."""
        return [line for line in self.admin("GET", "/conntrack")[1].splitlines() if line.startswith("tcp ")]

    def events(self, event: str) -> list[dict]:
        lines = self.log_path.read_text().splitlines()
        return [r for line in lines if line.startswith("{") and (r := json.loads(line))["event"] == event]


def start_firewall(topology: Path, state: Path, *extra: str) -> Running:
    log_path = state / "firewall.log"
    state.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "foobar_ref.firewall",
        "--topology",
        str(topology),
        "--hop",
        HOP,
        "--state",
        str(state),
        *extra,
    ]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    running = Running(process, state, log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if b"READY hop=" in log_path.read_bytes() and _admin_answers(state):
            return running
        if process.poll() is not None:
            raise AssertionError(f"firewall exited {process.returncode}: {log_path.read_text()}")
        time.sleep(0.05)
    stop(running)
    raise AssertionError(f"firewall not ready in {READY_TIMEOUT_S} s: {log_path.read_text()}")


def _admin_answers(state: Path) -> bool:
    """READY comes before the admin socket task has bound: wait until it answers too."""
    try:
        read_metrics(admin_socket_path(state, HOP), timeout_s=1.0)
    except OSError:
        return False
    return True


def stop(running: Running, timeout_s: float = 5.0) -> int:
    if running.process.poll() is None:
        os.kill(running.process.pid, signal.SIGTERM)
    try:
        return running.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait(timeout=timeout_s)
        raise


@contextmanager
def firewall(topology: Path, state: Path, *extra: str) -> Iterator[Running]:
    running = start_firewall(topology, state, *extra)
    try:
        yield running
    finally:
        stop(running)


def connect_from(source_ip: str, address: tuple[str, int], timeout_s: float = 3.0) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout_s)
    sock.bind((source_ip, 0))
    sock.connect(address)
    return sock


def read_all(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> bytes:
    chunks, size = [], 0
    while size < limit and (chunk := sock.recv(1 << 20)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def wait_for(predicate, timeout_s: float = 5.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def refused_at_once(source_ip: str, address: tuple[str, int], timeout_s: float = 3.0) -> float:
    """Seconds until the connection was reset (at connect or first read); fails on anything else."""
    started = time.monotonic()
    try:
        with connect_from(source_ip, address, timeout_s) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            data = sock.recv(100)
    except ConnectionResetError:
        return time.monotonic() - started
    raise AssertionError(f"expected a connection reset, got {data!r}")
