"""lb-01: TLS termination, HTTP/1.1 with h11, round-robin to the web servers through their firewalls.

Theory of operation
-------------------
One task per client connection, on either port:

1. When the balancer's firewall sends PROXY protocol, the first line (at most
   107 bytes, within 5 s) names the client; bytes after it are replayed to the
   next layer.  A missing or bad line closes the connection.
2. https port: a TLS 1.2/1.3 handshake within 5 s (`server_context`; the
   `--handshake-timeout-s` flag changes it), then HTTP.
   http port: HTTP straight away, and every request is answered 301 to the
   https URL of the same host and path.
3. Requests are read with `runtime.trio_http.read_request` (whole request 5 s ->
   408, keep-alive idle 10 s -> silent close, body 1 MiB -> 413), at most 1000
   per connection.
4. A request to forward gets the balancer's forwarding headers (core), then the
   round-robin plan is walked: each backend tried at most once, retries and
   health as `core` decides, the exchange itself in `upstream`.  The response
   goes back with X-Request-Id and HSTS; no backend -> 502, too slow -> 504.

Every request is counted (`foobar_requests_total{hop,outcome}`, the latency
histogram, the HTTP series of observe/http_metrics.py) and logged as one JSON
line; its duration runs from its first byte (`FirstByte`, fed by `_Metered`),
not from when the connection began to wait for it.  Per backend:
`foobar_balancer_backend_up` (the health the core keeps),
`foobar_balancer_upstream_requests_total{status}`,
`foobar_balancer_backend_failures_total{failure}` and
`foobar_balancer_retries_total` (requests that moved on to this backend after
another one failed).  Label children are made once, at start.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import h11
import trio
from prometheus_client import Gauge

from foobar_ref.balancer import core, proxy_protocol
from foobar_ref.balancer.upstream import Upstream, UpstreamFailure
from foobar_ref.observe.http_metrics import FirstByte, HttpMetrics
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_http import read_request
from foobar_ref.runtime.trio_shell import log, peer_ip
from foobar_ref.topology import Topology
from foobar_ref.wire.http import (
    HttpError,
    Message,
    error_response,
    new_connection,
    new_trace_id,
    response_bytes,
    trace_id_of,
    traceparent,
)

PROXY_LINE_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 5.0
KEEPALIVE_IDLE_S = 10.0
SEND_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 1.0
MAX_BODY_BYTES = 1024 * 1024
MAX_REQUESTS_PER_CONNECTION = 1000
# Mozilla intermediate, TLS 1.2 part: ECDHE key exchange with AEAD ciphers only (TLS 1.3 suites are all AEAD).
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2 + 1.3, Mozilla-intermediate ciphers, no renegotiation, ALPN http/1.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # Mozilla: let the client pick among equals
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_file, key_file)
    return context


@dataclass(frozen=True)
class Session:
    """What is known of one client connection."""

    client_ip: str
    port: str  # https | http
    tls_version: str | None = None
    cipher: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    data: bytes
    trace_id: str
    backend: str | None = None
    attempts: int = 0


class _Replay(trio.abc.Stream):
    """A stream that first gives back bytes already read (those after the PROXY line)."""

    def __init__(self, stream: trio.abc.Stream, first: bytes) -> None:
        self.stream = stream
        self.first = first

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.first:
            size = max_bytes or len(self.first)
            data, self.first = self.first[:size], self.first[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


class _Metered(trio.abc.ReceiveStream):
    """The connection's reads (plaintext, after TLS), reported to its FirstByte meter."""

    def __init__(self, stream: trio.abc.ReceiveStream, meter: FirstByte) -> None:
        self.stream = stream
        self.meter = meter

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.stream.receive_some(max_bytes)
        self.meter.received(len(data))
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


_carried_by: contextvars.ContextVar[tuple[str, bool] | None] = contextvars.ContextVar("carried_by", default=None)


class _LoggedUpstream(Upstream):
    """Upstream that notes, for the request's log line, which connection carried the exchange.

    "local -> remote" of the balancer's socket is what the backend's firewall logs (SRC:SPT DST:DPT),
    so `foobar-ref trace` can join the two; fresh tells a new connection from a kept-alive one.
    """

    async def _checkout(self, backend: str) -> tuple[trio.SocketStream, h11.Connection, bool]:
        _carried_by.set(None)
        stream, conn, fresh = await super()._checkout(backend)
        try:
            local, remote = stream.socket.getsockname(), stream.socket.getpeername()
            _carried_by.set((f"{local[0]}:{local[1]}->{remote[0]}:{remote[1]}", fresh))
        except OSError:
            _carried_by.set(None)
        return stream, conn, fresh


