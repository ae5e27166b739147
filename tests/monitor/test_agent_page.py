"""The monitoring client's page: its own families and its hops' pages merged, `hop` set on every hop series."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from foobar_ref.monitor.agent.node import NodeSource
from foobar_ref.monitor.agent.page import Families, TextWriter, merge_text, render, text_of
from foobar_ref.observe.metrics import Metrics, parse_exposition


def hop_page(hop: str, outcome: str = "200", count: float = 3) -> str:
    """A page as a hop writes it on its admin socket (observe.metrics.Metrics, prometheus_client)."""
    metrics = Metrics()
    metrics.requests.labels(hop=hop, outcome=outcome).inc(count)
    metrics.latency.labels(hop=hop).observe(0.004)
    return metrics.exposition().decode()


def own() -> Families:
    family = GaugeMetricFamily("foobar_hop_up", "up", labels=["hop"])
    family.add_metric(["web-01"], 1)
    return Families([family])


def test_the_same_family_from_two_hops_is_written_once_with_both_hops() -> None:
    pages = [("web-01", hop_page("web-01")), ("store-01", hop_page("store-01", "201", 5))]
    page, dropped = merge_text(own(), pages, TextWriter())
    text = page.decode()
    assert dropped == 0
    assert text.count("# TYPE foobar_requests_total counter") == 1
    assert text.count("# TYPE foobar_request_seconds histogram") == 1
    samples = parse_exposition(text)
    assert samples[("foobar_requests_total", (("hop", "web-01"), ("outcome", "200")))] == 3
    assert samples[("foobar_requests_total", (("hop", "store-01"), ("outcome", "201")))] == 5
    assert samples[("foobar_request_seconds_bucket", (("hop", "store-01"), ("le", "0.005")))] == 1
    assert samples[("foobar_hop_up", (("hop", "web-01"),))] == 1
    families = {f.name for f in text_string_to_metric_families(text)}
    assert families == {"foobar_hop_up", "foobar_requests", "foobar_request_seconds", "foobar_refused_peers"}


def test_a_hop_series_without_its_hop_label_gets_it_and_a_wrong_one_is_replaced() -> None:
    registry = CollectorRegistry()
    Gauge("plain", "no labels", registry=registry).set(2)
    Counter("backend_events", "other labels first", ["backend", "kind"], registry=registry).labels("a", "x").inc()
    Gauge("claimed", "says another hop", ["hop", "zone"], registry=registry).labels("someone-else", "z").set(1)
    page, dropped = merge_text(Families([]), [("web-01", generate_latest(registry).decode())], TextWriter())
    samples = parse_exposition(page.decode())
    assert dropped == 0
    assert samples == {
        ("plain", (("hop", "web-01"),)): 2,
        ("backend_events_total", (("backend", "a"), ("hop", "web-01"), ("kind", "x"))): 1,
        ("claimed", (("hop", "web-01"), ("zone", "z"))): 1,
    }


def test_lines_that_are_not_exposition_text_are_dropped_and_counted() -> None:
    text = hop_page("web-01") + "this is not a sample\n# TYPE foobar_requests_total gauge\nfoobar_requests_total 9\n"
    page, dropped = merge_text(Families([]), [("web-01", text), ("garbage", "\x00\x01 nothing {{{\n")], TextWriter())
    # the stray line, the second TYPE of foobar_requests_total (refused), its sample, the garbage page's line
    assert dropped == 4
    samples = parse_exposition(page.decode())  # whatever came in, the page parses
    assert samples[("foobar_requests_total", (("hop", "web-01"), ("outcome", "200")))] == 3


label_values = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


@given(
    hop=st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), values=st.lists(label_values, min_size=1, max_size=4)
)
def test_any_label_values_survive_the_merge(hop: str, values: list[str]) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("odd", "label values with quotes, commas, braces, newlines", ["rule"], registry=registry)
    for number, text in enumerate(dict.fromkeys(values)):
        gauge.labels(text).set(number)
    page, dropped = merge_text(Families([]), [(hop, generate_latest(registry).decode())], TextWriter())
    assert dropped == 0
    expected = {("odd", (("hop", hop), ("rule", text))): float(n) for n, text in enumerate(dict.fromkeys(values))}
    assert parse_exposition(page.decode()) == expected


def test_accept_chooses_the_format() -> None:
    pages = [("web-01", hop_page("web-01"))]
    plain = render(own(), pages, None)
    assert plain.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert render(own(), pages, "text/plain;version=0.0.4;q=0.5,*/*;q=0.1").content_type == plain.content_type
    prometheus_accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    open_metrics = render(own(), pages, prometheus_accept)
    assert open_metrics.content_type.startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in openmetrics_families(open_metrics.body.decode())}
    (sample,) = [s for s in families["foobar_requests"].samples if s.name == "foobar_requests_total"]
    assert sample.labels == {"hop": "web-01", "outcome": "200"} and sample.value == 3
    assert families["foobar_hop_up"].samples[0].value == 1


def test_histograms_stay_whole() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lat_seconds", "h", ["hop"], registry=registry, buckets=(0.1, 1))
    histogram.labels("lb-01").observe(0.5)
    page, _ = merge_text(Families([]), [("lb-01", generate_latest(registry).decode())], TextWriter())
    (family,) = text_string_to_metric_families(page.decode())
    assert family.type == "histogram"
    assert [(s.name, s.labels.get("le"), s.value) for s in family.samples] == [
        ("lat_seconds_bucket", "0.1", 0.0),
        ("lat_seconds_bucket", "1.0", 1.0),
        ("lat_seconds_bucket", "+Inf", 1.0),
        ("lat_seconds_count", None, 1.0),
        ("lat_seconds_sum", None, 0.5),
    ]


@given(values=st.lists(label_values, min_size=1, max_size=5), number=st.floats(allow_nan=False))
def test_the_clients_own_text_is_exactly_what_prometheus_client_writes(values: list[str], number: float) -> None:
    registry = CollectorRegistry()
    Counter("c", "a counter\\with \n odd help", ["hop", "a_label"], registry=registry).labels("h", values[0]).inc(3)
    Gauge("g", "gauge", registry=registry).set(number)
    gauge = Gauge("lg", "labelled gauge", ["z", "a"], registry=registry)
    for text in values:
        gauge.labels(text, "x").set(1e21)
    Histogram("h_seconds", "histogram", ["hop"], registry=registry).labels("h").observe(0.3)
    Summary("s", "summary", registry=registry).observe(2)
    Info("build", "info", registry=registry).info({"version": values[-1]})
    Enum("state", "enum", states=["up", "down"], registry=registry).state("down")
    writer = TextWriter()
    assert text_of(registry, writer) == generate_latest(registry).decode()
    assert text_of(registry, writer) == generate_latest(registry).decode()  # again, from the kept series' text


def test_the_clients_own_text_for_the_host_figures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    families = Families(NodeSource(tmp_path).collect())
    assert text_of(families) == generate_latest(families).decode()
