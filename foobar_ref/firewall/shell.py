"""firewall-1/-2/-3: a TCP proxy on the guarded host's public address, deciding each connection.

Theory of operation
-------------------
The firewall listens on the guarded host's public address, on every port of
every service of that host, with raw non-blocking sockets and its own accept
loop (no stream wrappers on the new-connection path).  For each accepted
connection `core.ConnectionTable` decides once (rules, then policy, then
limits) and the shell carries the command out:

* RELAY: connect a raw socket to the same port on the host's inner address
  *from* the public address (bound with IP_BIND_ADDRESS_NO_PORT, so the port is
  picked at connect time), optionally send a PROXY v1 line, then copy bytes
  both ways until both sides have closed (relay.py copies through a buffer;
  splice_relay.py, with `--relay splice|auto`, splices through a pipe; a
  captured connection is always copied, since capture needs the bytes).
* RESET: close with RST, so the client sees "connection reset" at once.
* HOLD: say nothing and read nothing until the client leaves or the hold time
  passes (a `drop`); CLOSE: the same, but the hold table is full.

Log lines: a `decision` line (kernel LOG style) for each matching `log`
statement; a `closed` line for every connection that was not relayed or whose
relay ended abnormally (reset, upstream failure, idle, stopping), and for every
connection with `--log-connections`; the capture index, when on, has them all.
Lines of rejected or dropped connections and of abnormal ends are rate-limited
per rule or reason (observe/log.py: a flood leaves "N more suppressed" lines);
decisions to relay, which `foobar-ref trace` joins on, are always written.

The relay (relay.py) never asks the rules again: that is connection tracking,
so a reload (SIGHUP, or POST /reload on the admin socket) swaps the rule set
for new connections while established ones keep flowing.  One sweeper task
closes relays idle for `idle_timeout_s`, so the relay itself only flags
activity per chunk.  Counters live in plain integers (the connection, the
rule) and are turned into metrics when scraped (metrics_view.py).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import socket as stdsocket
import struct
import time
from collections.abc import Awaitable, Callable

import trio

from foobar_ref.firewall.capture import Capture, ConnectionCapture
from foobar_ref.firewall.core import Address, Command, Connection, ConnectionTable, Direction, Limits, proxy_v1_line
from foobar_ref.firewall.relay import Relay, close_socket, send_all
from foobar_ref.firewall.ruleset import RuleSet
from foobar_ref.firewall.splice_relay import RelayMaker, relay_factory
from foobar_ref.firewall.views import conntrack_listing, ruleset_listing
from foobar_ref.observe.log import log_repeated
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.trio_shell import LISTEN_BACKLOG, BindError, log
from foobar_ref.topology import Topology

HOLD_POLL_S = 1.0
ACCEPT_RETRY_S = 0.1  # after EMFILE and the like: let connections finish, then accept again
TCP_CLOSE_WAIT = 8  # tcp_info.tcpi_state once the peer's FIN has arrived (linux/tcp_states.h)
TCP_CLOSE = 7
IP_BIND_ADDRESS_NO_PORT = getattr(stdsocket, "IP_BIND_ADDRESS_NO_PORT", 24)
_LINGER_RESET = struct.pack("ii", 1, 0)

RuleLoader = Callable[[], RuleSet]


class FirewallHop:
    def __init__(
        self,
        topo: Topology,
        name: str,
        metrics: Metrics,
        limits: Limits,
        capture: Capture | None,
        ruleset: RuleSet,
        loader: RuleLoader,
        log_connections: bool = False,
        relay_mode: str = "copy",
    ) -> None:
        fw = topo.firewall(name)
        host = topo.host(fw.guards)
        assert host.inner is not None, "topology validation guarantees a guarded host has an inner address"
        self.hop, self.public, self.inner = name, host.address, host.inner
        self.ports = sorted({port for service in host.services for port in service.ports.values()})
        self.proxy_ports = frozenset(port for port in self.ports if fw.sends_proxy_line(port))
        self.limits = limits
        self.capture = capture
        self.table = ConnectionTable(ruleset, limits, next_id=capture.first_id if capture else 1)
        self.log_connections = log_connections
        self.new_relay: RelayMaker = Relay if capture is not None else relay_factory(relay_mode)
        self.loader = loader
        self.loaded = (time.time(), 1)  # when, generation
        self.reload_lock = trio.Lock()
        self.relays: dict[int, Relay] = {}
        self.closed_bytes = dict.fromkeys(Direction, 0)
        self.metrics = metrics
        self.decisions = metrics.counter(
            "foobar_firewall_connections", "New connections by decision", ["hop", "action", "rule"]
        )
        self._decision_children: dict[tuple[str, str], Callable[[], None]] = {}
        self._outcome_children: dict[str, Callable[[], None]] = {}
        self.upstream_failures = metrics.counter(
            "foobar_firewall_upstream_failures", "Accepted connections whose inner service did not answer", ["hop"]
        ).labels(hop=name)
        self.reloads = metrics.counter("foobar_firewall_reloads", "Rule set reloads by outcome", ["hop", "outcome"])

    @property
    def addresses(self) -> list[str]:
        return [f"{self.public}:{port}" for port in self.ports]

    def listeners(self) -> list[stdsocket.socket]:
        """Bind every port now (raises BindError naming the address)."""
        socks: list[stdsocket.socket] = []
        try:
            for port in self.ports:
                socks.append(_listen(self.public, port))
        except BindError:
            for sock in socks:
                sock.close()
            raise
        return socks

    def tasks(self, listeners: list[stdsocket.socket]) -> list[Callable[[], Awaitable[None]]]:
        serve: list[Callable[[], Awaitable[None]]] = [lambda s=s: self.serve(s) for s in listeners]  # type: ignore[misc]
        return [*serve, self.sweep_idle, self.reload_on_sighup]

    # --- accepting ------------------------------------------------------------
    async def serve(self, listener: stdsocket.socket) -> None:
        """Accept as many connections as are waiting each time the listener is readable."""
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        sock, peer = listener.accept()
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(listener)
                        continue
                    except OSError as err:
                        log(self.hop, "accept_failed", error=err.strerror or repr(err))
                        await trio.sleep(ACCEPT_RETRY_S)
                        continue
                    sock.setblocking(False)
                    nursery.start_soon(self.handle, sock, peer)
        finally:
            trio.lowlevel.notify_closing(listener)
            listener.close()

    async def handle(self, sock: stdsocket.socket, peer: tuple[str, int]) -> None:
        try:
            dst = _address(sock.getsockname())
        except OSError:
            sock.close()  # the client left before we looked
            return
        conn = self.table.open(_address(peer), dst, time.time())
        self._count_decision(conn)
        for prefix in conn.log_prefixes:
            if conn.command is Command.RELAY:  # what `foobar-ref trace` joins on: never limited
                log(self.hop, "decision", conn=conn.id, line=conn.kernel_line(prefix))
            else:  # rejects and drops: what a flood repeats
                key = f"decision {conn.action} {conn.rule}"
                log_repeated(self.hop, "decision", key, conn=conn.id, line=conn.kernel_line(prefix))
        reason = "error"
        try:
            reason = await self._carry_out(sock, conn)
        except BaseException as err:
            # Cancelled may arrive wrapped in an exception group: ask the scope, not the exception.
            cancelled = trio.current_effective_deadline() == -math.inf
            reason = "firewall stopping" if cancelled else f"error: {err!r}"
            if not isinstance(err, Exception):
                raise
            log(self.hop, "handler_error", conn=conn.id, error=repr(err))
        finally:
            close_socket(sock, abort=False)  # a no-op when the relay or a reset closed it already
            self._finished(conn, reason)

    def _count_decision(self, conn: Connection) -> None:
        inc = self._decision_children.get((conn.action, conn.rule))
        if inc is None:
            inc = self.decisions.labels(hop=self.hop, action=conn.action, rule=conn.rule).inc
            if len(self._decision_children) < 4096:
                self._decision_children[(conn.action, conn.rule)] = inc
        inc()
        outcome = self._outcome_children.get(conn.action)
        if outcome is None:
            outcome = self._outcome_children[conn.action] = self.metrics.requests.labels(
                hop=self.hop, outcome=conn.action
            ).inc
        outcome()

    async def _carry_out(self, sock: stdsocket.socket, conn: Connection) -> str:
        if conn.command is Command.RELAY:
            return await self._relay(sock, conn)
        if conn.command is Command.HOLD:
            return await self._hold(sock)
        if conn.command is Command.RESET:
            _reset(sock)
            return "reset"
        return "closed: too many held connections"

    def _finished(self, conn: Connection, reason: str) -> None:
        self.table.close(conn, time.time(), reason)
        self.closed_bytes[Direction.IN] += conn.bytes_in
        self.closed_bytes[Direction.OUT] += conn.bytes_out
        relayed = conn.command is Command.RELAY
        if relayed and (self.log_connections or reason != "closed both ways"):
            fields = {k: v for k, v in conn.record().items() if k != "id"}
            if self.log_connections:
                log(self.hop, "closed", conn=conn.id, **fields)
            else:  # a relay that ended abnormally (idle, reset, upstream failed): limited per reason
                log_repeated(self.hop, "closed", f"closed {reason.split(':')[0]}", conn=conn.id, **fields)
        elif not relayed:  # rejected or dropped: limited per rule
            fields = {k: v for k, v in conn.record().items() if k != "id"}
            log_repeated(self.hop, "closed", f"closed {conn.action} {conn.rule}", conn=conn.id, **fields)
        if self.capture is not None:
            self.capture.closed(conn)

    # --- drop -------------------------------------------------------------
    async def _hold(self, sock: stdsocket.socket) -> str:
        """Keep the socket open and silent; notice when the client closes it."""
        with trio.move_on_after(self.limits.drop_hold_s):
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    peeked = sock.recv(1, stdsocket.MSG_PEEK)
                except BlockingIOError:
                    continue
                except OSError:
                    return "client reset"
                break
            if not peeked:
                return "client closed"
            while _tcp_state(sock) not in (TCP_CLOSE_WAIT, TCP_CLOSE):  # data came first: left unread
                await trio.sleep(HOLD_POLL_S)
            return "client closed"
        return f"hold time {self.limits.drop_hold_s:g} s passed"

    # --- accept -----------------------------------------------------------
    async def _relay(self, client: stdsocket.socket, conn: Connection) -> str:
        target = (self.inner, conn.dst[1])
        try:
            server = await _connect(self.public, target, self.limits.connect_timeout_s)
        except OSError as err:
            error = err.strerror or repr(err)
            self.upstream_failures.inc()
            log(self.hop, "upstream_failed", conn=conn.id, upstream=f"{target[0]}:{target[1]}", error=error)
            _reset(client)
            return f"upstream failed: {error}"
        tap: ConnectionCapture | None = None
        relay = self.new_relay(client, server, conn)
        self.relays[conn.id] = relay
        try:
            self.table.connected(conn, _address(server.getsockname()), target)
            if self.capture is not None:
                tap = relay.tap = self.capture.opened(conn)
            if conn.dst[1] in self.proxy_ports:
                await send_all(server, proxy_v1_line(conn.src, conn.dst))
            return await relay.run()
        finally:
            del self.relays[conn.id]
            close_socket(client, abort=bool(relay.aborted))
            close_socket(server, abort=bool(relay.aborted))
            if tap is not None:
                tap.close()
                if tap.error:
                    log(self.hop, "capture_failed", conn=conn.id, error=tap.error)

    async def sweep_idle(self) -> None:
        """Close relays that moved no byte for idle_timeout_s (checked a few times per timeout), and under
        pressure those whose client sent nothing for silent_timeout_s (core.ConnectionTable.silent)."""
        idle_s = self.limits.idle_timeout_s
        every_s = min(1.0, idle_s / 4, self.limits.silent_timeout_s / 4)
        while True:
            await trio.sleep(every_s)
            now = trio.current_time()
            for relay in list(self.relays.values()):
                relay.check_idle(now, idle_s)
            for conn in self.table.silent(time.time()):
                silent = self.relays.get(conn.id)
                if silent is not None:
                    silent.sweep("silent under pressure")

    def idle_times(self) -> dict[int, float]:
        now = trio.current_time()
        return {conn_id: relay.idle_for(now) for conn_id, relay in self.relays.items()}

    # --- rules: reload and views --------------------------------------------
    async def reload(self, via: str) -> tuple[bool, str]:
        """Read the rule set again; on any problem keep the running one and say why."""
        async with self.reload_lock:
            try:
                new = await trio.to_thread.run_sync(self.loader)
            except Exception as err:  # RuleError, TopologyError, OSError: all mean "keep the old set"
                message = str(err).strip() or repr(err)
                self.reloads.labels(hop=self.hop, outcome="failed").inc()
                log(self.hop, "reload_failed", via=via, error=message)
                return False, f"reload refused, the running rule set stays: {message}\n"
            self.table.replace(new)
            self.loaded = (time.time(), self.loaded[1] + 1)
            self.reloads.labels(hop=self.hop, outcome="ok").inc()
            log(self.hop, "reloaded", via=via, source=new.source, rules=len(new.rules), warnings=list(new.warnings))
            warned = "".join(f"warning: {w}\n" for w in new.warnings)
            return True, f"reloaded: {len(new.rules)} rules from {new.source}, policy {new.policy}\n{warned}"

    async def reload_on_sighup(self) -> None:
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                await self.reload("SIGHUP")

    def listing(self) -> str:
        when, generation = self.loaded
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
        return ruleset_listing(
            self.hop, self.table.ruleset, self.table.connections.values(), f"loaded {stamp}, generation {generation}"
        )

    def conntrack(self) -> str:
        return conntrack_listing(self.table.connections.values(), time.time(), self.idle_times(), self.limits)

    def admin_routes(self) -> dict[tuple[str, str], Callable[[], Awaitable[tuple[int, bytes]]]]:
        async def ruleset() -> tuple[int, bytes]:
            return 200, self.listing().encode()

        async def conntrack() -> tuple[int, bytes]:
            return 200, self.conntrack().encode()

        async def reload() -> tuple[int, bytes]:
            ok, message = await self.reload("admin")
            return (200 if ok else 409), message.encode()

        return {("GET", "/ruleset"): ruleset, ("GET", "/conntrack"): conntrack, ("POST", "/reload"): reload}


def _listen(ip: str, port: int) -> stdsocket.socket:
    sock = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)  # inherited by accepted sockets
        sock.bind((ip, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise BindError(f"cannot listen on {ip}:{port} (tcp): {err.strerror or err}") from None
    return sock


async def _connect(source_ip: str, target: Address, timeout_s: float) -> stdsocket.socket:
    """A raw non-blocking connect from the public address; OSError (ETIMEDOUT after timeout_s) on failure."""
    sock = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(stdsocket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        sock.bind((source_ip, 0))
        code = sock.connect_ex(target)
        if code == errno.EINPROGRESS:
            with trio.move_on_after(timeout_s):
                await trio.lowlevel.wait_writable(sock)
                code = sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_ERROR)
            if code == errno.EINPROGRESS:
                code = errno.ETIMEDOUT
        if code:
            raise OSError(code, os.strerror(code))
    except BaseException:
        trio.lowlevel.notify_closing(sock)
        sock.close()
        raise
    return sock


def _reset(sock: stdsocket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset' at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, _LINGER_RESET)
    trio.lowlevel.notify_closing(sock)
    sock.close()


def _tcp_state(sock: stdsocket.socket) -> int:
    try:
        return sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_INFO, 8)[0]
    except (OSError, AttributeError):
        return 0  # no TCP_INFO here: hold until the hold time passes


def _address(sockaddr: tuple[str, int]) -> Address:
    return str(sockaddr[0]), int(sockaddr[1])
