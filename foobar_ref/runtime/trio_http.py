"""Reading one HTTP request on a trio stream, with the two timeouts a server needs.

- keep-alive idle: waiting for the first byte of the next request; expiry closes
  silently (HAProxy `timeout http-keep-alive`, no 408);
- request: once the first byte arrived, the whole message must arrive within
  `request_s` (HAProxy `timeout http-request`, the Slowloris defence): expiry
  answers 408.
"""

from __future__ import annotations

import h11
import trio

from foobar_ref.wire.http import MAX_BODY_BYTES, HttpError, Message, read_message


async def read_request(
    stream: trio.abc.ReceiveStream,
    conn: h11.Connection,
    idle_s: float,
    request_s: float,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Message | None:
    """One whole request, or None when the client closed or stayed idle past `idle_s`."""
    started = bool(conn.trailing_data[0])
    deadline = trio.current_time() + (request_s if started else idle_s)

    async def receive(max_bytes: int) -> bytes:
        nonlocal started, deadline
        with trio.move_on_at(deadline):
            data = await stream.receive_some(max_bytes)
            if not started and data:
                started = True
                deadline = trio.current_time() + request_s
            return bytes(data)
        if started:
            raise HttpError(408, f"request not complete within {request_s:g} s")
        raise _Idle

    try:
        return await read_message(conn, receive, max_body_bytes)
    except _Idle:
        return None


class _Idle(Exception):
    """No byte of a next request within the keep-alive idle time."""
