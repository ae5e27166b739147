"""Writing message heads and framing bodies: the bytes h11 would write, in fewer steps.

Theory of operation
-------------------
A head is validated and normalised as h11's `normalize_and_validate` does
(token names, field values, one Content-Length value, Transfer-Encoding only
`chunked`), a response's headers are then adjusted as h11's
`_clean_up_response_headers_for_sending` does (chunked framing for HTTP/1.1
peers, close-delimited with `Connection: close` for HTTP/1.0 peers or before a
request was read, `Connection: close` added when keep-alive is off), and the
head is written with Host first.  `BodyWriter` frames the body (Content-Length,
chunked, or until close) and refuses too much or too little data.

The common head (bytes fields, none of Host, Content-Length,
Transfer-Encoding or Connection among the caller's, keep-alive on, an
HTTP/1.1 peer) takes a short path: the lines are joined first and the whole
block is checked with one regex and one count, instead of two regexes and a
normalisation per field.  Every case, short path or not, is held byte for byte
to h11's own writer by `tests/wire/test_writer.py`; errors are `LocalProtocolError` with h11's status
hints (501 for an unsupported Transfer-Encoding).  No state beyond one message:
the connection keeps the cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum

from foobar_ref.wire.errors import LocalProtocolError
from foobar_ref.wire.events import HeaderInput
from foobar_ref.wire.fastlane import FIELD_CONTENT, FIELD_VCHAR, MAX_CONTENT_LENGTH_DIGITS, TOKEN

_NAME = re.compile(TOKEN)
_VALUE = re.compile(rb"(?:" + FIELD_CONTENT + rb")?")
_REASON = re.compile(rb"(?:[ \t]|" + FIELD_VCHAR + rb")*")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_DIGITS = re.compile(rb"[0-9]+")
# A block of plain header lines as we write them ("Name: value" CRLF), and the names that make a block not plain.
_PLAIN_BLOCK = re.compile(rb"(?:" + TOKEN + rb": (?:" + FIELD_CONTENT + rb")?\r\n)*")
_STEERING = re.compile(rb"(?i)(?:^|\n)(?:host|content-length|transfer-encoding|connection):")
_NO_BODY_STATUSES = frozenset({204, 304})
_FRAMING_NAMES = frozenset({b"content-length", b"transfer-encoding"})

Item = tuple[bytes, bytes, bytes]  # raw name, lower-case name, value


class Framing(Enum):
    LENGTH = "content-length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "http/1.0"  # the body ends when the connection closes


class BodyWriter:
    """Frames one message body; `remaining` counts down a Content-Length."""

    __slots__ = ("framing", "remaining")

    def __init__(self, framing: Framing, remaining: int = 0) -> None:
        self.framing = framing
        self.remaining = remaining

    def data(self, chunk: bytes) -> bytes:
        if self.framing is Framing.LENGTH:
            self.remaining -= len(chunk)
            if self.remaining < 0:
                raise LocalProtocolError(500, "Too much data for declared Content-Length")
            return chunk
        if self.framing is Framing.CHUNKED:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b""
        return chunk

    def end(self, trailers: HeaderInput = ()) -> bytes:
        if self.framing is Framing.CHUNKED:
            return b"0\r\n" + write_headers(normalise(trailers))
        if self.framing is Framing.LENGTH and self.remaining:
            raise LocalProtocolError(500, "Too little data for declared Content-Length")
        if trailers:
            raise LocalProtocolError(500, "trailers need a chunked body")
        return b""


def normalise(headers: HeaderInput) -> list[Item]:
    """h11's normalize_and_validate: checked items, one Content-Length value, TE lower-cased."""
    items: list[Item] = []
    seen_length: bytes | None = None
    saw_transfer_encoding = False
    for raw_name, raw_value in headers:
        name, value = _bytes(raw_name), _bytes(raw_value)
        if _NAME.fullmatch(name) is None:
            raise LocalProtocolError(500, f"illegal header name {name!r}")
        if _VALUE.fullmatch(value) is None:
            raise LocalProtocolError(500, f"illegal header value {value!r}")
        lower = name.lower()
        if lower == b"content-length":
            value = _one_length(value)
            if seen_length is not None:
                if seen_length != value:
                    raise LocalProtocolError(500, "conflicting Content-Length headers")
                continue
            seen_length = value
        elif lower == b"transfer-encoding":
            if saw_transfer_encoding:
                raise LocalProtocolError(501, "multiple Transfer-Encoding headers")
            value = value.lower()
            if value != b"chunked":
                raise LocalProtocolError(501, "Only Transfer-Encoding: chunked is supported")
            saw_transfer_encoding = True
        items.append((name, lower, value))
    return items


