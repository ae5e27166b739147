"""The trio side of every hop: listen, accept, connect, announce readiness, stop on SIGTERM.

Theory of operation
-------------------
A hop's `__main__` builds its handler and calls `run_hop(...)`.  `run_hop` binds
every listener first (a bind failure is reported naming the address, and the
process exits 2 before announcing anything), then prints one READY line that
the supervisor waits for, then serves until SIGTERM or SIGINT cancels the
nursery.  Handlers get a `trio.SocketStream` and must bound their own reads;
the helpers here bound connects.

Peers: a service behind a firewall accepts connections only from its own host
(the firewall relays from the host's public address), so `allowed_peers` closes
anything else at once.
"""

from __future__ import annotations

import errno
import signal
import socket as stdsocket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import trio

from foobar_ref.observe import log as logger
from foobar_ref.observe.log import announce, log, say_fatal
from foobar_ref.observe.metrics import Metrics

__all__ = ["log", "announce_ready", "run_hop", "Listener", "BindError", "open_tcp_listener", "open_udp_socket"]

Handler = Callable[[trio.SocketStream], Awaitable[None]]
CONNECT_TIMEOUT_S = 4.0
LISTEN_BACKLOG = 1024
LOG_FLUSH_S = 1.0


class BindError(Exception):
    """A listener could not be opened; the message names the address."""


def announce_ready(hop: str, listen: Iterable[str]) -> None:
    announce(f"READY hop={hop} listen={','.join(listen)}")


def open_tcp_listener(ip: str, port: int) -> trio.SocketListener:
    # Bound synchronously (stdlib socket) so a hop can fail before it announces anything.
    sock = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
    sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
    try:
        sock.bind((ip, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as err:
        sock.close()
        raise BindError(f"cannot listen on {ip}:{port} (tcp): {err.strerror or err}") from None
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def open_udp_socket(ip: str, port: int) -> trio.socket.SocketType:
    sock = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
    try:
        sock.bind((ip, port))
    except OSError as err:
        sock.close()
        raise BindError(f"cannot listen on {ip}:{port} (udp): {err.strerror or err}") from None
    return trio.socket.from_stdlib_socket(sock)


async def connect_tcp(
    ip: str, port: int, source_ip: str | None, timeout_s: float = CONNECT_TIMEOUT_S
) -> trio.SocketStream:
    """Connect from `source_ip` (the host's own address) so firewalls can filter by source."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        if source_ip:
            await sock.bind((source_ip, 0))
        with trio.fail_after(timeout_s):
            await sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
    return trio.SocketStream(sock)


def reset(stream: trio.SocketStream) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset' at once."""
    try:
        stream.socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    stream.socket.close()


def peer_ip(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


@dataclass
class Listener:
    """One listening socket and the handler for its connections."""

    listener: trio.SocketListener
    handler: Handler
    allowed_peers: frozenset[str] | None = None  # None: anyone may connect
    label: str = field(default="")

    @property
    def address(self) -> str:
        ip, port = self.listener.socket.getsockname()[:2]
        return f"{ip}:{port}"


async def _accept_loop(hop: str, item: Listener, metrics: Metrics) -> None:
    async def guarded(stream: trio.SocketStream) -> None:
        if item.allowed_peers is not None and peer_ip(stream) not in item.allowed_peers:
            metrics.refused_peers.labels(hop=hop).inc()
            log(hop, "peer_refused", peer=peer_ip(stream), listen=item.address)
            reset(stream)
            return
        try:
            await item.handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass  # the peer went away: nothing to answer
        except Exception as err:  # a bug in a handler must not take the hop down
            log(hop, "handler_error", error=repr(err), listen=item.address)
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(guarded, [item.listener])


async def _flush_log_summaries() -> None:
    """Write the 'N more suppressed' lines of floods that are over, even when the hop has gone quiet."""
    while True:
        await trio.sleep(LOG_FLUSH_S)
        logger.sink().flush_due()


async def _stop_on_signal(hop: str, cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log(hop, "stopping", signal=signal.Signals(signum).name)
            cancel_scope.cancel()
            return


def run_hop(
    hop: str,
    build: Callable[[], tuple[list[Listener], list[Callable[[], Awaitable[None]]]]],
    metrics: Metrics,
    listen_extra: Iterable[str] = (),
) -> None:
    """Bind (via `build`), announce READY, serve until SIGTERM; exit 2 naming the address on bind failure."""

    async def main() -> None:
        try:
            listeners, tasks = build()
        except BindError as err:
            say_fatal(hop, str(err))
            log(hop, "bind_failed", error=str(err))
            raise SystemExit(2) from None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, hop, nursery.cancel_scope)
            nursery.start_soon(_flush_log_summaries)
            for item in listeners:
                nursery.start_soon(_accept_loop, hop, item, metrics)
            for task in tasks:
                nursery.start_soon(task)
            announce_ready(hop, [item.address for item in listeners] + list(listen_extra))
            log(hop, "started", listen=[item.address for item in listeners] + list(listen_extra))
        log(hop, "stopped")
        logger.sink().flush_due(everything=True)

    try:
        trio.run(main)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            say_fatal(hop, str(err))
            raise SystemExit(2) from None
        raise
