"""store-01 / store-02: the messages API over HTTP/1.1 (h11) on asyncio, backed by MariaDB.

One task per connection: read a request (keep-alive idle, whole request within
`request_timeout_s` -> 408, body over 1 MiB -> 413), let core.decide judge it,
run the database command it names, answer JSON, repeat until either side ends
the connection.  Errors before a request was fully read close the connection
after the answer (after a short, bounded drain of what the client still sends,
so it can read the answer instead of a reset).

Every request is counted (`foobar_requests_total`, the HTTP series of
observe/http_metrics.py) and logged; its duration runs from its first byte
(`FirstByte`, fed by `_MeteredReader`), never from when the kept-alive
connection began to wait for it.  Every database query is counted by kind,
database and outcome with its latency (`foobar_store_queries_total`,
`foobar_store_query_duration_seconds`), reported by the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import cast

import h11
from prometheus_client import Histogram

from foobar_ref.observe.http_metrics import FirstByte, HttpMetrics
from foobar_ref.observe.metrics import DURATION_BUCKETS_S, Metrics
from foobar_ref.runtime.asyncio_shell import log, peer_ip, read_request
from foobar_ref.store import core
from foobar_ref.store.repo import DatabaseUnavailable, Repository
from foobar_ref.wire.http import HttpError, Message, error_response, new_connection, response_bytes, trace_id_of

KEEPALIVE_IDLE_S = 15.0
REQUEST_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
DRAIN_AFTER_ERROR_S = 1.0
DRAIN_MAX_BYTES = 2 * 1024 * 1024
MAX_REQUESTS_PER_CONNECTION = 1000
QUERY_KINDS = ("read", "write", "health")


class _MeteredReader:
    """The connection's reads, reported to its FirstByte meter (read_request calls only `read`)."""

    def __init__(self, reader: asyncio.StreamReader, meter: FirstByte) -> None:
        self.reader = reader
        self.meter = meter

    async def read(self, n: int = -1) -> bytes:
        data = await self.reader.read(n)
        self.meter.received(len(data))
        return data


class QueryCounts:
    """foobar_store_queries_total{kind,database,outcome} and the latency per kind; children made once."""

    def __init__(self, metrics: Metrics, where: core.Where) -> None:
        self.hop = hop = where.hop
        self._queries = metrics.counter(
            "foobar_store_queries",
            "Database queries by kind, database and outcome",
            ["hop", "kind", "database", "outcome"],
        )
        duration = Histogram(
            "foobar_store_query_duration_seconds", "Query latency by kind, taking a pooled connection included",
            ["hop", "kind"], registry=metrics.registry, buckets=DURATION_BUCKETS_S,
        )  # fmt: skip
        self._observe = {kind: duration.labels(hop=hop, kind=kind).observe for kind in QUERY_KINDS}
        self._counted: dict[tuple[str, str, str], Callable[[], None]] = {}
        usual = [("write", where.write_to), ("read", where.read_from), ("health", where.write_to)]
        for kind, database in [*usual, ("health", where.read_from)]:  # at 0 from the start, for rate()
            self._child(kind, database, "ok")

    def _child(self, kind: str, database: str, outcome: str) -> Callable[[], None]:
        inc = self._counted[(kind, database, outcome)] = self._queries.labels(
            hop=self.hop, kind=kind, database=database, outcome=outcome
        ).inc
        return inc

    def __call__(self, kind: str, database: str, outcome: str, seconds: float) -> None:
        (self._counted.get((kind, database, outcome)) or self._child(kind, database, outcome))()
        self._observe[kind](seconds)


