"""The fast lane: strict parsers for the simple message heads that make up nearly all traffic.

Theory of operation
-------------------
h11 parses a request head with about a hundred Python-level steps (line
extraction, one regex per line, header normalisation, a state-machine update
that copies dicts), about 60 us on the reference machine; the balancer parses
two heads and writes two per request, so h11 alone would cost more than the
whole CPU budget a request may spend there (issue 8).  This module parses the
common case with a few C-level regex calls instead (about 8 us), and answers
None for anything it does not recognise, so the connection hands that message
to h11 unchanged.  It never rejects: every refusal comes from h11 or from
`head_checks`.

A head is in the lane when all of this holds; otherwise h11 parses it:

- lines end in CRLF (no bare LF), the first line is
  `token SP 1*VCHAR SP HTTP/1.1` (request) or `HTTP/1.1 SP 3DIGIT [SP reason]`
  with a status of 200 or more (response);
- every header line matches h11's own `header_field` grammar (same character
  classes: token names, values of visible or obs-text bytes with inner SP/HT);
- framing is plain: no Transfer-Encoding, at most one Content-Length of 1-20
  digits, no Expect or Upgrade, a request has exactly one Host and is not
  CONNECT; a response is framed by Content-Length or has no body by rule
  (HEAD, 204, 304).

What it returns is what h11 returns for the same bytes (names lower-cased,
values without surrounding whitespace) plus the two facts the connection
needs: the body length and whether the message allows keep-alive.
`tests/wire/test_fastlane.py` holds the lane to h11 with hypothesis: for any
head the lane accepts, h11 gives the same event, length and keep-alive.
`benchmarks/wire_core.py` measures the difference.
"""

from __future__ import annotations

import re

from foobar_ref.wire.events import Request, Response

TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"  # RFC 9110 token, as h11's _abnf
FIELD_VCHAR = rb"[^\x00\s]"  # a visible or obs-text byte (h11: vchar_or_obs_text)
FIELD_CONTENT = FIELD_VCHAR + rb"+(?:[ \t]+" + FIELD_VCHAR + rb"+)*"
MAX_CONTENT_LENGTH_DIGITS = 20  # h11's CONTENT_LENGTH_MAX_DIGITS

BLANK_LINE = re.compile(rb"\n\r?\n")  # where h11 ends a head (bare LF included)
_REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1\r\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3})(?: ((?:[ \t]|[^\x00\s])*))?\r\n")
# One header line, preceded by the LF that ends the line before it and followed by that line's CR LF:
# anchored so at a line start, it matches every line of a block exactly when all are in h11's grammar.
_FIELD = re.compile(rb"\n(" + TOKEN + rb"):[ \t]*+((?:[^\x00\s]++(?:[ \t]++[^\x00\s]++)*+)?)[ \t]*+\r(?=\n)")
_LENGTH = re.compile(rb"[0-9]{1,%d}" % MAX_CONTENT_LENGTH_DIGITS)
_NOT_IN_LANE = (b"transfer-encoding", b"expect", b"upgrade")  # h11's: chunking, 100-continue, switching
_NO_BODY_STATUSES = frozenset({204, 304})

Parsed = tuple[Request, int, bool]  # head, body length, keep-alive
ParsedResponse = tuple[Response, int, bool]


def head_end(buf: bytes | bytearray) -> int:
    """The index just past the blank line that ends the head in `buf`, or -1 while it is incomplete."""
    found = BLANK_LINE.search(buf)
    return -1 if found is None else found.end()


def parse_request(buf: bytes | bytearray, end: int) -> Parsed | None:
    """`buf[:end]` is a whole head (`head_end`); its Request when it is in the lane, else None."""
    line = _REQUEST_LINE.match(buf, 0, end)
    if line is None:
        return None
    headers = _headers(buf, line.end(), end)
    if headers is None:
        return None
    facts = _framing(headers, request=True)
    method = line.group(1)
    if facts is None or method == b"CONNECT":
        return None
    return Request(method, line.group(2), headers), facts[0], facts[1]


def parse_response(buf: bytes | bytearray, end: int, method: bytes) -> ParsedResponse | None:
    """A final response head answering `method`, when it is in the lane, else None."""
    line = _STATUS_LINE.match(buf, 0, end)
    if line is None:
        return None
    status = int(line.group(1))
    headers = _headers(buf, line.end(), end)
    if status < 200 or headers is None:
        return None
    facts = _framing(headers, request=False)
    if facts is None:
        return None
    length, keep_alive = facts
    if method == b"HEAD" or status in _NO_BODY_STATUSES:
        length = 0
    elif length < 0:
        return None  # no Content-Length: the body runs until close, h11's http/1.0 framing
    return Response(status, headers, line.group(2) or b""), length, keep_alive


def _headers(buf: bytes | bytearray, start: int, end: int) -> list[tuple[bytes, bytes]] | None:
    """The lines between the first line (ending at `start`) and the blank line as (lower-case name, value),
    or None unless every one is in h11's grammar and ends in CR LF."""
    if buf[end - 4 : end] != b"\r\n\r\n":
        return None  # a bare LF ends the head
    fields = _FIELD.findall(buf, start - 1, end - 2)
    if len(fields) != buf.count(b"\n", start, end - 2):
        return None  # some line did not match
    return [(name.lower(), value) for name, value in fields]


def _framing(headers: list[tuple[bytes, bytes]], request: bool) -> tuple[int, bool] | None:
    """(Content-Length or -1, keep-alive) when the framing is plain, else None."""
    named = dict(headers)
    if len(named) != len(headers):
        return _framing_with_repeats(headers, request)
    if request and b"host" not in named:
        return None
    if any(name in named for name in _NOT_IN_LANE):
        return None
    length = named.get(b"content-length")
    if length is not None and _LENGTH.fullmatch(length) is None:
        return None
    connection = named.get(b"connection")
    keep_alive = connection is None or b"close" not in _tokens(connection)
    return (int(length) if length is not None else (0 if request else -1)), keep_alive


def _framing_with_repeats(headers: list[tuple[bytes, bytes]], request: bool) -> tuple[int, bool] | None:
    """_framing when some name appears more than once (two Accept lines, say)."""
    length = -1
    hosts = 0
    keep_alive = True
    for name, value in headers:
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if length >= 0 or _LENGTH.fullmatch(value) is None:
                return None
            length = int(value)
        elif name == b"connection":
            keep_alive = keep_alive and b"close" not in _tokens(value)
        elif name in _NOT_IN_LANE:
            return None
    if request and hosts != 1:
        return None
    return (max(length, 0) if request else length), keep_alive


def _tokens(value: bytes) -> list[bytes]:
    """A comma-separated header value as lower-case tokens (h11's get_comma_header)."""
    return [token.strip() for token in value.lower().split(b",")]
