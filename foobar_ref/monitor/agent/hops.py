"""The hops' own metrics, read from their admin sockets (`<state>/run/<hop>.admin.sock`, runtime/admin.py).

Theory of operation
-------------------
The protocol is `runtime.admin.read_metrics`'s: `GET /metrics`, the whole page,
then the hop closes.  All of a host's hops are asked at once, from the client's
local worker thread (collector.py), with non-blocking sockets:

1. `request_pages` connects to every socket and sends the request (a request
   of 40 bytes always fits a fresh socket's buffer); a socket nobody listens on
   fails here, at once;
2. the worker then reads the host's other sources while the hops prepare
   their pages, in their own processes;
3. `collect_pages` waits on all the sockets with one selector until each hop
   closed, or the scrape's deadline passed.

One deadline for them all, so a hop that accepts and never answers (a stopped
process: its socket still queues connections) costs the budget once, not once
per hop.  A page counts only when it is whole: status 200 and exactly
Content-Length bytes, at most `MAX_PAGE_BYTES` ("no partial page").

Why not trio: the same reads as trio tasks cost about 0.4 ms of CPU per hop at
every scrape on this kind of machine (a task, a socket object, a cancel scope
and several scheduler passes each), a third of the client's whole budget per
scrape for three hops; one selector in the thread that already runs costs a
small fraction of that.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n"
MAX_PAGE_BYTES = 8 * 1024 * 1024
RECEIVE_BYTES = 256 * 1024


@dataclass
class PendingPage:
    sock: socket.socket
    started_s: float
    data: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class HopPage:
    text: str | None  # None: no whole page in time
    seconds: float


def request_pages(sockets: dict[str, Path]) -> dict[str, PendingPage]:
    """Connect to each hop's socket and send the request; a hop that cannot be reached is left out."""
    pending: dict[str, PendingPage] = {}
    for hop, path in sockets.items():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        started = time.monotonic()
        try:
            sock.connect(str(path))
            if sock.send(REQUEST) != len(REQUEST):
                raise BlockingIOError
        except OSError:  # no socket, nobody listening, or its backlog full (a hop stopped for long)
            sock.close()
            continue
        pending[hop] = PendingPage(sock, started)
    return pending


def collect_pages(pending: dict[str, PendingPage], deadline_s: float) -> dict[str, HopPage]:
    """Read every pending page until each is whole or `deadline_s` (time.monotonic) passed."""
    pages: dict[str, HopPage] = {}
    with selectors.DefaultSelector() as selector:
        try:
            for hop, page in pending.items():
                selector.register(page.sock, selectors.EVENT_READ, hop)
            while selector.get_map() and (remaining := deadline_s - time.monotonic()) > 0:
                for key, _ in selector.select(remaining):
                    hop = key.data
                    if _receive(pending[hop]):
                        continue
                    selector.unregister(key.fileobj)
                    pages[hop] = HopPage(
                        _whole_body(bytes(pending[hop].data)), time.monotonic() - pending[hop].started_s
                    )
        finally:
            for page in pending.values():
                page.sock.close()
    for hop, page in pending.items():
        pages.setdefault(hop, HopPage(None, time.monotonic() - page.started_s))
    return pages


def _receive(page: PendingPage) -> bool:
    """Read what arrived; False once the hop closed (or broke the bound, or the connection)."""
    try:
        chunk = page.sock.recv(RECEIVE_BYTES)
    except BlockingIOError:
        return True
    except OSError:
        page.data.clear()
        return False
    if chunk and len(page.data) + len(chunk) <= MAX_PAGE_BYTES:
        page.data += chunk
        return True
    if chunk:
        page.data.clear()  # larger than any page a hop writes: not a page
    return False


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
