"""One bounded logger for every hop and runtime (trio, asyncio, threads): JSON lines, rotated, floods summarised.

Theory of operation
-------------------
A hop's log is one JSON object per line (`log(hop, event, **fields)`), or lines
it rendered itself (`write_lines`, the resolver's fast path).  Every line goes
through the process's one `Sink`:

- where: the file given by `configure` (a hop gets it as `--log FILE`, see
  runtime/cli_args.py); before that, or without `--log`, stdout, so a hop run
  by hand logs to its terminal;
- size-bounded: a line that would take the file past `max_bytes` first
  rotates it, as logrotate does: FILE.<keep-1> becomes FILE.<keep> (the oldest
  is removed), ..., FILE becomes FILE.1, and a new FILE is opened.  A hop's log
  never holds more than (keep + 1) * max_bytes.  Rotation happens between
  lines, so every file holds whole lines (trace/logs.py reads FILE, then
  FILE.1, ...).  Only a regular file rotates: /dev/null, /dev/full or a pipe
  is written as it is;
- never fatal: a write that fails (disk full, I/O error, a reader gone) loses
  that line and counts it; the next line that gets through is preceded by a
  `log_lines_lost` line with the count.  Serving matters more than logging;
- floods summarised: the events in `REPEATED_EVENTS` (bad requests, refused
  peers, read timeouts: what a flood makes thousands of), and any line logged
  with `log_repeated(..., key=...)`, are rate-limited per key: at most
  `burst` lines per `window_s`; the rest are counted, and one
  `{"event": "suppressed", "key": ..., "count": N, "message": "N more ... suppressed"}`
  line follows once the window is over (at the next line, at `flush_due`,
  which the runtimes call every second, or at exit).  Request lines, query
  lines and a firewall's accepted decisions, which `foobar-ref trace` joins on,
  are never limited.

One lock makes a line atomic against threads; lines are written with one
`os.write` each, unbuffered, so a killed hop loses nothing it logged.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOG_MAX_BYTES = 4 * 1024 * 1024
LOG_KEEP = 3  # rotated files kept beside the current one
RATE_WINDOW_S = 10.0
RATE_BURST = 100  # lines per key per window (a burst of bad input shows whole; a flood costs <= 10 lines/s)
MAX_RATE_KEYS = 1024
REOPEN_AFTER_S = 5.0  # a log that could not be opened is tried again after this long
REPEATED_EVENTS = frozenset(
    {
        "bad_request",
        "peer_refused",
        "connection_rejected",
        "handler_error",
        "accept_failed",
        "tcp_refused",
        "tcp_read_timeout",
        "tcp_write_timeout",
        "tcp_short_message",
        "udp_receive_failed",
        "udp_send_failed",
        "database_unavailable",
        "store_unavailable",
    }
)


@dataclass
class _Window:
    started: float
    written: int = 0
    suppressed: int = 0
    hop: str = ""


class Sink:
    """Where a process's log lines go: a rotated file, or stdout. Thread-safe; never raises on write."""

    def __init__(
        self,
        path: Path | None = None,
        max_bytes: int = LOG_MAX_BYTES,
        keep: int = LOG_KEEP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path, self.max_bytes, self.keep, self.clock = path, max_bytes, keep, clock
        self.lock = threading.Lock()
        self.fd, self.size, self.regular = 1, 0, False
        self.lost, self.lost_error = 0, ""
        self.reopen_at = 0.0
        self.windows: dict[str, _Window] = {}
        self.next_summary = float("inf")
        if path is not None:
            self.fd = -1
            self._open()

    # --- writing ----------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        """Write whole lines; False (and counted) when they were lost."""
        with self.lock:
            return self._write_locked(data)

    def _write_locked(self, data: bytes) -> bool:
        if self.fd < 0 and not self._reopen():
            return self._lose(data, "log file not open")
        if self.lost:
            notice = _render("log", "log_lines_lost", {"count": self.lost, "error": self.lost_error})
            if not self._put(notice):
                return self._lose(data, self.lost_error)
            self.lost = 0
        return self._put(data) or self._lose(data, self.lost_error)

    def _put(self, data: bytes) -> bool:
        if self.regular and self.size and self.size + len(data) > self.max_bytes:
            self._rotate()
            if self.fd < 0:
                return False
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as err:
            self.lost_error = os.strerror(err.errno) if err.errno else str(err)
            return False
        self.size += len(data)
        return True

    def _lose(self, data: bytes, error: str) -> bool:
        self.lost += max(1, data.count(b"\n"))
        self.lost_error = error
        return False

    # --- files ------------------------------------------------------------------
    def _open(self) -> None:
        assert self.path is not None
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            info = os.fstat(self.fd)
        except OSError as err:
            self.fd, self.lost_error = -1, os.strerror(err.errno or errno.EIO)
            self.reopen_at = self.clock() + REOPEN_AFTER_S
            return
        self.regular, self.size = stat.S_ISREG(info.st_mode), info.st_size

    def _reopen(self) -> bool:
        if self.path is None or self.clock() < self.reopen_at:
            return False
        self._open()
        return self.fd >= 0

    def _rotate(self) -> None:
        assert self.path is not None
        os.close(self.fd)
        self.fd = -1
        name = str(self.path)
        try:
            if self.keep <= 0:
                os.truncate(name, 0)
            else:
                for index in range(self.keep - 1, 0, -1):
                    if os.path.exists(f"{name}.{index}"):
                        os.replace(f"{name}.{index}", f"{name}.{index + 1}")
                os.replace(name, f"{name}.1")
        except OSError:
            pass  # keep writing to what is there: a full log beats a stopped hop
        self._open()

    def close(self) -> None:
        with self.lock:
            if self.path is not None and self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    # --- rate limits ------------------------------------------------------------
    def admit(self, key: str, hop: str) -> bool:
        """Whether a repeated line of `key` may be written now (False: it was counted instead)."""
        now = self.clock()
        with self.lock:
            window = self.windows.get(key)
            if window is None or now - window.started >= RATE_WINDOW_S:
                if window is not None and window.suppressed:
                    self._summarise(key, window)
                if window is None and len(self.windows) >= MAX_RATE_KEYS:
                    self._forget_oldest()
                window = self.windows[key] = _Window(now, hop=hop)
            if window.written < RATE_BURST:
                window.written += 1
                return True
            window.suppressed += 1
            self.next_summary = min(self.next_summary, window.started + RATE_WINDOW_S)
            return False

    def flush_due(self, everything: bool = False) -> None:
        """Write the `suppressed` lines of windows that are over (all of them with `everything`)."""
        now = self.clock()
        if not everything and now < self.next_summary:
            return
        with self.lock:
            self.next_summary = float("inf")
            for key, window in list(self.windows.items()):
                if not window.suppressed:
                    continue
                if everything or now - window.started >= RATE_WINDOW_S:
                    self._summarise(key, window)
                    self.windows[key] = _Window(now, hop=window.hop)
                else:
                    self.next_summary = min(self.next_summary, window.started + RATE_WINDOW_S)

    def _summarise(self, key: str, window: _Window) -> None:
        count = window.suppressed
        message = f"{count} more {key} lines suppressed in {RATE_WINDOW_S:g} s"
        self._write_locked(_render(window.hop, "suppressed", {"key": key, "count": count, "message": message}))
        window.suppressed = 0

    def _forget_oldest(self) -> None:
        oldest = min(self.windows, key=lambda k: self.windows[k].started)
        window = self.windows.pop(oldest)
        if window.suppressed:
            self._summarise(oldest, window)


def _render(hop: str, event: str, fields: dict[str, object]) -> bytes:
    record = {"ts": round(time.time(), 6), "hop": hop, "event": event, **fields}
    try:
        text = json.dumps(record, default=str)
    except (TypeError, ValueError):
        text = json.dumps({"ts": record["ts"], "hop": hop, "event": event, "fields": repr(fields)})
    return text.encode("utf-8", "replace") + b"\n"


_sink = Sink()


def configure(path: Path | None, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> Sink:
    """Send this process's log lines to `path` (None: stdout). Returns the sink (tests read its counters)."""
    global _sink
    previous, _sink = _sink, Sink(path, max_bytes, keep)
    previous.flush_due(everything=True)
    previous.close()
    return _sink


def sink() -> Sink:
    return _sink


def log(hop: str, event: str, **fields: object) -> None:
    """One JSON line; events in REPEATED_EVENTS are rate-limited per event name."""
    if event in REPEATED_EVENTS and not _sink.admit(event, hop):
        return
    _sink.flush_due()
    _sink.write(_render(hop, event, fields))


def log_repeated(hop: str, event: str, key: str, **fields: object) -> None:
    """A line of a kind a flood repeats (rejects, drops): rate-limited per `key`."""
    if not _sink.admit(key, hop):
        return
    _sink.flush_due()
    _sink.write(_render(hop, event, fields))


def write_lines(text: str) -> None:
    """Lines the caller rendered itself (each ending in a newline), in one write."""
    _sink.write(text.encode("utf-8", "replace"))


def announce(line: str) -> None:
    """A line for the supervisor on stdout (READY, a fatal error); never raises."""
    try:
        print(line, flush=True)
    except (OSError, ValueError):
        pass  # no stdout to write to: the hop serves anyway


def say_fatal(hop: str, message: str) -> None:
    """A fatal error: on stderr for whoever started the hop, and in the log."""
    try:
        print(f"{hop}: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    log(hop, "fatal", error=message)


atexit.register(lambda: _sink.flush_due(everything=True))
