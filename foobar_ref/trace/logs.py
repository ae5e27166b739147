"""Read the hops' JSON-line logs (DIR/logs/<hop>.log): the recent end of each, one dict per line.

Lines that are not a JSON object (the READY line, a traceback) are skipped.
Only the last `tail_bytes` of a log are read, so a long-running stack's logs
cost the same as a fresh one's; a trace looks at the last few seconds anyway.
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


def read_log(path: Path, tail_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The records of one log; [] when it does not exist (yet)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(size - tail_bytes, 0))
            data = file.read(tail_bytes)
    except OSError:
        return []
    if size > tail_bytes:
        data = data.split(b"\n", 1)[-1]  # the first line was cut: drop it
    return parse_lines(data.decode("utf-8", errors="replace"))


def read_logs(log_dir: Path, hops: Iterable[str], tail_bytes: int = TAIL_BYTES) -> dict[str, list[dict[str, Any]]]:
    return {hop: read_log(log_dir / f"{hop}.log", tail_bytes) for hop in hops}
