"""Helpers for tests that run whole stacks as real processes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from foobar_ref.topology import default_path

CLI = [sys.executable, "-m", "foobar_ref"]
UP_TIMEOUT_S = 240


def cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)


def status(state: Path) -> dict:
    done = cli("status", "--json", "--state", str(state))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def shifted_topology(tmp: Path, second_octet: int) -> Path:
    """The seed topology (and its zone, hints and rule files) moved to 127.<octet>.x.y.

    So a second stack can run beside the first without sharing an address.
    """
    for source in default_path().parent.iterdir():
        if source.is_file():
            text = re.sub(
                r"\b127\.0\.(\d+)\.(\d+)\b", lambda m: f"127.{second_octet}.{m[1]}.{m[2]}", source.read_text()
            )
            (tmp / source.name).write_text(text)
    return tmp / default_path().name


def connect_from(source_ip: str, address: tuple[str, int], timeout_s: float = 3.0) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout_s)
    sock.bind((source_ip, 0))
    sock.connect(address)
    return sock


def refused_or_closed(source_ip: str, address: tuple[str, int]) -> str:
    """What a client sees when it tries to talk: 'reset', 'closed', 'silent' or 'answered'."""
    try:
        sock = connect_from(source_ip, address)
    except (ConnectionRefusedError, ConnectionResetError):
        return "reset"  # the proxy's RST may arrive before connect() returns
    with sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = sock.recv(1024)
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "silent"
        return "answered" if data else "closed"
