"""The one bounded logger: rotation by size, floods summarised, a full disk never raising; trace reads rotated logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from foobar_ref.observe import log as logger
from foobar_ref.observe.log import RATE_BURST, RATE_WINDOW_S, Sink
from foobar_ref.trace.logs import read_log


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rotation_keeps_at_most_keep_files_of_whole_lines_and_trace_reads_across_them(tmp_path: Path) -> None:
    path = tmp_path / "web-01.log"
    sink = Sink(path, max_bytes=2000, keep=2)
    lines = [json.dumps({"event": "request", "n": n, "pad": "x" * 40}) + "\n" for n in range(200)]
    for line in lines:
        assert sink.write(line.encode())
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["web-01.log", "web-01.log.1", "web-01.log.2"]
    assert all((tmp_path / name).stat().st_size <= 2000 for name in files)
    kept = records(path.with_name("web-01.log.2")) + records(path.with_name("web-01.log.1")) + records(path)
    numbers = [r["n"] for r in kept]
    assert numbers == list(range(numbers[0], 200))  # the newest lines, in order, none cut
    assert [r["n"] for r in read_log(path, tail_bytes=100_000)] == numbers
    assert [r["n"] for r in read_log(path, tail_bytes=1500)][-1] == 199


def test_a_flood_of_one_event_is_summarised_and_other_events_pass(tmp_path: Path) -> None:
    clock = Clock()
    sink = Sink(tmp_path / "lb.log", clock=clock)
    written = 0
    for _ in range(500):
        if sink.admit("bad_request", "lb-01"):
            written += 1
            sink.write(b'{"event": "bad_request"}\n')
    assert written == RATE_BURST
    assert sink.admit("peer_refused", "lb-01")  # each key has its own window
    sink.flush_due()
    assert not any(r["event"] == "suppressed" for r in records(tmp_path / "lb.log"))  # the window is not over
    clock.now += RATE_WINDOW_S
    sink.flush_due()
    summary = [r for r in records(tmp_path / "lb.log") if r["event"] == "suppressed"]
    assert summary == [summary[0]] and summary[0]["count"] == 500 - RATE_BURST and summary[0]["key"] == "bad_request"
    assert summary[0]["message"].startswith(f"{500 - RATE_BURST} more bad_request lines suppressed")
    assert sink.admit("bad_request", "lb-01")  # a new window


def test_log_limits_repeated_events_but_never_request_lines(tmp_path: Path) -> None:
    previous = logger.sink()
    try:
        logger.configure(tmp_path / "web.log")
        for n in range(3 * RATE_BURST):
            logger.log("web-01", "bad_request", n=n)
            logger.log("web-01", "request", n=n, trace_id=f"t{n}")
        logger.configure(None)  # flushes the summary of the old sink
    finally:
        logger._sink = previous
    events = [r["event"] for r in records(tmp_path / "web.log")]
    assert events.count("request") == 3 * RATE_BURST and events.count("bad_request") == RATE_BURST
    assert events[-1] == "suppressed"


def test_a_full_disk_loses_lines_without_raising_and_says_so_when_writing_works_again(tmp_path: Path) -> None:
    full = Sink(Path("/dev/full"))
    assert not full.write(b'{"event": "request"}\n') and not full.write(b"a\nb\n")
    assert full.lost == 3 and "space" in full.lost_error.lower()
    target = tmp_path / "back.log"
    os.close(full.fd)
    full.fd, full.regular, full.size = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND), True, 0
    assert full.write(b'{"event": "request"}\n')
    first, second = records(target)
    assert first["event"] == "log_lines_lost" and first["count"] == 3 and second["event"] == "request"


def test_a_log_that_cannot_be_opened_is_not_fatal(tmp_path: Path) -> None:
    sink = Sink(tmp_path / "missing-folder" / "x.log")
    assert sink.fd == -1 and not sink.write(b"line\n") and sink.lost == 1
