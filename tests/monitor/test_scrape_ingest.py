"""One scrape into storage (scrape.ingest), no sockets: labels, report series, limits, staleness."""

from __future__ import annotations

import math
from pathlib import Path

from foobar_ref.monitor.scrape import ScrapeFailed, Target, TargetState, ingest, relabeller, targets_of
from foobar_ref.monitor.tsdb import Labels, Matcher, Storage, is_stale
from foobar_ref.topology import load
from tests.topologies import host, resolver, service, topology_text

TARGET = Target("mon-web-01", "monitor-client", "web-01", ("127.90.2.1", 9100))
T0 = 1_700_000_000_000


def series_of(storage: Storage, name: str) -> dict[Labels, list[tuple[int, float]]]:
    found = storage.select([Matcher.make("__name__", "=", name)], 0, 2**62)
    return {labels: list(zip(s.t_ms, s.values, strict=True)) for labels, s in found}


def value_of(storage: Storage, name: str, **labels: str) -> float:
    for got, samples in series_of(storage, name).items():
        if all(dict(got).get(k) == v for k, v in labels.items()):
            return samples[-1][1]
    raise AssertionError(f"no {name} {labels}")


def target_labels(name: str, **extra: str) -> Labels:
    return tuple(sorted({"__name__": name, **TARGET.labels, **extra}.items()))


def test_target_labels_win_and_scraped_clashes_become_exported() -> None:
    relabel = relabeller(TARGET)
    labels = relabel("m", {"job": "theirs", "instance": "x:1", "hop": "web-01", "empty": ""})
    assert dict(labels) == {
        "__name__": "m",
        "job": "monitor-client",
        "exported_job": "theirs",
        "instance": "127.90.2.1:9100",
        "exported_instance": "x:1",
        "host": "web-01",
        "hop": "web-01",
    }
    assert list(labels) == sorted(labels)
    assert dict(relabel("m", {"job": "a", "exported_job": "b"}))["exported_exported_job"] == "a"


def test_a_scrape_appends_samples_and_the_report_series() -> None:
    storage, state = Storage(), TargetState(TARGET)
    body = b'# TYPE foobar_http_requests_total counter\nfoobar_http_requests_total{hop="web-01",code="200"} 7\nx 1\n'
    report = ingest(state, body, T0, 0.012, storage, max_series=10)
    assert report.outcome == "ok" and report.samples_scraped == 2 and report.series_added == 2
    assert series_of(storage, "foobar_http_requests_total") == {
        target_labels("foobar_http_requests_total", hop="web-01", code="200"): [(T0, 7.0)]
    }
    assert series_of(storage, "up") == {target_labels("up"): [(T0, 1.0)]}
    assert value_of(storage, "scrape_duration_seconds") == 0.012
    assert value_of(storage, "scrape_samples_scraped") == 2
    assert value_of(storage, "scrape_samples_post_metric_relabeling") == 2
    assert value_of(storage, "scrape_series_added") == 2
    assert (state.health, state.last_error, state.last_scrape_s) == ("up", "", T0 / 1000)


def test_series_that_disappear_get_a_staleness_marker_once() -> None:
    storage, state = Storage(), TargetState(TARGET)
    ingest(state, b"a 1\nb 2\n", T0, 0.01, storage, 10)
    report = ingest(state, b"a 2\n", T0 + 5000, 0.01, storage, 10)
    assert report.stale_marked == 1 and report.series_added == 0
    (b_samples,) = series_of(storage, "b").values()
    assert b_samples[0] == (T0, 2.0)
    assert b_samples[1][0] == T0 + 5000 and is_stale(b_samples[1][1])
    ingest(state, b"a 3\n", T0 + 10_000, 0.01, storage, 10)
    assert len(next(iter(series_of(storage, "b").values()))) == 2
    assert [v for _, v in next(iter(series_of(storage, "a").values()))] == [1.0, 2.0, 3.0]


def test_a_failed_scrape_marks_every_series_stale_and_up_zero() -> None:
    storage, state = Storage(), TargetState(TARGET)
    ingest(state, b"a 1\nb 2\n", T0, 0.01, storage, 10)
    report = ingest(state, ScrapeFailed("timeout", "no answer within 2 s"), T0 + 5000, 2.0, storage, 10)
    assert report.outcome == "timeout" and report.stale_marked == 2
    for name in ("a", "b"):
        assert is_stale(next(iter(series_of(storage, name).values()))[-1][1])
    assert [v for _, v in series_of(storage, "up")[target_labels("up")]] == [1.0, 0.0]
    assert (state.health, state.last_error) == ("down", "no answer within 2 s")
    assert value_of(storage, "scrape_samples_scraped") == 0


