"""A replica's way out: relay its replication connection from the host's public address.

Theory of operation
-------------------
Firewalls filter by source address, so the replica's connection to its
primary must leave from the replica host's public address (web-02:
127.0.2.2).  MySQL says so with `CHANGE MASTER TO ... MASTER_BIND='ip'`, but
MariaDB 10.11 has no such option (the statement is a syntax error, 1064), and on
loopback the kernel picks 127.0.0.1 as the source of every connection to
127.0.0.0/8.  So a replica's hop starts this small relay before it becomes
mariadbd: the replica's I/O thread connects to the relay on the host's own
listen address, and the relay connects onwards to the primary's public address
with its source bound to `topology.source_for(replica)`.

The hop binds the listening socket itself (so a bind failure names the address
before anything starts), records the address in `<instance>/egress.json` for
`setup.configure`, and passes the socket to this process.  The relay asks the
kernel to send it SIGTERM when its parent (the hop, then mariadbd after execv)
exits, so stopping the server stops the relay.  Blocking sockets, two threads
per connection, every connect bounded, a bound on connections.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CONNECT_TIMEOUT_S = 4.0
CHUNK_BYTES = 64 * 1024
MAX_CONNECTIONS = 8
PR_SET_PDEATHSIG = 1


def log(hop: str, event: str, **fields: object) -> None:
    record = {"ts": round(time.time(), 6), "hop": hop, "event": event, **fields}
    print(json.dumps(record, default=str), flush=True)


def die_with_parent() -> None:
    """SIGTERM this process when the process that started it exits (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK_BYTES):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def _relay(hop: str, client: socket.socket, upstream: tuple[str, int], source: str, slots: threading.Semaphore) -> None:
    try:
        with client, socket.create_connection(upstream, CONNECT_TIMEOUT_S, source_address=(source, 0)) as server:
            server.settimeout(None)
            log(hop, "egress_connected", upstream=f"{upstream[0]}:{upstream[1]}", source=server.getsockname()[0])
            back = threading.Thread(target=_pump, args=(server, client), daemon=True)
            back.start()
            _pump(client, server)
            back.join()
    except OSError as err:
        log(hop, "egress_failed", upstream=f"{upstream[0]}:{upstream[1]}", source=source, error=str(err))
    finally:
        slots.release()


def serve(hop: str, listener: socket.socket, upstream: tuple[str, int], source: str, peers: set[str]) -> None:
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while True:
        client, (peer, _) = listener.accept()
        if peer not in peers or not slots.acquire(blocking=False):
            log(hop, "egress_refused", peer=peer)
            client.close()
            continue
        threading.Thread(target=_relay, args=(hop, client, upstream, source, slots), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m foobar_ref.mysql.egress")
    parser.add_argument("--hop", required=True)
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, already bound")
    parser.add_argument("--info", type=Path, required=True, help="egress.json written by the hop")
    parser.add_argument("--parent", type=int, required=True, help="pid of the hop (then mariadbd)")
    ns = parser.parse_args(argv)
    die_with_parent()
    if os.getppid() != ns.parent:
        return  # the server already exited before we could watch it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    info = json.loads(ns.info.read_text())
    listener = socket.socket(fileno=ns.fd)
    upstream = (info["upstream"][0], int(info["upstream"][1]))
    with contextlib.suppress(KeyboardInterrupt):
        serve(ns.hop, listener, upstream, info["source"], set(info["peers"]))


def start(hop: str, listen_ip: str, upstream: tuple[str, int], source: str, peers: list[str], info: Path) -> int:
    """Bind the relay's socket, write `info`, start the relay process; returns the relay's port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((listen_ip, 0))
        sock.listen(MAX_CONNECTIONS)
    except OSError as err:
        sock.close()
        raise OSError(f"egress: cannot listen on {listen_ip}:0: {err.strerror or err}") from None
    port = int(sock.getsockname()[1])
    record = {"listen": [listen_ip, port], "upstream": list(upstream), "source": source, "peers": peers}
    info.write_text(json.dumps(record))
    argv = [sys.executable, "-m", "foobar_ref.mysql.egress", "--hop", hop, "--fd", str(sock.fileno())]
    argv += ["--info", str(info), "--parent", str(os.getpid())]
    subprocess.Popen(argv, pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL)
    sock.close()
    return port


if __name__ == "__main__":
    main()
