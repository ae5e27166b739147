"""Host metrics under node_exporter's names, types, labels, units and help texts, read with psutil and os.

Checked against node_exporter's collectors (cpu_linux.go, loadavg.go, meminfo.go,
netdev_common.go, filesystem_common.go, stat_linux.go, time.go), so dashboards and
queries written for node_exporter read these unchanged:

  node_cpu_seconds_total{cpu,mode}        counter, /proc/stat per CPU: user nice system idle
                                          iowait irq softirq steal (guest time is inside user/nice)
  node_load1 node_load5 node_load15       gauges
  node_memory_MemTotal_bytes              gauge, /proc/meminfo kB x 1024
  node_memory_MemAvailable_bytes          gauge
  node_network_receive_bytes_total{device}, node_network_transmit_bytes_total{device}   counters
  node_filesystem_size_bytes / _free_bytes / _avail_bytes{device,mountpoint,fstype,device_error}
                                          gauges, statfs blocks x f_bsize, for the state folder's
                                          file system only; device_error is "" as node_exporter
                                          (1.10+) writes it when the statfs call worked
  node_boot_time_seconds  node_time_seconds   gauges

The mount that holds the state folder (its device and type) is looked up in the
mount table once a minute, not at every scrape.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
MOUNT_REFRESH_S = 60.0
FILESYSTEM_LABELS = ["device", "mountpoint", "fstype", "device_error"]


class NodeSource:
    name = "node"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self._mount: tuple[str, str, str] | None = None
        self._mount_read_s = -MOUNT_REFRESH_S

    def collect(self) -> list[Metric]:
        return [*_cpu(), *_load(), *_memory(), *_network(), *self._filesystem(), *_clock()]

    def _filesystem(self) -> list[Metric]:
        device, mountpoint, fstype = self.mount()
        stat = os.statvfs(self.state_dir)
        labels = [device, mountpoint, fstype, ""]
        figures = (
            ("size_bytes", "Filesystem size in bytes.", stat.f_blocks),
            ("free_bytes", "Filesystem free space in bytes.", stat.f_bfree),
            ("avail_bytes", "Filesystem space available to non-root users in bytes.", stat.f_bavail),
        )
        families: list[Metric] = []
        for name, documentation, blocks in figures:
            family = GaugeMetricFamily(f"node_filesystem_{name}", documentation, labels=FILESYSTEM_LABELS)
            family.add_metric(labels, float(blocks * stat.f_bsize))
            families.append(family)
        return families

    def mount(self) -> tuple[str, str, str]:
        """(device, mountpoint, fstype) of the file system holding the state folder."""
        now = time.monotonic()
        if self._mount is None or now - self._mount_read_s >= MOUNT_REFRESH_S:
            self._mount = _mount_of(self.state_dir)
            self._mount_read_s = now
        return self._mount


def _mount_of(path: Path) -> tuple[str, str, str]:
    best = ("", "/", "")
    for part in psutil.disk_partitions(all=True):
        mountpoint = part.mountpoint
        inside = path == Path(mountpoint) or Path(mountpoint) in path.parents
        if inside and len(mountpoint) >= len(best[1]):
            best = (part.device, mountpoint, part.fstype)
    return best


def _cpu() -> list[Metric]:
    family = CounterMetricFamily("node_cpu_seconds", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"])
    for index, times in enumerate(psutil.cpu_times(percpu=True)):
        cpu = str(index)
        for mode in CPU_MODES:
            family.add_metric([cpu, mode], getattr(times, mode, 0.0))
    return [family]


def _load() -> list[Metric]:
    loads = os.getloadavg()
    return [
        GaugeMetricFamily(f"node_load{minutes}", f"{minutes}m load average.", value=value)
        for minutes, value in zip((1, 5, 15), loads, strict=True)
    ]


def _memory() -> list[Metric]:
    memory = psutil.virtual_memory()
    return [
        GaugeMetricFamily(f"node_memory_{field}_bytes", f"Memory information field {field}_bytes.", value=float(value))
        for field, value in (("MemTotal", memory.total), ("MemAvailable", memory.available))
    ]


def _network() -> list[Metric]:
    counters = psutil.net_io_counters(pernic=True)
    families: list[Metric] = []
    for key, attribute in (("receive_bytes", "bytes_recv"), ("transmit_bytes", "bytes_sent")):
        family = CounterMetricFamily(f"node_network_{key}", f"Network device statistic {key}.", labels=["device"])
        for device, figures in sorted(counters.items()):
            family.add_metric([device], float(getattr(figures, attribute)))
        families.append(family)
    return families


def _clock() -> list[Metric]:
    return [
        GaugeMetricFamily("node_boot_time_seconds", "Node boot time, in unixtime.", value=psutil.boot_time()),
        GaugeMetricFamily("node_time_seconds", "System time in seconds since epoch (1970).", value=time.time()),
    ]