def _one_length(value: bytes) -> bytes:
    lengths = {length.strip() for length in value.split(b",")}
    if len(lengths) != 1:
        raise LocalProtocolError(500, "conflicting Content-Length headers")
    length = lengths.pop()
    if _DIGITS.fullmatch(length) is None or len(length) > MAX_CONTENT_LENGTH_DIGITS:
        raise LocalProtocolError(500, "bad Content-Length")
    return length


def _bytes(value: bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except (UnicodeEncodeError, AttributeError):
        raise LocalProtocolError(500, f"header fields are bytes or latin-1 text, not {value!r}") from None


def write_headers(items: Iterable[Item]) -> bytes:
    """Header lines (Host first, as RFC 9110 asks of a client) and the blank line."""
    items = list(items)
    lines = [b"%s: %s\r\n" % (raw, value) for raw, lower, value in items if lower == b"host"]
    lines += [b"%s: %s\r\n" % (raw, value) for raw, lower, value in items if lower != b"host"]
    lines.append(b"\r\n")
    return b"".join(lines)


def comma_values(items: Iterable[Item], name: bytes) -> list[bytes]:
    """h11's get_comma_header: every value of `name`, split on commas, lower-cased, blanks dropped."""
    out = []
    for _, lower, value in items:
        if lower == name:
            out += [token for token in (part.strip() for part in value.lower().split(b",")) if token]
    return out


def _set_comma(items: list[Item], name: bytes, values: list[bytes]) -> list[Item]:
    """h11's set_comma_header: drop every `name` line, append one per value (title-cased name)."""
    kept = [item for item in items if item[1] != name]
    return normalise([(raw, value) for raw, _, value in kept] + [(name.title(), value) for value in values])


# --- requests ---------------------------------------------------------------------------------


def plain_block(headers: HeaderInput, start: int = 0) -> bytes | None:
    """The header lines when all are bytes, valid and plain from line `start` on (see above), else None.

    The block check cannot see where a name ends, so names are also checked for a colon
    (`(b"A: x", b"y")` would read as name A).
    """
    if not headers:
        return b""
    try:
        block = b"\r\n".join([name + b": " + value for name, value in headers]) + b"\r\n"  # type: ignore[operator,misc]
        names = b"".join([name for name, _ in headers])  # type: ignore[misc]
    except (TypeError, ValueError):
        return None  # text fields, or not pairs: the long path converts or refuses them
    if b":" in names or block.count(b"\n") != len(headers) or _PLAIN_BLOCK.fullmatch(block) is None:
        return None  # a CR or LF inside a field, or a field outside the grammar: the long path says which
    first = block.find(b"\n") if start else -1
    return None if _STEERING.search(block, first if start else 0) else block


def request_head(
    method: bytes, target: bytes, headers: HeaderInput, body_length: int | None = None
) -> tuple[bytes, BodyWriter, bool]:
    """(head bytes, body writer, keep-alive) for a request, or LocalProtocolError.

    `body_length` adds a Content-Length when the headers frame no body themselves.
    """
    if headers and _is_host(headers[0][0]) and _NAME.fullmatch(method) and _TARGET.fullmatch(target):
        block = plain_block(headers, start=1)
        if block is not None:
            if body_length is not None:
                block += b"Content-Length: %d\r\n" % body_length
            body = BodyWriter(Framing.LENGTH, body_length or 0)
            return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, block), body, True
    items = _sized(normalise(headers), body_length)
    hosts = sum(1 for item in items if item[1] == b"host")
    if hosts != 1:
        raise LocalProtocolError(500, "Missing mandatory Host: header" if not hosts else "Found multiple Host: headers")
    if _NAME.fullmatch(method) is None:
        raise LocalProtocolError(500, "Illegal method characters")
    if _TARGET.fullmatch(target) is None:
        raise LocalProtocolError(500, "Illegal target characters")
    if comma_values(items, b"transfer-encoding"):
        body = BodyWriter(Framing.CHUNKED)
    else:
        lengths = comma_values(items, b"content-length")
        body = BodyWriter(Framing.LENGTH, int(lengths[0]) if lengths else 0)
    keep_alive = b"close" not in comma_values(items, b"connection")
    return b"%s %s HTTP/1.1\r\n" % (method, target) + write_headers(items), body, keep_alive


