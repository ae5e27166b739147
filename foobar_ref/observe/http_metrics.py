"""The HTTP series every HTTP hop keeps (balancer, web, store), and when each request began.

Theory of operation
-------------------
A shell makes one `HttpMetrics(metrics, hop)` at start and one `FirstByte` per
connection, which it feeds with the size of every read (`received(n)`; a small
stream wrapper in the shell does it).  Per request::

    meter.next_request(buffered=bool(conn.trailing_data[0]))   # before reading it
    request = await read_request(...)
    http.begin()                                               # in flight
    try: ... answer and send ...
    finally: http.end()
    http.count(method, target, status, meter.elapsed_s(), meter.take_bytes(), len(sent))

Durations start at the request's first byte, never when the server began waiting
for it: on a kept-alive connection the idle time before a request is the
client's, not the server's.  A pipelined request whose first bytes came with the
previous one began when that read returned.

The series (catalogue: foobar_ref/monitor/__init__.py):

- `foobar_http_requests_total{hop,method,code}`: user requests, i.e. everything
  but the health check; `foobar_http_request_duration_seconds{hop}` is their
  latency, from the first byte until the response was handed to the kernel;
- `foobar_http_health_checks_total{hop,code}`: `/health`, counted apart so that
  user QPS and latency stay exact while probes come and go;
- `foobar_http_requests_in_flight{hop}`, `foobar_http_request_bytes_total{hop}`
  (every byte read on HTTP connections, heads included) and
  `foobar_http_response_bytes_total{hop}` (every byte sent): all traffic.

The usual series (GET 200, a 200 health check, and the hop-wide
`foobar_requests_total{outcome="200"}`) exist at 0 from the start: a counter
that first appears at 1 hides its first increase from rate() and increase().

The hot path makes no `labels()` look-up: the children are made once and kept
in dicts keyed by (method, code).  A method outside the standard set counts as
`other`, and so does a request refused before its head was read, so a hostile
client cannot grow the number of series: at most 10 methods x the codes the hop
itself answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from foobar_ref.observe.metrics import DURATION_BUCKETS_S, Metrics

STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
OTHER_METHOD = "other"
HEALTH_PATH = b"/health"
_METHOD_LABELS = {m.encode(): m for m in STANDARD_METHODS}

Clock = Callable[[], float]


def is_health_check(target: bytes) -> bool:
    return target == HEALTH_PATH or target.startswith(b"/health?")


class HttpMetrics:
    def __init__(self, metrics: Metrics, hop: str) -> None:
        registry = metrics.registry
        self.hop = hop
        self._requests = Counter(
            "foobar_http_requests", "User HTTP requests (all but /health), by method and code",
            ["hop", "method", "code"], registry=registry,
        )  # fmt: skip
        self._health = Counter(
            "foobar_http_health_checks", "GET /health requests, counted apart from user requests",
            ["hop", "code"], registry=registry,
        )  # fmt: skip
        duration = Histogram(
            "foobar_http_request_duration_seconds",
            "User request latency, from the request's first byte until the response was sent",
            ["hop"], registry=registry, buckets=DURATION_BUCKETS_S,
        )  # fmt: skip
        in_flight = Gauge(
            "foobar_http_requests_in_flight", "Requests read and not yet answered", ["hop"], registry=registry
        )
        request_bytes = Counter(
            "foobar_http_request_bytes", "Bytes read on HTTP connections", ["hop"], registry=registry
        )
        response_bytes = Counter(
            "foobar_http_response_bytes", "Bytes sent on HTTP connections", ["hop"], registry=registry
        )
        self._observe = duration.labels(hop=hop).observe
        self._bytes_in = request_bytes.labels(hop=hop).inc
        self._bytes_out = response_bytes.labels(hop=hop).inc
        self._in_flight = 0
        in_flight.labels(hop=hop).set_function(lambda: self._in_flight)
        self._request_children: dict[tuple[bytes, int], Callable[[], None]] = {}
        self._health_children: dict[int, Callable[[], None]] = {}
        self._request_child(b"GET", 200)
        self._health_child(200)
        metrics.requests.labels(hop=hop, outcome="200")

    def begin(self) -> None:
        self._in_flight += 1

    def end(self) -> None:
        self._in_flight -= 1

    def count(
        self, method: bytes | None, target: bytes | None, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        """One answered request; `method` and `target` None when it was refused before its head was read."""
        if target is not None and is_health_check(target):
            inc = self._health_children.get(status) or self._health_child(status)
        else:
            inc = self._request_children.get((method or b"", status)) or self._request_child(method or b"", status)
            self._observe(seconds)
        inc()
        if bytes_in:
            self._bytes_in(bytes_in)
        if bytes_out:
            self._bytes_out(bytes_out)

    def _health_child(self, status: int) -> Callable[[], None]:
        inc = self._health_children[status] = self._health.labels(hop=self.hop, code=str(status)).inc
        return inc

    def _request_child(self, method: bytes, status: int) -> Callable[[], None]:
        label = _METHOD_LABELS.get(method, OTHER_METHOD)
        inc = self._requests.labels(hop=self.hop, method=label, code=str(status)).inc
        if method in _METHOD_LABELS or not method:
            self._request_children[(method, status)] = inc  # unknown methods are not kept: the dict stays bounded
        return inc


class FirstByte:
    """When the current request's first byte arrived, and how many bytes were read for it."""

    __slots__ = ("_clock", "_last_s", "_first_s", "_bytes", "_taken")

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._last_s = clock()
        self._first_s: float | None = None
        self._bytes = 0
        self._taken = 0

    def received(self, size: int) -> None:
        """A read returned `size` bytes (0: end of stream)."""
        now = self._last_s = self._clock()
        if size and self._first_s is None:
            self._first_s = now
        self._bytes += size

    def next_request(self, buffered: bool) -> None:
        """Before reading the next request; `buffered`: its first bytes were already read."""
        self._first_s = self._last_s if buffered else None

    def started_s(self) -> float:
        return self._first_s if self._first_s is not None else self._clock()

    def elapsed_s(self) -> float:
        """Seconds since the current request's first byte (0 when none arrived)."""
        return self._clock() - self.started_s()

    def take_bytes(self) -> int:
        """Bytes read since the last call: the current request's, on a connection that does not pipeline."""
        taken, self._taken = self._bytes - self._taken, self._bytes
        return taken
