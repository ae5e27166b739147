"""The monitor as a real process on a topology of its own in 127.90.x.y, and the real servers around it.

- `write_topology` + `monitor_process`: the monitor started as the launcher starts it, on a
  topology with one host per fake monitoring client;
- `FakeTarget`: an HTTP server on a thread playing a monitoring client, exposing text the test
  controls, or garbage, or nothing (a hang), or an error;
- `WebhookSink`: an HTTP server collecting the webhook notifications.

Every server binds an address in 127.90.x.y (a range no other test uses) and records the source
address of each request, so a test can check the monitor connected from its own host's address.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.topologies import host, resolver, service, toml_value, topology_text, web_store_db

HANG_LIMIT_S = 30.0  # a hanging target still lets its thread go after this


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class FakeTarget:
    """`GET /metrics` answers `page()`; `mode` switches to garbage, a hang, a 500, or a body too large."""

    def __init__(self, address: tuple[str, int], page: Callable[[], str]) -> None:
        self.address = address
        self.page = page
        self.mode = "ok"  # ok | garbage | hang | error | huge
        self.peers: list[str] = []
        self.connections: set[socket.socket] = set()  # kept-alive ones too: `stop` closes them all
        self.released = threading.Event()
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> FakeTarget:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real client would

            def setup(self) -> None:
                super().setup()
                owner.connections.add(self.connection)

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                owner.peers.append(self.client_address[0])
                owner.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.released.clear()
        self.server = _Server(self.address, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        if self.mode == "hang":
            self.released.wait(HANG_LIMIT_S)
            return
        status, body = 200, self.page().encode()
        if self.mode == "garbage":
            body = b"<html><body>this is not the text format</body></html>\n"
        elif self.mode == "error":
            status, body = 500, b"internal error\n"
        elif self.mode == "huge":
            body = b"# " + b"x" * (17 * 1024 * 1024) + b"\n"
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; version=0.0.4")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def stop(self) -> None:
        """Gone: no listener, and every open connection shut, as a killed process would leave it."""
        self.released.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()


class WebhookSink:
    """Collects POSTed JSON bodies; the first `fail_first` requests are answered 500."""

    def __init__(self, address: tuple[str, int], fail_first: int = 0) -> None:
        self.address = address
        self.fail_first = fail_first
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.peers: list[str] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with owner.lock:
                    owner.attempts += 1
                    owner.peers.append(self.client_address[0])
                    failing = owner.attempts <= owner.fail_first
                    if not failing:
                        owner.received.append(json.loads(body))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(address, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.received):
                    return list(self.received)
            time.sleep(0.1)
        with self.lock:
            raise AssertionError(f"webhook: condition not met within {timeout_s} s; received {self.received}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the monitor as a real process ----------------------------------------------------------------

MONITOR = ("127.90.4.1", 9090)
RULES = """groups:
  - name: test
    rules:
      - alert: TargetDown
        expr: up{job="monitor-client"} == 0
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is down"
"""  # a rule file with a short `for:`

WEBHOOK = ("127.90.5.1", 9093)
METRICS_PORT = 9100
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def write_topology(folder: Path, clients: Mapping[str, str], rule_file: Path | None, **settings: object) -> Path:
    """A topology in 127.90.x.y: the site's required hosts (not started) and one host per fake client.

    `clients` maps a host name to its address; each host gets a monitoring client `mon-<host>`
    on port 9100.  `settings` go to the monitor's `[hosts.services.monitor]` table.
    """
    monitor_settings = {**settings, **({"rule_file": str(rule_file)} if rule_file else {})}
    hosts = [
        host("client", "client", "127.90.0.10"),
        resolver("127.90.3.1", 53),
        host("lb", "balancer", "127.90.1.250", services=[service("lb", "balancer", {"https": 443}, backends=["web"])]),
        host("web", "server", "127.90.2.250", services=web_store_db("web", "store", "db", (80, 8100, 3307))),
        *(
            host(
                name, "server", address, services=[service(f"mon-{name}", "monitor-client", {"metrics": METRICS_PORT})]
            )
            for name, address in clients.items()
        ),
        host(
            "monitor",
            "monitor",
            MONITOR[0],
            services=[service("monitor", "monitor", {"http": MONITOR[1]})]
            + [_table_text("[hosts.services.monitor]", monitor_settings)],
        ),
    ]
    path = folder / "monitor-test.toml"
    path.write_text(topology_text({"domain": "foobar.com", "entry": "lb"}, hosts))
    return path


def _table_text(header: str, fields: Mapping[str, object]) -> str:
    def value_text(value: object) -> str:
        return repr(value) if isinstance(value, float) else toml_value(value)

    return "\n".join([f"  {header}", *(f"  {key} = {value_text(value)}" for key, value in fields.items())])


@dataclass
class MonitorProcess:
    proc: subprocess.Popen[str]
    log: Path
    folder: Path

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == name:
                    found.append(record)
        return found


@contextmanager
def monitor_process(folder: Path, topology: Path, extra: Sequence[str] = ()) -> Iterator[MonitorProcess]:
    """Start `python -m foobar_ref.monitor` as the launcher does, wait for READY; SIGTERM it after."""
    log = folder / "monitor.log"
    argv = [sys.executable, "-m", "foobar_ref.monitor", "--topology", str(topology), "--hop", "monitor"]
    with open(log, "w") as out:  # a file, not a pipe: an unread pipe would stall the hop's logging
        proc = subprocess.Popen(
            [*argv, "--state", str(folder), *extra], stdout=out, stderr=subprocess.STDOUT, text=True
        )
    started = MonitorProcess(proc, log, folder)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "READY" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert f"READY hop=monitor listen={MONITOR[0]}:{MONITOR[1]}" in log.read_text(), log.read_text()
        yield started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def request(method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """One request to the monitor on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(*MONITOR, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=dict(headers or {}))
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def api(path: str, **params: str | list[str]) -> Any:
    """The `data` of a successful API answer (asserting success)."""
    query = urllib.parse.urlencode(params, doseq=True)
    status, body = request("GET", path + ("?" + query if query else ""))
    payload = json.loads(body)
    assert status == 200 and payload["status"] == "success", (status, payload)
    return payload["data"]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `check` until it returns something truthy (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except AssertionError as err:
            last = err
        else:
            if value:
                return value
            last = value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s (last: {last})")
