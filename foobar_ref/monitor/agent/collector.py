"""One scrape of a host: every source read at once, each within its budget, what misses it marked down.

Theory of operation
-------------------
`Collector.scrape()` starts, in one trio nursery:

- one local worker thread: it asks every hop's admin socket for its page
  (hops.py), reads the local sources (the hops' processes, the host, the access
  logs: files under /proc and the state folder) one after another while the
  hops answer, then collects the pages;
- each MariaDB instance in a worker thread of its own (it waits on a socket).

Every part has the same budget: `timeout_s`, or less when the scraper says it
will wait less (server.py reads Prometheus' X-Prometheus-Scrape-Timeout-Seconds).
The pages are read until the scrape's deadline and the threads waited for a
little longer (`LATE_MARGIN_S`, at most a fifth of the budget).  Then the
scrape takes what was read: a local source that did not finish, a database that did not answer (`mysql_up 0`) or a hop
whose page did not come whole (`foobar_hop_up 0`, none of its series) is marked
down, and the page is served anyway.  trio cannot stop a thread, so a late
worker is left to finish on its own (the database connection's timeouts bound
it); each worker holds its source's lock while it runs, and the next scrape
waits for that lock within its budget, so two threads never share a source.

`foobar_hop_up{hop}` is 1 when the hop's process runs (stack file, processes.py)
and, for a hop with an admin socket, that socket answered a whole page; a hop
the stack file does not name is judged by its socket alone.

The client's own series: `foobar_agent_collect_duration_seconds{hop,source}`
(the last scrape), `foobar_agent_collect_success{hop,source}` (0 or 1, as
node_exporter's node_scrape_collector_success) and
`foobar_agent_collect_errors_total{hop,source}`; a source's failure and
recovery are logged once each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector as PromCollector

from foobar_ref.monitor.agent.hops import HopPage, collect_pages, request_pages
from foobar_ref.monitor.agent.processes import ProcessReport
from foobar_ref.runtime.trio_shell import log

LATE_MARGIN_S = 0.2  # how much longer than the deadline a worker thread is waited for
ADMIN = "admin"


class Source(Protocol):
    name: str

    def collect(self) -> Any: ...


class DatabaseSource(Source, Protocol):
    def missed(self) -> list[Metric]: ...


@dataclass(frozen=True)
class HopOnHost:
    name: str
    admin_socket: Path | None  # None: the hop has none (MariaDB) or is this client


@dataclass
class Scrape(PromCollector):
    """What one scrape read: the client's own families (a prometheus_client Collector) and the hops' pages."""

    families: list[Metric]
    registry: CollectorRegistry
    hop_pages: list[tuple[str, str]] = field(default_factory=list)

    def collect(self) -> Iterator[Metric]:
        yield from self.families
        yield from self.registry.collect()


class _Guarded:
    """A source's lock, taken by the worker thread for the whole of its run."""

    def __init__(self, timeout_s: float) -> None:
        self.lock = threading.Lock()
        self.timeout_s = timeout_s

    def run(self, work: Callable[[], Any]) -> Any:
        if not self.lock.acquire(timeout=self.timeout_s):
            raise TimeoutError("the previous scrape's worker is still running")
        try:
            return work()
        finally:
            self.lock.release()


