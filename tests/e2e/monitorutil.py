"""Reading the monitoring service of a running stack from tests: its Prometheus API, waits, load."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from foobar_ref.client import browser

API_TIMEOUT_S = 10.0
T = TypeVar("T")


def api(stack: dict, path: str, **params: object) -> Any:
    """GET an /api/v1 path of the stack's monitor; the `data` of a success answer."""
    url = stack["monitor"].rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode({k: str(v) for k, v in params.items()})
    with urllib.request.urlopen(url, timeout=API_TIMEOUT_S) as answer:
        payload = json.loads(answer.read())
    assert payload["status"] == "success", payload
    return payload["data"]


def query(stack: dict, expr: str, at: float | None = None) -> list[dict]:
    params: dict[str, object] = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = api(stack, "/api/v1/query", **params)
    assert data["resultType"] == "vector", data
    return data["result"]


def values_by(results: list[dict], label: str) -> dict[str, float]:
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in results}


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 0.5) -> tuple[T, float]:
    """Call `probe` until it returns something truthy; (that value, seconds it took)."""
    started = time.monotonic()
    last: object = None
    while time.monotonic() - started < timeout_s:
        last = probe()
        if last:
            return last, time.monotonic() - started  # type: ignore[return-value]
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {last!r})")


def firing(stack: dict, alertname: str, **labels: str) -> dict | None:
    for alert in api(stack, "/api/v1/alerts")["alerts"]:
        if alert["labels"].get("alertname") != alertname or alert["state"] != "firing":
            continue
        if all(alert["labels"].get(k) == v for k, v in labels.items()):
            return alert
    return None


class Traffic:
    """Requests through the site from `clients` keep-alive browser sessions, until stopped or bounded.

    Bounded in time (`max_s`) and in count (`max_requests`); counts answers by status.
    """

    def __init__(
        self,
        stack: dict,
        clients: int = 1,
        pause_s: float = 0.05,
        max_s: float = 120.0,
        max_requests: int = 100_000,
        paths: tuple[str, ...] = ("/",),
    ) -> None:
        self.stack = stack
        self.paths = paths
        self.pause_s = pause_s
        self.deadline = time.monotonic() + max_s
        self.max_requests = max_requests
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.failures = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=30)

    @property
    def sent(self) -> int:
        with self.lock:
            return sum(self.statuses.values()) + self.failures

    def _run(self) -> None:
        ca = Path(self.stack["ca"])
        while not self.stopped.is_set() and time.monotonic() < self.deadline and self.sent < self.max_requests:
            try:
                with browser.open_session(self.stack["url"], topology=self.stack["topology_obj"], ca_file=ca) as s:
                    while not self.stopped.is_set() and time.monotonic() < self.deadline:
                        if self.sent >= self.max_requests:
                            return
                        status = s.request("GET", self.paths[self.sent % len(self.paths)]).status
                        with self.lock:
                            self.statuses[status] = self.statuses.get(status, 0) + 1
                        if self.pause_s:
                            time.sleep(self.pause_s)
            except browser.BrowserError:
                with self.lock:
                    self.failures += 1
                time.sleep(0.2)
