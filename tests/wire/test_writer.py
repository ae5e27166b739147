"""The writer against h11's: the same bytes for every head and body, or an error from both.

Responses are written in every context h11 can be put in: after a GET, HEAD or POST
over HTTP/1.1 or 1.0, with or without `Connection: close`, or before any request.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from foobar_ref.wire.errors import LocalProtocolError
from foobar_ref.wire.writer import request_head, response_head

NAMES = [b"Content-Type", b"Content-Length", b"content-length", b"Transfer-Encoding", b"Connection", b"Host"]
NAMES += [b"X-A", b"Set-Cookie", b"Keep-Alive", b"Bad Name", b"", b"X-A: b", b"X:"]
VALUES = [b"text/plain", b"3", b"0", b"3, 3", b"3, 4", b" 3", b"chunked", b"Chunked", b"gzip", b"close"]
VALUES += [b"keep-alive", b"Keep-Alive, Upgrade", b"upgrade", b"a  b", b"", b"a\r\nb", b" lead", b"\xff", b"x\x00"]
BODIES = [b"", b"abc", b"x" * 100]

Header = tuple[bytes, bytes]
headers_lists = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=5)


def _sized(headers: list[Header], body: bytes, no_length: bool = False) -> list[Header]:
    """What `body_length` means: a Content-Length at the end when no header frames the body."""
    framed = any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)
    return headers if framed or no_length else [*headers, (b"Content-Length", b"%d" % len(body))]


def _ours_response(
    status: int, headers: list[Header], method: bytes | None, version: bytes | None, close: bool, body: bytes
) -> tuple[str, bytes, bool]:
    return _ours_response_sized(status, headers, method, version, close, body, None)


def _ours_response_sized(
    status: int,
    headers: list[Header],
    method: bytes | None,
    version: bytes | None,
    close: bool,
    body: bytes,
    length: int | None,
) -> tuple[str, bytes, bool]:
    try:
        keep_alive = not close and version != b"1.0"  # what the request allows, as the connection passes it
        head, writer, keep_alive = response_head(status, b"R", headers, method, version, keep_alive, length)
        return "ok", head + writer.data(body) + writer.end(), keep_alive
    except LocalProtocolError:
        return "error", b"", False


def _h11_response(
    status: int, headers: list[Header], method: bytes | None, version: bytes | None, close: bool, body: bytes
) -> tuple[str, bytes, bool]:
    conn = h11.Connection(h11.SERVER)
    if method is not None:
        head = method + b" / HTTP/" + (version or b"1.1") + b"\r\nHost: a\r\n"
        conn.receive_data(head + (b"Connection: close\r\n" if close else b"") + b"\r\n")
        assert isinstance(conn.next_event(), h11.Request)
        assert isinstance(conn.next_event(), h11.EndOfMessage)
    try:
        out = conn.send(h11.Response(status_code=status, headers=headers, reason=b"R"))
        out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return "error", b"", False
    return "ok", out, conn.our_state is h11.DONE


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 201, 204, 304, 404, 500, 999, 199, 1000]),
    headers=headers_lists,
    context=st.sampled_from(
        [(b"GET", b"1.1", False), (b"GET", b"1.1", True), (b"HEAD", b"1.1", False), (b"HEAD", b"1.0", False)]
        + [(b"POST", b"1.0", False), (b"GET", b"1.0", True), (None, None, False)]
    ),
    body=st.sampled_from(BODIES),
)
@example(status=200, headers=[(b"Content-Length", b"3")], context=(b"GET", b"1.1", False), body=b"abc")
@example(status=200, headers=[(b"Connection", b"Keep-Alive, Upgrade")], context=(b"GET", b"1.1", True), body=b"")
@example(status=200, headers=[(b"Transfer-Encoding", b"Chunked")], context=(b"GET", b"1.0", False), body=b"abc")
def test_a_response_is_written_as_h11_writes_it(
    status: int, headers: list[Header], context: tuple[bytes | None, bytes | None, bool], body: bytes
) -> None:
    method, version, close = context
    assert _ours_response(status, headers, method, version, close, body) == _h11_response(
        status, headers, method, version, close, body
    )


def _ours_request(
    method: bytes, target: bytes, headers: list[Header], body: bytes, length: int | None = None
) -> tuple[str, bytes, bool]:
    try:
        head, writer, keep_alive = request_head(method, target, headers, length)
        return "ok", head + writer.data(body) + writer.end(), keep_alive
    except LocalProtocolError:
        return "error", b"", False


def _h11_request(method: bytes, target: bytes, headers: list[Header], body: bytes) -> tuple[str, bytes, bool]:
    conn = h11.Connection(h11.CLIENT)
    try:
        out = conn.send(h11.Request(method=method, target=target, headers=headers))
        out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return "error", b"", False
    return "ok", out, conn.our_state is h11.DONE


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"G@T"]),
    target=st.sampled_from([b"/", b"/a?b", b"/a b", b"*"]),
    headers=headers_lists.map(lambda hs: [(b"Host", b"a"), *hs]) | headers_lists,
    body=st.sampled_from(BODIES),
)
@example(method=b"POST", target=b"/", headers=[(b"Host", b"a"), (b"Content-Length", b"3")], body=b"abc")
@example(method=b"POST", target=b"/", headers=[(b"X-A", b"b"), (b"Host", b"a")], body=b"")
def test_a_request_is_written_as_h11_writes_it(
    method: bytes, target: bytes, headers: list[Header], body: bytes
) -> None:
    assert _ours_request(method, target, headers, body) == _h11_request(method, target, headers, body)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 204, 304, 404]),
    headers=headers_lists,
    context=st.sampled_from([(b"GET", b"1.1", False), (b"HEAD", b"1.1", False), (b"GET", b"1.0", False)]),
    body=st.sampled_from(BODIES),
)
@example(status=200, headers=[(b"X-A", b"1")], context=(b"GET", b"1.1", False), body=b"abc")
def test_a_whole_body_length_is_the_content_length_h11_would_be_given(
    status: int, headers: list[Header], context: tuple[bytes, bytes, bool], body: bytes
) -> None:
    method, version, close = context
    ours = _ours_response_sized(status, headers, method, version, close, body, len(body))
    sized = _sized(headers, body, no_length=status in (204, 304))
    theirs = _h11_response(
        status, sized, method, version, close, b"" if method == b"HEAD" or status in (204, 304) else body
    )
    if method == b"HEAD" or status in (204, 304):
        ours = _ours_response_sized(status, headers, method, version, close, b"", len(body))
    assert ours == theirs


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=headers_lists.map(lambda hs: [(b"Host", b"a"), *hs]), body=st.sampled_from(BODIES))
def test_a_whole_request_body_length_is_the_content_length_h11_would_be_given(
    headers: list[Header], body: bytes
) -> None:
    assert _ours_request(b"POST", b"/", headers, body, len(body)) == _h11_request(
        b"POST", b"/", _sized(headers, body), body
    )


@pytest.mark.parametrize("value", [b"a\r\nSet-Cookie: x=1", b"a\nb", b"a\rb", b"a\x00b"])
def test_a_value_that_would_split_the_head_is_refused(value: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        response_head(200, b"OK", [(b"X-A", value)], b"GET", b"1.1", True)
    with pytest.raises(LocalProtocolError):
        response_head(200, b"OK\r\nX: y", [], b"GET", b"1.1", True)
    with pytest.raises(LocalProtocolError):
        response_head(200, b"OK", [(b"X-A: " + value, b"v")], b"GET", b"1.1", True)
    with pytest.raises(LocalProtocolError):
        request_head(b"GET", b"/", [(b"Host", b"h"), (b"X-A: b", b"v")])
