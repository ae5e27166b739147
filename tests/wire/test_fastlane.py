"""The fast lane against h11: for every head the lane takes, h11 reads the same head, length and keep-alive.

Heads are drawn near the lane's edges (framing headers, odd whitespace, bare LF,
obs-text, HTTP/1.0, lists in Content-Length) so both outcomes are common: the lane
declines (h11 will read it) or agrees with h11 exactly.
"""

from __future__ import annotations

import h11
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from foobar_ref.wire import fastlane
from foobar_ref.wire.events import Request, Response

# Each piece is usually plain (the lane must agree) and sometimes odd (the lane must decline or agree).
NAMES = [b"Content-Length", b"Connection", b"X-A", b"Accept", b"traceparent", b"User-Agent", b"x-b"]
ODD_NAMES = [b"Host", b"HOST", b"Transfer-Encoding", b"Expect", b"Upgrade", b"X A", b"", b"X\x00", b"\xff"]
VALUES = [b"a", b"close", b"keep-alive", b"Close, Upgrade", b"upgrade,close", b"0", b"5", b"007", b"a  b", b"a\tb"]
ODD_VALUES = [b"5, 5", b"5,6", b"", b" ", b"\t", b"\x01", b"\xff\xfe", b"chunked", b"100-continue", b"-1"]
ODD_VALUES += [b"99999999999999999999", b"999999999999999999999", b"a\rb", b"a\x0bb", b"a\nb"]
SEPARATORS = [b":", b": ", b":\t", b":  "]
ODD_SEPARATORS = [b" :", b"::", b"\t:"]
LINE_ENDS = [b"\r\n"]
ODD_LINE_ENDS = [b"\n", b"\r", b"\r\r\n"]
METHODS = [b"GET", b"POST", b"HEAD", b"DELETE", b"OPTIONS", b"PUT"]
ODD_METHODS = [b"CONNECT", b"G@T", b"get", b"GET "]
TARGETS = [b"/", b"/a?b=c", b"/%00", b"*", b"http://x/"]
ODD_TARGETS = [b"/\x7f", b"/a b", b"/\xff", b""]
VERSIONS = [b"HTTP/1.1"]
ODD_VERSIONS = [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1.10"]
STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 ",
    b"HTTP/1.1 404",
    b"HTTP/1.1 200 \xffok",
]
STATUS_LINES += [b"HTTP/1.1 200  two  spaces", b"HTTP/1.1 500 Internal\tError"]
ODD_STATUS_LINES = [b"HTTP/1.1 100 Go", b"HTTP/1.0 200 OK", b"HTTP/1.1 2000 X", b"HTTP/1.1 20 X", b"HTTP/1.1 200 a\x00"]


def piece(draw: st.DrawFn, plain: list[bytes], odd: list[bytes]) -> bytes:
    """Mostly plain, one time in eight odd."""
    return draw(st.sampled_from(odd if draw(st.integers(0, 7)) == 0 else plain))