class Collector:
    def __init__(
        self,
        hop: str,
        hops: list[HopOnHost],
        local: list[Source],
        databases: list[DatabaseSource],
        registry: CollectorRegistry,
        timeout_s: float,
    ) -> None:
        self.hop = hop
        self.hops = hops
        self.local = local
        self.databases = databases
        self.registry = registry
        self.timeout_s = timeout_s
        self._guards = {name: _Guarded(timeout_s) for name in ["local", *(db.name for db in databases)]}
        self._sockets = {hop.name: hop.admin_socket for hop in hops if hop.admin_socket is not None}
        self.durations: dict[str, float] = {}
        self.success: dict[str, bool] = {}
        self.errors: dict[str, int] = {}

    async def scrape(self, budget_s: float | None = None) -> Scrape:
        """Read every source within `budget_s` (at most `timeout_s`, the default)."""
        budget_s = min(self.timeout_s, budget_s) if budget_s is not None else self.timeout_s
        deadline = time.monotonic() + budget_s  # for the threads; trio keeps a clock of its own
        late_s = min(LATE_MARGIN_S, budget_s / 5)
        local: dict[str, tuple[Any, float]] = {}
        databases: dict[str, list[Metric]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_local, local, deadline, late_s)
            for database in self.databases:
                nursery.start_soon(self._read_database, database, databases, deadline, late_s)
        families: list[Metric] = []
        alive: dict[str, bool | None] = {}
        for source in self.local:
            result = self._settle(source.name, local.get(source.name))
            if isinstance(result, ProcessReport):
                alive = result.alive
                families += result.families
            elif isinstance(result, list):
                families += result
        for database in self.databases:
            families += databases.get(database.name) or database.missed()
        pages = self._settle_pages(local.get(ADMIN))
        families.append(self._hop_up(alive, pages))
        families += self._own_families()
        return Scrape(families, self.registry, [(hop, text) for hop, text in pages.items() if text is not None])

    # --- reading ------------------------------------------------------------------------

    async def _read_local(self, out: dict[str, tuple[Any, float]], deadline: float, late_s: float) -> None:
        results: dict[str, tuple[Any, float]] = {}
        with trio.move_on_after(deadline - time.monotonic() + late_s):
            try:
                await trio.to_thread.run_sync(
                    self._guards["local"].run, lambda: self._run_local(results, deadline), abandon_on_cancel=True
                )
            except TimeoutError:
                pass  # a late worker still holds the lock: every local source is missed this time
        out.update(dict(results))  # a copy: an abandoned worker may still add to `results`

    def _run_local(self, results: dict[str, tuple[Any, float]], deadline: float) -> None:
        """In the worker thread: the hops asked, each local source in turn, then the hops' pages."""
        pending = request_pages(self._sockets)
        for source in self.local:
            started = time.perf_counter()
            try:
                value: Any = source.collect()
            except Exception as err:  # a source's bug or an unreadable file: that source is down
                value = err
            results[source.name] = (value, time.perf_counter() - started)
        results[ADMIN] = (collect_pages(pending, deadline), 0.0)

    async def _read_database(
        self, database: DatabaseSource, out: dict[str, list[Metric]], deadline: float, late_s: float
    ) -> None:
        started = time.perf_counter()
        families: list[Metric] | None = None
        error: BaseException | None = None
        with trio.move_on_after(deadline - time.monotonic() + late_s):
            try:
                families = await trio.to_thread.run_sync(
                    self._guards[database.name].run, database.collect, abandon_on_cancel=True
                )
            except Exception as err:  # pymysql.Error, OSError, busy: the instance is down for this scrape
                error = err
        if families is not None:
            out[database.name] = families
        self._note(database.name, families is not None, time.perf_counter() - started, error)

    # --- bookkeeping -------------------------------------------------------------------------

    def _settle(self, name: str, result: tuple[Any, float] | None) -> Any:
        """A local source's result, or None (noted as a failure) when it raised or missed the budget."""
        if result is None:
            self._note(name, False, 0.0, TimeoutError("not read within the scrape's budget"))
            return None
        value, seconds = result
        failed = isinstance(value, BaseException)
        self._note(name, not failed, seconds, value if failed else None)
        return None if failed else value

    def _settle_pages(self, result: tuple[Any, float] | None) -> dict[str, str | None]:
        """Each hop's page (None: not whole in time), its read noted as the source `admin/<hop>`."""
        read: dict[str, HopPage] = result[0] if result is not None else {}
        for hop in self._sockets:
            page = read.get(hop)
            self._note(
                f"{ADMIN}/{hop}", page is not None and page.text is not None, page.seconds if page else 0.0, None
            )
        return {hop: page.text if (page := read.get(hop)) else None for hop in self._sockets}

    def _note(self, source: str, ok: bool, seconds: float, error: BaseException | None) -> None:
        self.durations[source] = seconds
        if not ok:
            self.errors[source] = self.errors.get(source, 0) + 1
        if self.success.get(source, True) != ok:
            if ok:
                log(self.hop, "source_recovered", source=source)
            else:
                log(self.hop, "source_failed", source=source, error=repr(error) if error else "no answer in time")
        self.success[source] = ok

    def _hop_up(self, alive: dict[str, bool | None], pages: dict[str, str | None]) -> Metric:
        family = GaugeMetricFamily(
            "foobar_hop_up", "1 when the hop's process runs and its admin socket answered a whole page", labels=["hop"]
        )
        for hop in self.hops:
            running = True if hop.name == self.hop else alive.get(hop.name)
            answered = None if hop.admin_socket is None else pages.get(hop.name) is not None
            if running is None and answered is None:
                continue  # nothing says either way: no series rather than a wrong one
            family.add_metric([hop.name], 1.0 if running is not False and answered is not False else 0.0)
        return family

    def _own_families(self) -> list[Metric]:
        labels = ["hop", "source"]
        duration = GaugeMetricFamily(
            "foobar_agent_collect_duration_seconds", "How long the last scrape took to read each source", labels=labels
        )
        success = GaugeMetricFamily(
            "foobar_agent_collect_success", "Whether each source was read whole in the last scrape", labels=labels
        )
        errors = CounterMetricFamily(
            "foobar_agent_collect_errors", "Scrapes in which a source failed or ran out of time", labels=labels
        )
        for source in sorted(self.durations):
            duration.add_metric([self.hop, source], self.durations[source])
            success.add_metric([self.hop, source], 1.0 if self.success.get(source) else 0.0)
            errors.add_metric([self.hop, source], self.errors.get(source, 0))
        return [duration, success, errors]
