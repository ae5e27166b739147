"""Capture: the bytes a firewall relays, per connection and direction, as plain files.

Layout of a capture folder (one per firewall)::

    000001_127.0.0.10_40000_to_127.0.1.1_443.c2s   client -> server, as relayed (first 4 MiB)
    000001_127.0.0.10_40000_to_127.0.1.1_443.s2c   server -> client
    connections.jsonl                              the index, one JSON object per line

The file name carries the connection id and the client's 4-tuple (source, and
the public address it connected to), so `ls` alone tells the story.  The index
gets an `"event": "opened"` line when a relayed connection has its upstream
(with the upstream 4-tuple) and a `"closed"` line when any connection ends (with
action, rule, byte totals, start and end): rejected and dropped connections get
only the latter.  Files are written unbuffered as bytes pass, so a reader sees a
live connection's bytes without waiting for it to end.

`read_capture(folder)` reads it all back as `CapturedConnection` records.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from foobar_ref.firewall.core import Connection, Direction

MAX_FILE_BYTES = 4 * 1024 * 1024
INDEX_NAME = "connections.jsonl"
MAX_INDEX_LINE_BYTES = 64 * 1024
MAX_READ_BYTES = 64 * 1024 * 1024  # the reader's bound per file, whatever cap the writer had
_FILE_RE = re.compile(r"^(\d+)_([0-9.]+)_(\d+)_to_([0-9.]+)_(\d+)\.(c2s|s2c)$")


def file_name(conn: Connection, direction: Direction) -> str:
    (sip, sport), (dip, dport) = conn.src, conn.dst
    return f"{conn.id:06d}_{sip}_{sport}_to_{dip}_{dport}.{direction.suffix}"


class ConnectionCapture:
    """The two files of one relayed connection, opened when their first bytes pass."""

    def __init__(self, folder: Path, conn: Connection, max_file_bytes: int) -> None:
        self.folder = folder
        self.conn = conn
        self.max_file_bytes = max_file_bytes
        self.files: dict[Direction, BinaryIO] = {}
        self.written = dict.fromkeys(Direction, 0)
        self.error = ""

    def write(self, direction: Direction, data: bytes | memoryview) -> None:
        room = self.max_file_bytes - self.written[direction]
        if room <= 0 or self.error:
            return
        try:
            out = self.files.get(direction)
            if out is None:
                path = self.folder / file_name(self.conn, direction)
                out = self.files[direction] = open(path, "wb", buffering=0)  # noqa: SIM115
            chunk = data[:room]
            out.write(chunk)
        except OSError as err:  # a full disk stops the capture, never the relay
            self.error = f"{err.strerror or err}"
            return
        self.written[direction] += len(chunk)

    def close(self) -> None:
        for out in self.files.values():
            out.close()
        self.files.clear()


class Capture:
    """One firewall's capture folder: per-connection files plus the index."""

    def __init__(self, folder: Path, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.first_id = _last_id(folder) + 1  # a restarted firewall does not overwrite earlier files
        self.index = open(folder / INDEX_NAME, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def opened(self, conn: Connection) -> ConnectionCapture:
        self._line("opened", conn)
        return ConnectionCapture(self.folder, conn, self.max_file_bytes)

    def closed(self, conn: Connection) -> None:
        self._line("closed", conn)

    def close(self) -> None:
        self.index.close()

    def _line(self, event: str, conn: Connection) -> None:
        with contextlib.suppress(OSError):  # a full disk loses index lines, never a connection
            self.index.write(json.dumps({"event": event, **conn.record()}) + "\n")


def _last_id(folder: Path) -> int:
    last = 0
    for path in folder.iterdir():
        if match := _FILE_RE.match(path.name):
            last = max(last, int(match[1]))
    for record in _index_lines(folder / INDEX_NAME):
        last = max(last, record["id"])
    return last


def _index_lines(path: Path) -> list[dict]:  # type: ignore[type-arg]
    """Index records with an integer id; a torn or foreign line is skipped, never fatal."""
    records = []
    try:
        with open(path, "rb") as index:
            for raw in index:
                if len(raw) > MAX_INDEX_LINE_BYTES:
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("id"), int):
                    records.append(record)
    except FileNotFoundError:
        pass
    return records


@dataclass
class CapturedConnection:
    """One connection as the capture folder tells it; `end` is None while it is still open."""

    id: int
    src: str  # "ip:port" of the client
    dst: str  # "ip:port" the client connected to (the guarded host's public address)
    upstream: str | None  # "ip:port->ip:port" of the relayed connection, if one was made
    action: str
    rule: str
    bytes_in: int | None  # totals relayed (client -> server), known once closed
    bytes_out: int | None
    start: float | None
    end: float | None
    c2s: bytes = b""  # the captured bytes (at most MAX_FILE_BYTES each way)
    s2c: bytes = b""

    @property
    def truncated(self) -> bool:
        return (self.bytes_in or 0) > len(self.c2s) or (self.bytes_out or 0) > len(self.s2c)


def read_capture(folder: Path) -> list[CapturedConnection]:
    """Every connection in a capture folder, by id, with the bytes each way."""
    records: dict[int, CapturedConnection] = {}
    for line in _index_lines(Path(folder) / INDEX_NAME):
        known = records.get(line["id"])
        record = _from_index(line)
        if known is not None and record.end is None:
            continue  # an "opened" line after its "closed" one (should not happen): keep the closed one
        records[record.id] = record
    for path in sorted(Path(folder).iterdir()):
        match = _FILE_RE.match(path.name)
        if match is None:
            continue
        conn_id = int(match[1])
        if conn_id not in records:
            src, dst = f"{match[2]}:{match[3]}", f"{match[4]}:{match[5]}"
            records[conn_id] = CapturedConnection(conn_id, src, dst, None, "accept", "?", None, None, None, None)
        with open(path, "rb") as captured:
            data = captured.read(MAX_READ_BYTES)
        if match[6] == "c2s":
            records[conn_id].c2s = data
        else:
            records[conn_id].s2c = data
    return [records[k] for k in sorted(records)]


def _from_index(line: dict) -> CapturedConnection:  # type: ignore[type-arg]
    def text(key: str) -> str:
        return str(line.get(key) or "")

    def number(key: str) -> float | None:
        value = line.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    bytes_in, bytes_out = number("bytes_in"), number("bytes_out")
    closed = line.get("event") == "closed"
    return CapturedConnection(
        id=line["id"],
        src=text("src"),
        dst=text("dst"),
        upstream=line.get("upstream") if isinstance(line.get("upstream"), str) else None,
        action=text("action"),
        rule=text("rule"),
        bytes_in=int(bytes_in) if closed and bytes_in is not None else None,
        bytes_out=int(bytes_out) if closed and bytes_out is not None else None,
        start=number("start"),
        end=number("end") if closed else None,
    )
