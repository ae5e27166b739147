"""Small real HTTP servers on threads for the monitor's tests: targets that expose text we control, a webhook sink.

Every server binds an address the test names (127.90.x.y, a range no other test uses) and
records the source address of each request, so a test can check the monitor scraped from its
own host's address.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
        self.released = threading.Event()
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> FakeTarget:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real client would

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
        self.released.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


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
