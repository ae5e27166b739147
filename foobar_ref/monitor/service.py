"""The monitoring service's trio shell: the HTTP port, and the scrape, rule and retention loops.

Theory of operation
-------------------
One trio process, one thread.  `MonitorService` owns the storage, the query engine, the rule
manager and the scrape state, and runs:

- one scrape loop per target (scrape.py), each started at its own offset inside the interval
  (target i of n at i/n of it) so scrapes are spread evenly, then on a fixed cadence (a scrape
  that overran skips the missed slots instead of bunching up); every scrape is timestamped with
  its start time;
- the rule loop: every `evaluation_interval_s` the rule manager evaluates at the current time, its
  transitions go through the notification grouper and out to the log and the webhook (notify.py),
  whose sending runs in a task of its own so a slow webhook never delays evaluation;
- the retention loop: `storage.expire` every `RETENTION_CHECK_S`, dropping samples older than the
  retention and then the oldest while over the memory bound;
- the HTTP port (127.0.4.1:9090): one task per connection, one request at a time, keep-alive
  with an idle timeout, a whole-request timeout (408), a bounded body (413), a bounded number
  of open connections, answers from api.py; anything unexpected in an answer is logged and
  answered 500 in Prometheus's error shape, never with a traceback.

Queries and scrapes share the one thread, so a query's cost is bounded by the engine's limits and
by a deadline (`MAX_QUERY_S`, or the request's shorter `timeout`) checked between steps.

The monitor's own metrics (`/metrics` on the port and on its admin socket, and scraped by itself
as job `monitor`): `foobar_requests_total{hop="monitor"}` and `foobar_request_seconds` for its
HTTP answers, and `foobar_monitor_*` for scrapes by target and outcome, scrape CPU, samples
appended, staleness markers, stored series and bytes, rule evaluations and notifications.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11
import trio
from prometheus_client import Counter, Gauge, ProcessCollector

from foobar_ref.monitor import scrape
from foobar_ref.monitor.alerting import RuleManager
from foobar_ref.monitor.api import Api, Reply, Request
from foobar_ref.monitor.notify import Grouper, Notifier, alert_events
from foobar_ref.monitor.promql import Engine
from foobar_ref.monitor.tsdb import Storage
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_http import read_request
from foobar_ref.runtime.trio_shell import log, peer_ip, reset
from foobar_ref.topology import MonitorSettings, Topology
from foobar_ref.wire.http import HttpError, error_response, new_connection, response_bytes

KEEPALIVE_IDLE_S = 30.0
REQUEST_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 10.0
MAX_REQUEST_BODY_BYTES = 256 * 1024  # a POSTed query form; more is refused 413
MAX_REQUESTS_PER_CONNECTION = 1000
MAX_CONNECTIONS = 64  # open HTTP connections; more are reset at once
RETENTION_CHECK_S = 30.0
DEFAULT_MAX_STORAGE_BYTES = 256 * 1024 * 1024
LOOKBACK_DELTA_S = 300.0
OWN_MAX_SERIES = 100_000
MAX_QUERY_S = 10.0  # a query longer than this is stopped (503 timeout): it holds the one thread


class MonitorMetrics(Metrics):
    """The hop's usual registry plus the monitor's own series."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total ...: no monitoring client reads the monitor
        self.scrapes = Counter(
            "foobar_monitor_scrapes", "Scrapes by target and outcome", ["target", "outcome"], registry=r
        )
        self.scrape_cpu = Counter(
            "foobar_monitor_scrape_cpu_seconds", "CPU spent parsing and storing scrapes", ["target"], registry=r
        )
        self.samples = Counter("foobar_monitor_samples_appended", "Samples appended by scrapes", registry=r)
        self.stale = Counter("foobar_monitor_stale_markers", "Staleness markers written", registry=r)
        self.duplicates = Counter("foobar_monitor_duplicate_samples", "Samples dropped: series given twice", registry=r)
        self.series = Gauge("foobar_monitor_tsdb_series", "Series held in memory", registry=r)
        self.memory = Gauge("foobar_monitor_tsdb_bytes", "Estimated bytes held by the storage", registry=r)
        self.expired = Counter("foobar_monitor_tsdb_expired_samples", "Samples dropped by retention", registry=r)
        self.evaluations = Counter(
            "foobar_monitor_rule_evaluations", "Rule evaluation rounds by outcome", ["outcome"], registry=r
        )
        self.evaluation_seconds = Gauge(
            "foobar_monitor_rule_evaluation_seconds", "Duration of the last evaluation round", registry=r
        )
        self.notifications = Counter(
            "foobar_monitor_notifications", "Alert notifications by outcome", ["outcome"], registry=r
        )


