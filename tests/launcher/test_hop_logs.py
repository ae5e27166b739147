"""A hop's own log, on real processes: rotation keeps at most the bound, and a full disk never stops it serving.

web-01 of a copy of the seed moved to 127.71.x.y, started alone (its store is not needed for /robots.txt).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.stackutil import connect_from, shifted_topology

INNER = ("127.71.12.1", 80)
SOURCE = "127.71.2.1"  # web-01's public address: where its firewall relays from
READY_TIMEOUT_S = 15.0
REQUESTS = 300


@contextmanager
def web(tmp: Path, *log_flags: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    topo = shifted_topology(tmp, 71)
    out = tmp / "web-01.out"
    argv = [sys.executable, "-m", "foobar_ref.web", "--topology", str(topo), "--hop", "web-01", "--state", str(tmp)]
    with open(out, "wb") as file:
        proc = subprocess.Popen([*argv, *log_flags], stdout=file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while b"READY" not in out.read_bytes() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert b"READY hop=web-01" in out.read_bytes(), out.read_text()
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)


def get(path: str = "/robots.txt") -> bytes:
    with connect_from(SOURCE, INNER) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_rotation_keeps_at_most_the_bound_of_whole_json_lines(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "web-01.log"
    log.parent.mkdir()
    with web(tmp_path, "--log", str(log), "--log-max-bytes", "4000", "--log-keep", "2") as (proc, out):
        for _ in range(REQUESTS):
            assert get().startswith(b"HTTP/1.1 200 ")
        proc.terminate()
        assert proc.wait(5) == 0
    files = sorted(p.name for p in log.parent.glob("web-01.log*"))  # beside it: web-01.access.log, its own
    assert files == ["web-01.log", "web-01.log.1", "web-01.log.2"]
    assert all((log.parent / name).stat().st_size <= 4000 for name in files)
    records = [json.loads(line) for name in files for line in (log.parent / name).read_text().splitlines()]
    assert {r["event"] for r in records} >= {"request", "stopped"}
    assert out.read_text().strip().splitlines() == [out.read_text().strip().splitlines()[0]]  # stdout: READY only


def test_a_hop_whose_log_is_dev_full_still_answers_and_stops_cleanly(tmp_path: Path) -> None:
    with web(tmp_path, "--log", "/dev/full") as (proc, out):
        for _ in range(20):
            assert get().startswith(b"HTTP/1.1 200 ")
        assert get("/nothing-here").startswith(b"HTTP/1.1 404 ")
        assert proc.poll() is None
        proc.terminate()
        assert proc.wait(5) == 0
    assert "Traceback" not in out.read_text()


def test_a_hop_whose_stdout_is_dev_full_serves_too(tmp_path: Path) -> None:
    """No --log: the log lines go to stdout, which is full; READY is lost, serving is not."""
    topo = shifted_topology(tmp_path, 71)
    argv = [
        sys.executable,
        "-m",
        "foobar_ref.web",
        "--topology",
        str(topo),
        "--hop",
        "web-01",
        "--state",
        str(tmp_path),
    ]
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen(argv, stdout=full, stderr=full)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                answer = get()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "web-01 never answered"
                time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert all(get().startswith(b"HTTP/1.1 200 ") for _ in range(20))
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
