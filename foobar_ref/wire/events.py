"""The events an HTTP/1.1 connection gives out, and the reason phrases it writes.

Events are small slotted objects, past tense in spirit (what arrived): a message head
(`Request` or `Response`), its body as a sequence of `Data`, then `EndOfMessage`;
`ConnectionClosed` when the peer closed between messages.  `NEED_DATA` and `PAUSED`
say that no event is ready (as in h11): feed more bytes, or finish our side of the
cycle first.  Header names are lower case, values as received; both bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from http import HTTPStatus

Headers = Sequence[tuple[bytes, bytes]]
HeaderInput = Sequence[tuple[bytes | str, bytes | str]]


class Request:
    """A request head: method, target (origin-form for a server), headers, version."""

    __slots__ = ("method", "target", "headers", "http_version")

    def __init__(self, method: bytes, target: bytes, headers: Headers, http_version: bytes = b"1.1") -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and _fields(self) == _fields(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, {list(self.headers)!r}, {self.http_version!r})"


class Response:
    """A final response head (a client driver skips 1xx heads)."""

    __slots__ = ("status_code", "reason", "headers", "http_version")

    def __init__(self, status_code: int, headers: Headers, reason: bytes = b"", http_version: bytes = b"1.1") -> None:
        self.status_code = status_code
        self.headers = headers
        self.reason = reason
        self.http_version = http_version

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Response) and _fields(self) == _fields(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Response({self.status_code}, {list(self.headers)!r}, {self.reason!r}, {self.http_version!r})"


class Data:
    """A piece of a message body (framing removed)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    """The message is complete; `trailers` of a chunked body, usually empty."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Headers = ()) -> None:
        self.trailers = trailers

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage) and list(self.trailers) == list(other.trailers)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EndOfMessage({list(self.trailers)!r})" if self.trailers else "EndOfMessage()"


class ConnectionClosed:
    """The peer closed its side between messages."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConnectionClosed)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "ConnectionClosed()"


class Pending(Enum):
    """No event is ready: NEED_DATA (feed bytes) or PAUSED (their message is done; finish ours first)."""

    NEED_DATA = "need data"
    PAUSED = "paused"


NEED_DATA = Pending.NEED_DATA
PAUSED = Pending.PAUSED
END = EndOfMessage()  # shared: most messages end without trailers
CLOSED = ConnectionClosed()

Event = Request | Response | Data | EndOfMessage | ConnectionClosed
Incoming = Event | Pending  # what next_event gives


def _fields(head: Request | Response) -> tuple[object, ...]:
    if isinstance(head, Request):
        return (head.method, head.target, list(head.headers), head.http_version)
    return (head.status_code, head.reason, list(head.headers), head.http_version)


# --- reason phrases ------------------------------------------------------------------------

_OURS = {413: "Content Too Large", 422: "Unprocessable Content"}  # RFC 9110 names
REASONS: dict[int, bytes] = {
    **{int(status): status.phrase.encode("ascii") for status in HTTPStatus},
    **{code: text.encode("ascii") for code, text in _OURS.items()},
}


def reason_of(status: int) -> bytes:
    return REASONS.get(status, b"")
