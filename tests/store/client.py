"""Small blocking HTTP clients for the store tests: http.client bound to a source address, and raw bytes."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

TIMEOUT_S = 8.0


def request(
    address: tuple[str, int],
    source: str,
    method: str,
    target: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request; a dict/list body is sent as JSON, bytes as they are. Returns (status, headers, parsed body)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(*address, timeout=TIMEOUT_S, source_address=(source, 0))
    sent_headers = dict(headers or {})
    if isinstance(body, dict | list):
        body = json.dumps(body).encode()
        sent_headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, target, body=body, headers=sent_headers)
        response = conn.getresponse()
        raw = response.read()
        parsed = json.loads(raw) if response.getheader("Content-Type", "").startswith("application/json") else raw
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        if own:
            conn.close()


def connect(address: tuple[str, int], source: str) -> socket.socket:
    sock = socket.create_connection(address, timeout=TIMEOUT_S, source_address=(source, 0))
    return sock


def read_all(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    try:
        while len(data) < limit and (chunk := sock.recv(65536)):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
