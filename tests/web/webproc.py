"""web-01 as a real process on a copy of the seed moved to 127.70.x.y (shared by the web hop's test modules)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.stackutil import connect_from, shifted_topology

INNER = ("127.70.12.1", 80)
FIREWALL_SOURCE = "127.70.2.1"  # web-01's public address: where its firewall relays from
READY_TIMEOUT_S = 15.0


@contextmanager
def web_process(tmp: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Start web-01, wait for its READY line, yield (process, log file); kill it after if still running."""
    topo = shifted_topology(tmp, 70)
    log = tmp / "web-01.log"
    with open(log, "w") as out:  # a file, not a pipe: an unread pipe would stall the hop's logging
        proc = subprocess.Popen(
            [sys.executable, "-m", "foobar_ref.web", "--topology", str(topo), "--hop", "web-01", "--state", str(tmp)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "READY" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert "READY hop=web-01 listen=127.70.12.1:80" in log.read_text(), log.read_text()
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def exchange(raw: bytes, source: str = FIREWALL_SOURCE, half_close: bool = True) -> bytes:
    """Send `raw`, optionally shut our side, and read until the server closes."""
    with connect_from(source, INNER) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data