class StoreServer:
    def __init__(
        self, where: core.Where, repo: Repository, metrics: Metrics, request_timeout_s: float = REQUEST_TIMEOUT_S
    ) -> None:
        self.where = where
        self.repo = repo
        self.metrics = metrics
        self.request_timeout_s = request_timeout_s
        self.http = HttpMetrics(metrics, where.hop)
        repo.observe(QueryCounts(metrics, where))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = new_connection(h11.SERVER)
        peer = peer_ip(writer)
        meter = FirstByte()
        source = cast(asyncio.StreamReader, _MeteredReader(reader, meter))  # read_request only calls read()
        for served in range(1, MAX_REQUESTS_PER_CONNECTION + 1):
            meter.next_request(buffered=bool(conn.trailing_data[0]))
            try:
                request = await read_request(source, conn, KEEPALIVE_IDLE_S, self.request_timeout_s)
            except HttpError as err:
                log(self.where.hop, "bad_request", peer=peer, status=err.status, reason=err.reason)
                data = _json_error(conn, err.status, err.reason)
                await self._send(writer, data)
                self._done(None, err.status, meter, len(data))
                await _drain(reader, writer)
                return
            if request is None:
                return
            closing = served == MAX_REQUESTS_PER_CONNECTION  # say so, so the client does not reuse it
            self.http.begin()
            try:
                reply = await self.answer(request)
                data = _reply_bytes(conn, reply, closing)
                await self._send(writer, data)
            finally:
                self.http.end()
            seconds = self._done(request, reply.status, meter, len(data))
            database = reply.payload.get("written_to") or reply.payload.get("read_from")
            self._log(request, reply.status, peer, seconds, len(data), database)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # Connection: close from either side
            conn.start_next_cycle()

    async def answer(self, request: Message) -> core.Reply:
        head = request.head
        assert isinstance(head, h11.Request)
        content_type = request.header(b"content-type")
        decision = core.decide(
            core.Request(
                head.method.decode("latin-1"),
                head.target.decode("latin-1"),
                content_type.decode("latin-1") if content_type is not None else None,
                request.body,
            )
        )
        if isinstance(decision, core.Reply):
            return decision
        try:
            return await self._carry_out(decision)
        except DatabaseUnavailable as err:
            log(self.where.hop, "database_unavailable", database=err.database, reason=err.reason)
            return core.unavailable(err.database, err.reason)

    async def _carry_out(self, decision: core.Insert | core.Recent | core.CheckHealth) -> core.Reply:
        if isinstance(decision, core.Insert):
            row_id = await self.repo.insert(decision.text, self.where.hop)
            return core.created(self.where, row_id, decision.text)
        if isinstance(decision, core.Recent):
            return core.listing(self.where, await self.repo.recent(decision.limit))
        return core.health(self.where, await self.repo.check())

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()

    def _done(self, request: Message | None, status: int, meter: FirstByte, sent_bytes: int) -> float:
        """Count one answered request (None: refused before its head was read); returns its duration."""
        seconds = meter.elapsed_s()
        self.metrics.requests.labels(hop=self.where.hop, outcome=str(status)).inc()
        self.metrics.latency.labels(hop=self.where.hop).observe(seconds)
        head = request.head if request is not None else None
        method, target = (head.method, head.target) if isinstance(head, h11.Request) else (None, None)
        self.http.count(method, target, status, seconds, meter.take_bytes(), sent_bytes)
        return seconds

    def _log(
        self, request: Message, status: int, peer: str, seconds: float, sent_bytes: int, database: str | None
    ) -> None:
        head = request.head
        assert isinstance(head, h11.Request)
        log(
            self.where.hop,
            "request",
            peer=peer,
            method=head.method.decode("latin-1"),
            path=head.target.decode("latin-1").split("?", 1)[0],
            status=status,
            duration_ms=round(seconds * 1000, 3),
            trace_id=trace_id_of(request.header(b"traceparent")),
            saw="plaintext",
            bytes_in=len(request.body),
            bytes_out=sent_bytes,
            database=database,
        )


def _reply_bytes(conn: h11.Connection, reply: core.Reply, closing: bool = False) -> bytes:
    headers = [("Content-Type", "application/json")] + ([("Connection", "close")] if closing else [])
    if reply.allow:
        headers.append(("Allow", ", ".join(reply.allow)))
    return response_bytes(conn, reply.status, headers, json.dumps(reply.payload).encode())


def _json_error(conn: h11.Connection, status: int, reason: str) -> bytes:
    """A protocol-level error (400, 408, 413, 431 ...): JSON like every answer, then close."""
    body = json.dumps({"error": reason, "status": status}).encode()
    try:
        return response_bytes(conn, status, [("Content-Type", "application/json"), ("Connection", "close")], body)
    except h11.LocalProtocolError:
        return error_response(conn, status, reason)  # h11 cannot answer in its state: plain text by hand


async def _drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read (and drop) what the client still sends, within bounds, before closing."""
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()
    received = 0
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(DRAIN_AFTER_ERROR_S):
            while received < DRAIN_MAX_BYTES and (chunk := await reader.read(65536)):
                received += len(chunk)
