"""Where a hop's admin socket lives, and binding it before the hop says READY.

No event loop here (the trio and asyncio shells both use it).  The socket is bound
and listening synchronously while the hop builds its listeners, so by the time the
supervisor reads READY, `/metrics` answers: a connection that arrives before the
serving task runs waits in the listen backlog instead of being refused.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

ADMIN_BACKLOG = 16


def admin_socket_path(state_dir: Path, hop: str) -> Path:
    return state_dir / "run" / f"{hop}.admin.sock"


def bind_admin_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # left by a hop that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(ADMIN_BACKLOG)
    sock.setblocking(False)
    return sock


# --- the admin protocol, shared by the trio and asyncio servers ---------------------------
# A tiny HTTP/1.1 subset: one request per connection, read until the end of its head (bounded in
# time and size), answered with a whole response and closed.

READ_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}


def head_complete(request: bytes) -> bool:
    """Stop reading: the head ended, or the request grew past its bound."""
    return b"\r\n\r\n" in request or len(request) >= MAX_REQUEST_BYTES


def route_key(request: bytes) -> tuple[str, str]:
    """(method, path without query) of the request line."""
    method, _, rest = request.partition(b" ")
    target = rest.partition(b" ")[0].partition(b"?")[0]
    return method.decode("ascii", "replace"), target.decode("ascii", "replace")


def not_found(known: list[str]) -> tuple[int, bytes]:
    return 404, f"not here (this socket answers: {', '.join(known)})\n".encode()


def admin_response(code: int, body: bytes) -> bytes:
    head = f"HTTP/1.1 {code} {REASONS.get(code, 'Status')}\r\nContent-Type: text/plain; version=0.0.4\r\n"
    return head.encode() + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
