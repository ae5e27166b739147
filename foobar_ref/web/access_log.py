"""The web server's access log file: one write per line, rotated by size, a bounded number of files.

Theory of operation
-------------------
Lines (format: observe/access_log.py) go to `<state>/logs/<hop>.access.log`
with one `os.write` each on an `O_APPEND` descriptor: nothing is buffered in
this process, so a reader following the file (`tail -F`, the monitoring client)
sees every request as soon as it was answered, and a crash loses nothing.

When the next line would take the file past `max_bytes`, the files shift as
logrotate's and Python's RotatingFileHandler do: `.N-1` -> `.N` (the oldest,
`.backups`, is overwritten), ..., the live file -> `.1`, and a new live file is
opened.  A follower holding the old file keeps reading it to its end, then
opens the new one by name.

Python's `logging.handlers.RotatingFileHandler` does the same job but costs a
LogRecord, a formatter pass, a flush and a `tell()` per line on the request
path; this writer is a size check and one system call.  Writing never fails a
request: an error (disk full, folder removed) is counted and reported once.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_BACKUPS = 3


class AccessLog:
    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
        if max_bytes < 1 or backups < 1:
            raise ValueError("an access log needs max_bytes >= 1 and at least one backup file")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.errors = 0
        self.last_error: OSError | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size

    def write(self, line: bytes) -> None:
        try:
            if self._fd < 0:
                self._open()  # a rotation failed half-way: try again with whatever file is there
            elif self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            os.write(self._fd, line)
            self._size += len(line)
        except OSError as err:
            self.errors += 1
            self.last_error = err

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        for index in range(self.backups - 1, 0, -1):
            older = self._backup(index)
            if older.exists():
                older.replace(self._backup(index + 1))
        if self.path.exists():
            self.path.replace(self._backup(1))
        self._open()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
