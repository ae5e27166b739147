"""The store's HTTP and query series, and its request duration from the first byte (real stores, real MariaDB)."""

from __future__ import annotations

import http.client
import json
import time

from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime import admin
from foobar_ref.runtime.asyncio_shell import admin_socket_path
from tests.store.client import request
from tests.store.conftest import Stores

IDLE_S = 1.5
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(stores: Stores, hop: str) -> Samples:
    return parse_exposition(admin.read_metrics(admin_socket_path(stores.dbs.state, hop)))


def value(page: Samples, hop: str, name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted({"hop": hop, **labels}.items()))), 0.0)


def answered(page: Samples) -> float:
    names = ("foobar_http_requests_total", "foobar_http_health_checks_total")
    return sum(v for (name, _), v in page.items() if name in names)


def samples_once_counted(stores: Stores, hop: str, before: Samples, count: int) -> Samples:
    """The page once `count` more requests were counted (each is counted just after its response was sent)."""
    deadline = time.monotonic() + 5
    while answered(page := samples(stores, hop)) < answered(before) + count and time.monotonic() < deadline:
        time.sleep(0.02)
    return page


def test_duration_starts_at_the_first_byte_on_a_reused_connection(stores: Stores) -> None:
    """The wrong figure of issue 7: the idle keep-alive time before a request counted as the request's."""
    hop = "store-01"
    before = samples(stores, hop)
    conn = http.client.HTTPConnection(*stores.address(hop), timeout=10, source_address=(stores.source(hop), 0))
    try:
        assert request(stores.address(hop), stores.source(hop), "GET", "/messages?limit=1&first", conn=conn)[0] == 200
        time.sleep(IDLE_S)
        assert request(stores.address(hop), stores.source(hop), "GET", "/messages?limit=1&second", conn=conn)[0] == 200
    finally:
        conn.close()
    after = samples_once_counted(stores, hop, before, 2)
    for name in ("foobar_http_request_duration_seconds", "foobar_request_seconds"):
        assert value(after, hop, f"{name}_count") - value(before, hop, f"{name}_count") == 2
        within_1s = value(after, hop, f"{name}_bucket", le="1.0") - value(before, hop, f"{name}_bucket", le="1.0")
        assert within_1s == 2, f"{name}: a duration included the idle time before the request"
    records = [json.loads(line) for line in stores.logs[hop].read_text().splitlines() if line.startswith("{")]
    first, second = [r for r in records if r.get("event") == "request" and r.get("path") == "/messages"][-2:]
    assert first["duration_ms"] < 1000 and second["duration_ms"] < 1000


def test_requests_by_method_and_code_and_queries_by_kind_database_and_outcome(stores: Stores) -> None:
    hop = "store-02"  # reads its replica db-02, writes the primary db-01
    address, source = stores.address(hop), stores.source(hop)
    before = samples(stores, hop)
    assert request(address, source, "POST", "/messages", {"text": "counted"})[0] == 201
    assert [request(address, source, "GET", "/messages?limit=3")[0] for _ in range(3)] == [200, 200, 200]
    assert request(address, source, "GET", "/health")[0] == 200
    assert request(address, source, "DELETE", "/messages")[0] == 405
    after = samples_once_counted(stores, hop, before, 6)

    def delta(name: str, **labels: str) -> float:
        return value(after, hop, name, **labels) - value(before, hop, name, **labels)

    assert delta("foobar_http_requests_total", method="POST", code="201") == 1
    assert delta("foobar_http_requests_total", method="GET", code="200") == 3
    assert delta("foobar_http_requests_total", method="DELETE", code="405") == 1
    assert delta("foobar_http_health_checks_total", code="200") == 1
    assert delta("foobar_http_request_duration_seconds_count") == 5
    queries = "foobar_store_queries_total"
    assert delta(queries, kind="write", database="db-01", outcome="ok") == 1
    assert delta(queries, kind="read", database="db-02", outcome="ok") == 3
    assert delta(queries, kind="read", database="db-01", outcome="ok") == 0
    assert delta(queries, kind="health", database="db-01", outcome="ok") == 1
    assert delta(queries, kind="health", database="db-02", outcome="ok") == 1
    for kind, count in (("write", 1), ("read", 3), ("health", 2)):
        assert delta("foobar_store_query_duration_seconds_count", kind=kind) == count
    assert value(after, hop, "foobar_http_requests_in_flight") == 0
