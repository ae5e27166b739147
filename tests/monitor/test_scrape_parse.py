"""The text-format parser (exposition.py): what it reads, what it refuses, and that it agrees with prometheus_client."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from foobar_ref.monitor.exposition import (
    ExpositionError,
    Labels,
    SeriesCache,
    escape_label_value,
    format_series,
    format_value,
    parse_series,
    parse_value,
)


def plain(name: str, labels: dict[str, str]) -> Labels:
    return tuple(sorted({"__name__": name, **labels}.items()))


def parse(text: str) -> list[tuple[Labels, float]]:
    return SeriesCache().parse(text, plain).samples


def test_reads_samples_comments_and_blank_lines() -> None:
    text = (
        "# HELP http_requests_total The total.\n"
        "# TYPE http_requests_total counter\n"
        "\n"
        'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
        'http_requests_total{method="post",code="400"}    3\n'
        "# a free comment\n"
        "metric_without_labels 12.47\r\n"
        'trailing_comma{a="1",} +Inf\n'
        "nan_value NaN\n"
        "exp_value -1.5e-3\n"
    )
    samples = parse(text)
    assert samples[:3] == [
        (plain("http_requests_total", {"method": "post", "code": "200"}), 1027.0),
        (plain("http_requests_total", {"method": "post", "code": "400"}), 3.0),
        (plain("metric_without_labels", {}), 12.47),
    ]
    assert samples[3] == (plain("trailing_comma", {"a": "1"}), math.inf)
    assert math.isnan(samples[4][1])
    assert samples[5][1] == -0.0015


def test_label_values_with_escapes_braces_and_spaces() -> None:
    text = 'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",'
    text += 'error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9\n'
    text += 'odd{rule="tcp dport 80 } accept",x="a b"} 7\n'
    (first, value), (second, seven) = parse(text)
    assert dict(first)["path"] == "C:\\DIR\\FILE.TXT"
    assert dict(first)["error"] == 'Cannot find file:\n"FILE.TXT"'
    assert value == 1.458255915e9
    assert dict(second) == {"__name__": "odd", "rule": "tcp dport 80 } accept", "x": "a b"}
    assert seven == 7


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("hello world\n", 1, "invalid value 'world'"),
        ("<html><body>503</body></html>\n", 1, "expected a value"),
        ("<html> 1\n", 1, "invalid metric name"),
        ("ok 1\nbad{a=1} 2\n", 2, "invalid label set"),
        ('ok 1\nx{a="1",a="2"} 2\n', 2, "given twice"),
        ('x{a="1" 2\n', 1, "label set not closed"),
        ("x\n", 1, "expected a value"),
        ("x 1 2 3\n", 1, "expected a value"),
        ("x 1_000\n", 1, "invalid value"),
        ("x 0x10\n", 1, "invalid value"),
        ("x 1 12.5\n", 1, "invalid timestamp"),
        ("9x 1\n", 1, "invalid metric name"),
        ('x{9a="1"} 1\n', 1, "invalid label set"),
        ("# TYPE x countr\n", 1, "invalid # TYPE line"),
        ("# TYPE 9x counter\n", 1, "invalid metric name"),
    ],
)
def test_refuses_what_is_not_text_format_naming_the_line(text: str, line: int, says: str) -> None:
    with pytest.raises(ExpositionError) as caught:
        parse(text)
    assert caught.value.line_number == line
    assert says in str(caught.value)
    assert str(caught.value).startswith(f"line {line}: ")


def test_cache_relabels_a_series_once_and_forgets_what_left() -> None:
    calls: list[str] = []

    def counting(name: str, labels: dict[str, str]) -> Labels:
        calls.append(name)
        return plain(name, labels)

    cache = SeriesCache()
    assert cache.commit(cache.parse('a{x="1"} 1\nb 2\n', counting)) == ([], 2)
    gone, added = cache.commit(cache.parse('a{x="1"} 5\nc 3\n', counting))
    assert calls == ["a", "b", "c"]
    assert (gone, added) == ([plain("b", {})], 1)
    assert set(cache.known) == {'a{x="1"}', "c"}
    cache.parse("d 1\n", counting)  # parsed, not committed: the cache still holds the last stored page
    assert set(cache.known) == {'a{x="1"}', "c"}
    assert sorted(cache.forget()) == [plain("a", {"x": "1"}), plain("c", {})] and cache.known == {}


def test_a_series_given_twice_keeps_its_first_value() -> None:
    cache = SeriesCache()
    page = cache.parse('d{a="1",b="2"} 1\nd{b="2",a="1"} 9\nd{a="1",b="2"} 8\ne 1\n', plain)
    assert page.samples == [(plain("d", {"a": "1", "b": "2"}), 1.0), (plain("e", {}), 1.0)]
    assert page.duplicates == 2
    cache.commit(page)
    again = cache.parse('d{b="2",a="1"} 3\nd{a="1",b="2"} 4\ne 2\n', plain)  # cached, then written otherwise
    assert again.samples == [(plain("d", {"a": "1", "b": "2"}), 3.0), (plain("e", {}), 2.0)]
    assert again.duplicates == 1
    assert cache.commit(again) == ([], 1)  # the series written another way is not gone


def test_agrees_with_prometheus_client_on_what_it_writes() -> None:
    registry = CollectorRegistry()
    Counter("requests", "r", ["hop", "code"], registry=registry).labels(hop="web-01", code="200").inc(41)
    Gauge("odd", "o", ["text"], registry=registry).labels(text='quote " back \\ newline \n end').set(-2.5)
    Histogram("latency_seconds", "l", ["hop"], registry=registry).labels(hop="lb-01").observe(0.03)
    text = generate_latest(registry).decode()
    theirs = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ours = {(dict(labels)["__name__"], tuple(p for p in labels if p[0] != "__name__"), v) for labels, v in parse(text)}
    assert ours == theirs


label_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), label_values, max_size=4))
def test_format_and_parse_round_trip(labels: dict[str, str]) -> None:
    series = plain("m", labels)
    assert parse_series(format_series(series)) == ("m", labels)


@given(st.floats(allow_nan=False))
def test_values_round_trip(value: float) -> None:
    assert parse_value(format_value(value)) == value


def test_escape_is_the_text_format_one() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
