"""web-01 / web-02: static files, the home page and the messages API, on trio + h11.

One task per connection: read a request (keep-alive idle 15 s, whole request 10 s
-> 408), route it with core.route, answer, repeat until the client or the
limits end the connection.  /api/messages is passed to this server's store.

Every request is counted (`foobar_requests_total`, the HTTP series of
observe/http_metrics.py), logged as one JSON line, and written to the access log
(observe/access_log.py) when one is open.  Its duration runs from its first byte
(`FirstByte`, fed by `_Metered`), not from when the connection began to wait.
"""

from __future__ import annotations

import json
import time

import h11
import trio

from foobar_ref.observe.access_log import LineFormat
from foobar_ref.observe.http_metrics import FirstByte, HttpMetrics
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_http import read_request
from foobar_ref.runtime.trio_shell import log, peer_ip
from foobar_ref.topology import Topology
from foobar_ref.web import core
from foobar_ref.web.access_log import AccessLog
from foobar_ref.web.store_client import StoreClient, StoreUnavailable
from foobar_ref.wire.http import HttpError, Message, error_response, new_connection, response_bytes, trace_id_of

KEEPALIVE_IDLE_S = 15.0  # above the balancer's 8 s pool idle, so the lb never reuses a socket we close
REQUEST_TIMEOUT_S = 10.0
MAX_REQUESTS_PER_CONNECTION = 1000


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