def test_garbage_fails_the_scrape_with_the_line_named() -> None:
    storage, state = Storage(), TargetState(TARGET)
    ingest(state, b"a 1\n", T0, 0.01, storage, 10)
    report = ingest(state, b"a 2\n<html>oops</html>\n", T0 + 5000, 0.01, storage, 10)
    assert report.outcome == "parse_error"
    assert "line 2" in state.last_error
    assert [v for _, v in series_of(storage, "a").popitem()[1]][:1] == [1.0]  # the 2 of the bad page was not kept
    assert is_stale(series_of(storage, "a").popitem()[1][-1][1])
    assert ingest(state, b"\xff\xfe\n", T0 + 10_000, 0.01, storage, 10).outcome == "parse_error"
    assert "UTF-8" in state.last_error


def test_too_many_series_refuses_the_whole_scrape() -> None:
    storage, state = Storage(), TargetState(TARGET)
    body = "".join(f'many{{i="{i}"}} {i}\n' for i in range(11)).encode()
    report = ingest(state, body, T0, 0.01, storage, max_series=10)
    assert report.outcome == "too_many_series"
    assert "11 series, at most 10" in state.last_error
    assert series_of(storage, "many") == {}
    assert value_of(storage, "up") == 0
    assert value_of(storage, "scrape_samples_scraped") == 11
    assert value_of(storage, "scrape_samples_post_metric_relabeling") == 0
    assert ingest(state, body[: body.index(b'many{i="10"}')], T0 + 5000, 0.01, storage, 10).outcome == "ok"
    assert len(series_of(storage, "many")) == 10


def test_a_duplicate_series_keeps_its_first_value() -> None:
    storage, state = Storage(), TargetState(TARGET)
    report = ingest(state, b'd{a="1",b="2"} 1\nd{b="2",a="1"} 9\nd{a="1",b="2"} 8\n', T0, 0.01, storage, 10)
    assert report.duplicates == 2 and report.samples_scraped == 3
    assert [v for _, v in series_of(storage, "d").popitem()[1]] == [1.0]
    assert value_of(storage, "scrape_samples_post_metric_relabeling") == 1


def test_nan_values_are_kept_apart_from_staleness() -> None:
    storage, state = Storage(), TargetState(TARGET)
    ingest(state, b"n NaN\n", T0, 0.01, storage, 10)
    value = series_of(storage, "n").popitem()[1][0][1]
    assert math.isnan(value) and not is_stale(value)


def test_targets_are_the_monitor_then_every_client_at_its_public_address(tmp_path: Path) -> None:
    text = topology_text(
        {"domain": "foobar.com", "entry": "lb"},
        [
            host("client", "client", "127.90.0.10"),
            resolver("127.90.3.1", 53),
            host(
                "lb-host",
                "balancer",
                "127.90.1.1",
                services=[
                    service("lb", "balancer", {"https": 443}, backends=["web"]),
                    service("mon-lb", "monitor-client", {"metrics": 9100}),
                ],
            ),
            host(
                "web-host",
                "server",
                "127.90.2.1",
                services=[
                    service("web", "web", {"http": 80}, store="store"),
                    service("store", "store", {"http": 8100}, read_from="db", write_to="db"),
                    service("db", "mariadb", {"mysql": 3307}),
                    service("mon-web", "monitor-client", {"metrics": 9101}),
                ],
            ),
            host("mon", "monitor", "127.90.4.1", services=[service("monitor", "monitor", {"http": 9090})]),
        ],
    )
    path = tmp_path / "t.toml"
    path.write_text(text)
    targets = targets_of(load(path), "monitor")
    assert [(t.job, t.host, t.instance) for t in targets] == [
        ("monitor", "mon", "127.90.4.1:9090"),
        ("monitor-client", "lb-host", "127.90.1.1:9100"),
        ("monitor-client", "web-host", "127.90.2.1:9101"),
    ]
    assert targets[1].scrape_url == "http://127.90.1.1:9100/metrics"
