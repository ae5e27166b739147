"""The balancer's traffic counters, per frontend and per backend, as HAProxy's stats keep them. Pure.

Theory of operation
-------------------
The shell reports three things, each with `now_s`: a client connection
opened or closed (`connection_opened`, `connection_closed`), a request done
(`request_done`: status, bytes, which backend answered, how it ended), and an
upstream attempt that failed or was retried (`upstream_failed`, `retried`).
Health, weights, the queue and per-backend load live in the farm; stats.py
joins both.

Rates are HAProxy's `freq_ctr`: events in the current second plus the
previous second's share of the window still running, so a steady 25/s reads
25 at any instant, and a burst fades over a second instead of jumping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")


@dataclass
class RateCounter:
    """Events per second over a sliding one-second window."""

    second: int = 0
    current: int = 0
    previous: int = 0
    max_rate: int = 0

    def add(self, now_s: float, count: int = 1) -> None:
        self._roll(now_s)
        self.current += count
        self.max_rate = max(self.max_rate, self.rate(now_s))

    def rate(self, now_s: float) -> int:
        self._roll(now_s)
        elapsed = now_s - self.second
        return math.floor(self.previous * (1.0 - elapsed) + self.current + 0.5)

    def _roll(self, now_s: float) -> None:
        second = math.floor(now_s)
        if second == self.second:
            return
        self.previous = self.current if second == self.second + 1 else 0
        self.current = 0
        self.second = second


@dataclass
class Traffic:
    """What a frontend or a backend has carried."""

    requests: int = 0
    request_rate: RateCounter = field(default_factory=RateCounter)
    responses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0))
    bytes_in: int = 0
    bytes_out: int = 0
    terminations: dict[str, int] = field(default_factory=dict)  # "--", "sH", "SC", ...
    last_request_s: float | None = None

    def count(self, status: int, bytes_in: int, bytes_out: int, termination: str, now_s: float) -> None:
        self.requests += 1
        self.request_rate.add(now_s)
        kind = f"{status // 100}xx" if 100 <= status < 600 else "other"
        self.responses[kind] += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.terminations[termination] = self.terminations.get(termination, 0) + 1
        self.last_request_s = now_s


@dataclass
class Frontend:
    """Client connections (HAProxy's scur/smax/slim/stot/rate) and everything their requests did."""

    limit: int
    current: int = 0
    max_current: int = 0
    total: int = 0
    session_rate: RateCounter = field(default_factory=RateCounter)
    request_errors: int = 0  # refused by the parser or the proxy: HAProxy's ereq
    traffic: Traffic = field(default_factory=Traffic)


@dataclass
class Backend:
    """What went to one backend: answers by status, failed attempts by kind, retries onto it."""

    traffic: Traffic = field(default_factory=Traffic)
    connect_errors: int = 0  # HAProxy's econ
    response_errors: int = 0  # eresp: no response, bad response, timeout
    retries: int = 0  # wretr: attempts that moved on to this backend after another failed


class Counters:
    def __init__(self, backends: Sequence[str], maxconn: int) -> None:
        self.frontend = Frontend(maxconn)
        self.backends = {name: Backend() for name in backends}

    def connection_opened(self, now_s: float) -> None:
        front = self.frontend
        front.current += 1
        front.total += 1
        front.max_current = max(front.max_current, front.current)
        front.session_rate.add(now_s)

    def connection_closed(self) -> None:
        self.frontend.current = max(0, self.frontend.current - 1)

    def request_done(
        self,
        status: int,
        bytes_in: int,
        bytes_out: int,
        now_s: float,
        backend: str | None = None,
        termination: str = "--",
    ) -> None:
        self.frontend.traffic.count(status, bytes_in, bytes_out, termination, now_s)
        if termination[:1] in ("P", "c") and termination[1:] == "R":
            self.frontend.request_errors += 1
        if backend is not None:
            self.backends[backend].traffic.count(status, bytes_in, bytes_out, termination, now_s)

    def upstream_failed(self, backend: str, failure: str) -> None:
        """`failure`: one of core.Failure's values."""
        if failure == "connect_failed":
            self.backends[backend].connect_errors += 1
        else:
            self.backends[backend].response_errors += 1

    def retried(self, backend: str) -> None:
        self.backends[backend].retries += 1
