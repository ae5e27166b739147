"""The resolver's I/O: a raw UDP loop for cached answers, one task per resolution, TCP per connection.

Theory of operation
-------------------
UDP: the listening socket is a plain non-blocking socket.  The loop calls
`recvfrom` until it would block, and only then waits (`wait_readable`), after
writing out the query log lines it has buffered; every `BURST` datagrams it
lets the other tasks run.  The clock is read once per burst (and again after
any slow datagram), so the burst's hits share one `now` and one formatted log
timestamp.  A datagram whose twin was answered before is answered from the
wire cache (wirecache.py) with one `sendto`: the loop inlines its exact lane
(one dict look-up on the bytes after the id, one time comparison, one join),
counts in plain integers and logs into the buffer: no parsing, no call, no
task.  Anything else goes to `Front.begin`: an immediate reply (errors,
refusals), or a resolution.
The resolution generator is first run until its first upstream question, so an
answer the record cache already holds is sent at once; otherwise it becomes
its own task (at most `max_resolutions` at once: past that, SERVFAIL at once),
so one slow authority never holds up another client.

Upstream (RFC 5452): every question gets a fresh UDP socket bound to the
resolver host's own address and port 0 (a random source port), a random id
(iterate.py), and `Ask.check` accepts only the response from the server asked
with that id and question; the rest is counted in `foobar_dns_unwanted_total`
and logged.  TC in a response means the same question over TCP (connect from
the same address, 2-byte framing).  Each upstream exchange is one JSON log
line: the client's query id, the server, the zone, the question, rcode, rtt.

TCP from clients (RFC 7766): as in shell.py (bounded reads, at most
`max_tcp_connections`), each query answered in order; a resolution there runs
inside the connection's task.

Counters are kept as plain integers and moved into the Prometheus registry
when /metrics is read (`DnsMetrics.exposition`), so the hit path does no
locking.
"""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Callable

import trio
from dnslib import QTYPE

from foobar_ref.dns.core import DROPPED, FORMERR, RCODE_NAMES, SERVFAIL, Query, Reply, Transport, server_failure
from foobar_ref.dns.iterate import Ask, Event, Got, NoAnswer, Outcome, Walk
from foobar_ref.dns.resolver import Front
from foobar_ref.dns.shell import LENGTH_PREFIX_BYTES, _peer, _receive_exactly
from foobar_ref.observe.log import write_lines
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_shell import connect_tcp, log

UDP_RECEIVE_BYTES = 65535
BURST = 64
LOG_BUFFER_LINES = 256
MAX_RESOLUTIONS = 512
TCP_READ_TIMEOUT_S = 10.0
TCP_WRITE_TIMEOUT_S = 10.0
MAX_TCP_CONNECTIONS = 32
MAX_QUERIES_PER_TCP_CONNECTION = 1000
UPSTREAM_PORT = 53
_UDP_ID = '", "transport": "udp", "id": '  # a cached answer's query line between the client and its id


class DnsMetrics(Metrics):
    """The hop's registry plus counts kept as plain ints on the hot path, synced when scraped."""

    def __init__(self, hop: str) -> None:
        super().__init__()
        self.hop = hop
        self.pending: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.series = {
            "requests": self.requests,
            "cache": self.counter(
                "foobar_dns_cache", "Client queries answered from cache (hit) or not", ["hop", "result"]
            ),
            "upstream": self.counter("foobar_dns_upstream", "Queries sent to authorities, by rcode", ["hop", "rcode"]),
            "unwanted": self.counter(
                "foobar_dns_unwanted", "Upstream datagrams ignored (spoof checks)", ["hop", "why"]
            ),
            "malformed": self.counter(
                "foobar_dns_malformed", "Client messages that are not a readable query", ["hop", "kind"]
            ),
            "overload": self.counter(
                "foobar_dns_overload", "Queries answered SERVFAIL: too many resolutions", ["hop", "kind"]
            ),
            "tcp_refused": self.counter("foobar_dns_tcp_refused", "TCP connections closed at accept", ["hop", "kind"]),
        }
        self.hit_outcomes: defaultdict[str, int] = defaultdict(int)  # the hot path's own tally

    def count(self, series: str, label: str, amount: int = 1) -> None:
        self.pending[(series, label)] += amount

    def sync(self) -> None:
        for outcome, amount in self.hit_outcomes.items():
            self.pending[("requests", outcome)] += amount
            self.pending[("cache", "hit")] += amount
        self.hit_outcomes.clear()
        for (series, label), amount in self.pending.items():
            counter = self.series[series]
            if series == "requests":
                counter.labels(hop=self.hop, outcome=label).inc(amount)
            elif series in ("cache", "upstream", "unwanted"):
                labels = {"cache": "result", "upstream": "rcode", "unwanted": "why"}[series]
                counter.labels(**{"hop": self.hop, labels: label}).inc(amount)
            else:
                counter.labels(hop=self.hop, kind=label).inc(amount)
        self.pending.clear()

    def exposition(self) -> bytes:
        self.sync()
        return super().exposition()


