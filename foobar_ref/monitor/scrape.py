"""Scrape targets: who they are, one HTTP fetch of `/metrics`, and what a scrape puts in storage.

Theory of operation
-------------------
Every `monitor-client` service of the topology is a target (`targets_of`), reached at its host's
*public* address and `metrics` port, from the monitor host's own address, so the firewall in front
of the client decides whether the scrape gets through; the monitor scrapes itself too
(job `monitor`), from its own registry, without a socket.

A scrape is two steps:

1. `Fetcher.fetch(timeout_s)`: one `GET /metrics` on a kept-alive connection (one per target; a
   reused connection the client closed while idle is retried once on a fresh one), the whole
   exchange bounded by the scrape timeout and the body by `max_body_bytes`.  Anything but a whole
   200 answer raises `ScrapeFailed` with an `outcome` (the label it is counted under) and a
   message for `/api/v1/targets`' lastError.
2. `ingest(...)`, with no I/O: parse the body (exposition.py), attach the target's labels as
   Prometheus does with `honor_labels: false` (a scraped `job`, `instance` or `host` becomes
   `exported_job` ..., and a label with an empty value is no label), refuse the scrape whole when
   it has more series than `max_series` (Prometheus's sample_limit), append the samples at the
   scrape's start time, and write staleness markers for the series the previous scrape had and
   this one has not; a failed scrape marks every series of the previous one stale, as Prometheus
   does.  Then the report series every target gets, successful or not: `up`,
   `scrape_duration_seconds`, `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`,
   `scrape_series_added`.

A series given twice in one body keeps its first value and the duplicate is counted, as in
Prometheus ("duplicate sample for timestamp").  Counter resets are the query engine's business.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import h11
import trio

from foobar_ref.monitor.exposition import ExpositionError, Labels, Page, Relabel, SeriesCache
from foobar_ref.runtime.trio_shell import connect_tcp
from foobar_ref.topology import Topology
from foobar_ref.wire.http import HttpError, Message, new_connection, read_message, request_bytes

CLIENT_JOB = "monitor-client"
SELF_JOB = "monitor"
METRICS_PATH = "/metrics"
MAX_BODY_BYTES = 16 * 1024 * 1024  # a client page is tens of KiB; a body past this fails the scrape
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
TARGET_LABELS = ("job", "instance", "host")


class Storage(Protocol):
    """What a scrape needs of the TSDB (foobar_ref.monitor.tsdb.Storage)."""

    def append(self, labels: Labels, t_ms: int, value: float) -> None: ...

    def mark_stale(self, labels: Labels, t_ms: int) -> None: ...


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape; `name` is the service (hop) that serves it."""

    name: str
    job: str
    host: str
    address: tuple[str, int]

    @property
    def instance(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    @property
    def labels(self) -> dict[str, str]:
        return {"job": self.job, "instance": self.instance, "host": self.host}

    @property
    def discovered_labels(self) -> dict[str, str]:
        return {"__address__": self.instance, "__metrics_path__": METRICS_PATH, "__scheme__": "http", **self.labels}

    @property
    def scrape_url(self) -> str:
        return f"http://{self.instance}{METRICS_PATH}"


def targets_of(topo: Topology, monitor: str) -> list[Target]:
    """The monitor itself first, then every monitoring client, in topology order."""
    own = Target(monitor, SELF_JOB, topo.service(monitor).host, topo.listen(monitor, "http"))
    clients = [
        Target(svc.name, CLIENT_JOB, svc.host, topo.reach(svc.name, "metrics"))
        for svc in topo.services_of_kind("monitor-client")
    ]
    return [own, *clients]


class ScrapeFailed(Exception):
    """A scrape that put no samples in: `outcome` is its counter label, the message its lastError."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class TargetState:
    """What the monitor knows of one target between scrapes (for staleness and /api/v1/targets)."""

    target: Target
    health: str = "unknown"  # up | down | unknown (never scraped yet)
    last_error: str = ""
    last_scrape_s: float | None = None  # wall-clock start of the last scrape
    last_duration_s: float = 0.0
    cache: SeriesCache = field(default_factory=SeriesCache)


@dataclass(frozen=True)
class ScrapeReport:
    outcome: str  # ok, or the ScrapeFailed outcome
    samples_scraped: int
    series_added: int
    stale_marked: int
    duplicates: int
    error: str = ""


def relabeller(target: Target) -> Relabel:
    """Scraped labels -> stored labels: the target's labels win, clashing scraped ones are `exported_`."""
    own = target.labels

    def relabel(name: str, scraped: dict[str, str]) -> Labels:
        merged = {"__name__": name}
        for label, value in scraped.items():
            if label in own:
                label = "exported_" + label
                while label in scraped or label in own:
                    label = "exported_" + label
            merged[label] = value
        merged.update(own)
        return tuple(sorted((k, v) for k, v in merged.items() if v != ""))

    return relabel


def ingest(
    state: TargetState,
    body: bytes | ScrapeFailed,
    t_ms: int,
    duration_s: float,
    storage: Storage,
    max_series: int,
) -> ScrapeReport:
    """Put one scrape (a body, or why there is none) into storage; update `state`."""
    page, failure = _parse(state, body)
    if page is not None and len(page.samples) > max_series:
        failure = ScrapeFailed(
            "too_many_series", f"sample limit exceeded: {len(page.samples)} series, at most {max_series} per target"
        )
    if failure is None and page is not None:
        for labels, value in page.samples:
            storage.append(labels, t_ms, value)
        gone, added = state.cache.commit(page)
    else:
        gone, added = state.cache.forget(), 0  # a refused page teaches nothing about the next one
    for labels in gone:
        storage.mark_stale(labels, t_ms)
    state.health = "down" if failure else "up"
    state.last_error = str(failure) if failure else ""
    state.last_scrape_s = t_ms / 1000
    state.last_duration_s = duration_s
    scraped = len(page.samples) + page.duplicates if page is not None else 0
    duplicates = page.duplicates if page is not None else 0
    report = ScrapeReport(failure.outcome if failure else "ok", scraped, added, len(gone), duplicates, state.last_error)
    _append_report(state.target, report, t_ms, duration_s, storage)
    return report


def _parse(state: TargetState, body: bytes | ScrapeFailed) -> tuple[Page | None, ScrapeFailed | None]:
    if isinstance(body, ScrapeFailed):
        return None, body
    try:
        return state.cache.parse(body.decode("utf-8"), relabeller(state.target)), None
    except UnicodeDecodeError as err:
        return None, ScrapeFailed("parse_error", f"body is not UTF-8 text (byte {err.start})")
    except ExpositionError as err:
        return None, ScrapeFailed("parse_error", f"not Prometheus text format: {err}")


def _append_report(target: Target, report: ScrapeReport, t_ms: int, duration_s: float, storage: Storage) -> None:
    own = tuple(sorted(target.labels.items()))
    post_relabel = 0 if report.outcome == "too_many_series" else report.samples_scraped - report.duplicates
    for name, value in (
        ("up", 1.0 if report.outcome == "ok" else 0.0),
        ("scrape_duration_seconds", duration_s),
        ("scrape_samples_scraped", float(report.samples_scraped)),
        ("scrape_samples_post_metric_relabeling", float(post_relabel)),
        ("scrape_series_added", float(report.series_added)),
    ):
        storage.append(tuple(sorted((("__name__", name), *own))), t_ms, value)


Fetch = Callable[[float], Awaitable[bytes]]


class Fetcher:
    """`GET /metrics` of one target over a kept-alive HTTP/1.1 connection from `source_ip`."""

    def __init__(self, target: Target, source_ip: str, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.target = target
        self.source_ip = source_ip
        self.max_body_bytes = max_body_bytes
        self.idle: tuple[trio.SocketStream, h11.Connection] | None = None
        self.in_use: trio.SocketStream | None = None

    async def fetch(self, timeout_s: float) -> bytes:
        """The body of a 200 answer within `timeout_s`, or ScrapeFailed."""
        try:
            with trio.move_on_after(timeout_s):
                return await self._fetch(timeout_s)
        finally:
            if self.in_use is not None:  # timed out or cancelled in the middle of an exchange
                self.in_use.socket.close()
                self.in_use = None
        raise ScrapeFailed("timeout", f"no complete answer from {self.target.instance} within {timeout_s:g} s")

    async def _fetch(self, timeout_s: float) -> bytes:
        for attempt in range(2):
            reused = self.idle is not None
            stream, conn = self.idle if self.idle is not None else await self._open()
            self.idle, self.in_use = None, stream
            try:
                await stream.send_all(request_bytes(conn, "GET", METRICS_PATH, self._headers(timeout_s)))
                reply = await read_message(conn, stream.receive_some, self.max_body_bytes)
                self.in_use = None
            except HttpError as err:
                self.in_use = None
                stream.socket.close()
                if reused and attempt == 0 and err.status != 413:
                    continue  # a kept-alive connection the client closed while idle: try a fresh one
                outcome = "body_too_large" if err.status == 413 else "http_error"
                raise ScrapeFailed(outcome, f"bad HTTP answer from {self.target.instance}: {err.reason}") from None
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as err:
                self.in_use = None
                stream.socket.close()
                if reused and attempt == 0:
                    continue
                raise ScrapeFailed("connection", f"connection to {self.target.instance} failed: {err!r}") from None
            if reply is None:
                stream.socket.close()
                if reused and attempt == 0:
                    continue
                raise ScrapeFailed("connection", f"{self.target.instance} closed the connection without answering")
            return self._body(stream, conn, reply)
        raise ScrapeFailed("connection", f"{self.target.instance} closed the connection without answering")

    def _body(self, stream: trio.SocketStream, conn: h11.Connection, reply: Message) -> bytes:
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self.idle = (stream, conn)
        else:
            stream.socket.close()
        assert isinstance(reply.head, h11.Response)
        status = reply.head.status_code
        if status != 200:
            reason = reply.head.reason.decode("latin-1", "replace")
            raise ScrapeFailed("http_error", f"server returned HTTP status {status} {reason}".rstrip())
        return reply.body

    async def _open(self) -> tuple[trio.SocketStream, h11.Connection]:
        try:
            stream = await connect_tcp(*self.target.address, source_ip=self.source_ip)
        except (OSError, trio.TooSlowError) as err:
            errno = getattr(err, "errno", None)
            detail = os.strerror(errno) if errno else "no connection within the timeout"
            raise ScrapeFailed("connection", f"cannot connect to {self.target.instance}: {detail}") from None
        return stream, new_connection(h11.CLIENT)

    def _headers(self, timeout_s: float) -> list[tuple[str, str]]:
        return [
            ("Host", self.target.instance),
            ("Accept", ACCEPT),
            ("User-Agent", "foobar-ref-monitor"),
            ("X-Prometheus-Scrape-Timeout-Seconds", f"{timeout_s:g}"),
        ]

    def close(self) -> None:
        if self.idle is not None:
            self.idle[0].socket.close()
            self.idle = None
