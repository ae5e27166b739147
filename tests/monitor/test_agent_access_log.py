"""QPS the log way, with real processes: the web server writes and rotates its access log, the client follows it.

The web server and the monitoring client run alone (no launcher, no firewall) on 127.91.20.0/24 and
127.91.30.0/24; requests and scrapes come from the host's public address, as its firewall would send them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from foobar_ref import topology
from foobar_ref.observe.access_log import access_log_path
from tests.e2e.stackutil import connect_from
from tests.monitor.agentproc import WEB_PORT, Addresses, HopProcess, Samples, addresses, scrape, value, write_topology

OCTET = 20
MAX_LOG_BYTES = 2000  # about 22 lines a file


@dataclass
class Pair:
    at: Addresses
    state: Path
    web: HopProcess
    agent: HopProcess | None = None


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("agent-access-log")
    topo = topology.load(write_topology(folder, OCTET))
    state = folder / "state"
    web = HopProcess(topo, state, "web-01", ("--access-log-max-bytes", str(MAX_LOG_BYTES), "--access-log-backups", "2"))
    running = Pair(addresses(OCTET), state, web)
    try:
        send(running, "/nope", 5)  # logged before the client starts: not counted
        running.agent = HopProcess(topo, state, "mon-web")
        yield running
    finally:
        if running.agent is not None:
            running.agent.stop()
        web.stop()


def send(pair: Pair, path: str, count: int) -> None:
    for _ in range(count):
        with connect_from(pair.at.public, (pair.at.inner, WEB_PORT)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 ")


def counts(pair: Pair) -> Samples:
    page = scrape(pair.at.metrics_inner, pair.at.public)
    assert page.status == 200
    return page.samples


def counted(pair: Pair, requests: int, health: int) -> tuple[float, float, Samples]:
    """(user requests, health checks) the client counted, once they reach what was sent (or 10 s passed)."""
    deadline = time.monotonic() + 10
    while True:
        samples = counts(pair)
        got = value(samples, "foobar_access_log_requests_total", hop="web-01", code="404") or 0
        checks = value(samples, "foobar_access_log_health_checks_total", hop="web-01", code="200") or 0
        if (got >= requests and checks >= health) or time.monotonic() > deadline:
            return got, checks, samples
        time.sleep(0.1)


def test_what_was_logged_before_the_client_started_is_not_counted(pair: Pair) -> None:
    assert access_log_path(pair.state, "web-01").read_bytes().count(b"\n") == 5
    assert counted(pair, 0, 0)[:2] == (0, 0)


def test_requests_and_health_checks_are_counted_apart(pair: Pair) -> None:
    send(pair, "/nope", 10)
    send(pair, "/health", 3)
    assert counted(pair, 10, 3)[:2] == (10, 3)


def test_counting_goes_on_exactly_across_a_rotation(pair: Pair) -> None:
    log = access_log_path(pair.state, "web-01")
    send(pair, "/nope", 10)  # the file is full after a few of these: the web server rotates it once
    requests, checks, samples = counted(pair, 20, 3)
    assert (requests, checks) == (20, 3)
    assert log.with_name(log.name + ".1").exists() and not log.with_name(log.name + ".2").exists()
    assert value(samples, "foobar_access_log_reopened_total", hop="web-01", reason="rotated") == 1
    assert value(samples, "foobar_access_log_unreadable_lines_total", hop="web-01") == 0


def test_counting_goes_on_exactly_after_a_truncation(pair: Pair) -> None:
    log = access_log_path(pair.state, "web-01")
    os.truncate(log, 0)  # as logrotate's copytruncate does
    send(pair, "/nope", 3)
    requests, checks, samples = counted(pair, 23, 3)
    assert (requests, checks) == (23, 3)
    assert value(samples, "foobar_access_log_reopened_total", hop="web-01", reason="truncated") == 1


def test_the_web_servers_own_count_agrees(pair: Pair) -> None:
    samples = counts(pair)
    assert value(samples, "foobar_http_requests_total", hop="web-01", method="GET", code="404") == 28  # 5 before
    assert value(samples, "foobar_http_health_checks_total", hop="web-01", code="200") == 3
    assert value(samples, "foobar_access_log_requests_total", hop="web-01", code="404") == 23
