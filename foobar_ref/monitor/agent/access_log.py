"""QPS the log way: follow a web server's access log as `tail -F` does, and count its lines.

Theory of operation
-------------------
`LogFollower` holds the file open and remembers its identity (device, inode)
and how far it has read.  At each scrape, `read_lines()`:

1. if the held file is now shorter than what was read, it was truncated in
   place (copytruncate): start again at its beginning;
2. reads what was appended, at most `max_read_bytes` (the rest waits for the
   next scrape, so one scrape never reads a huge backlog);
3. at the end of the held file, looks at the name: a different file there
   means the log was rotated (the web server renamed it to `.1`); everything
   written to the old file has been read by now, so the new file is opened and
   read from its beginning, within what is left of the bound.

On the very first open the file is read from its end, as `tail -F` does: what
was logged before the client started is not counted again after a restart.  A
file that appears later (the web server started after the client) is read from
its beginning.  A trailing line without its newline is kept for the next read
(at most `MAX_LINE_BYTES`).  Two rotations between two scrapes would lose the
file in the middle, as with `tail -F`; at the default 16 MiB per file that is
about 100 000 requests in one scrape interval.

`AccessLogSource` turns the lines into `foobar_access_log_requests_total{hop,code}`
and, apart, `foobar_access_log_health_checks_total{hop,code}` (GET /health),
counted since the client started.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from foobar_ref.observe.access_log import parse_line

MAX_READ_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024


class LogFollower:
    def __init__(self, path: Path, max_read_bytes: int = MAX_READ_BYTES) -> None:
        self.path = path
        self.max_read_bytes = max_read_bytes
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._started = False  # the first open reads from the end
        self.rotations = 0
        self.truncations = 0
        self.dropped_lines = 0

    def read_lines(self) -> list[bytes]:
        """Whole lines appended since the last call (bounded), following rotation and truncation."""
        if self._fd < 0 and not self._open(from_end=not self._started):
            self._started = True
            return []
        self._started = True
        if os.fstat(self._fd).st_size < self._offset:
            self.truncations += 1
            self._offset, self._partial = 0, b""
        data = self._read(self.max_read_bytes)
        if len(data) < self.max_read_bytes and self._rotated():
            self.rotations += 1
            if self._partial:
                self.dropped_lines += 1  # the writer writes whole lines: an unfinished one is junk
            self._partial = b""
            self.close()
            if self._open(from_end=False):
                data += self._read(self.max_read_bytes - len(data))
        return self._lines(data)

    def _open(self, from_end: bool) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        stat = os.fstat(fd)
        self._fd, self._identity = fd, (stat.st_dev, stat.st_ino)
        self._offset = stat.st_size if from_end else 0
        return True

    def _read(self, limit: int) -> bytes:
        chunks = []
        while limit > 0 and (chunk := os.pread(self._fd, min(limit, 1 << 20), self._offset)):
            chunks.append(chunk)
            self._offset += len(chunk)
            limit -= len(chunk)
        return b"".join(chunks)

    def _rotated(self) -> bool:
        try:
            stat = os.stat(self.path)
        except OSError:
            return False  # renamed and not yet created again: keep the old one until the new one is there
        return (stat.st_dev, stat.st_ino) != self._identity

    def _lines(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_BYTES:
            self.dropped_lines += 1
            self._partial = b""
        return lines

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class AccessLogSource:
    """The counts of one web server's access log."""

    def __init__(self, hop: str, path: Path, max_read_bytes: int = MAX_READ_BYTES) -> None:
        self.hop = hop
        self.name = f"access_log/{hop}"
        self.follower = LogFollower(path, max_read_bytes)
        self.requests: dict[str, int] = {}
        self.health_checks: dict[str, int] = {}
        self.unparsed = 0

    def collect(self) -> list[Metric]:
        """Blocking (runs in a worker thread): read what was appended, count it, return every count."""
        self._count(self.follower.read_lines())
        return self._families()

    def _count(self, lines: list[bytes]) -> None:
        requests, health = self.requests, self.health_checks
        for line in lines:
            parsed = parse_line(line)
            if parsed is None:
                self.unparsed += 1
                continue
            code, is_health = parsed
            counts = health if is_health else requests
            counts[code] = counts.get(code, 0) + 1

    def _families(self) -> list[Metric]:
        labels = ["hop", "code"]
        requests = CounterMetricFamily(
            "foobar_access_log_requests", "User requests counted from the web server's access log", labels=labels
        )
        health = CounterMetricFamily(
            "foobar_access_log_health_checks", "GET /health requests counted from the access log", labels=labels
        )
        for family, counts in ((requests, self.requests), (health, self.health_checks)):
            for code, count in sorted(counts.items()):
                family.add_metric([self.hop, code], count)
        follower = self.follower
        skipped = CounterMetricFamily(
            "foobar_access_log_unreadable_lines",
            "Access log lines that were not of the expected format",
            labels=["hop"],
        )
        skipped.add_metric([self.hop], self.unparsed + follower.dropped_lines)
        reopened = CounterMetricFamily(
            "foobar_access_log_reopened", "Times the access log was followed to a new file", labels=["hop", "reason"]
        )
        reopened.add_metric([self.hop, "rotated"], follower.rotations)
        reopened.add_metric([self.hop, "truncated"], follower.truncations)
        return [requests, health, skipped, reopened]
