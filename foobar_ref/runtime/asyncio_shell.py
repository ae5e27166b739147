"""The asyncio side of a hop (the store): the twin of trio_shell.run_hop, plus its admin socket.

Theory of operation
-------------------
The store runs on plain asyncio because aiomysql does (see ARCHITECTURE.md), so
it cannot use trio_shell.  This module keeps the same contract:

- `run_hop` calls `build()` first, which binds every listener with stdlib
  sockets; a bind failure (`BindError`) is printed naming the address and the
  process exits 2 before announcing anything;
- then one `READY hop=NAME listen=ip:port,...` line, the line the supervisor
  waits for;
- peers not in a listener's `allowed_peers` are closed at once with RST and
  counted in `refused_peers`;
- SIGTERM or SIGINT stops accepting, cancels the connection tasks, runs the
  hop's `on_stop` (close database pools) and returns: exit status 0.

`read_request` is trio_http.read_request for asyncio streams: keep-alive idle
expiry closes silently; once a request's first byte arrived, the whole message
must arrive within `request_s` or it is answered 408.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from foobar_ref.observe import log as logger
from foobar_ref.observe.log import announce, log, say_fatal
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin_socket import (
    READ_TIMEOUT_S,
    admin_response,
    admin_socket_path,
    bind_admin_socket,
    head_complete,
    not_found,
    route_key,
)

__all__ = ["admin_socket_path", "bind_admin_socket", "serve_admin", "run_hop", "Listener", "open_tcp_listener", "log"]
from foobar_ref.wire.http import MAX_BODY_BYTES, HttpError, Message, read_message

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Task = Callable[[], Coroutine[Any, Any, None]]
LISTEN_BACKLOG = 1024
STOP_GRACE_S = 2.0
LOG_FLUSH_S = 1.0
_LINGER_ZERO = b"\x01\x00\x00\x00\x00\x00\x00\x00"


class BindError(Exception):
    """A listener could not be opened; the message names the address."""


def open_tcp_listener(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ip, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as err:
        sock.close()
        raise BindError(f"cannot listen on {ip}:{port} (tcp): {err.strerror or err}") from None
    sock.setblocking(False)
    return sock


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset' at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


def peer_ip(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "?"


@dataclass
class Listener:
    """One listening socket (already bound) and the handler for its connections."""

    sock: socket.socket
    handler: Handler
    allowed_peers: frozenset[str] | None = None  # None: anyone may connect
    label: str = field(default="")

    @property
    def address(self) -> str:
        ip, port = self.sock.getsockname()[:2]
        return f"{ip}:{port}"


class _Connections:
    """The tasks serving connections, so a stop can cancel them."""

    def __init__(self, hop: str, metrics: Metrics) -> None:
        self.hop = hop
        self.metrics = metrics
        self.tasks: set[asyncio.Task[None]] = set()

    def guarded(self, item: Listener) -> Handler:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = peer_ip(writer)
            if item.allowed_peers is not None and peer not in item.allowed_peers:
                self.metrics.refused_peers.labels(hop=self.hop).inc()
                log(self.hop, "peer_refused", peer=peer, listen=item.address)
                reset(writer)
                return
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await item.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the peer went away: nothing to answer
            except asyncio.CancelledError:
                # The hop is stopping.  The task ends here, normally: asyncio's stream callback asks a
                # cancelled task for its exception and would print a CancelledError traceback.
                pass
            except Exception as err:  # a bug in a handler must not take the hop down
                log(self.hop, "handler_error", error=repr(err), listen=item.address)
            finally:
                self.tasks.discard(task)
                writer.close()  # flushes what the handler wrote, then closes

        return serve


def run_hop(
    hop: str,
    build: Callable[[], tuple[list[Listener], list[Task]]],
    metrics: Metrics,
    listen_extra: Iterable[str] = (),
    on_stop: Task | None = None,
) -> None:
    """Bind (via `build`), announce READY, serve until SIGTERM; exit 2 naming the address on bind failure."""
    try:
        asyncio.run(_main(hop, build, metrics, list(listen_extra), on_stop))
    except BindError as err:
        say_fatal(hop, str(err))
        log(hop, "bind_failed", error=str(err))
        raise SystemExit(2) from None


async def _main(
    hop: str,
    build: Callable[[], tuple[list[Listener], list[Task]]],
    metrics: Metrics,
    extra: list[str],
    on_stop: Task | None,
) -> None:
    listeners, tasks = build()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: _loop_error(hop, context))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, hop, signum, stop)
    connections = _Connections(hop, metrics)
    servers = [await asyncio.start_server(connections.guarded(item), sock=item.sock) for item in listeners]
    background: list[asyncio.Task[None]] = [asyncio.create_task(task()) for task in [*tasks, _flush_log_summaries]]
    listen = [item.address for item in listeners] + extra
    announce(f"READY hop={hop} listen={','.join(listen)}")
    log(hop, "started", listen=listen)
    await stop.wait()
    for server in servers:
        server.close()
    pending = [*connections.tasks, *background]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=STOP_GRACE_S)
    if on_stop is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(on_stop(), STOP_GRACE_S)
    log(hop, "stopped")
    logger.sink().flush_due(everything=True)


async def _flush_log_summaries() -> None:
    """Write the 'N more suppressed' lines of floods that are over, even when the hop has gone quiet."""
    while True:
        await asyncio.sleep(LOG_FLUSH_S)
        logger.sink().flush_due()


def _loop_error(hop: str, context: dict[str, Any]) -> None:
    """What asyncio would print with a traceback: one log line instead (a library's callback that failed)."""
    error = context.get("exception")
    if isinstance(error, asyncio.CancelledError):
        return  # a task cancelled by the stop: nothing went wrong
    log(hop, "loop_error", message=str(context.get("message", "")), error=repr(error) if error else None)


def _on_signal(hop: str, signum: int, stop: asyncio.Event) -> None:
    log(hop, "stopping", signal=signal.Signals(signum).name)
    stop.set()


# --- reading one request ---------------------------------------------------------


class _Idle(Exception):
    """No byte of a next request within the keep-alive idle time."""


async def read_request(
    reader: asyncio.StreamReader,
    conn: h11.Connection,
    idle_s: float,
    request_s: float,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Message | None:
    """One whole request, or None when the client closed or stayed idle past `idle_s`."""
    loop = asyncio.get_running_loop()
    started = bool(conn.trailing_data[0])
    deadline = loop.time() + (request_s if started else idle_s)

    async def receive(max_bytes: int) -> bytes:
        nonlocal started, deadline
        try:
            async with asyncio.timeout_at(deadline):
                data = await reader.read(max_bytes)
        except TimeoutError:
            if started:
                raise HttpError(408, f"request not complete within {request_s:g} s") from None
            raise _Idle from None
        if not started and data:
            started = True
            deadline = loop.time() + request_s
        return data

    try:
        return await read_message(conn, receive, max_body_bytes)
    except _Idle:
        return None


# --- admin socket ---------------------------------------------------------------------


async def serve_admin(where: Path | socket.socket, metrics: Metrics) -> None:
    """GET /metrics on a Unix socket (see runtime/admin.py, its trio twin), bound before READY."""
    bound = bind_admin_socket(where) if isinstance(where, Path) else where
    path = Path(bound.getsockname())
    server = await asyncio.start_unix_server(lambda r, w: _answer_admin(r, w, metrics), sock=bound)
    try:
        async with server:
            await server.serve_forever()
    finally:
        path.unlink(missing_ok=True)


async def _answer_admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, metrics: Metrics) -> None:
    request = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(READ_TIMEOUT_S):
            while not head_complete(request):
                chunk = await reader.read(4096)
                if not chunk:
                    break
                request += chunk
    if route_key(request) == ("GET", "/metrics"):
        code, body = 200, metrics.exposition()
    else:
        code, body = not_found(["GET /metrics"])
    try:
        writer.write(admin_response(code, body))
        async with asyncio.timeout(READ_TIMEOUT_S):
            await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
