"""The checks on an HTTP head that h11 leaves to us, with the status each failure gets.

Theory of operation
-------------------
h11 validates the grammar of a head (request line, header names and values,
Content-Length digits, Transfer-Encoding exactly `chunked`, one Host) but not
its size once the head is complete, nor a few framings and targets a proxy must
refuse (reliability-matrix [P1], [P2]).  Two kinds of check close the gap:

- `RequestHeadGuard.feed(data)` looks at the raw bytes of a request head as
  they arrive, before h11 parses them, complete or not: request line over
  8 KiB -> 414; a header line over 8 KiB, more than 100 header lines or a
  head over 16 KiB -> 431; an obs-fold continuation line -> 400 (h11 would
  join it; RFC 9112 §5.2 lets us refuse).
- `check_whole_head(buf, end)` gives the guard's verdict at once for a head
  that arrived whole in one piece (the common case): with the head under the
  line limit only the line count and obs-fold can fail, a count and a search.
- `check_request_head(event)` / `check_response_head(event)` look at the
  parsed head (an h11 event or a `wire.events` head alike): HTTP version
  other than 1.0/1.1 -> 505; CONNECT and TRACE -> 405; a target that is not
  origin-form (`*`, absolute-form) -> 400; Transfer-Encoding with
  Content-Length, or on HTTP/1.0 -> 400; an HTTP/1.0 GET/HEAD/DELETE with a
  body -> 413 (HAProxy's answer); a declared body over the limit (when there
  is one) -> 413 before a byte of it is read.

Pure functions over bytes and parsed heads: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from foobar_ref.wire.errors import HttpError

MAX_REQUEST_LINE_BYTES = 8 * 1024  # longer -> 414 (nginx: one large_client_header_buffers buffer)
MAX_HEADER_LINE_BYTES = 8 * 1024  # one header line longer -> 431
MAX_HEAD_BYTES = 16 * 1024  # request line + header lines -> 431 (h11 caps only incomplete heads)
MAX_HEADERS = 100  # header lines -> 431 (HAProxy tune.http.maxhdr 101 counts the request line)
REFUSED_METHODS = frozenset({b"CONNECT", b"TRACE"})  # 405: not a tunnel, no echo of requests
BODYLESS_ON_HTTP_1_0 = frozenset({b"GET", b"HEAD", b"DELETE"})
_FOLD = re.compile(rb"\n[ \t]")


class Head(Protocol):
    """What the checks read of a parsed head (h11's events and wire.events alike)."""

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    @property
    def http_version(self) -> bytes: ...


class RequestHead(Head, Protocol):
    @property
    def method(self) -> bytes: ...

    @property
    def target(self) -> bytes: ...


class RequestHeadGuard:
    """Size and folding limits on a request head's raw bytes, fed as they arrive (complete or not).

    Work is proportional to the bytes fed: only the line in progress is kept
    (at most a line limit long), so a head trickled byte by byte costs no more
    than one sent whole.  Feeding stops mattering once the blank line is seen.
    """

    def __init__(self) -> None:
        self.lines = 0  # complete lines, the request line included
        self.head_bytes = 0  # bytes of the complete lines, with their line ends
        self.partial = bytearray()  # the line in progress
        self.done = False

    def feed(self, data: bytes) -> None:
        """Raise HttpError at the first limit `data` crosses."""
        if self.done or not data:
            return
        room = MAX_HEAD_BYTES + 2 - self.head_bytes - len(self.partial)  # past it: 431 whatever follows
        *complete, rest = data[:room].split(b"\n")
        for piece in complete:
            self.partial += piece
            raw = bytes(self.partial)
            self.partial.clear()
            self.head_bytes += len(raw) + 1
            line = raw.removesuffix(b"\r")
            if not line:
                self.done = True  # the blank line: the head is complete (or, first, h11's own error)
                return
            self._check_line(line, self.lines == 0)
            self.lines += 1
        self.partial += rest
        self._check_partial()

    def _check_line(self, line: bytes, first: bool) -> None:
        if first:
            _check_request_line(len(line))
            return
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete line folding in a header")
        if self.lines > MAX_HEADERS:
            raise HttpError(431, f"more than {MAX_HEADERS} header lines")
        _check_header_line(len(line))
        if self.head_bytes > MAX_HEAD_BYTES:
            raise HttpError(431, f"request head longer than {MAX_HEAD_BYTES} bytes")

    def _check_partial(self) -> None:
        length = len(self.partial) - self.partial.endswith(b"\r")  # a CR here may be the line end's
        if self.lines == 0:
            _check_request_line(length)
        else:
            _check_header_line(length)
        if self.head_bytes + len(self.partial) > MAX_HEAD_BYTES:
            raise HttpError(431, f"request head longer than {MAX_HEAD_BYTES} bytes")


def _check_request_line(length: int) -> None:
    if length > MAX_REQUEST_LINE_BYTES:
        raise HttpError(414, f"request line longer than {MAX_REQUEST_LINE_BYTES} bytes")


def _check_header_line(length: int) -> None:
    if length > MAX_HEADER_LINE_BYTES:
        raise HttpError(431, f"a header line longer than {MAX_HEADER_LINE_BYTES} bytes")


def check_whole_head(buf: bytes | bytearray, end: int) -> None:
    """What `RequestHeadGuard().feed(buf)` raises when `buf[:end]` is a whole head ending in its blank line."""
    if end > MAX_REQUEST_LINE_BYTES or buf[:1] in (b"\r", b"\n"):
        guard = RequestHeadGuard()
        guard.feed(bytes(buf[:end]))
        return
    fold = _FOLD.search(buf, 0, end)
    fold_line = buf.count(b"\n", 0, fold.start() + 1) if fold is not None else None
    if fold_line is not None and fold_line <= MAX_HEADERS + 1:
        raise HttpError(400, "obsolete line folding in a header")
    if buf.count(b"\n", 0, end) - 2 > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header lines")


def check_request_head(head: RequestHead, max_body_bytes: int | None) -> None:
    """What a server refuses in a parsed request head; raises HttpError."""
    _check_version(head)
    if head.method in REFUSED_METHODS:
        raise HttpError(405, f"{head.method.decode('ascii')} is not allowed here")
    if not head.target.startswith(b"/"):
        raise HttpError(400, "request target must be origin-form (/path)")
    _check_framing(head, max_body_bytes)
    if head.http_version == b"1.0" and head.method in BODYLESS_ON_HTTP_1_0 and _declares_body(head):
        raise HttpError(413, f"HTTP/1.0 {head.method.decode('ascii')} with a body")


def check_plain_request(method: bytes, target: bytes, length: int, max_body_bytes: int | None) -> None:
    """check_request_head for a head the fast lane read (HTTP/1.1, no Transfer-Encoding, `length` declared)."""
    if method in REFUSED_METHODS:
        raise HttpError(405, f"{method.decode('ascii')} is not allowed here")
    if target[:1] != b"/":
        raise HttpError(400, "request target must be origin-form (/path)")
    if max_body_bytes is not None and length > max_body_bytes:
        raise HttpError(413, f"declared body of {length} bytes, limit {max_body_bytes}")


def check_response_head(head: Head, max_body_bytes: int | None) -> None:
    """What a client refuses in a parsed response head; raises HttpError."""
    _check_version(head)
    _check_framing(head, max_body_bytes)


def _check_version(head: Head) -> None:
    if head.http_version not in (b"1.1", b"1.0"):
        raise HttpError(505, f"HTTP/{head.http_version.decode()} is not supported")


def _check_framing(head: Head, max_body_bytes: int | None) -> None:
    names = [name for name, _ in head.headers]
    if b"transfer-encoding" in names and b"content-length" in names:
        raise HttpError(400, "both Transfer-Encoding and Content-Length (request smuggling guard)")
    if head.http_version == b"1.0" and b"transfer-encoding" in names:
        raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 message")
    length = _content_length(head)
    if max_body_bytes is not None and length > max_body_bytes:
        raise HttpError(413, f"declared body of {length} bytes, limit {max_body_bytes}")


def _content_length(head: Head) -> int:
    """The declared Content-Length (h11 checked it is digits and single-valued), 0 when absent."""
    return next((int(value) for name, value in head.headers if name == b"content-length"), 0)


def _declares_body(head: Head) -> bool:
    return _content_length(head) > 0 or any(name == b"transfer-encoding" for name, _ in head.headers)
