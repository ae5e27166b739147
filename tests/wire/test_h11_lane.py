"""The one place the core reads a private h11 attribute: this test fails loudly if h11 moves it."""

from __future__ import annotations

from foobar_ref.wire.events import Data, Request
from foobar_ref.wire.h11_lane import H11Lane

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_h11_still_keeps_the_chunk_count_where_the_lane_reads_it() -> None:
    """h11 has no public way to say how many bytes a chunk promised; the 413 of row H-14c needs it."""
    lane = H11Lane.for_request(CHUNKED_HEAD, eof=False)
    assert isinstance(lane.next_event(), Request)
    lane.receive_data(b"10\r\nab")
    assert lane.next_event() == Data(b"ab")
    reader = getattr(lane.conn, "_reader", None)
    assert reader is not None and hasattr(reader, "_bytes_in_chunk"), (
        "h11 moved ChunkedReader._bytes_in_chunk: find its new home for H11Lane.promised_chunk_bytes"
    )
    assert lane.promised_chunk_bytes() == 14


def test_a_lane_gives_back_what_follows_its_message() -> None:
    lane = H11Lane.for_request(CHUNKED_HEAD + b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", eof=False)
    events = [lane.next_event() for _ in range(3)]
    assert events[1] == Data(b"x")
    assert lane.rest() == b"GET / HTTP/1.1\r\n"
