"""The limits an HTTP driver enforces, and how a refused request is answered by default.

Plain data shared by the trio, asyncio and blocking drivers (`runtime/http_*`).
Times are seconds on the driver's clock; sizes are bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from foobar_ref.wire.connection import MAX_BODY_BYTES
from foobar_ref.wire.errors import ProtocolError
from foobar_ref.wire.events import HeaderInput, reason_of

RECEIVE_BYTES = 64 * 1024  # one read from the socket: the largest piece of body a driver holds


@dataclass(frozen=True, slots=True)
class ServerLimits:
    idle_s: float = 10.0  # keep-alive: no byte of a next request within this -> close, silently
    request_s: float = 5.0  # from a request's first byte, its whole head and body (Slowloris) -> 408
    send_s: float = 30.0  # one send the client does not take within this -> close
    max_body_bytes: int | None = MAX_BODY_BYTES  # a larger request body -> 413 (None: no cap, streaming)
    max_requests: int = 1000  # on one connection; the last response says Connection: close
    receive_bytes: int = RECEIVE_BYTES
    discard_bytes: int = 64 * 1024  # a request body the handler left unread, up to this, is read and dropped
    linger_s: float = 1.0  # after a refusal, what the client still sends is read and dropped this long ...
    linger_bytes: int = 2 * 1024 * 1024  # ... or up to this much, so it reads our answer instead of a reset


@dataclass(frozen=True, slots=True)
class ClientLimits:
    head_s: float = 10.0  # request sent -> whole response head, else ResponseTimeout (a 504 for a proxy)
    read_s: float = 10.0  # between two pieces of a response body
    send_s: float = 30.0  # one send the server does not take within this -> SendTimeout
    max_body_bytes: int | None = None  # a larger response body -> BadResponse
    receive_bytes: int = RECEIVE_BYTES


Refuse = Callable[[ProtocolError], tuple[HeaderInput, bytes]]  # the answer to a refused request


def plain_refusal(err: ProtocolError) -> tuple[HeaderInput, bytes]:
    """A short text answer: `413 Content Too Large: declared body of ... bytes`."""
    body = b"%d %s: %s\n" % (err.status, reason_of(err.status), err.reason.encode("utf-8", "replace"))
    return [(b"Content-Type", b"text/plain; charset=utf-8")], body