@st.composite
def header_lines(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        name = piece(draw, NAMES, ODD_NAMES)
        value = piece(draw, VALUES, ODD_VALUES)
        trailing = draw(st.sampled_from([b"", b"", b" ", b"\t"]))
        separator = piece(draw, SEPARATORS, ODD_SEPARATORS)
        lines.append(name + separator + value + trailing + piece(draw, LINE_ENDS, ODD_LINE_ENDS))
    return b"".join(lines) + piece(draw, LINE_ENDS, ODD_LINE_ENDS)


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    line = b" ".join(
        [piece(draw, METHODS, ODD_METHODS), piece(draw, TARGETS, ODD_TARGETS), piece(draw, VERSIONS, ODD_VERSIONS)]
    )
    host = piece(draw, [b"Host: a\r\n"], [b"", b"Host: b\r\n"])
    return line + piece(draw, LINE_ENDS, ODD_LINE_ENDS) + host + draw(header_lines())


@st.composite
def response_heads(draw: st.DrawFn) -> bytes:
    return piece(draw, STATUS_LINES, ODD_STATUS_LINES) + piece(draw, LINE_ENDS, ODD_LINE_ENDS) + draw(header_lines())


def _h11_events(conn: h11.Connection, data: bytes) -> list[object]:
    conn.receive_data(data)
    events: list[object] = []
    while len(events) < 4:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            events.append("error")
            break
        if event is h11.NEED_DATA or event is h11.PAUSED:
            break
        events.append(event)
    return events


def _agrees_on_body(conn: h11.Connection, head: bytes, length: int, keep_alive: bool) -> None:
    """h11 frames the body the way the lane said: `length` bytes, then the end, then keep-alive or close."""
    if length > 64:
        assert _h11_events(conn, head + b"x" * 10)[1:] == [h11.Data(data=b"x" * 10)]
        return
    events = _h11_events(conn, head + b"x" * length)[1:]
    assert [type(e) for e in events] == ([h11.Data] if length else []) + [h11.EndOfMessage]
    their = conn.their_state
    assert (their is h11.DONE) == keep_alive or their is h11.MIGHT_SWITCH_PROTOCOL, their


def check_request(head: bytes) -> None:
    end = fastlane.head_end(head)
    parsed = fastlane.parse_request(head, end) if end >= 0 else None
    events = _h11_events(h11.Connection(h11.SERVER), head)
    if events and isinstance(events[0], h11.Request):
        assert end >= 0, "h11 read a head the lane would still wait for"
    if parsed is None:
        return
    request, length, keep_alive = parsed
    theirs = events[0]
    assert isinstance(theirs, h11.Request), (head, events)
    assert request == Request(theirs.method, theirs.target, list(theirs.headers), theirs.http_version)
    _agrees_on_body(h11.Connection(h11.SERVER), head, length, keep_alive)


def _client(method: bytes) -> h11.Connection:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
    conn.send(h11.EndOfMessage())
    return conn


def check_response(head: bytes, method: bytes) -> None:
    end = fastlane.head_end(head)
    parsed = fastlane.parse_response(head, end, method) if end >= 0 else None
    if parsed is None:
        return
    response, length, keep_alive = parsed
    theirs = _h11_events(_client(method), head)[0]
    assert isinstance(theirs, h11.Response), (head, theirs)
    assert response == Response(theirs.status_code, list(theirs.headers), theirs.reason, theirs.http_version)
    _agrees_on_body(_client(method), head, length, keep_alive)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=request_heads())
@example(head=b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
@example(head=b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\nConnection: Close, Upgrade\r\n\r\n")
@example(head=b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  a\tb \t\r\n\r\n")
def test_a_request_head_the_lane_takes_reads_as_in_h11(head: bytes) -> None:
    check_request(head)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=response_heads(), method=st.sampled_from([b"GET", b"HEAD", b"POST"]))
@example(head=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", method=b"GET")
@example(head=b"HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n", method=b"GET")
def test_a_response_head_the_lane_takes_reads_as_in_h11(head: bytes, method: bytes) -> None:
    check_response(head, method)


def test_the_lane_takes_the_common_heads() -> None:
    """What browsers, wrk and the hops send stays in the lane (the point of having it)."""
    browser = (
        b"GET /index.html HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: foobar-ref\r\nAccept: */*\r\n"
        b"Connection: keep-alive\r\n\r\n"
    )
    posted = b"POST /api/messages HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
    assert fastlane.parse_request(browser, len(browser)) is not None
    assert fastlane.parse_request(posted, len(posted)) is not None
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nX-Served-By: web-01\r\n\r\n"
    assert fastlane.parse_response(answer, len(answer), b"GET") is not None


def test_what_the_lane_declines_goes_to_h11() -> None:
    for head in [
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ]:
        assert fastlane.parse_request(head, fastlane.head_end(head)) is None, head
    until_close = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    assert fastlane.parse_response(until_close, len(until_close), b"GET") is None
