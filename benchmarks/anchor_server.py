"""The benchmark's anchor: a bare trio loop that answers every request with fixed bytes.

It reads until the end of a request head and sends a canned 200, parsing nothing, so its CPU per
request is the floor for a trio server on this machine; every hop is reported as a multiple of it.

    python benchmarks/anchor_server.py IP PORT
"""

from __future__ import annotations

import socket
import sys

import trio

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
MAX_HEAD_BYTES = 16384
IDLE_TIMEOUT_S = 30.0


async def answer(stream: trio.SocketStream) -> None:
    pending = b""
    while True:
        with trio.move_on_after(IDLE_TIMEOUT_S):
            data = await stream.receive_some(65536)
        if not data:
            return
        pending += data
        while b"\r\n\r\n" in pending:
            _, _, pending = pending.partition(b"\r\n\r\n")
            await stream.send_all(RESPONSE)
        if len(pending) > MAX_HEAD_BYTES:
            return


async def main(ip: str, port: int) -> None:
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await sock.bind((ip, port))
    sock.listen(1024)
    print("READY", flush=True)
    await trio.serve_listeners(answer, [trio.SocketListener(sock)])


if __name__ == "__main__":
    try:
        trio.run(main, sys.argv[1], int(sys.argv[2]))
    except KeyboardInterrupt:
        pass