class WebServer:
    def __init__(self, topo: Topology, hop: str, metrics: Metrics, access_log: AccessLog | None = None) -> None:
        service = topo.service(hop)
        assert service.store is not None
        self.hop = hop
        self.store_name = service.store
        self.metrics = metrics
        self.http = HttpMetrics(metrics, hop)
        self.access_log = access_log
        self.line_format = LineFormat()
        self.store = StoreClient(topo.listen(service.store, "http"), topo.source_for(hop))

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = new_connection(h11.SERVER)
        peer = peer_ip(stream)
        meter = FirstByte()
        source = _Metered(stream, meter)
        for served in range(1, MAX_REQUESTS_PER_CONNECTION + 1):
            meter.next_request(buffered=bool(conn.trailing_data[0]))
            try:
                request = await read_request(source, conn, KEEPALIVE_IDLE_S, REQUEST_TIMEOUT_S)
            except HttpError as err:
                log(self.hop, "bad_request", peer=peer, status=err.status, reason=err.reason)
                reply = error_response(conn, err.status, err.reason)
                await stream.send_all(reply)
                self._count(None, err.status, peer, meter, reply)
                return
            if request is None:
                return
            closing = served == MAX_REQUESTS_PER_CONNECTION  # say so, so the client does not reuse it
            self.http.begin()
            try:
                status, reply = await self._answer(conn, request, peer, closing)
                await stream.send_all(reply)
            finally:
                self.http.end()
            self._count(request, status, peer, meter, reply)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # Connection: close from either side
            conn.start_next_cycle()

    async def _answer(self, conn: h11.Connection, request: Message, peer: str, closing: bool) -> tuple[int, bytes]:
        head = request.head
        assert isinstance(head, h11.Request)
        routed = core.route(head.method.decode(), head.target.decode("latin-1"))
        base = [("X-Served-By", self.hop)] + ([("Connection", "close")] if closing else [])
        if routed.route is None:
            extra = [("Allow", ", ".join(routed.allowed))] if routed.allowed else []
            body = f"{routed.status} {'method not allowed' if routed.allowed else 'not found'}\n".encode()
            return routed.status, response_bytes(conn, routed.status, base + extra + _text(), body)
        if routed.route is core.Route.MESSAGES:
            return await self._messages(conn, request, routed.detail, base)
        status, headers, body = self._local(routed, request, peer)
        if head.method == b"HEAD":
            headers = headers + [("Content-Length", str(len(body)))]
            body = b""
        return status, response_bytes(conn, status, base + headers, body)

    def _local(self, routed: core.Routed, request: Message, peer: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if routed.route is core.Route.HEALTH:
            return (
                200,
                [("Content-Type", "application/json")],
                json.dumps({"status": "ok", "server": self.hop}).encode(),
            )
        if routed.route is core.Route.STATIC:
            path = core.static_file(routed.detail)
            assert path is not None
            return 200, [("Content-Type", core.content_type(path)), ("Cache-Control", "max-age=60")], path.read_bytes()
        facts = core.PageFacts(
            server=self.hop,
            request_id=_header(request, b"x-request-id") or trace_id_of(request.header(b"traceparent")) or "-",
            client_ip=_header(request, b"x-forwarded-for") or peer,
            forwarded_proto=_header(request, b"x-forwarded-proto") or "http",
            peer=peer,
            store=self.store_name,
        )
        return 200, [("Content-Type", "text/html; charset=utf-8")], core.render_home(facts)

    async def _messages(
        self, conn: h11.Connection, request: Message, query: str, base: list[tuple[str, str]]
    ) -> tuple[int, bytes]:
        head = request.head
        assert isinstance(head, h11.Request)
        forward = [("Host", self.store_name)]
        for name in (b"traceparent", b"content-type", b"x-request-id"):
            value = request.header(name)
            if value is not None:
                forward.append((name.decode(), value.decode("latin-1")))
        target = "/messages" + (f"?{query}" if query else "")
        try:
            reply = await self.store.request(head.method.decode(), target, forward, request.body)
        except StoreUnavailable as err:
            log(self.hop, "store_unavailable", error=str(err))
            return 502, response_bytes(conn, 502, base + _text(), b"502 Bad Gateway: the store did not answer\n")
        assert isinstance(reply.head, h11.Response)
        headers = base + [("X-Store", self.store_name)]
        content_type = reply.header(b"content-type")
        if content_type is not None:
            headers.append(("Content-Type", content_type.decode("latin-1")))
        return reply.head.status_code, response_bytes(conn, reply.head.status_code, headers, reply.body)

    def _count(self, request: Message | None, status: int, peer: str, meter: FirstByte, reply: bytes) -> None:
        """Count, log and access-log one answered request (None: refused before its head was read)."""
        seconds = meter.elapsed_s()
        head = request.head if request is not None else None
        assert head is None or isinstance(head, h11.Request)
        self.metrics.requests.labels(hop=self.hop, outcome=str(status)).inc()
        self.metrics.latency.labels(hop=self.hop).observe(seconds)
        method, target = (head.method, head.target) if head is not None else (None, None)
        self.http.count(method, target, status, seconds, meter.take_bytes(), len(reply))
        if self.access_log is not None:
            self._access_log(request, status, peer, seconds, reply)
        if request is not None:
            self._log(request, status, peer, seconds, len(reply))

    def _access_log(self, request: Message | None, status: int, peer: str, seconds: float, reply: bytes) -> None:
        assert self.access_log is not None
        head = request.head if request is not None else None
        line, referer, agent, client = None, None, None, peer
        if request is not None and isinstance(head, h11.Request):
            line = b"%s %s HTTP/%s" % (head.method, head.target, head.http_version)
            referer, agent = request.header(b"referer"), request.header(b"user-agent")
            client = _header(request, b"x-forwarded-for") or peer
        body_bytes = len(reply) - reply.find(b"\r\n\r\n") - 4
        self.access_log.write(
            self.line_format.line(time.time(), client, line, status, body_bytes, referer, agent, seconds)
        )
        if self.access_log.errors == 1 and self.access_log.last_error is not None:
            log(self.hop, "access_log_failed", path=str(self.access_log.path), error=str(self.access_log.last_error))
            self.access_log.last_error = None  # reported once; `errors` keeps counting

    def _log(self, request: Message, status: int, peer: str, seconds: float, sent_bytes: int) -> None:
        head = request.head
        assert isinstance(head, h11.Request)
        log(
            self.hop,
            "request",
            peer=peer,
            client=_header(request, b"x-forwarded-for"),
            method=head.method.decode(),
            target=head.target.decode("latin-1"),
            status=status,
            duration_ms=round(seconds * 1000, 3),
            trace_id=trace_id_of(request.header(b"traceparent")),
            request_id=_header(request, b"x-request-id"),
            saw="plaintext",
            bytes_in=len(request.body),
            bytes_out=sent_bytes,
            store=self.store_name if head.target.startswith(b"/api/messages") else None,
        )


def _header(request: Message, name: bytes) -> str | None:
    value = request.header(name)
    return value.decode("latin-1") if value is not None else None


def _text() -> list[tuple[str, str]]:
    return [("Content-Type", "text/plain; charset=utf-8")]
