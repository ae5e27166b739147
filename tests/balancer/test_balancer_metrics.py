"""lb-01's HTTP series and per-backend series, on a real process (127.0.53.0/24) with fake web servers behind it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics
from tests.balancer.harness import (
    BalancerProcess,
    Certs,
    FakeWeb,
    HttpClient,
    LbPlan,
    free_port,
    make_certs,
    tls_connect,
)

DEAD_IP = "127.0.53.26"  # nothing listens there
IDLE_S = 1.5

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    server = FakeWeb("web-02", "127.0.53.27")
    yield server
    server.stop()


def start(folder: Path, certs: Certs, address: str, backends: list[tuple[str, str, int]]) -> BalancerProcess:
    https = free_port(address)
    http = free_port(address)
    return BalancerProcess(folder, LbPlan(address, None, False, backends, https, http), certs)


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory, certs: Certs, web: FakeWeb) -> Iterator[BalancerProcess]:
    process = start(tmp_path_factory.mktemp("lb-metrics"), certs, "127.0.53.7", [(web.name, web.ip, web.port)])
    yield process
    process.stop()


def samples(lb: BalancerProcess) -> Samples:
    return parse_exposition(read_metrics(admin_socket_path(lb.state, "lb-01")))


def value(page: Samples, name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted({"hop": "lb-01", **labels}.items()))), 0.0)


def answered(page: Samples) -> float:
    """Every request counted so far (a request is counted just after its response was sent)."""
    names = ("foobar_http_requests_total", "foobar_http_health_checks_total")
    return sum(v for (name, _), v in page.items() if name in names)


def samples_once_counted(lb: BalancerProcess, before: Samples, count: int) -> Samples:
    deadline = time.monotonic() + 5
    while answered(page := samples(lb)) < answered(before) + count and time.monotonic() < deadline:
        time.sleep(0.02)
    return page


def test_requests_are_counted_by_method_and_code_and_health_checks_apart(lb: BalancerProcess) -> None:
    before = samples(lb)
    client = HttpClient(tls_connect(lb.https, lb.certs.ca))
    statuses = [client.request("GET", "/").status for _ in range(4)]
    statuses += [client.request("HEAD", "/").status for _ in range(2)]
    statuses += [client.request("POST", "/api/messages", body=b"{}").status]
    statuses += [client.request("GET", "/health").status for _ in range(3)]
    statuses += [HttpClient(tls_connect(lb.https, lb.certs.ca)).request("TRACE", "/").status]  # refused while read
    assert statuses == [200] * 6 + [200] + [200] * 3 + [405]
    after = samples_once_counted(lb, before, len(statuses))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("foobar_http_requests_total", method="GET", code="200") == 4
    assert delta("foobar_http_requests_total", method="HEAD", code="200") == 2
    assert delta("foobar_http_requests_total", method="POST", code="200") == 1
    assert delta("foobar_http_requests_total", method="other", code="405") == 1  # no request came out of the read
    assert delta("foobar_http_health_checks_total", code="200") == 3
    assert delta("foobar_http_request_duration_seconds_count") == 8
    assert delta("foobar_balancer_upstream_requests_total", backend="web-02", status="200") == 10
    assert delta("foobar_http_request_bytes_total") > 0 and delta("foobar_http_response_bytes_total") > 0
    assert value(after, "foobar_balancer_backend_up", backend="web-02") == 1


def test_duration_starts_at_the_first_byte_on_a_reused_connection(lb: BalancerProcess) -> None:
    before = samples(lb)
    client = HttpClient(tls_connect(lb.https, lb.certs.ca))
    assert client.request("GET", "/?first").status == 200
    time.sleep(IDLE_S)
    reply = client.request("GET", "/?second")
    assert reply.status == 200
    after = samples_once_counted(lb, before, 2)
    name = "foobar_http_request_duration_seconds"
    assert value(after, f"{name}_count") - value(before, f"{name}_count") == 2
    assert value(after, f"{name}_bucket", le="1.0") - value(before, f"{name}_bucket", le="1.0") == 2
    assert (
        value(after, "foobar_request_seconds_bucket", le="1.0")
        - value(before, "foobar_request_seconds_bucket", le="1.0")
        == 2
    )
    deadline = time.monotonic() + 2
    while not (logged := [r for r in lb.events("request") if r["trace_id"] == reply.header("x-request-id")]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert logged[0]["duration_ms"] < 1000


def test_a_dead_backend_shows_down_failed_and_the_request_retried(tmp_path: Path, certs: Certs, web: FakeWeb) -> None:
    lb = start(tmp_path, certs, "127.0.53.8", [("web-dead", DEAD_IP, 80), (web.name, web.ip, web.port)])
    try:
        first = samples(lb)
        assert value(first, "foobar_balancer_backend_up", backend="web-dead") == 1  # nothing seen yet
        client = HttpClient(tls_connect(lb.https, certs.ca))
        assert [client.request("GET", "/").status for _ in range(3)] == [200, 200, 200]
        page = samples_once_counted(lb, first, 3)
        assert value(page, "foobar_balancer_backend_up", backend="web-dead") == 0
        assert value(page, "foobar_balancer_backend_up", backend="web-02") == 1
        assert value(page, "foobar_balancer_backend_failures_total", backend="web-dead", failure="connect_failed") == 1
        assert value(page, "foobar_balancer_backend_failures_total", backend="web-02", failure="connect_failed") == 0
        assert value(page, "foobar_balancer_retries_total", backend="web-02") == 1  # the first request moved on
        assert value(page, "foobar_balancer_retries_total", backend="web-dead") == 0
        assert value(page, "foobar_http_requests_total", method="GET", code="200") == 3
    finally:
        lb.stop()