class MonitorService:
    def __init__(
        self,
        topo: Topology,
        hop: str,
        metrics: MonitorMetrics,
        rules: RuleManager,
        storage: Storage,
        engine: Engine,
        max_query_s: float = MAX_QUERY_S,
    ) -> None:
        service = topo.service(hop)
        assert service.monitor is not None
        self.hop = hop
        self.settings: MonitorSettings = service.monitor
        self.metrics = metrics
        self.storage = storage
        self.engine = engine
        self.rules = rules
        self.source_ip = topo.source_for(hop)
        ip, port = topo.reach(hop, "http")
        self.external_url = f"http://{ip}:{port}"
        self.targets = [scrape.TargetState(t) for t in scrape.targets_of(topo, hop)]
        self.grouper = Grouper(self.settings.repeat_interval_s, self.external_url)
        self.notifier = Notifier(
            self.settings.webhook_url, self.source_ip, self._log, lambda outcome: self._count_notification(outcome)
        )
        self.api = Api(
            engine,
            storage,
            rules,
            lambda: self.targets,
            self.own_metrics,
            self.settings.scrape_interval_s,
            self.settings.scrape_timeout_s,
            time.monotonic,
            max_query_s,
        )
        self.open_connections = 0

    def _log(self, event: str, **fields: object) -> None:
        log(self.hop, event, **fields)

    def _count_notification(self, outcome: str) -> None:
        self.metrics.notifications.labels(outcome=outcome).inc()

    def own_metrics(self) -> bytes:
        self.metrics.series.set(self.storage.series_count())
        return self.metrics.exposition()

    def tasks(self) -> list[Callable[[], Awaitable[None]]]:
        count = len(self.targets)
        loops: list[Callable[[], Awaitable[None]]] = [
            self._scrape_loop_for(state, index * self.settings.scrape_interval_s / count)
            for index, state in enumerate(self.targets)
        ]
        return [*loops, self.rule_loop, self.retention_loop, self.notifier.run]

    # --- scraping ----------------------------------------------------------------------------------

    def _scrape_loop_for(self, state: scrape.TargetState, offset_s: float) -> Callable[[], Awaitable[None]]:
        async def own(timeout_s: float) -> bytes:
            return self.own_metrics()

        fetch = own if state.target.job == scrape.SELF_JOB else scrape.Fetcher(state.target, self.source_ip).fetch

        async def loop() -> None:
            await trio.sleep(offset_s)
            await self.scrape_loop(state, fetch)

        return loop

    async def scrape_loop(self, state: scrape.TargetState, fetch: scrape.Fetch) -> None:
        interval = self.settings.scrape_interval_s
        next_at = trio.current_time()
        while True:
            await self.scrape_once(state, fetch)
            next_at += interval
            now = trio.current_time()
            if next_at < now:  # overran: keep the cadence, skip the missed slots
                next_at += interval * ((now - next_at) // interval + 1)
            await trio.sleep_until(next_at)

    async def scrape_once(self, state: scrape.TargetState, fetch: scrape.Fetch) -> scrape.ScrapeReport:
        started_s, started = time.time(), time.perf_counter()
        body: bytes | scrape.ScrapeFailed
        try:
            body = await fetch(self.settings.scrape_timeout_s)
        except scrape.ScrapeFailed as failure:
            body = failure
        duration_s = time.perf_counter() - started
        was = (state.health, state.last_error)
        cpu_started = time.thread_time()
        report = scrape.ingest(state, body, int(started_s * 1000), duration_s, self.storage, self._limit(state))
        name = state.target.name
        self.metrics.scrape_cpu.labels(target=name).inc(time.thread_time() - cpu_started)
        self.metrics.scrapes.labels(target=name, outcome=report.outcome).inc()
        self.metrics.samples.inc(report.samples_scraped - report.duplicates if report.outcome == "ok" else 0)
        self.metrics.stale.inc(report.stale_marked)
        self.metrics.duplicates.inc(report.duplicates)
        if (state.health, state.last_error) != was:
            event = "target_up" if state.health == "up" else "target_down"
            self._log(event, target=name, instance=state.target.instance, outcome=report.outcome, error=report.error)
        return report

    def _limit(self, state: scrape.TargetState) -> int:
        """The series bound of a target; the monitor's own page has its own (its series grow with the targets)."""
        return OWN_MAX_SERIES if state.target.job == scrape.SELF_JOB else self.settings.max_series_per_target

    # --- rules and notifications -------------------------------------------------------------------

    async def rule_loop(self) -> None:
        interval = self.settings.evaluation_interval_s
        next_at = trio.current_time() + interval
        while True:
            await trio.sleep_until(next_at)
            self.evaluate(time.time())
            next_at = max(next_at + interval, trio.current_time())

    def evaluate(self, now_s: float) -> None:
        started = time.perf_counter()
        try:
            transitions = self.rules.evaluate(now_s)
        except Exception as err:  # a rule engine bug must not stop scraping or the API
            self.metrics.evaluations.labels(outcome="error").inc()
            self._log("rule_evaluation_failed", error=repr(err))
            return
        self.metrics.evaluations.labels(outcome="ok").inc()
        self.metrics.evaluation_seconds.set(time.perf_counter() - started)
        for body in self.grouper.observe(alert_events(transitions), now_s):
            self.notifier.submit(body)

    # --- retention ---------------------------------------------------------------------------------

    async def retention_loop(self) -> None:
        while True:
            await trio.sleep(RETENTION_CHECK_S)
            dropped = self.storage.expire(int(time.time() * 1000))
            self.metrics.expired.inc(dropped)
            self.metrics.series.set(self.storage.series_count())
            self.metrics.memory.set(self.storage.memory_bytes())

    # --- HTTP --------------------------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.open_connections >= MAX_CONNECTIONS:
            self._log("connection_refused", peer=peer_ip(stream), reason=f"more than {MAX_CONNECTIONS} open")
            reset(stream)
            return
        self.open_connections += 1
        try:
            await self._serve(stream)
        finally:
            self.open_connections -= 1

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = new_connection(h11.SERVER)
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                message = await read_request(stream, conn, KEEPALIVE_IDLE_S, REQUEST_TIMEOUT_S, MAX_REQUEST_BODY_BYTES)
            except HttpError as err:
                self._count(err.status, None)
                with trio.move_on_after(SEND_TIMEOUT_S):
                    await stream.send_all(error_response(conn, err.status, err.reason))
                return
            if message is None:
                return
            head = message.head
            assert isinstance(head, h11.Request)
            started = time.perf_counter()
            request = Request(
                head.method.decode("ascii", "replace"),
                head.target.decode("latin-1"),
                message.body,
                (message.header(b"content-type") or b"").decode("latin-1"),
            )
            reply = self._answer(request)
            sent = False
            with trio.move_on_after(SEND_TIMEOUT_S):
                await stream.send_all(self._reply_bytes(conn, request, reply))
                sent = True
            self._count(reply.status, time.perf_counter() - started)
            if not sent or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _answer(self, request: Request) -> Reply:
        try:
            return self.api.answer(request, time.time())
        except Exception as err:  # never a traceback to the peer
            self._log("answer_failed", target=request.target[:200], error=repr(err))
            body = b'{"status":"error","errorType":"internal","error":"internal error (see the monitor\'s log)"}'
            return Reply(500, "application/json", body)

    def _reply_bytes(self, conn: h11.Connection, request: Request, reply: Reply) -> bytes:
        headers = [("Content-Type", reply.content_type), *reply.headers]
        if request.method == "HEAD":
            return response_bytes(conn, reply.status, [*headers, ("Content-Length", str(len(reply.body)))])
        return response_bytes(conn, reply.status, headers, reply.body)

    def _count(self, status: int, seconds: float | None) -> None:
        self.metrics.requests.labels(hop=self.hop, outcome=str(status)).inc()
        if seconds is not None:
            self.metrics.latency.labels(hop=self.hop).observe(seconds)


def default_rule_file() -> Path:
    return Path(__file__).with_name("alerts.yml")