class ResolverServer:
    def __init__(
        self,
        hop: str,
        front: Front,
        metrics: DnsMetrics,
        source_ip: str,
        upstream_port: int = UPSTREAM_PORT,
        max_resolutions: int = MAX_RESOLUTIONS,
        tcp_read_timeout_s: float = TCP_READ_TIMEOUT_S,
        max_tcp_connections: int = MAX_TCP_CONNECTIONS,
        query_log: bool = True,
    ) -> None:
        self.hop = hop
        self.front = front
        self.metrics = metrics
        self.source_ip = source_ip
        self.upstream_port = upstream_port
        self.max_resolutions = max_resolutions
        self.tcp_read_timeout_s = tcp_read_timeout_s
        self.max_tcp_connections = max_tcp_connections
        self.query_log = query_log
        self.active = 0
        self.tcp_open = 0
        self.log_lines: list[str] = []
        self.wall_offset_s = time.time() - time.monotonic()

    # --- logging -----------------------------------------------------------
    def flush_log(self) -> None:
        if not self.log_lines:
            return
        write_lines("".join(self.log_lines))  # the hop's bounded log (observe/log.py), never raising
        self.log_lines.clear()

    def event(self, event: str, **fields: object) -> None:
        self.flush_log()
        log(self.hop, event, **fields)

    # --- UDP ---------------------------------------------------------------
    async def serve_udp(self, raw: socket.socket) -> None:
        raw.setblocking(False)
        async with trio.open_nursery() as nursery:
            try:
                await self._udp_loop(raw, nursery)
            finally:
                self.flush_log()
                raw.close()

    async def _udp_loop(self, raw: socket.socket, nursery: trio.Nursery) -> None:
        recvfrom, sendto, clock = raw.recvfrom, raw.sendto, time.monotonic
        cache = self.front.wire[Transport.UDP]
        exact, lookup = cache.exact, cache.lookup
        tally, lines, query_log, burst = self.metrics.hit_outcomes, self.log_lines, self.query_log, range(BURST)
        while True:
            now = clock()
            lead = self._log_lead(now)
            for _ in burst:
                try:
                    data, client = recvfrom(UDP_RECEIVE_BYTES)
                except BlockingIOError:
                    break
                except OSError as err:  # e.g. an ICMP error queued on the socket
                    self.event("udp_receive_failed", error=str(err))
                    continue
                entry = exact.get(data[2:])
                if entry is not None and now < entry.fresh_until:
                    reply = data[:2] + entry.body
                else:
                    hit = lookup(data, now)
                    if hit is None:
                        self._udp_other(raw, data, client, nursery)
                        now = clock()
                        lead = self._log_lead(now)
                        continue
                    reply, entry = hit
                try:
                    sendto(reply, client)
                except OSError:
                    pass  # a full send buffer or an unreachable client: UDP may lose it
                tally[entry.rcode] += 1
                if query_log:
                    lines.append(f"{lead}{client[0]}:{client[1]}{_UDP_ID}{data[0] << 8 | data[1]}{entry.log_tail}")
            else:  # a whole burst: let the other tasks run, then read on
                if len(lines) >= LOG_BUFFER_LINES:
                    self.flush_log()
                await trio.lowlevel.checkpoint()
                continue
            self.flush_log()
            await trio.lowlevel.wait_readable(raw)

    def _udp_other(self, raw: socket.socket, data: bytes, client: tuple[str, int], nursery: trio.Nursery) -> None:
        """A datagram the wire cache cannot answer: the slow path, which never stops the loop."""
        try:
            self._udp_slow(raw, data, client, time.monotonic(), nursery)
        except Exception as err:
            self.event("handler_error", error=repr(err), client=f"{client[0]}:{client[1]}")

    def _log_lead(self, now: float) -> str:
        """The start of a cached answer's query line, up to the client's address: the same for a whole burst."""
        return f'{{"ts": {now + self.wall_offset_s:.6f}, "hop": "{self.hop}", "event": "query", "client": "'

    def _udp_slow(
        self, raw: socket.socket, data: bytes, client: tuple[str, int], now: float, nursery: trio.Nursery
    ) -> None:
        def send(wire: bytes) -> None:
            try:
                raw.sendto(wire, client)
            except OSError as err:
                self.event("udp_send_failed", client=f"{client[0]}:{client[1]}", error=str(err))

        try:
            started = self._start(data, client, Transport.UDP, now)
        except Exception as err:  # a bug must not take the loop down: SERVFAIL, logged
            started = self._failed(data, client, Transport.UDP, now, err)
        if not isinstance(started, tuple):
            if started is not None:
                send(started)
            return
        query, walk, ask = started
        self.active += 1
        nursery.start_soon(self._resolve_then, query, walk, ask, data, client, Transport.UDP, now, send)

    # --- one query, either transport ------------------------------------------
    def _start(
        self, data: bytes, client: tuple[str, int], transport: Transport, now: float
    ) -> bytes | None | tuple[Query, Walk, Ask]:
        """A reply to send now (or None: nothing), or a resolution to carry on in a task."""
        begun = self.front.begin(data, transport)
        if isinstance(begun, Reply):
            self._finish_log(begun, client, transport, now, None)
            return begun.wire
        walk = self.front.resolve(begun, now)
        try:
            ask = next(walk)
        except StopIteration as stop:
            return self._complete(begun, stop.value, data, client, transport, now)
        if self.active >= self.max_resolutions:
            walk.close()
            self.metrics.count("overload", "resolutions")
            busy = Outcome(SERVFAIL, [], [], 0, f"more than {self.max_resolutions} resolutions at once")
            return self._complete(begun, busy, data, client, transport, now)
        return begun, walk, ask

    def _complete(
        self, query: Query, outcome: Outcome, data: bytes, client: tuple[str, int], transport: Transport, started: float
    ) -> bytes | None:
        reply = self.front.finish(query, outcome, transport, data, time.monotonic())
        self._finish_log(reply, client, transport, started, outcome)
        return reply.wire

    def _failed(
        self, data: bytes, client: tuple[str, int], transport: Transport, started: float, err: Exception
    ) -> bytes | None:
        self.event("handler_error", error=repr(err), client=f"{client[0]}:{client[1]}")
        reply = server_failure(data, f"internal error: {err!r}")
        self._finish_log(reply, client, transport, started, None)
        return reply.wire

    async def _resolve_then(
        self,
        query: Query,
        walk: Walk,
        ask: Ask,
        data: bytes,
        client: tuple[str, int],
        transport: Transport,
        started: float,
        send: Callable[[bytes], None],
    ) -> None:
        try:
            outcome = await self._drive(walk, ask, query.id)
            wire = self._complete(query, outcome, data, client, transport, started)
        except Exception as err:
            wire = self._failed(data, client, transport, started, err)
        finally:
            self.active -= 1
        if wire is not None:
            send(wire)

    async def _drive(self, walk: Walk, ask: Ask, client_id: int) -> Outcome:
        while True:
            event = await self._perform(ask)
            self._log_upstream(client_id, ask, event)
            try:
                ask = walk.send(event)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    def _finish_log(
        self, reply: Reply, client: tuple[str, int], transport: Transport, started: float, outcome: Outcome | None
    ) -> None:
        elapsed_s = time.monotonic() - started
        self.metrics.count("requests", reply.outcome)
        self.metrics.latency.labels(hop=self.hop).observe(elapsed_s)
        if reply.outcome == RCODE_NAMES[FORMERR] or (reply.outcome == DROPPED and reply.query_id is None):
            self.metrics.count("malformed", "query")
        fields: dict[str, object] = {
            "client": f"{client[0]}:{client[1]}",
            "transport": transport.value,
            "id": reply.query_id,
            "name": reply.qname,
            "type": reply.qtype,
            "rcode": reply.outcome,
            "duration_ms": round(elapsed_s * 1000, 3),
        }
        if outcome is not None:
            cached = outcome.upstream_queries == 0
            self.metrics.count("cache", "hit" if cached else "miss")
            fields.update(cache="hit" if cached else "miss", upstream=outcome.upstream_queries)
        if reply.truncated:
            fields["tc"] = True
        if reply.detail:
            fields["detail"] = reply.detail
        if self.query_log:
            self.event("query", **fields)

    # --- upstream ----------------------------------------------------------
    async def _perform(self, ask: Ask) -> Event:
        started = time.monotonic()
        try:
            if ask.tcp:
                return await self._over_tcp(ask, started)
            return await self._over_udp(ask, started)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as err:
            return NoAnswer(time.monotonic(), f"{getattr(err, 'strerror', None) or err!r}")

    async def _over_udp(self, ask: Ask, started: float) -> Event:
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind((self.source_ip, 0))  # port 0: a fresh random source port per question
            await sock.sendto(ask.wire, (ask.server, self.upstream_port))
            with trio.move_on_after(ask.timeout_s):
                while True:
                    data, source = await sock.recvfrom(UDP_RECEIVE_BYTES)
                    record, why = ask.check(data, (source[0], source[1]), self.upstream_port)
                    if record is not None:
                        now = time.monotonic()
                        return Got(record, now, now - started)
                    self._unwanted(ask, source, why)
        return NoAnswer(time.monotonic(), f"no answer within {ask.timeout_s:g} s")

    async def _over_tcp(self, ask: Ask, started: float) -> Event:
        with trio.move_on_after(ask.timeout_s):
            stream = await connect_tcp(ask.server, self.upstream_port, self.source_ip, ask.timeout_s)
            async with stream:
                await stream.send_all(len(ask.wire).to_bytes(LENGTH_PREFIX_BYTES, "big") + ask.wire)
                prefix = await _receive_exactly(stream, LENGTH_PREFIX_BYTES)
                body = None if prefix is None else await _receive_exactly(stream, int.from_bytes(prefix, "big"))
            if body is None:
                return NoAnswer(time.monotonic(), "connection closed before a whole reply")
            record, why = ask.check(body, (ask.server, self.upstream_port), self.upstream_port)
            if record is None:
                self._unwanted(ask, (ask.server, self.upstream_port), why)
                return NoAnswer(time.monotonic(), f"unusable reply over tcp: {why}")
            now = time.monotonic()
            return Got(record, now, now - started)
        return NoAnswer(time.monotonic(), f"no answer over tcp within {ask.timeout_s:g} s")

    def _unwanted(self, ask: Ask, source: tuple[str, int], why: str) -> None:
        self.metrics.count("unwanted", why.split(" ", 1)[0])
        self.event("upstream_ignored", server=ask.server, source=f"{source[0]}:{source[1]}", why=why)

    def _log_upstream(self, client_id: int, ask: Ask, event: Event) -> None:
        if isinstance(event, Got):
            rcode = RCODE_NAMES.get(event.record.header.rcode, str(event.record.header.rcode))
            extra: dict[str, object] = {"rtt_ms": round(event.rtt_s * 1000, 3), "aa": bool(event.record.header.aa)}
            if event.record.header.tc:
                extra["tc"] = True
        else:
            rcode, extra = "TIMEOUT", {"why": event.why}
        self.metrics.count("upstream", rcode)
        self.event(
            "upstream",
            client_id=client_id,
            server=ask.server,
            server_name=ask.server_name,
            zone=str(ask.zone),
            name=str(ask.qname),
            type=_type_name(ask.qtype),
            transport="tcp" if ask.tcp else "udp",
            id=ask.query_id,
            rcode=rcode,
            from_cache=False,
            **extra,
        )

    # --- TCP from clients ----------------------------------------------------
    async def handle_tcp(self, stream: trio.SocketStream) -> None:
        client = _peer(stream)
        if self.tcp_open >= self.max_tcp_connections:
            self.metrics.count("tcp_refused", "limit")
            self.event("tcp_refused", client=f"{client[0]}:{client[1]}", open=self.tcp_open)
            return
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
            wire = await self._answer_tcp(packet, client)
            if wire is None:
                return  # not a query: the stream cannot be trusted any further
            with trio.move_on_after(TCP_WRITE_TIMEOUT_S) as scope:
                await stream.send_all(len(wire).to_bytes(LENGTH_PREFIX_BYTES, "big") + wire)
            if scope.cancelled_caught:
                self.event("tcp_write_timeout", client=f"{client[0]}:{client[1]}")
                return

    async def _answer_tcp(self, packet: bytes, client: tuple[str, int]) -> bytes | None:
        now = time.monotonic()
        hit = self.front.wire[Transport.TCP].lookup(packet, now)
        if hit is not None:
            self.metrics.hit_outcomes[hit[1].rcode] += 1
            return hit[0]
        try:
            started = self._start(packet, client, Transport.TCP, now)
        except Exception as err:
            return self._failed(packet, client, Transport.TCP, now, err)
        if not isinstance(started, tuple):
            return started
        query, walk, ask = started
        self.active += 1
        try:
            outcome = await self._drive(walk, ask, query.id)
            return self._complete(query, outcome, packet, client, Transport.TCP, now)
        except Exception as err:
            return self._failed(packet, client, Transport.TCP, now, err)
        finally:
            self.active -= 1

    async def _read_message(self, stream: trio.SocketStream, client: tuple[str, int]) -> bytes | None:
        with trio.move_on_after(self.tcp_read_timeout_s):
            prefix = await _receive_exactly(stream, LENGTH_PREFIX_BYTES)
            if prefix is None:
                return None
            length = int.from_bytes(prefix, "big")
            body = await _receive_exactly(stream, length)
            if body is None:
                self.event("tcp_short_message", client=f"{client[0]}:{client[1]}", expected=length)
            return body
        self.event("tcp_read_timeout", client=f"{client[0]}:{client[1]}", timeout_s=self.tcp_read_timeout_s)
        return None


def _type_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, f"TYPE{qtype}"))
