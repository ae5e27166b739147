"""The monitor as a real process, scraping fake monitoring clients over real sockets (all in 127.90.x.y).

One monitor for the module, scraping every second: two good clients whose pages the tests write,
one answering garbage, one hanging, one exposing too many series, one that disappears.  A webhook
sink catches the TargetDown notifications of a rule file with a short `for:`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from foobar_ref.monitor.service import MAX_CONNECTIONS
from foobar_ref.runtime.admin import read_metrics
from tests.monitor.monitorproc import (
    METRICS_PORT,
    MONITOR,
    RULES,
    WEBHOOK,
    FakeTarget,
    MonitorProcess,
    WebhookSink,
    api,
    monitor_process,
    request,
    wait_until,
    write_topology,
)

ADDRESSES = {
    "web-01": "127.90.2.1",
    "web-02": "127.90.2.2",
    "garbage": "127.90.6.1",
    "hang": "127.90.6.2",
    "many": "127.90.6.3",
    "gone": "127.90.6.4",
    "huge": "127.90.6.5",
}
MAX_SERIES = 50


@dataclass
class Pages:
    """What the good fake clients expose; the tests change it."""

    web01_requests: int = 0
    web02_extra: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def web01(self) -> str:
        with self.lock:
            value = self.web01_requests
        return (
            "# TYPE foobar_http_requests_total counter\n"
            f'foobar_http_requests_total{{hop="web-01",method="GET",code="200"}} {value}\n'
            'foobar_http_requests_total{hop="web-01",method="GET",code="500"} 2\n'
            'foobar_hop_up{hop="web-01",job="scraped-job"} 1\n'
        )

    def web02(self) -> str:
        extra = 'foobar_extra{hop="web-02"} 1\n' if self.web02_extra else ""
        return 'foobar_hop_up{hop="web-02"} 1\n' + extra


@dataclass
class Stack:
    monitor: MonitorProcess
    pages: Pages
    targets: dict[str, FakeTarget]
    sink: WebhookSink


def instance(name: str) -> str:
    return f"{ADDRESSES[name]}:{METRICS_PORT}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("monitor-service")
    pages = Pages()
    many = "".join(f'foobar_many{{i="{i}"}} {i}\n' for i in range(MAX_SERIES + 10))
    makers = {
        "web-01": pages.web01,
        "web-02": pages.web02,
        "garbage": lambda: "foobar_fixed 1\n",  # once it answers well again
        "hang": lambda: "foobar_fixed 1\n",
        "many": lambda: many,
        "gone": lambda: 'foobar_gone{hop="gone"} 7\n',
        "huge": lambda: "foobar_fixed 1\n",
    }
    targets = {name: FakeTarget((ADDRESSES[name], METRICS_PORT), page).start() for name, page in makers.items()}
    targets["garbage"].mode = "garbage"
    targets["hang"].mode = "hang"
    targets["huge"].mode = "huge"  # a body over the monitor's bound (16 MiB)
    sink = WebhookSink(WEBHOOK)
    rules = folder / "rules.yml"
    rules.write_text(RULES)
    topology = write_topology(
        folder,
        ADDRESSES,
        rules,
        scrape_interval_s=1,
        scrape_timeout_s=0.5,
        evaluation_interval_s=1,
        max_series_per_target=MAX_SERIES,
        webhook_url=f"http://{WEBHOOK[0]}:{WEBHOOK[1]}/hook",
        repeat_interval_s=3600,
    )
    try:
        with monitor_process(folder, topology) as monitor:
            yield Stack(monitor, pages, targets, sink)
    finally:
        for target in targets.values():
            target.stop()
        sink.stop()


def up_by_instance() -> dict[str, float]:
    return {r["metric"]["instance"]: float(r["value"][1]) for r in api("/api/v1/query", query="up")["result"]}


def test_every_target_is_scraped_and_up_says_which_answered(stack: Stack) -> None:
    expected = {instance(n): 1.0 for n in ("web-01", "web-02", "gone")}
    expected |= {instance(n): 0.0 for n in ("garbage", "hang", "many", "huge")}
    expected[f"{MONITOR[0]}:{MONITOR[1]}"] = 1.0
    wait_until(lambda: up_by_instance() == expected, 10, "up of every target")


def test_scrapes_come_from_the_monitor_hosts_address(stack: Stack) -> None:
    wait_until(lambda: all(t.peers for t in stack.targets.values()), 10, "every target scraped")
    assert {peer for t in stack.targets.values() for peer in t.peers} == {MONITOR[0]}


def test_values_are_exactly_what_the_target_exposed_with_target_labels(stack: Stack) -> None:
    with stack.pages.lock:
        stack.pages.web01_requests = 1234

    def latest() -> list[dict]:
        found = api("/api/v1/query", query='foobar_http_requests_total{code="200"}')["result"]
        return found if found and found[0]["value"][1] == "1234" else []

    (sample,) = wait_until(latest, 10, "the new value")
    assert sample["metric"] == {
        "__name__": "foobar_http_requests_total",
        "code": "200",
        "hop": "web-01",
        "method": "GET",
        "job": "monitor-client",
        "instance": instance("web-01"),
        "host": "web-01",
    }
    (hop_up,) = api("/api/v1/query", query='foobar_hop_up{hop="web-01"}')["result"]
    assert hop_up["metric"]["job"] == "monitor-client" and hop_up["metric"]["exported_job"] == "scraped-job"
    samples = api("/api/v1/query", query=f'scrape_samples_scraped{{instance="{instance("web-01")}"}}')["result"]
    assert samples[0]["value"][1] == "3"
    many = api("/api/v1/query", query=f'scrape_samples_scraped{{instance="{instance("many")}"}}')["result"]
    assert many[0]["value"][1] == str(MAX_SERIES + 10)


def test_raw_samples_are_one_per_interval_and_a_counter_reset_is_seen(stack: Stack) -> None:
    for value in (100, 200, 300, 5):
        with stack.pages.lock:
            stack.pages.web01_requests = value
        time.sleep(1.5)
    at = str(time.time())
    selector = 'foobar_http_requests_total{code="200"}[6s]'
    (series,) = api("/api/v1/query", query=selector, time=at)["result"]
    values = [float(v) for _, v in series["values"]]
    times = [float(t) for t, _ in series["values"]]
    assert set(values) <= {1234.0, 100.0, 200.0, 300.0, 5.0} and values[-1] == 5.0 and 300.0 in values
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps and all(0.7 < gap < 1.3 for gap in gaps), gaps  # the 1 s cadence, even with a hung target
    expected_resets = sum(1 for a, b in zip(values, values[1:], strict=False) if b < a)
    (resets,) = api("/api/v1/query", query=f"resets({selector})", time=at)["result"]
    assert resets["value"][1] == str(expected_resets) and expected_resets >= 1


def test_failed_scrapes_are_counted_and_explained(stack: Stack) -> None:
    def targets() -> dict[str, dict]:
        found = api("/api/v1/targets")["activeTargets"]
        return {t["labels"]["host"]: t for t in found}

    found = wait_until(lambda: (t := targets()) and t["hang"]["health"] == "down" and t, 10, "the hang noticed")
    assert "not Prometheus text format" in found["garbage"]["lastError"] and "line 1" in found["garbage"]["lastError"]
    assert "within 0.5 s" in found["hang"]["lastError"]
    assert 0.5 <= found["hang"]["lastScrapeDuration"] < 1.0
    assert f"{MAX_SERIES + 10} series, at most {MAX_SERIES}" in found["many"]["lastError"]
    assert "limit 16777216" in found["huge"]["lastError"]
    assert found["web-01"]["health"] == "up" and found["web-01"]["lastError"] == ""
    assert found["web-01"]["scrapeInterval"] == "1s" and found["web-01"]["scrapeTimeout"] == "500ms"
    outcomes = {
        (r["metric"]["target"], r["metric"]["outcome"])
        for r in api("/api/v1/query", query="foobar_monitor_scrapes_total > 0")["result"]
    }
    assert {
        ("mon-garbage", "parse_error"),
        ("mon-hang", "timeout"),
        ("mon-many", "too_many_series"),
        ("mon-huge", "body_too_large"),
    } <= outcomes
    assert ("mon-web-01", "ok") in outcomes and ("monitor", "ok") in outcomes
    assert api("/api/v1/query", query='foobar_many{i="0"}')["result"] == []


def test_a_series_that_leaves_the_page_is_stale_at_once(stack: Stack) -> None:
    query = 'foobar_extra{hop="web-02"}'
    wait_until(lambda: api("/api/v1/query", query=query)["result"], 10, "the extra series")
    stack.pages.web02_extra = False
    wait_until(lambda: api("/api/v1/query", query=query)["result"] == [], 5, "the extra series gone")
    assert api("/api/v1/query", query='foobar_hop_up{hop="web-02"}')["result"]


def test_the_alert_fires_and_the_webhook_gets_alertmanagers_json(stack: Stack) -> None:
    down = {instance(n) for n in ("garbage", "hang", "many")}

    def firing(received: list[dict]) -> bool:
        return any(b["status"] == "firing" and {a["labels"]["instance"] for a in b["alerts"]} >= down for b in received)

    received = stack.sink.wait_for(firing, 15)
    body = next(b for b in received if firing([b]))
    assert body["version"] == "4" and body["groupKey"] == '{}:{alertname="TargetDown"}'
    assert body["receiver"] == "webhook" and body["externalURL"] == f"http://{MONITOR[0]}:{MONITOR[1]}"
    assert body["groupLabels"] == {"alertname": "TargetDown"}
    assert body["commonLabels"]["severity"] == "page" and body["commonLabels"]["job"] == "monitor-client"
    alert = next(a for a in body["alerts"] if a["labels"]["instance"] == instance("hang"))
    assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["annotations"] == {"summary": f"{instance('hang')} is down"}
    assert len(alert["fingerprint"]) == 16 and alert["generatorURL"].startswith(f"http://{MONITOR[0]}:{MONITOR[1]}/")
    assert set(stack.sink.peers) == {MONITOR[0]}
    alerts = api("/api/v1/alerts")["alerts"]
    assert {a["labels"]["instance"] for a in alerts if a["state"] == "firing"} >= down
    (group,) = api("/api/v1/rules")["groups"]
    assert group["rules"][0]["name"] == "TargetDown"
    logged = stack.monitor.events("alert_notification")
    assert any(line["notification"]["groupKey"] == body["groupKey"] for line in logged)


def test_a_target_that_disappears_goes_down_and_its_series_stale(stack: Stack) -> None:
    wait_until(lambda: api("/api/v1/query", query="foobar_gone")["result"], 10, "the gone target's series")
    stack.targets["gone"].stop()
    wait_until(lambda: up_by_instance().get(instance("gone")) == 0.0, 10, "up == 0 for the gone target")
    assert api("/api/v1/query", query="foobar_gone")["result"] == []
    (target,) = [t for t in api("/api/v1/targets")["activeTargets"] if t["labels"]["host"] == "gone"]
    assert "cannot connect" in target["lastError"] or "connection" in target["lastError"]


def test_a_resolved_alert_is_notified(stack: Stack) -> None:
    stack.sink.wait_for(lambda r: any(b["status"] == "firing" for b in r), 15)
    stack.targets["garbage"].mode = "ok"

    def resolved(received: list[dict]) -> bool:
        return any(
            a["status"] == "resolved" and a["labels"]["instance"] == instance("garbage")
            for b in received
            for a in b["alerts"]
        )

    received = stack.sink.wait_for(resolved, 15)
    alert = next(a for b in received for a in b["alerts"] if a["status"] == "resolved")
    assert alert["endsAt"] != "0001-01-01T00:00:00Z"


# --- the HTTP port -----------------------------------------------------------------------------------


def test_bad_queries_answer_bad_data_with_the_position(stack: Stack) -> None:
    status, body = request("GET", "/api/v1/query?query=sum(rate(up[5m])")
    payload = json.loads(body)
    assert status == 400 and payload["status"] == "error" and payload["errorType"] == "bad_data"
    assert payload["error"].startswith('invalid parameter "query": 1:')
    status, body = request("GET", "/api/v1/query?query=no_such_function(up)")
    assert status == 400 and "no_such_function" in json.loads(body)["error"]
    for path in ("/api/v1/query", "/api/v1/query_range?query=up", "/api/v1/series", "/federate"):
        status, body = request("GET", path)
        assert status == 400 and b"Traceback" not in body, (path, body)


def test_unknown_paths_methods_and_head(stack: Stack) -> None:
    assert request("GET", "/nothing/here")[0] == 404
    assert request("PUT", "/api/v1/query")[0] == 405
    status, body = request("HEAD", "/")
    assert status == 200 and body == b""
    assert request("GET", "/-/healthy")[0] == 200 and request("GET", "/-/ready")[0] == 200


def test_post_form_query(stack: Stack) -> None:
    status, body = request(
        "POST",
        "/api/v1/query",
        b"query=up%7Bjob%3D%22monitor%22%7D",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    (result,) = json.loads(body)["data"]["result"]
    assert status == 200 and result["value"][1] == "1"


def test_a_huge_body_is_refused_before_it_is_read(stack: Stack) -> None:
    with socket.create_connection(MONITOR, timeout=5) as sock:
        sock.sendall(b"POST /api/v1/query HTTP/1.1\r\nHost: m\r\nContent-Length: 10000000\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_keep_alive_serves_requests_one_after_another(stack: Stack) -> None:
    with socket.create_connection(MONITOR, timeout=5) as sock:
        for _ in range(3):
            sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: m\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Healthy.\n"):
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")


def test_connections_past_the_bound_are_reset_and_the_rest_served(stack: Stack) -> None:
    held = [socket.create_connection(MONITOR, timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)  # let the monitor accept them all
        with socket.create_connection(MONITOR, timeout=5) as extra:
            extra.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: m\r\n\r\n")
            try:
                assert extra.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: request("GET", "/-/healthy")[0] == 200, 5, "served again")


def test_a_slow_request_is_answered_408(stack: Stack) -> None:
    with socket.create_connection(MONITOR, timeout=15) as sock:
        sock.sendall(b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: m\r\n")  # and never the blank line
        started = time.monotonic()
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and 9 < time.monotonic() - started < 13


def test_own_metrics_on_the_port_and_the_admin_socket(stack: Stack) -> None:
    status, body = request("GET", "/metrics")
    assert status == 200 and b"foobar_monitor_scrapes_total" in body
    text = read_metrics(stack.monitor.folder / "run" / "monitor.admin.sock")
    assert 'foobar_requests_total{hop="monitor"' in text
    assert "Traceback" not in stack.monitor.log.read_text()


def test_federate_keeps_job_and_instance(stack: Stack) -> None:
    status, body = request("GET", "/federate?match[]=foobar_hop_up")
    lines = body.decode().splitlines()
    assert status == 200 and lines[0] == "# TYPE foobar_hop_up untyped"
    assert any(f'instance="{instance("web-02")}"' in line and 'job="monitor-client"' in line for line in lines[1:])
    for line in lines[1:]:
        assert len(line.rsplit(" ", 2)) == 3 and line.rsplit(" ", 1)[1].isdigit()