class Balancer:
    def __init__(
        self,
        topo: Topology,
        hop: str,
        metrics: Metrics,
        tls: ssl.SSLContext,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    ) -> None:
        service = topo.service(hop)
        firewall = topo.firewall_of(service.host)
        self.hop = hop
        self.metrics = metrics
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        # Which of our ports (by name: https, http) hear a PROXY line first: the firewall relays
        # each public port to the same port here, and says per port whether it sends one.
        self.proxy_ports = {
            name for name, port in service.ports.items() if firewall and firewall.sends_proxy_line(port)
        }
        self.https_port = topo.reach(hop, "https")[1]
        self.balancer = core.RoundRobin(service.backends)
        self.upstream = _LoggedUpstream({b: topo.reach(b, "http") for b in service.backends}, topo.source_for(hop))
        self.rejected = metrics.counter(
            "foobar_balancer_rejected_connections", "Connections closed before HTTP, by reason", ["hop", "reason"]
        )
        self.http = HttpMetrics(metrics, hop)
        self.counts = BackendCounts(metrics, hop, service.backends)

    # --- connections ---------------------------------------------------------

    async def handle_https(self, stream: trio.SocketStream) -> None:
        opened = await self._open(stream, "https")
        if opened is None:
            return
        session, transport = opened
        tls = trio.SSLStream(transport, self.tls, server_side=True, https_compatible=True)
        try:
            with trio.fail_after(self.handshake_timeout_s):
                await tls.do_handshake()
        except trio.TooSlowError:
            self._reject("tls_timeout", session, f"no TLS handshake within {self.handshake_timeout_s:g} s")
            return
        except trio.BrokenResourceError as err:
            await _send_pending_alert(tls, transport)
            self._reject("tls_handshake", session, repr(err.__cause__))
            return
        cipher = tls.cipher()
        session = replace(session, tls_version=tls.version(), cipher=cipher[0] if cipher else None)
        try:
            await self._serve(tls, session, self._forward)
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await tls.aclose()  # close_notify

    async def handle_http(self, stream: trio.SocketStream) -> None:
        opened = await self._open(stream, "http")
        if opened is not None:
            await self._serve(opened[1], opened[0], self._redirect)

    async def _open(self, stream: trio.SocketStream, port: str) -> tuple[Session, trio.abc.Stream] | None:
        """The client's address: from the PROXY line when the firewall sends one, else the peer."""
        peer = peer_ip(stream)
        if port not in self.proxy_ports:
            return Session(peer, port), stream
        try:
            header, rest = await _read_proxy_line(stream)
        except (proxy_protocol.ProxyProtocolError, trio.TooSlowError) as err:
            reason = str(err) or f"no PROXY line within {PROXY_LINE_TIMEOUT_S:g} s"
            self._reject("proxy_header", Session(peer, port), reason)
            return None
        return Session(header.source_ip or peer, port), _Replay(stream, rest)

    def _reject(self, reason: str, session: Session, detail: str) -> None:
        self.rejected.labels(hop=self.hop, reason=reason).inc()
        log(self.hop, "connection_rejected", reason=reason, client=session.client_ip, port=session.port, detail=detail)

    async def _serve(self, stream: trio.abc.Stream, session: Session, answer) -> None:  # type: ignore[no-untyped-def]
        conn = new_connection(h11.SERVER)
        meter = FirstByte()
        source = _Metered(stream, meter)
        for count in range(1, MAX_REQUESTS_PER_CONNECTION + 1):
            meter.next_request(buffered=bool(conn.trailing_data[0]))
            try:
                request = await read_request(source, conn, KEEPALIVE_IDLE_S, REQUEST_TIMEOUT_S, MAX_BODY_BYTES)
            except HttpError as err:
                log(self.hop, "bad_request", client=session.client_ip, status=err.status, reason=err.reason)
                reply = error_response(conn, err.status, err.reason)
                sent = await _send(stream, reply)
                self.metrics.requests.labels(hop=self.hop, outcome=str(err.status)).inc()
                self.http.count(
                    None, None, err.status, meter.elapsed_s(), meter.take_bytes(), len(reply) if sent else 0
                )
                return
            if request is None:
                return
            self.http.begin()
            try:
                result: Answer = await answer(conn, request, session, count == MAX_REQUESTS_PER_CONNECTION)
                sent = await _send(stream, result.data)
            finally:
                self.http.end()
            if not sent:
                return
            self._record(request, session, result, meter)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # Connection: close from either side
            conn.start_next_cycle()

    # --- answers ----------------------------------------------------------------

    async def _redirect(self, conn: h11.Connection, request: Message, session: Session, closing: bool) -> Answer:
        head = request.head
        assert isinstance(head, h11.Request)
        trace_id = trace_id_of(request.header(b"traceparent")) or new_trace_id()
        location = core.redirect_location(request.header(b"host"), head.target, self.https_port)
        if location is None:
            return self._error(conn, request, 400, "the Host header is not a host name", trace_id, closing, hsts=False)
        headers = [("Location", location)] + ([("Connection", "close")] if closing else [])
        return Answer(301, response_bytes(conn, 301, headers), trace_id)

    async def _forward(self, conn: h11.Connection, request: Message, session: Session, closing: bool) -> Answer:
        head = request.head
        assert isinstance(head, h11.Request)
        method = head.method.decode("ascii")
        trace_id = trace_id_of(request.header(b"traceparent")) or new_trace_id()
        refused = core.refusal(method, head.target, request.headers)
        if refused is not None:
            return self._error(conn, request, refused[0], refused[1], trace_id, closing)
        headers = core.request_headers(request.headers, session.client_ip, trace_id, traceparent(trace_id))
        tried: list[str] = []
        failure = core.Failure.CONNECT
        for backend in self.balancer.plan(trio.current_time()):
            if tried:
                self.counts.retried(backend)
            tried.append(backend)
            try:
                reply = await self.upstream.exchange(backend, method, head.target, headers, request.body)
            except UpstreamFailure as err:
                self._upstream_failed(backend, err, trace_id)
                failure = err.failure
                if not core.may_retry(method, failure):
                    break
                continue
            self._note_health(backend, core.Seen.ANSWERED)
            return self._relay(conn, method, reply, trace_id, closing, backend, len(tried))
        status = core.status_for(failure)
        reason = "no backend answered in time" if status == 504 else "no backend could answer"
        answer = self._error(conn, request, status, reason, trace_id, closing)
        return replace(answer, backend=tried[-1], attempts=len(tried))

    def _relay(
        self, conn: h11.Connection, method: str, reply: Message, trace_id: str, closing: bool, backend: str, tries: int
    ) -> Answer:
        head = reply.head
        assert isinstance(head, h11.Response)
        status = head.status_code
        self.counts.answered(backend, status)
        length = len(reply.body) if core.sets_body_length(method, status) else None
        headers = core.response_headers(reply.headers, trace_id, length)
        if closing:
            headers.append((b"Connection", b"close"))
        try:
            data = conn.send(h11.Response(status_code=status, headers=headers, reason=head.reason))
            if length:
                data += conn.send(h11.Data(data=reply.body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError as err:
            log(self.hop, "bad_upstream_response", backend=backend, error=str(err), trace_id=trace_id)
            data = error_response(conn, 502, "the backend's response cannot be relayed")
            return Answer(502, data, trace_id, backend, tries)
        return Answer(status, data, trace_id, backend, tries)

    def _error(
        self,
        conn: h11.Connection,
        request: Message,
        status: int,
        reason: str,
        trace_id: str,
        close: bool,
        hsts: bool = True,
    ) -> Answer:
        """A short text answer from the balancer itself (no body for HEAD)."""
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Request-Id", trace_id)]
        headers += [("Strict-Transport-Security", core.HSTS.decode())] if hsts else []
        headers += [("Connection", "close")] if close else []
        body = b"" if request.head.method == b"HEAD" else f"{status} {reason}\n".encode()  # type: ignore[union-attr]
        return Answer(status, response_bytes(conn, status, headers, body), trace_id)

    # --- bookkeeping --------------------------------------------------------------

    def _upstream_failed(self, backend: str, err: UpstreamFailure, trace_id: str) -> None:
        self.counts.failed(backend, err.failure)
        log(
            self.hop,
            "upstream_failed",
            backend=backend,
            failure=err.failure.value,
            fresh=err.fresh,
            detail=err.detail,
            trace_id=trace_id,
        )
        seen = core.seen_of(err.failure, err.fresh)
        if seen is not None:
            self._note_health(backend, seen)

    def _note_health(self, backend: str, seen: core.Seen) -> None:
        before, after = self.balancer.record(backend, seen, trio.current_time())
        if before is not after:
            self.counts.health(backend, after)
            log(self.hop, "backend_" + after.value, backend=backend)

    def _record(self, request: Message, session: Session, result: Answer, meter: FirstByte) -> None:
        head = request.head
        assert isinstance(head, h11.Request)
        seconds = meter.elapsed_s()
        self.metrics.requests.labels(hop=self.hop, outcome=str(result.status)).inc()
        self.metrics.latency.labels(hop=self.hop).observe(seconds)
        self.http.count(head.method, head.target, result.status, seconds, meter.take_bytes(), len(result.data))
        carried = _carried_by.get() if result.backend is not None else None
        log(
            self.hop,
            "request",
            client=session.client_ip,
            port=session.port,
            method=head.method.decode("ascii", "replace"),
            target=head.target.decode("latin-1"),
            backend=result.backend,
            attempts=result.attempts,
            status=result.status,
            duration_ms=round(seconds * 1000, 3),
            trace_id=result.trace_id,
            tls=session.tls_version,
            cipher=session.cipher,
            saw="plaintext" if session.tls_version else "plaintext-http",
            bytes_in=len(request.body),
            bytes_out=len(result.data),
            upstream=carried[0] if carried else None,
            upstream_fresh=carried[1] if carried else None,
        )


class BackendCounts:
    """The per-backend series, children made once: state, upstream answers, failures, retries."""

    def __init__(self, metrics: Metrics, hop: str, backends: tuple[str, ...]) -> None:
        self.hop = hop
        self._upstream = metrics.counter(
            "foobar_balancer_upstream_requests",
            "Requests sent to each backend, by status (an HTTP code, or the failure)",
            ["hop", "backend", "status"],
        )
        up = Gauge("foobar_balancer_backend_up", "Backend health as the balancer sees it: 1 up, 0 down",
                   ["hop", "backend"], registry=metrics.registry)  # fmt: skip
        failures = metrics.counter(
            "foobar_balancer_backend_failures", "Failed attempts per backend, by kind", ["hop", "backend", "failure"]
        )
        retries = metrics.counter(
            "foobar_balancer_retries", "Requests that moved on to this backend after another failed", ["hop", "backend"]
        )
        self._up = {b: up.labels(hop=hop, backend=b) for b in backends}
        for gauge in self._up.values():
            gauge.set(1)
        self._failures = {
            (b, f): failures.labels(hop=hop, backend=b, failure=f.value).inc for b in backends for f in core.Failure
        }
        self._failed_status = {
            (b, f): self._upstream.labels(hop=hop, backend=b, status=f.value).inc
            for b in backends
            for f in core.Failure
        }
        self._retries = {b: retries.labels(hop=hop, backend=b).inc for b in backends}
        self._answered: dict[tuple[str, int], Callable[[], None]] = {}
        for backend in backends:  # at 0 from the start, for rate()
            self._answered[(backend, 200)] = self._upstream.labels(hop=hop, backend=backend, status="200").inc

    def answered(self, backend: str, status: int) -> None:
        inc = self._answered.get((backend, status))
        if inc is None:
            inc = self._answered[(backend, status)] = self._upstream.labels(
                hop=self.hop, backend=backend, status=str(status)
            ).inc
        inc()

    def failed(self, backend: str, failure: core.Failure) -> None:
        self._failures[(backend, failure)]()
        self._failed_status[(backend, failure)]()

    def retried(self, backend: str) -> None:
        self._retries[backend]()

    def health(self, backend: str, health: core.Health) -> None:
        self._up[backend].set(1 if health is core.Health.UP else 0)


async def _read_proxy_line(stream: trio.abc.ReceiveStream) -> tuple[proxy_protocol.ProxyHeader, bytes]:
    """The PROXY line and whatever arrived after it; raises ProxyProtocolError or TooSlowError."""
    buffer = b""
    with trio.fail_after(PROXY_LINE_TIMEOUT_S):
        while True:
            found = proxy_protocol.split_line(buffer)
            if found is not None:
                return proxy_protocol.parse(found[0]), found[1]
            data = await stream.receive_some(proxy_protocol.MAX_LINE_BYTES)
            if not data:
                raise proxy_protocol.ProxyProtocolError("connection closed before the PROXY line ended")
            buffer += data


async def _send(stream: trio.abc.SendStream, data: bytes) -> bool:
    """Send within SEND_TIMEOUT_S; False when the client is gone or does not read."""
    try:
        with trio.fail_after(SEND_TIMEOUT_S):
            await stream.send_all(data)
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def _send_pending_alert(tls: trio.SSLStream[trio.abc.Stream], transport: trio.abc.Stream) -> None:
    """Send the TLS alert OpenSSL wrote when the handshake failed (trio leaves it unsent).

    Best effort: the alert (e.g. protocol_version) tells the client why, instead of a bare close.
    """
    outgoing = getattr(tls, "_outgoing", None)
    pending = outgoing.read() if isinstance(outgoing, ssl.MemoryBIO) else b""
    if pending:
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await transport.send_all(pending)
