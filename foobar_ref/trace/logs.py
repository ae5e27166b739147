"""Read the hops' JSON-line logs (DIR/logs/<hop>.log): the recent end of each, one dict per line.

Lines that are not a JSON object (the READY line, a traceback) are skipped.
Only the last `tail_bytes` of a log are read, so a long-running stack's logs
cost the same as a fresh one's; a trace looks at the last few seconds anyway.
A hop's log is rotated by size (observe/log.py: <hop>.log, then <hop>.log.1,
<hop>.log.2, ... older and older, each holding whole lines), so when the
current file holds less than `tail_bytes` the rest comes from its predecessors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TAIL_BYTES = 4 * 1024 * 1024


def parse_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


MAX_ROTATED = 100


def read_log(path: Path, tail_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The records of one log and its rotated predecessors, oldest first; [] when none exists (yet)."""
    chunks: list[bytes] = []
    left = tail_bytes
    for index in range(MAX_ROTATED + 1):
        data, whole = _tail(path if index == 0 else path.with_name(f"{path.name}.{index}"), left)
        if data is None:
            break
        if not whole:
            data = data.split(b"\n", 1)[-1]  # the first line was cut: drop it
        chunks.append(data)
        left -= len(data)
        if left <= 0 or not whole:
            break
    return parse_lines(b"".join(reversed(chunks)).decode("utf-8", errors="replace"))


def _tail(path: Path, limit: int) -> tuple[bytes | None, bool]:
    """The last `limit` bytes of a file and whether that is all of it; (None, False) when it cannot be read."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(size - limit, 0))
            return file.read(limit), size <= limit
    except OSError:
        return None, False


def read_logs(log_dir: Path, hops: Iterable[str], tail_bytes: int = TAIL_BYTES) -> dict[str, list[dict[str, Any]]]:
    return {hop: read_log(log_dir / f"{hop}.log", tail_bytes) for hop in hops}
