"""Per-hop process figures for every hop on the client's host, found through the supervisor's stack file.

The supervisor (launcher/supervise.py) rewrites `<state>/stack.json` after every
start with each hop's pid and the process's start time (psutil's create_time).
A pid is taken as the hop's only while its start time still matches, as
`supervise.Running.alive` checks, so a recycled pid is never reported as a hop.
The file is read again only when it changed (size or mtime).

The figures come from `/proc/<pid>/stat` (one read: state, CPU ticks, threads,
start, resident pages) and the length of `/proc/<pid>/fd`, as the Prometheus
client libraries' own process collectors read them (process_cpu_seconds_total,
process_resident_memory_bytes...); CPU, threads, fds and the start time are
computed as psutil computes them (a test holds them equal; the start time must
match the one the supervisor wrote), in about a third of psutil's time: on this
kind of machine psutil's per-call overhead made this source alone a fifth of
the client's CPU per scrape.

  foobar_process_cpu_seconds_total{hop}      counter, user + system, the process only
  foobar_process_resident_memory_bytes{hop}  gauge
  foobar_process_open_fds{hop}               gauge
  foobar_process_threads{hop}                gauge
  foobar_process_start_time_seconds{hop}     gauge, unix time: a change is a restart
  foobar_hop_restarts_total{hop}             counter, restarts by the supervisor (its stack file's count)

`alive` says, per hop, True (running), False (its process is gone or is another
one) or None (the stack file does not name it: a hop started by hand).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

START_TIME_TOLERANCE_S = 0.01  # as supervise.Running.alive
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MAX_STACK_FILE_BYTES = 1024 * 1024


@dataclass
class ProcessReport:
    families: list[Metric]
    alive: dict[str, bool | None] = field(default_factory=dict)


class ProcessSource:
    name = "processes"

    def __init__(self, stack_file: Path, hops: tuple[str, ...]) -> None:
        self.stack_file = stack_file
        self.hops = hops
        self._stack_key: tuple[int, int] | None = None
        self._entries: dict[str, tuple[int, float]] = {}
        self._restarts: dict[str, int] = {}

    def collect(self) -> ProcessReport:
        entries = self._read_stack()
        cpu = CounterMetricFamily("foobar_process_cpu_seconds", "CPU time of the hop's process (user + system)",
                                  labels=["hop"])  # fmt: skip
        rss = GaugeMetricFamily("foobar_process_resident_memory_bytes", "Resident memory of the hop's process",
                                labels=["hop"])  # fmt: skip
        fds = GaugeMetricFamily("foobar_process_open_fds", "Open file descriptors of the hop's process", labels=["hop"])
        threads = GaugeMetricFamily("foobar_process_threads", "Threads of the hop's process", labels=["hop"])
        started = GaugeMetricFamily("foobar_process_start_time_seconds", "When the hop's process started, unix time",
                                    labels=["hop"])  # fmt: skip
        figure_families: tuple[CounterMetricFamily | GaugeMetricFamily, ...] = (cpu, rss, fds, threads, started)
        restarts = CounterMetricFamily("foobar_hop_restarts", "Restarts of the hop by the supervisor", labels=["hop"])
        for hop in self.hops:
            if hop in self._restarts:
                restarts.add_metric([hop], self._restarts[hop])
        report = ProcessReport([*figure_families, restarts])
        boot_s = psutil.boot_time()
        for hop in self.hops:
            entry = entries.get(hop)
            if entry is None:
                report.alive[hop] = None
                continue
            figures = process_figures(entry[0], entry[1], boot_s)
            report.alive[hop] = figures is not None
            if figures is not None:
                for family, value in zip(figure_families, figures, strict=True):
                    family.add_metric([hop], value)
        return report

    def _read_stack(self) -> dict[str, tuple[int, float]]:
        """hop -> (pid, start time) from the stack file, read again only when it changed."""
        try:
            stat = os.stat(self.stack_file)
        except OSError:
            self._stack_key, self._entries = None, {}
            return self._entries
        key = (stat.st_mtime_ns, stat.st_size)
        if key != self._stack_key and stat.st_size <= MAX_STACK_FILE_BYTES:
            parsed = _parse_stack(self.stack_file)
            if parsed is not None:  # else keep what was known, and read it again next time
                self._stack_key, (self._entries, self._restarts) = key, parsed
        return self._entries


def process_figures(pid: int, started_s: float, boot_s: float) -> tuple[float, ...] | None:
    """(cpu seconds, resident bytes, open fds, threads, start time) of `pid`, None unless it is still the
    process that started at `started_s` and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None  # gone (or not ours to read)
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name before it may hold spaces and parentheses
    try:
        start_s = int(fields[19]) / CLOCK_TICKS + boot_s
        if abs(start_s - started_s) >= START_TIME_TOLERANCE_S or fields[0] == b"Z":
            return None
        cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return cpu_s, float(int(fields[21]) * PAGE_BYTES), float(fds), float(fields[17]), start_s
    except (IndexError, ValueError):
        return None  # not the layout proc(5) describes


def _parse_stack(path: Path) -> tuple[dict[str, tuple[int, float]], dict[str, int]] | None:
    """(hop -> (pid, start time), hop -> restarts) from the stack file; None when it cannot be read."""
    try:
        hops = json.loads(path.read_text())["hops"]
        entries = {str(h["name"]): (int(h["pid"]), float(h["started"])) for h in hops}
        restarts = {str(h["name"]): int(h.get("restarts", 0)) for h in hops}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return entries, restarts
