"""PromQL results as Prometheus's API writes them, range queries, and the engine's bounds."""

from __future__ import annotations

import math

import pytest

from foobar_ref.monitor.promql import (
    Engine,
    Matrix,
    PromQLError,
    format_duration,
    format_value,
    go_exponent,
    go_value,
    parse_time,
    result_json,
    rfc3339,
)
from foobar_ref.monitor.tsdb import Storage
from tests.monitor.test_promql_eval import load


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (123456789.125, "123456789.125"),
        (1 / 3, "0.3333333333333333"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (0.0, "0"),
    ],
)
def test_sample_values_are_written_as_go_formats_them(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("value", "percent_v", "exponent"),
    [
        (1.0, "1", "1e+00"),
        (0.5, "0.5", "5e-01"),
        (1234567.0, "1.234567e+06", "1.234567e+06"),
        (100000.0, "100000", "1e+05"),
        (0.0001, "0.0001", "1e-04"),
        (0.00001, "1e-05", "1e-05"),
        (math.inf, "+Inf", "+Inf"),
    ],
)
def test_go_percent_v_and_exponent_forms(value: float, percent_v: str, exponent: str) -> None:
    assert go_value(value) == percent_v
    assert go_exponent(value) == exponent


def test_times() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1700000000.25) == "2023-11-14T22:13:20.25Z"
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_time("1700000000.5") == 1700000000.5
    with pytest.raises(PromQLError):
        parse_time("yesterday")
    assert format_duration(5400) == "1h30m" and format_duration(0.25) == "250ms" and format_duration(0) == "0s"


def test_instant_results_in_the_apis_shapes() -> None:
    engine = Engine(load("15s", {'up{job="web"}': "1 1 0"}))
    assert result_json(engine.instant("up", 30)) == {
        "resultType": "vector",
        "result": [{"metric": {"__name__": "up", "job": "web"}, "value": [30, "0"]}],
    }
    assert result_json(engine.instant("1 + 1", 30.5)) == {"resultType": "scalar", "result": [30.5, "2"]}
    assert result_json(engine.instant('"hello"', 30)) == {"resultType": "string", "result": [30, "hello"]}
    assert result_json(engine.instant("up[30s]", 30)) == {
        "resultType": "matrix",
        "result": [{"metric": {"__name__": "up", "job": "web"}, "values": [[0, "1"], [15, "1"], [30, "0"]]}],
    }


def test_range_queries_step_through_time_and_sort_series() -> None:
    engine = Engine(load("10s", {'c{i="b"}': "0+10x12", 'c{i="a"}': "0+5x12"}))
    matrix = engine.range("rate(c[30s])", 30, 60, 15)
    assert isinstance(matrix, Matrix)
    assert [dict(s.labels) for s in matrix.series] == [{"i": "a"}, {"i": "b"}]
    assert [t for t, _ in matrix.series[0].points] == [30_000, 45_000, 60_000]
    assert [v for _, v in matrix.series[1].points] == pytest.approx([1.0, 1.0, 1.0])
    scalar = result_json(engine.range("time()", 0, 20, 10))
    assert scalar == {"resultType": "matrix", "result": [{"metric": {}, "values": [[0, "0"], [10, "10"], [20, "20"]]}]}


def test_range_queries_leave_gaps_where_a_series_is_absent() -> None:
    engine = Engine(load("10s", {"x": "1 _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ 1 stale"}))
    matrix = engine.range("x", 0, 400, 100)
    assert [t for t, _ in matrix.series[0].points] == [0, 100_000, 200_000, 300_000]  # 400 s: stale


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 0), "zero or negative query resolution step widths are not accepted"),
        ((10, 0, 1), "end timestamp must not be before start time"),
        ((0, 20_000, 1), "exceeded maximum resolution of 11,000 points per timeseries"),
    ],
)
def test_range_query_arguments_are_checked(args: tuple[float, float, float], message: str) -> None:
    with pytest.raises(PromQLError) as caught:
        Engine(Storage()).range("up", *args)
    assert caught.value.error_type == "bad_data" and message in caught.value.message


def test_range_queries_want_scalars_or_instant_vectors() -> None:
    with pytest.raises(PromQLError) as caught:
        Engine(Storage()).range("up[5m]", 0, 10, 1)
    assert 'invalid expression type "range vector" for range query' in caught.value.message


def test_too_many_samples_is_an_execution_error() -> None:
    storage = load("1s", {f'm{{i="{i}"}}': "1x300" for i in range(20)})
    engine = Engine(storage, max_samples=1000)
    assert len(engine.instant("m", 100).samples) == 20  # type: ignore[union-attr]
    for run in (lambda: engine.instant("count_over_time(m[5m])", 300), lambda: engine.range("m", 0, 300, 1)):
        with pytest.raises(PromQLError) as caught:
            run()
        assert caught.value.error_type == "execution"
        assert caught.value.message == "query processing would load too many samples into memory in query execution"


def test_result_series_are_bounded() -> None:
    engine = Engine(load("1s", {f'm{{i="{i}"}}': "1" for i in range(30)}), max_series=10)
    with pytest.raises(PromQLError) as caught:
        engine.instant("m", 0)
    assert caught.value.error_type == "execution"
    assert len(engine.instant("sum(m)", 0).samples) == 1  # type: ignore[union-attr]


def test_a_caller_can_stop_a_long_query() -> None:
    engine = Engine(load("1s", {"m": "1x100"}))
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(PromQLError) as caught:
        engine.range("m", 0, 100, 1, should_stop=stop)
    assert caught.value.error_type == "timeout" and caught.value.message == "query timed out in expression evaluation"


def test_duplicate_output_series_are_refused() -> None:
    engine = Engine(load("1s", {'a{x="1"}': "1", 'b{x="1"}': "2"}))
    with pytest.raises(PromQLError) as caught:
        engine.instant('rate({__name__=~"a|b"}[5s]) or abs({__name__=~"a|b"})', 0)
    assert caught.value.message == "vector cannot contain metrics with the same labelset"
