"""The web server's keep-alive client to its store (plain HTTP/1.1 on the same host).

A small pool of idle connections: a request takes one (or opens one from the
host's address), and gives it back when both sides finished the exchange.  A
reused connection that the store closed while idle is retried once on a fresh
one, since nothing reached the store.
"""

from __future__ import annotations

import h11
import trio

from foobar_ref.runtime.trio_shell import connect_tcp
from foobar_ref.wire.http import HttpError, Message, new_connection, read_message, request_bytes

STORE_TIMEOUT_S = 8.0  # above the store's own 5 s query timeout, so the store answers 503 first
MAX_IDLE = 16


class StoreUnavailable(Exception):
    pass


class StoreClient:
    def __init__(self, address: tuple[str, int], source_ip: str) -> None:
        self.address = address
        self.source_ip = source_ip
        self.idle: list[tuple[trio.SocketStream, h11.Connection]] = []

    async def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> Message:
        for attempt in range(2):
            reused = bool(self.idle)
            stream, conn = self.idle.pop() if reused else (await self._open())
            try:
                with trio.fail_after(STORE_TIMEOUT_S):
                    await stream.send_all(request_bytes(conn, method, target, headers, body))
                    reply = await read_message(conn, stream.receive_some)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, HttpError) as err:
                await trio.aclose_forcefully(stream)
                if reused and attempt == 0:
                    continue
                raise StoreUnavailable(f"store at {self.address[0]}:{self.address[1]}: {err!r}") from None
            except trio.TooSlowError:
                await trio.aclose_forcefully(stream)
                raise StoreUnavailable(f"store did not answer within {STORE_TIMEOUT_S:g} s") from None
            if reply is None:
                await trio.aclose_forcefully(stream)
                if reused and attempt == 0:
                    continue
                raise StoreUnavailable("store closed the connection without answering")
            self._give_back(stream, conn)
            return reply
        raise StoreUnavailable("store unavailable")

    async def _open(self) -> tuple[trio.SocketStream, h11.Connection]:
        try:
            stream = await connect_tcp(*self.address, source_ip=self.source_ip)
        except (OSError, trio.TooSlowError) as err:
            raise StoreUnavailable(f"cannot connect to store at {self.address[0]}:{self.address[1]}: {err}") from None
        return stream, new_connection(h11.CLIENT)

    def _give_back(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE and len(self.idle) < MAX_IDLE:
            conn.start_next_cycle()
            self.idle.append((stream, conn))
        else:
            stream.socket.close()
