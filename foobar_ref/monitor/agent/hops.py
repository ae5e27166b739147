"""A hop's own metrics, read from its admin socket (`<state>/run/<hop>.admin.sock`, runtime/admin.py).

The trio twin of `runtime.admin.read_metrics`: the same request, but with one
deadline for the whole exchange (a hop that accepts and never answers, such as
a stopped process whose socket still queues connections, costs the budget and
no more) and a bound on the page's size.  A page counts only when it is whole:
status 200 and exactly Content-Length bytes, else None ("no partial page").
"""

from __future__ import annotations

from pathlib import Path

import trio

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n"
MAX_PAGE_BYTES = 8 * 1024 * 1024


async def read_admin_page(path: Path, timeout_s: float) -> str | None:
    """The hop's exposition text, or None when it did not answer a whole page within `timeout_s`."""
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_unix_socket(str(path))
        except OSError:
            return None  # not running: no socket, or nobody listening on it
        async with stream:
            try:
                await stream.send_all(REQUEST)
                data = bytearray()
                while chunk := await stream.receive_some(65536):
                    data += chunk
                    if len(data) > MAX_PAGE_BYTES:
                        return None
            except (trio.BrokenResourceError, OSError):
                return None
        return _whole_body(bytes(data))
    return None


def _whole_body(data: bytes) -> str | None:
    head, found, body = data.partition(b"\r\n\r\n")
    if not found or not head.startswith(b"HTTP/1.1 200 "):
        return None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            if not value.strip().isdigit() or int(value) != len(body):
                return None
            try:
                return body.decode()
            except UnicodeDecodeError:
                return None
    return None
