"""The dns hop's I/O: one UDP loop and one task per TCP connection, both feeding core.Authority.

UDP: each datagram is answered in the loop itself (answering is a few hundred
microseconds of pure computation), so a flood cannot create tasks.  TCP
(RFC 7766): messages carry a 2-byte length; queries on one connection are
answered one after another, in the order they came (pipelining is allowed, a
reply never overtakes an earlier one).  Each message must arrive whole within
`tcp_read_timeout_s` of the previous reply, or the connection is closed; at most
`max_tcp_connections` are served at once, the rest are closed at accept.

Every message is counted in `foobar_requests_total{hop, outcome}` (outcome =
rcode name or DROPPED) and logged as one JSON line with the client's ip:port
and the query id, which is how trace/ joins a DNS event to a browser's request.
"""

from __future__ import annotations

import time

import trio

from foobar_ref.dns.core import DROPPED, FORMERR, RCODE_NAMES, Authority, Reply, Transport, server_failure
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_shell import log

TCP_READ_TIMEOUT_S = 10.0
TCP_WRITE_TIMEOUT_S = 10.0
MAX_TCP_CONNECTIONS = 32
MAX_QUERIES_PER_TCP_CONNECTION = 1000
UDP_RECEIVE_BYTES = 65535
LENGTH_PREFIX_BYTES = 2


class DnsServer:
    def __init__(
        self,
        hop: str,
        authority: Authority,
        metrics: Metrics,
        tcp_read_timeout_s: float = TCP_READ_TIMEOUT_S,
        max_tcp_connections: int = MAX_TCP_CONNECTIONS,
    ) -> None:
        self.hop = hop
        self.authority = authority
        self.metrics = metrics
        self.tcp_read_timeout_s = tcp_read_timeout_s
        self.max_tcp_connections = max_tcp_connections
        self.tcp_open = 0
        self.malformed = metrics.counter(
            "foobar_dns_malformed", "Messages that could not be read as a DNS query (FORMERR or too short)", ["hop"]
        )
        self.tcp_refused = metrics.counter(
            "foobar_dns_tcp_refused", "TCP connections closed at accept: too many open", ["hop"]
        )

    def handle(self, packet: bytes, client: tuple[str, int], transport: Transport) -> bytes | None:
        """Answer one message, count it and log it; a bug in the core becomes SERVFAIL, never a crash."""
        started = time.perf_counter()
        try:
            reply = self.authority.respond(packet, transport)
        except Exception as err:
            log(self.hop, "handler_error", error=repr(err), client=f"{client[0]}:{client[1]}")
            reply = server_failure(packet, f"internal error: {err!r}")
        elapsed_s = time.perf_counter() - started
        self.metrics.requests.labels(hop=self.hop, outcome=reply.outcome).inc()
        self.metrics.latency.labels(hop=self.hop).observe(elapsed_s)
        if reply.outcome == RCODE_NAMES[FORMERR] or (reply.outcome == DROPPED and reply.query_id is None):
            self.malformed.labels(hop=self.hop).inc()
        self._log(reply, client, transport, elapsed_s)
        return reply.wire

    def _log(self, reply: Reply, client: tuple[str, int], transport: Transport, elapsed_s: float) -> None:
        fields: dict[str, object] = {
            "client": f"{client[0]}:{client[1]}",
            "transport": transport.value,
            "id": reply.query_id,
            "name": reply.qname,
            "type": reply.qtype,
            "rcode": reply.outcome,
            "duration_ms": round(elapsed_s * 1000, 3),
        }
        if reply.truncated:
            fields["tc"] = True
        if reply.detail:
            fields["detail"] = reply.detail
        log(self.hop, "query", **fields)

    async def serve_udp(self, sock: trio.socket.SocketType) -> None:
        with sock:
            while True:
                try:
                    packet, client = await sock.recvfrom(UDP_RECEIVE_BYTES)
                except OSError as err:  # e.g. an ICMP error queued on the socket
                    log(self.hop, "udp_receive_failed", error=str(err))
                    continue
                wire = self.handle(packet, (client[0], client[1]), Transport.UDP)
                if wire is None:
                    continue
                try:
                    await sock.sendto(wire, client)
                except OSError as err:
                    log(self.hop, "udp_send_failed", client=f"{client[0]}:{client[1]}", error=str(err))

    async def handle_tcp(self, stream: trio.SocketStream) -> None:
        client = _peer(stream)
        if self.tcp_open >= self.max_tcp_connections:
            self.tcp_refused.labels(hop=self.hop).inc()
            log(self.hop, "tcp_refused", client=f"{client[0]}:{client[1]}", open=self.tcp_open)
            return  # the accept loop closes the stream
        self.tcp_open += 1
        try:
            await self._serve_connection(stream, client)
        finally:
            self.tcp_open -= 1

    async def _serve_connection(self, stream: trio.SocketStream, client: tuple[str, int]) -> None:
        for _ in range(MAX_QUERIES_PER_TCP_CONNECTION):
            packet = await self._read_message(stream, client)
            if packet is None:
                return
            wire = self.handle(packet, client, Transport.TCP)
            if wire is None:
                return  # not a query: the stream cannot be trusted any further
            with trio.move_on_after(TCP_WRITE_TIMEOUT_S) as scope:
                await stream.send_all(len(wire).to_bytes(LENGTH_PREFIX_BYTES, "big") + wire)
            if scope.cancelled_caught:
                log(self.hop, "tcp_write_timeout", client=f"{client[0]}:{client[1]}")
                return

    async def _read_message(self, stream: trio.SocketStream, client: tuple[str, int]) -> bytes | None:
        """One length-prefixed message, whole within the read timeout; None on EOF or timeout."""
        with trio.move_on_after(self.tcp_read_timeout_s):
            prefix = await _receive_exactly(stream, LENGTH_PREFIX_BYTES)
            if prefix is None:
                return None
            length = int.from_bytes(prefix, "big")
            body = await _receive_exactly(stream, length)
            if body is None:
                log(self.hop, "tcp_short_message", client=f"{client[0]}:{client[1]}", expected=length)
            return body
        log(self.hop, "tcp_read_timeout", client=f"{client[0]}:{client[1]}", timeout_s=self.tcp_read_timeout_s)
        return None


async def _receive_exactly(stream: trio.SocketStream, count: int) -> bytes | None:
    """Read exactly `count` bytes (never more, so pipelined messages stay in the socket); None on EOF."""
    data = bytearray()
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _peer(stream: trio.SocketStream) -> tuple[str, int]:
    try:
        ip, port = stream.socket.getpeername()[:2]
        return str(ip), int(port)
    except OSError:
        return "?", 0
