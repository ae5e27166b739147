"""The monitoring client's sources on their own: the access-log follower, processes by stack file, node names."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from prometheus_client import generate_latest

from foobar_ref.monitor.agent.access_log import AccessLogSource, LogFollower
from foobar_ref.monitor.agent.hops import collect_pages, request_pages
from foobar_ref.monitor.agent.mariadb import parse_status
from foobar_ref.monitor.agent.node import NodeSource
from foobar_ref.monitor.agent.page import Families
from foobar_ref.monitor.agent.processes import ProcessSource, process_figures
from foobar_ref.mysql import config, setup
from foobar_ref.observe.access_log import LineFormat
from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.web.access_log import AccessLog

FORMAT = LineFormat()


def lines(count: int, path: str = "/", status: int = 200) -> bytes:
    request = f"GET {path} HTTP/1.1".encode()
    return b"".join(FORMAT.line(1.7e9, "127.0.0.1", request, status, 10, None, None, 0.001) for _ in range(count))


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# --- following the access log ---------------------------------------------------------------


def test_the_first_open_starts_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "web.access.log"
    log.write_bytes(lines(5))
    follower = LogFollower(log)
    assert follower.read_lines() == []
    append(log, lines(2))
    assert len(follower.read_lines()) == 2


def test_a_file_that_appears_later_is_read_from_its_beginning(tmp_path: Path) -> None:
    log = tmp_path / "web.access.log"
    follower = LogFollower(log)
    assert follower.read_lines() == []
    log.write_bytes(lines(3))
    assert len(follower.read_lines()) == 3


def test_rotation_by_the_writer_loses_and_repeats_nothing(tmp_path: Path) -> None:
    log = tmp_path / "web.access.log"
    writer = AccessLog(log, max_bytes=len(lines(10, "/missing")), backups=2)  # about ten lines a file
    source = AccessLogSource("web-01", log)
    source.collect()  # starts at the end of an empty file
    writer.write(lines(4) + lines(1, "/health"))
    source.collect()
    assert (source.requests, source.health_checks) == ({"200": 4}, {"200": 1})
    for _ in range(8):  # the file fills after the fifth: rotated to .1 once, the rest in a new file
        writer.write(lines(1, "/missing", 404))
    source.collect()
    assert (source.requests, source.health_checks) == ({"200": 4, "404": 8}, {"200": 1})
    for _ in range(9):  # and once more
        writer.write(lines(1, "/health", 503))
    source.collect()
    assert (source.requests, source.health_checks) == ({"200": 4, "404": 8}, {"200": 1, "503": 9})
    assert source.follower.rotations == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.access.log", "web.access.log.1", "web.access.log.2"]


def test_truncation_in_place_starts_again_at_the_beginning(tmp_path: Path) -> None:
    log = tmp_path / "web.access.log"
    log.write_bytes(b"")
    follower = LogFollower(log)
    follower.read_lines()
    append(log, lines(10))
    assert len(follower.read_lines()) == 10
    os.truncate(log, 0)  # logrotate's copytruncate
    append(log, lines(4))
    assert len(follower.read_lines()) == 4
    assert follower.truncations == 1


def test_a_read_is_bounded_and_the_rest_comes_next_time(tmp_path: Path) -> None:
    log = tmp_path / "web.access.log"
    log.write_bytes(b"")
    one_line = len(lines(1))
    follower = LogFollower(log, max_read_bytes=one_line * 10 + 5)
    follower.read_lines()
    append(log, lines(25))
    assert [len(follower.read_lines()) for _ in range(4)] == [10, 10, 5, 0]


def test_an_unfinished_line_waits_for_its_end(tmp_path: Path) -> None:
    log = tmp_path / "web.access.log"
    log.write_bytes(b"")
    follower = LogFollower(log)
    follower.read_lines()
    line = lines(1)
    append(log, line[:20])
    assert follower.read_lines() == []
    append(log, line[20:])
    assert follower.read_lines() == [line.rstrip(b"\n")]


def test_lines_of_another_format_are_counted_apart(tmp_path: Path) -> None:
    log = tmp_path / "web.access.log"
    log.write_bytes(b"")
    source = AccessLogSource("web-01", log)
    source.collect()
    append(log, lines(2) + b"not an access log line\n")
    samples = parse_exposition(generate_latest(Families(source.collect())).decode())
    assert samples[("foobar_access_log_requests_total", (("code", "200"), ("hop", "web-01")))] == 2
    assert samples[("foobar_access_log_unreadable_lines_total", (("hop", "web-01"),))] == 1


# --- the hops' admin pages --------------------------------------------------------------------


def admin_server(path: Path, answer: bytes | None) -> socket.socket:
    """A Unix socket that answers `answer` to each connection and closes, or (None) accepts and never answers."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    kept: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(4096)
            if answer is None:
                kept.append(conn)  # hold it open, say nothing
                continue
            conn.sendall(answer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_every_hop_is_asked_at_once_and_only_whole_pages_count(tmp_path: Path) -> None:
    body = b"# HELP x x\n# TYPE x gauge\nx 1.0\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    servers = [
        admin_server(tmp_path / "good.sock", head % len(body) + body),
        admin_server(tmp_path / "short.sock", head % (len(body) + 10) + body),  # closed before its length
        admin_server(tmp_path / "error.sock", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        admin_server(tmp_path / "silent-1.sock", None),
        admin_server(tmp_path / "silent-2.sock", None),
    ]
    try:
        names = ["good", "short", "error", "silent-1", "silent-2", "missing"]
        started = time.monotonic()
        pending = request_pages({name: tmp_path / f"{name}.sock" for name in names})
        assert set(pending) == set(names) - {"missing"}  # nobody listens there: known at once
        pages = collect_pages(pending, started + 0.5)
        took = time.monotonic() - started
        assert pages["good"].text == body.decode()
        assert [pages[name].text for name in ("short", "error", "silent-1", "silent-2")] == [None] * 4
        assert 0.5 <= took < 0.95  # two silent hops cost the one deadline, not one each
    finally:
        for server in servers:
            server.close()


# --- processes by stack file ------------------------------------------------------------------


@pytest.fixture
def sleeper() -> object:
    code = "import sys, time; print('ready', flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"  # started: its memory settled
    yield process
    process.kill()
    process.wait()


def write_stack(path: Path, hops: dict[str, tuple[int, float]]) -> None:
    data = {"hops": [{"name": n, "role": "web", "pid": p, "started": s, "listen": []} for n, (p, s) in hops.items()]}
    path.write_text(json.dumps(data))


def test_processes_are_found_by_pid_and_start_time(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    stack = tmp_path / "stack.json"
    started = psutil.Process(sleeper.pid).create_time()
    write_stack(stack, {"web-01": (sleeper.pid, started), "store-01": (sleeper.pid, started - 100)})
    report = ProcessSource(stack, ("web-01", "store-01", "db-01")).collect()
    assert report.alive == {"web-01": True, "store-01": False, "db-01": None}  # recycled pid; not in the file
    samples = parse_exposition(generate_latest(Families(report.families)).decode())
    names = {name for name, labels in samples if labels == (("hop", "web-01"),)}
    assert names == {
        "foobar_process_cpu_seconds_total", "foobar_process_resident_memory_bytes", "foobar_process_open_fds",
        "foobar_process_threads", "foobar_process_start_time_seconds", "foobar_hop_restarts_total",
    }  # fmt: skip
    assert samples[("foobar_process_start_time_seconds", (("hop", "web-01"),))] == pytest.approx(started)
    # a hop the stack file names keeps its restart count even when its process is not the one recorded
    others = {(name, labels) for name, labels in samples if labels != (("hop", "web-01"),)}
    assert others == {("foobar_hop_restarts_total", (("hop", "store-01"),))}
    assert samples[("foobar_hop_restarts_total", (("hop", "web-01"),))] == 0


def test_a_process_that_exits_is_no_longer_alive(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    stack = tmp_path / "stack.json"
    write_stack(stack, {"web-01": (sleeper.pid, psutil.Process(sleeper.pid).create_time())})
    source = ProcessSource(stack, ("web-01",))
    assert source.collect().alive == {"web-01": True}
    sleeper.kill()
    sleeper.wait()
    assert source.collect().alive == {"web-01": False}


def test_the_figures_are_psutils(sleeper: subprocess.Popen[bytes]) -> None:
    process = psutil.Process(sleeper.pid)
    with process.oneshot():
        times, rss = process.cpu_times(), process.memory_info().rss
        expected = (times.user + times.system, rss, process.num_fds(), process.num_threads(), process.create_time())
    figures = process_figures(sleeper.pid, process.create_time(), psutil.boot_time())
    assert figures is not None
    cpu, rss, fds, threads, started = figures
    assert (cpu, fds, threads, started) == pytest.approx(expected[:1] + expected[2:], abs=0.02)  # ticks move on
    # resident memory from /proc/<pid>/stat, as the Prometheus clients' process_resident_memory_bytes; psutil
    # reads /proc/<pid>/statm, whose per-CPU counters the kernel folds in at other moments: a few pages apart
    assert rss == pytest.approx(expected[1], rel=0.02)


def test_no_stack_file_means_unknown_not_down(tmp_path: Path) -> None:
    assert ProcessSource(tmp_path / "missing.json", ("web-01",)).collect().alive == {"web-01": None}


# --- node_exporter's names ----------------------------------------------------------------------


def test_host_metrics_have_node_exporters_names_types_and_labels(tmp_path: Path) -> None:
    families = {f.name: f for f in NodeSource(tmp_path).collect()}
    types = {name: f.type for name, f in families.items()}
    assert types == {
        "node_cpu_seconds": "counter", "node_load1": "gauge", "node_load5": "gauge", "node_load15": "gauge",
        "node_memory_MemTotal_bytes": "gauge", "node_memory_MemAvailable_bytes": "gauge",
        "node_network_receive_bytes": "counter", "node_network_transmit_bytes": "counter",
        "node_filesystem_size_bytes": "gauge", "node_filesystem_free_bytes": "gauge",
        "node_filesystem_avail_bytes": "gauge", "node_boot_time_seconds": "gauge", "node_time_seconds": "gauge",
    }  # fmt: skip
    modes = {s.labels["mode"] for s in families["node_cpu_seconds"].samples}
    assert modes == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
    assert {s.labels["cpu"] for s in families["node_cpu_seconds"].samples} == {
        str(i) for i in range(os.cpu_count() or 1)
    }
    (size,) = families["node_filesystem_size_bytes"].samples
    assert set(size.labels) == {"device", "mountpoint", "fstype", "device_error"} and size.labels["device_error"] == ""
    assert tmp_path.resolve().is_relative_to(size.labels["mountpoint"])
    statvfs = os.statvfs(tmp_path)
    assert size.value == statvfs.f_blocks * statvfs.f_bsize
    assert "lo" in {s.labels["device"] for s in families["node_network_receive_bytes"].samples}


# --- MariaDB ------------------------------------------------------------------------------------


def test_status_values_read_as_mysqld_exporter_reads_them() -> None:
    assert [parse_status(v) for v in ("Yes", "No", "Connecting", "ON", "OFF", "12", b"3.5", 7, None, "mysql-bin")] == [
        1.0, 0.0, 0.0, 1.0, 0.0, 12.0, 3.5, 7.0, None, None,
    ]  # fmt: skip


def test_the_monitor_account_gets_a_password_and_the_old_ones_stay(tmp_path: Path) -> None:
    path = config.credentials_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"store": "s3cret", "repl": "r3pl"}))  # a state folder made before the monitor
    made = setup.credentials(tmp_path)
    assert made["store"] == "s3cret" and made["repl"] == "r3pl" and len(made["monitor"]) >= 24
    assert setup.credentials(tmp_path) == made
    assert path.stat().st_mode & 0o777 == 0o600