# --- responses --------------------------------------------------------------------------------


def response_head(
    status: int,
    reason: bytes,
    headers: HeaderInput,
    method: bytes | None,
    their_version: bytes | None,
    keep_alive: bool,
    body_length: int | None = None,
) -> tuple[bytes, BodyWriter, bool]:
    """(head bytes, body writer, keep-alive after) for a response to `method`.

    `method` and `their_version` are None when no request head was read (an
    early refusal); `keep_alive` is False when the request asked to close;
    `body_length` adds a Content-Length when the headers frame no body (not to 204 or 304).
    """
    if not isinstance(status, int) or not 200 <= status < 1000:
        raise LocalProtocolError(500, f"a final response status is 200-999, not {status!r}")
    if _REASON.fullmatch(reason) is None:
        raise LocalProtocolError(500, f"illegal reason phrase {reason!r}")
    if keep_alive and their_version == b"1.1" and method is not None:
        block = plain_block(headers)
        if block is not None:
            return _plain_response(b"HTTP/1.1 %d %s\r\n" % (status, reason) + block, status, method, body_length)
    items = normalise(headers)
    if status not in _NO_BODY_STATUSES:
        items = _sized(items, body_length)
    items, keep_alive = _cleaned(items, status, method, their_version, keep_alive)
    framing, length = _response_framing(method, status, items)
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + write_headers(items)
    return head, BodyWriter(framing, length), keep_alive


def _cleaned(
    items: list[Item], status: int, method: bytes | None, their_version: bytes | None, keep_alive: bool
) -> tuple[list[Item], bool]:
    """h11's _clean_up_response_headers_for_sending, and whether keep-alive holds after the response."""
    framing, _ = _response_framing(b"GET" if method == b"HEAD" else method, status, items)
    need_close = False
    if framing is not Framing.LENGTH:
        items = _set_comma(items, b"content-length", [])
        if their_version is None or their_version < b"1.1":
            items = _set_comma(items, b"transfer-encoding", [])
            need_close = method != b"HEAD"
        else:
            items = _set_comma(items, b"transfer-encoding", [b"chunked"])
    connection = comma_values(items, b"connection")
    if not keep_alive or need_close:
        connection = sorted(set(connection) - {b"keep-alive"} | {b"close"})
        items = _set_comma(items, b"connection", connection)
    return items, keep_alive and b"close" not in connection


def _plain_response(head: bytes, status: int, method: bytes, body_length: int | None) -> tuple[bytes, BodyWriter, bool]:
    """What the long path gives for plain headers to an HTTP/1.1 request with keep-alive."""
    if status in _NO_BODY_STATUSES or (method == b"CONNECT" and status < 300):
        return head + b"\r\n", BodyWriter(Framing.LENGTH, 0), True
    if body_length is None:  # streamed: chunked (a HEAD answer says so too, and sends nothing)
        writer = BodyWriter(Framing.LENGTH, 0) if method == b"HEAD" else BodyWriter(Framing.CHUNKED)
        return head + b"Transfer-Encoding: chunked\r\n\r\n", writer, True
    writer = BodyWriter(Framing.LENGTH, 0 if method == b"HEAD" else body_length)
    return head + b"Content-Length: %d\r\n\r\n" % body_length, writer, True


def _is_host(name: bytes | str) -> bool:
    return isinstance(name, bytes) and len(name) == 4 and name.lower() == b"host"


def _sized(items: list[Item], body_length: int | None) -> list[Item]:
    if body_length is None or any(lower in _FRAMING_NAMES for _, lower, _ in items):
        return items
    return [*items, (b"Content-Length", b"content-length", b"%d" % body_length)]


def _response_framing(method: bytes | None, status: int, items: list[Item]) -> tuple[Framing, int]:
    """h11's _body_framing for a response."""
    if status in _NO_BODY_STATUSES or method == b"HEAD" or (method == b"CONNECT" and status < 300):
        return Framing.LENGTH, 0
    if comma_values(items, b"transfer-encoding"):
        return Framing.CHUNKED, 0
    lengths = comma_values(items, b"content-length")
    if lengths:
        return Framing.LENGTH, int(lengths[0])
    return Framing.UNTIL_CLOSE, 0
