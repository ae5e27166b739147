"""The hop's admin endpoint: GET /metrics on a Unix socket in the state folder.

A Unix socket is reachable only from this machine's file system, never from an
address on 127.0.0.0/8, so it needs no firewall rule and cannot be scraped from
the "internet".  `foobar-ref status` and the tests read counters through it.

A hop may answer more on the same socket: `routes` maps (method, path) to an
async handler returning (status code, text body), e.g. the firewall's
`GET /ruleset` or `POST /reload`; `request(path, method, target)` is the
blocking client for them.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import trio

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

__all__ = ["admin_socket_path", "bind_admin_socket", "serve_admin", "read_metrics", "request"]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024

Route = Callable[[], Awaitable[tuple[int, bytes]]]
Routes = Mapping[tuple[str, str], Route]


async def serve_admin(where: Path | socket.socket, metrics: Metrics, routes: Routes | None = None) -> None:
    """Serve on a socket bound by `bind_admin_socket` (or bind `where` now, if it is a path)."""
    bound = bind_admin_socket(where) if isinstance(where, Path) else where
    path = Path(bound.getsockname())
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(bound))
    try:
        await trio.serve_listeners(functools.partial(_answer, metrics=metrics, routes=routes or {}), [listener])
    finally:
        path.unlink(missing_ok=True)


async def _answer(stream: trio.SocketStream, metrics: Metrics, routes: Routes) -> None:
    """One request, one answer.  A client that left before the answer (a scraper that gave up on a hop
    that was stopped, say) is no error: serve_listeners would end the whole hop on any exception."""
    try:
        request = b""
        with trio.move_on_after(READ_TIMEOUT_S):
            while not head_complete(request):
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                request += chunk
        key = route_key(request)
        route = routes.get(key)
        if key == ("GET", "/metrics"):
            code, body = 200, metrics.exposition()
        elif route is not None:
            code, body = await route()
        else:
            code, body = not_found(["GET /metrics", *(f"{m} {p}" for m, p in routes)])
        with trio.move_on_after(READ_TIMEOUT_S):
            await stream.send_all(admin_response(code, body))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


def read_metrics(path: Path, timeout_s: float = 5.0) -> str:
    """Blocking client for tools and tests: the exposition text of one hop."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode()


def request(path: Path, method: str, target: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Blocking client for a hop's admin routes: (status code, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n".encode())
        data = b""
        while len(data) <= MAX_RESPONSE_BYTES and (chunk := sock.recv(65536)):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        code = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"not an HTTP answer from {path}: {head[:80]!r}") from None
    return code, body
