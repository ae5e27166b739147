"""Matrix B1 at the parser: each raw case fed whole, byte by byte and in odd pieces.

Every row runs against both readers: `legacy` (wire.http.read_message, which the
hops use until they move) and `core` (wire.connection.ServerConnection, the one
HTTP core).  H-31 runs hypothesis over random bytes and over mutations of the
cases: whatever arrives, a reader gives a message, "closed" (closed between
messages) or a status a client may be sent, it never loops after EOF, and the two
readers agree.
"""

from __future__ import annotations

from collections.abc import Coroutine

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from foobar_ref.wire.connection import ServerConnection
from foobar_ref.wire.errors import RemoteProtocolError
from foobar_ref.wire.events import NEED_DATA, ConnectionClosed, Data, EndOfMessage, Request
from foobar_ref.wire.head_checks import MAX_HEAD_BYTES, MAX_HEADER_LINE_BYTES, MAX_HEADERS, MAX_REQUEST_LINE_BYTES
from foobar_ref.wire.http import HttpError, Message, new_connection, read_message, request_bytes
from tests.wire.rows import ALLOWED_PARSER_STATUSES, CASES, PARSER, case

MAX_EOF_READS = 3  # a reader must stop asking after the peer closed
MAX_STEPS = 100_000  # events and reads for one input: more means a loop
Outcome = int | str  # a status, or "message" / "closed"
READERS = ["legacy", "core"]


def drive(coroutine: Coroutine[object, object, Message | None]) -> Message | None:
    """Run read_message to the end: its receive never really awaits, so one send finishes it."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("read_message awaited something other than receive")


def _pieces(data: bytes, piece_bytes: int | None) -> list[bytes]:
    size = piece_bytes or max(len(data), 1)
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse(
    data: bytes, piece_bytes: int | None = None, max_body_bytes: int = 1024 * 1024, reader: str = "legacy"
) -> Outcome:
    if reader == "core":
        return parse_core(data, piece_bytes, max_body_bytes)
    pieces = _pieces(data, piece_bytes)
    eof_reads = 0

    async def receive(max_bytes: int) -> bytes:
        nonlocal eof_reads
        if pieces:
            return pieces.pop(0)
        eof_reads += 1
        assert eof_reads <= MAX_EOF_READS, "read_message keeps reading after EOF"
        return b""

    try:
        message = drive(read_message(new_connection(h11.SERVER), receive, max_body_bytes))
    except HttpError as err:
        return err.status
    return "closed" if message is None else "message"


def parse_core(data: bytes, piece_bytes: int | None = None, max_body_bytes: int = 1024 * 1024) -> Outcome:
    """One request through ServerConnection: feed a piece whenever it needs data, EOF after the last."""
    conn = ServerConnection(max_body_bytes)
    pieces = _pieces(data, piece_bytes)
    eof_reads = 0
    try:
        for _ in range(MAX_STEPS):
            event = conn.next_event()
            if event is NEED_DATA:
                eof_reads += not pieces
                assert eof_reads <= MAX_EOF_READS, "the connection keeps asking for data after EOF"
                conn.receive_data(pieces.pop(0) if pieces else b"")
            elif isinstance(event, EndOfMessage):
                return "message"
            elif isinstance(event, ConnectionClosed):
                return "closed"
            else:
                assert isinstance(event, Request | Data), event
    except RemoteProtocolError as err:
        return err.status
    raise AssertionError("no outcome within MAX_STEPS")


def test_every_case_file_has_a_row_and_every_row_a_file() -> None:
    assert sorted(p.stem for p in CASES.glob("*.http")) == sorted(PARSER)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", sorted(PARSER))
@pytest.mark.parametrize("piece_bytes", [None, 1, 7], ids=["whole", "bytewise", "7-byte"])
def test_row(name: str, piece_bytes: int | None, reader: str) -> None:
    outcome = parse(case(name), piece_bytes, reader=reader)
    expected = PARSER[name]
    if expected:
        assert outcome in expected, f"{name}: {outcome}, expected one of {sorted(expected)}"
    else:
        assert outcome == "message", f"{name}: {outcome}, expected a parsed request"


def _request(line: bytes = b"GET / HTTP/1.1", headers: list[bytes] | None = None) -> bytes:
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in [b"Host: a", *(headers or [])]) + b"\r\n"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (_request(b"GET /" + b"a" * (MAX_REQUEST_LINE_BYTES - 14) + b" HTTP/1.1"), "message"),
        (_request(b"GET /" + b"a" * (MAX_REQUEST_LINE_BYTES - 13) + b" HTTP/1.1"), 414),
        (_request(headers=[b"X: " + b"v" * (MAX_HEADER_LINE_BYTES - 3)]), "message"),
        (_request(headers=[b"X: " + b"v" * (MAX_HEADER_LINE_BYTES - 2)]), 431),
        (_request(headers=[b"X-%03d: v" % i for i in range(MAX_HEADERS - 1)]), "message"),
        (_request(headers=[b"X-%03d: v" % i for i in range(MAX_HEADERS)]), 431),
        (_request(headers=[b"X-%02d: " % i + b"v" * 4000 for i in range(4)]), "message"),
        (_request(headers=[b"X-%02d: " % i + b"v" * 4000 for i in range(5)]), 431),
        (b"GET /" + b"a" * MAX_REQUEST_LINE_BYTES, 414),  # incomplete: refused before the line ends
        (_request(headers=[b"X: " + b"v" * MAX_HEAD_BYTES])[:-4], 431),  # incomplete, one long line
    ],
    ids=[
        "line-at-limit",
        "line-over",
        "header-at-limit",
        "header-over",
        "100-headers",
        "101-headers",
        "head-under",
        "head-over",
        "line-incomplete",
        "header-incomplete",
    ],  # fmt: skip
)
@pytest.mark.parametrize("reader", READERS)
def test_limits_sit_exactly_at_the_named_constants(data: bytes, status: Outcome, reader: str) -> None:
    for piece_bytes in (None, 1, 1024):
        assert parse(data, piece_bytes, reader=reader) == status


@pytest.mark.parametrize("reader", READERS)
def test_a_body_that_arrives_in_pieces_is_joined(reader: str) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    for piece_bytes in (None, 1, 5):
        assert parse(data, piece_bytes, reader=reader) == "message"
    assert parse(data, max_body_bytes=4, reader=reader) == 413  # 3 + 2 > 4


@pytest.mark.parametrize("reader", READERS)
def test_a_chunk_promising_more_than_the_limit_is_413_before_its_bytes(reader: str) -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parse(head + b"5\r\n", max_body_bytes=4, reader=reader) == 413
    assert parse(head + b"4\r\nabcd\r\n0\r\n\r\n", max_body_bytes=4, reader=reader) == "message"


@pytest.mark.parametrize("reader", READERS)
def test_a_declared_body_over_the_limit_is_413_before_its_bytes(reader: str) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
    assert parse(data, max_body_bytes=4, reader=reader) == 413
    assert parse(data + b"abcd", max_body_bytes=5, reader=reader) == 400  # cut short, then closed


def test_responses_are_not_held_to_the_request_head_limits() -> None:
    """A backend's response head (a client reading) keeps h11's own limit only."""
    client = new_connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    big = b"HTTP/1.1 200 OK\r\nX: " + b"v" * (MAX_HEADER_LINE_BYTES + 10) + b"\r\nContent-Length: 2\r\n\r\nok"
    pieces = [big]

    async def receive(max_bytes: int) -> bytes:
        return pieces.pop(0) if pieces else b""

    message = drive(read_message(client, receive))
    assert message is not None and message.body == b"ok"


def test_pipelined_requests_are_read_one_at_a_time() -> None:
    conn = new_connection(h11.SERVER)
    one_bytes = request_bytes(new_connection(h11.CLIENT), "GET", "/one", [("Host", "a")])
    pieces = [one_bytes + request_bytes(new_connection(h11.CLIENT), "POST", "/two", [("Host", "a")], b"xy")]

    async def receive(max_bytes: int) -> bytes:
        return pieces.pop(0) if pieces else b""

    one = drive(read_message(conn, receive))
    assert one is not None and one.head.target == b"/one"  # type: ignore[union-attr]
    conn.send(h11.Response(status_code=204, headers=[]))
    conn.send(h11.EndOfMessage())
    conn.start_next_cycle()
    two = drive(read_message(conn, receive))
    assert two is not None and two.body == b"xy"


# --- H-31: anything at all ------------------------------------------------------------

SEEDS = [case(name) for name in sorted(PARSER)]


@st.composite
def mutated_case(draw: st.DrawFn) -> bytes:
    """A case with a few bytes replaced, inserted or deleted: near-valid input reaches deep states."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        chunk = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b":", b"\x00"]))
        if kind == "replace":
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = chunk
        else:
            del data[at : at + len(chunk)]
    return bytes(data)


