"""The monitor's HTTP answers (api.py) on a real storage and engine, without sockets: shapes, errors, federation."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from foobar_ref.monitor.api import Api, Reply, Request
from foobar_ref.monitor.exposition import SeriesCache
from foobar_ref.monitor.promql import Engine
from foobar_ref.monitor.scrape import Target, TargetState, ingest
from foobar_ref.monitor.tsdb import Storage

T0 = 1_700_000_000.0
WEB = Target("mon-web-01", "monitor-client", "web-01", ("127.90.2.1", 9100))
LB = Target("mon-lb-01", "monitor-client", "lb-01", ("127.90.1.1", 9100))


class Rules:
    def alerts(self) -> list[dict[str, Any]]:
        return [{"labels": {"alertname": "X"}, "annotations": {}, "state": "firing", "activeAt": "t", "value": "1"}]

    def groups(self) -> list[dict[str, Any]]:
        return [{"name": "g", "file": "f.yml", "rules": [], "interval": 5}]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0  # every look at the clock costs a second: deadlines run out quickly
        return self.now


@pytest.fixture
def fed() -> tuple[Api, Storage, list[TargetState]]:
    """Six scrapes 5 s apart of two targets; web-01 counts 10 requests a scrape, lb-01 stops at the 4th."""
    storage = Storage()
    states = [TargetState(WEB), TargetState(LB)]
    for i in range(6):
        t_ms = int((T0 + 5 * i) * 1000)
        ingest(states[0], f'requests_total{{hop="web-01",code="200"}} {10 * i}\n'.encode(), t_ms, 0.01, storage, 100)
        lb_page = 'backend_up{backend="web-01"} 1\n' if i < 4 else ""
        ingest(states[1], lb_page.encode(), t_ms, 0.02, storage, 100)
    api = Api(Engine(storage), storage, Rules(), lambda: states, lambda: b"own 1\n", 5.0, 2.0, Clock(), 10.0)
    return api, storage, states


def get(api: Api, path: str, now: float = T0 + 25, **params: str | list[str]) -> tuple[int, Any]:
    query = urllib.parse.urlencode(params, doseq=True)
    reply = api.answer(Request("GET", path + ("?" + query if query else "")), now)
    return reply.status, json.loads(reply.body) if reply.content_type == "application/json" else reply.body.decode()


def test_instant_query_in_prometheus_shape(fed: tuple[Api, Storage, list[TargetState]]) -> None:
    api = fed[0]
    status, body = get(api, "/api/v1/query", query="sum by (hop) (requests_total)", time=str(T0 + 25))
    assert status == 200
    assert body == {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {"hop": "web-01"}, "value": [T0 + 25, "50"]}]},
    }
    status, body = get(api, "/api/v1/query", query="increase(requests_total[20s])", time=str(T0 + 25))
    assert body["data"]["result"][0]["value"][1] == "40"  # 10 to 50, samples at both ends of the window
    status, body = get(api, "/api/v1/query", query="up", time="2023-11-14T22:13:45Z")
    assert sorted(r["metric"]["instance"] for r in body["data"]["result"]) == ["127.90.1.1:9100", "127.90.2.1:9100"]


def test_post_form_is_read_like_the_query_string(fed: tuple[Api, Storage, list[TargetState]]) -> None:
    api = fed[0]
    form = urllib.parse.urlencode({"query": "scrape_samples_scraped", "time": str(T0 + 25)}).encode()
    reply = api.answer(Request("POST", "/api/v1/query", form, "application/x-www-form-urlencoded"), T0 + 25)
    results = json.loads(reply.body)["data"]["result"]
    assert {r["metric"]["host"]: r["value"][1] for r in results} == {"web-01": "1", "lb-01": "0"}


def test_range_query_in_prometheus_shape(fed: tuple[Api, Storage, list[TargetState]]) -> None:
    api = fed[0]
    status, body = get(api, "/api/v1/query_range", query="requests_total", start=str(T0), end=str(T0 + 10), step="5s")
    assert status == 200 and body["data"]["resultType"] == "matrix"
    (series,) = body["data"]["result"]
    assert series["metric"]["hop"] == "web-01"
    assert series["values"] == [[T0, "0"], [T0 + 5, "10"], [T0 + 10, "20"]]


@pytest.mark.parametrize(
    ("path", "params", "status", "error_type", "says"),
    [
        ("/api/v1/query", {"query": "sum(rate(x[5m]"}, 400, "bad_data", 'invalid parameter "query": 1:'),
        ("/api/v1/query", {"query": "no_such_function(up)"}, 400, "bad_data", "no_such_function"),
        ("/api/v1/query", {"query": ""}, 400, "bad_data", 'invalid parameter "query"'),
        ("/api/v1/query", {"query": "up", "time": "yesterday"}, 400, "bad_data", 'invalid parameter "time"'),
        ("/api/v1/query", {"query": "up", "timeout": "soon"}, 400, "bad_data", 'invalid parameter "timeout"'),
        ("/api/v1/query_range", {"query": "up", "start": "1", "end": "2"}, 400, "bad_data", '"step"'),
        ("/api/v1/query_range", {"query": "up", "start": "10", "end": "2", "step": "1"}, 400, "bad_data", "before"),
        ("/api/v1/query_range", {"query": "up", "start": "1", "end": "2", "step": "0"}, 400, "bad_data", "zero"),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "20000", "step": "1"}, 400, "bad_data", "11,000"),
        ("/api/v1/series", {}, 400, "bad_data", "no match[] parameter provided"),
        ("/api/v1/series", {"match[]": "up{"}, 400, "bad_data", 'invalid parameter "match[]"'),
        ("/api/v1/label/9bad/values", {}, 400, "bad_data", "invalid label name"),
        ("/api/v1/nothing", {}, 404, "not_found", "/api/v1/nothing"),
    ],
)
def test_errors_in_prometheus_shape(
    fed: tuple[Api, Storage, list[TargetState]],
    path: str,
    params: dict[str, str],
    status: int,
    error_type: str,
    says: str,
) -> None:
    got_status, body = get(fed[0], path, **params)
    assert got_status == status
    assert body["status"] == "error" and body["errorType"] == error_type
    assert says in body["error"]
    assert "Traceback" not in body["error"]


def test_a_query_past_its_deadline_answers_503_timeout(fed: tuple[Api, Storage, list[TargetState]]) -> None:
    status, body = get(
        fed[0], "/api/v1/query_range", query="up", start=str(T0), end=str(T0 + 25), step="1", timeout="2"
    )
    assert status == 503 and body["errorType"] == "timeout"


def test_series_labels_and_values(fed: tuple[Api, Storage, list[TargetState]]) -> None:
    api = fed[0]
    status, body = get(api, "/api/v1/series", **{"match[]": ["backend_up", 'up{host="web-01"}']})
    assert status == 200
    assert body["data"] == [
        {"__name__": "backend_up", "backend": "web-01", "host": "lb-01", "instance": "127.90.1.1:9100",
         "job": "monitor-client"},
        {"__name__": "up", "host": "web-01", "instance": "127.90.2.1:9100", "job": "monitor-client"},
    ]  # fmt: skip
    _, body = get(api, "/api/v1/series", **{"match[]": "backend_up", "start": str(T0 + 16), "end": str(T0 + 30)})
    assert [s["__name__"] for s in body["data"]] == ["backend_up"]  # its staleness marker at +20 is in the window
    _, body = get(api, "/api/v1/series", **{"match[]": "backend_up", "start": str(T0 + 21)})
    assert body["data"] == []
    _, names = get(api, "/api/v1/labels")
    assert names["data"] == ["__name__", "backend", "code", "hop", "host", "instance", "job"]
    _, names = get(api, "/api/v1/labels", **{"match[]": "backend_up"})
    assert names["data"] == ["__name__", "backend", "host", "instance", "job"]
    _, values = get(api, "/api/v1/label/host/values")
    assert values["data"] == ["lb-01", "web-01"]
    _, values = get(api, "/api/v1/label/__name__/values", **{"match[]": '{host="lb-01"}'})
    assert "backend_up" in values["data"] and "requests_total" not in values["data"]


def test_targets_alerts_and_rules(fed: tuple[Api, Storage, list[TargetState]]) -> None:
    api = fed[0]
    _, body = get(api, "/api/v1/targets")
    web, lb = body["data"]["activeTargets"]
    assert body["data"]["droppedTargets"] == []
    assert web == {
        "discoveredLabels": {
            "__address__": "127.90.2.1:9100",
            "__metrics_path__": "/metrics",
            "__scheme__": "http",
            "job": "monitor-client",
            "instance": "127.90.2.1:9100",
            "host": "web-01",
        },
        "labels": {"job": "monitor-client", "instance": "127.90.2.1:9100", "host": "web-01"},
        "scrapePool": "monitor-client",
        "scrapeUrl": "http://127.90.2.1:9100/metrics",
        "globalUrl": "http://127.90.2.1:9100/metrics",
        "lastError": "",
        "lastScrape": "2023-11-14T22:13:45.000Z",
        "lastScrapeDuration": 0.01,
        "health": "up",
        "scrapeInterval": "5s",
        "scrapeTimeout": "2s",
    }
    assert lb["health"] == "up"
    _, alerts = get(api, "/api/v1/alerts")
    assert alerts["data"] == {"alerts": Rules().alerts()}
    _, rules = get(api, "/api/v1/rules")
    assert rules["data"] == {"groups": Rules().groups()}


def test_federate_answers_the_latest_sample_and_leaves_stale_series_out(
    fed: tuple[Api, Storage, list[TargetState]],
) -> None:
    api, storage, _ = fed
    storage.append((("__name__", "no_instance"), ("x", "1")), int((T0 + 24) * 1000), 2.5)
    status, text = get(api, "/federate", **{"match[]": ['{job=~".+"}', "no_instance"]})
    assert status == 200
    lines = text.splitlines()
    t_ms = int((T0 + 25) * 1000)
    labels = 'code="200",hop="web-01",host="web-01",instance="127.90.2.1:9100",job="monitor-client"'
    assert f"requests_total{{{labels}}} 50 {t_ms}" in lines
    assert not any(line.startswith("backend_up") for line in lines)  # stale since T0 + 20
    assert f'no_instance{{instance="",x="1"}} 2.5 {int((T0 + 24) * 1000)}' in lines
    assert lines[0] == "# TYPE no_instance untyped"
    assert lines.count("# TYPE up untyped") == 1
    # as Prometheus's federation, only the lookback window: nothing at all an hour later
    assert get(api, "/federate", now=T0 + 3600, **{"match[]": '{job=~".+"}'})[1] == ""
    assert get(api, "/federate")[0] == 400
    assert get(api, "/federate", **{"match[]": "up{"})[0] == 400


def test_health_own_metrics_dashboard_and_not_found(fed: tuple[Api, Storage, list[TargetState]]) -> None:
    api = fed[0]
    assert api.answer(Request("GET", "/-/healthy"), T0).status == 200
    assert api.answer(Request("GET", "/-/ready"), T0).body.endswith(b"Ready.\n")
    assert api.answer(Request("GET", "/metrics"), T0).body == b"own 1\n"
    page = api.answer(Request("GET", "/"), T0)
    assert page.status == 200 and page.content_type.startswith("text/html") and b"/dashboard/app.js" in page.body
    for asset in ("/dashboard/app.js", "/dashboard/app.css", "/dashboard/vendor/uPlot.iife.min.js"):
        assert api.answer(Request("GET", asset), T0).status == 200, asset
    assert api.answer(Request("GET", "/graph?g0.expr=up&g0.tab=1"), T0).body == page.body  # alerts' generatorURL
    assert api.answer(Request("GET", "/dashboard/../__init__.py"), T0).status == 404
    assert api.answer(Request("GET", "/nothing"), T0) == Reply(
        404, "text/plain; charset=utf-8", b"404 page not found\n"
    )
    assert api.answer(Request("DELETE", "/api/v1/query"), T0).status == 405


def test_the_cache_does_not_leak_between_tests() -> None:
    assert SeriesCache().known == {}
