"""The client's HTTP side: GET /metrics over HTTP/1.1 (h11, trio), the page negotiated by `Accept`.

One task per connection, kept alive for the monitoring service's next scrape:
read a request (whole request 5 s -> 408; idle 60 s, above any sensible scrape
interval, -> silent close), answer, repeat.  `GET /metrics` (and HEAD) runs one
scrape (collector.py) and renders it (page.py): the text format 0.0.4 unless the
client asks for OpenMetrics.  `GET /` names the client and links the page;
anything else is 404, another method on a known path 405.

A scraper that says how long it waits (`X-Prometheus-Scrape-Timeout-Seconds`,
sent by Prometheus and by the monitoring service) gets its page within that:
the scrape's budget is the header's value less `SCRAPE_TIMEOUT_OFFSET_S` (for
the margin, rendering and the network), as blackbox_exporter does, never more
than --source-timeout-s.

Each request is counted (`foobar_requests_total`, `foobar_request_seconds`,
from the request's first byte) and logged as one JSON line.
"""

from __future__ import annotations

import math

import h11
import trio

from foobar_ref.monitor.agent.collector import Collector
from foobar_ref.monitor.agent.page import TextWriter, render
from foobar_ref.observe.http_metrics import FirstByte
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_http import read_request
from foobar_ref.runtime.trio_shell import log, peer_ip
from foobar_ref.wire.http import HttpError, Message, error_response, new_connection, response_bytes

KEEPALIVE_IDLE_S = 60.0
REQUEST_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 10.0
MAX_REQUESTS_PER_CONNECTION = 1000
ROUTES = ("/metrics", "/")
ALLOWED_METHODS = (b"GET", b"HEAD")
SCRAPE_TIMEOUT_OFFSET_S = 0.3
MIN_BUDGET_S = 0.05

Answer = tuple[int, list[tuple[str, str]], bytes]


class _Metered(trio.abc.ReceiveStream):
    """The connection's reads, reported to its FirstByte meter."""

    def __init__(self, stream: trio.abc.ReceiveStream, meter: FirstByte) -> None:
        self.stream = stream
        self.meter = meter

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.stream.receive_some(max_bytes)
        self.meter.received(len(data))
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


class MetricsServer:
    def __init__(self, hop: str, host: str, collector: Collector, metrics: Metrics) -> None:
        self.hop = hop
        self.host = host
        self.collector = collector
        self.metrics = metrics
        self.writer = TextWriter()

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = new_connection(h11.SERVER)
        peer = peer_ip(stream)
        meter = FirstByte()
        source = _Metered(stream, meter)
        for served in range(1, MAX_REQUESTS_PER_CONNECTION + 1):
            meter.next_request(buffered=bool(conn.trailing_data[0]))
            try:
                request = await read_request(source, conn, KEEPALIVE_IDLE_S, REQUEST_TIMEOUT_S, max_body_bytes=0)
            except HttpError as err:
                log(self.hop, "bad_request", peer=peer, status=err.status, reason=err.reason)
                await self._send(stream, error_response(conn, err.status, err.reason))
                self._count(err.status, meter)
                return
            if request is None:
                return
            status, headers, body = await self._answer(request)
            if served == MAX_REQUESTS_PER_CONNECTION:
                headers.append(("Connection", "close"))
            head = request.head
            assert isinstance(head, h11.Request)
            if head.method == b"HEAD":
                headers.append(("Content-Length", str(len(body))))
            data = response_bytes(conn, status, headers, b"" if head.method == b"HEAD" else body)
            if not await self._send(stream, data):
                return
            seconds = self._count(status, meter)
            log(self.hop, "request", peer=peer, method=head.method.decode("ascii", "replace"),
                target=head.target.decode("latin-1"), status=status, duration_ms=round(seconds * 1000, 3),
                bytes_out=len(data))  # fmt: skip
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _answer(self, request: Message) -> Answer:
        head = request.head
        assert isinstance(head, h11.Request)
        path = head.target.split(b"?", 1)[0].decode("latin-1")
        if path not in ROUTES:
            return 404, _text(), f"404 not found: this client serves {', '.join(ROUTES)}\n".encode()
        if head.method not in ALLOWED_METHODS:
            return 405, [*_text(), ("Allow", "GET, HEAD")], b"405 method not allowed: GET or HEAD\n"
        if path == "/":
            return 200, _text(), self._index()
        scrape = await self.collector.scrape(_budget(request.header(b"x-prometheus-scrape-timeout-seconds")))
        accept = request.header(b"accept")
        page = render(scrape, scrape.hop_pages, accept.decode("latin-1") if accept is not None else None, self.writer)
        if page.dropped_lines:
            log(self.hop, "lines_dropped", count=page.dropped_lines, reason="not valid exposition text")
        return 200, [("Content-Type", page.content_type)], page.body

    def _index(self) -> bytes:
        return (
            f"{self.hop}: the monitoring client of host {self.host}.\n"
            "GET /metrics: host, process, hop, database and access-log metrics (Prometheus text format).\n"
        ).encode()

    async def _send(self, stream: trio.abc.SendStream, data: bytes) -> bool:
        try:
            with trio.fail_after(SEND_TIMEOUT_S):
                await stream.send_all(data)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def _count(self, status: int, meter: FirstByte) -> float:
        seconds = meter.elapsed_s()
        self.metrics.requests.labels(hop=self.hop, outcome=str(status)).inc()
        self.metrics.latency.labels(hop=self.hop).observe(seconds)
        return seconds


def _budget(header: bytes | None) -> float | None:
    """The scrape's budget from the scraper's timeout header; None (the default) when absent or not a number."""
    try:
        timeout_s = float(header) if header is not None else math.nan
    except ValueError:
        return None
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        return None
    return max(MIN_BUDGET_S, timeout_s - SCRAPE_TIMEOUT_OFFSET_S)


def _text() -> list[tuple[str, str]]:
    return [("Content-Type", "text/plain; charset=utf-8")]