ANY_BYTES = st.binary(max_size=2048) | mutated_case()


def _check_any(data: bytes, piece_bytes: int | None, reader: str) -> Outcome:
    outcome = parse(data, piece_bytes, reader=reader)
    assert outcome in ("message", "closed") or outcome in ALLOWED_PARSER_STATUSES, outcome
    return outcome


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ANY_BYTES, piece_bytes=st.none() | st.integers(1, 64))
@example(data=b"", piece_bytes=None)
@example(data=b"\r\n\r\n", piece_bytes=1)
@example(data=b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", piece_bytes=None)
def test_h31_any_bytes_give_a_message_none_or_a_client_status(
    data: bytes, piece_bytes: int | None, reader: str
) -> None:
    _check_any(data, piece_bytes, reader)


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ANY_BYTES)
def test_h31_byte_at_a_time_agrees_with_whole(data: bytes, reader: str) -> None:
    """Where a message starts, the verdict does not depend on how the bytes were cut."""
    whole, bytewise = parse(data, reader=reader), parse(data, 1, reader=reader)
    _check_any(data, 1, reader)
    if whole == "message" or bytewise == "message":
        assert whole == bytewise, (whole, bytewise)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ANY_BYTES, piece_bytes=st.none() | st.integers(1, 64))
@example(data=b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab", piece_bytes=None)
def test_h31_the_core_gives_the_legacy_verdict(data: bytes, piece_bytes: int | None) -> None:
    """The one core refuses exactly what wire.http refused, with the same status."""
    assert parse(data, piece_bytes, reader="core") == parse(data, piece_bytes, reader="legacy")
