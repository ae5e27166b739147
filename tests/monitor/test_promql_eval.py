"""PromQL evaluation against Prometheus's own expectations (promql/testdata of 2.42, ported as tables).

Each table loads series in promtool's expanding notation at a fixed interval, then evaluates
instant queries; the expected answers are the ones Prometheus's test data gives.  Values compare
to 1e-9 relative (Prometheus's own tests compare approximately too); NaN equals NaN here.
"""

from __future__ import annotations

import math

import pytest

from foobar_ref.monitor.promql import Engine, PromQLError, Scalar, Vector, parse_metric
from foobar_ref.monitor.promql.lexer import parse_duration_text
from foobar_ref.monitor.ruletest import expand_values
from foobar_ref.monitor.tsdb import Labels, Storage


def load(interval: str, series: dict[str, str], storage: Storage | None = None) -> Storage:
    """A storage holding `series` (metric text -> expanding notation), one sample per interval from 0."""
    storage = storage or Storage(retention_s=10**9, max_bytes=2**40)
    step_ms = parse_duration_text(interval)
    assert step_ms is not None
    for metric, values in series.items():
        labels = parse_metric(metric)
        for index, value in enumerate(expand_values(values)):
            if value is not None:
                storage.append(labels, index * step_ms, value)
    return storage


def seconds(text: str) -> float:
    milliseconds = parse_duration_text(text)
    assert milliseconds is not None, text
    return milliseconds / 1000


def evaluate(engine: Engine, query: str, at: str) -> dict[Labels, float]:
    result = engine.instant(query, seconds(at))
    if isinstance(result, Scalar):
        return {(): result.value}
    assert isinstance(result, Vector)
    found = {sample.labels: sample.value for sample in result.samples}
    assert len(found) == len(result.samples)
    return found


def expected(table: dict[str, float]) -> dict[Labels, float]:
    return {parse_metric(metric): value for metric, value in table.items()}


def same(got: dict[Labels, float], want: dict[Labels, float]) -> bool:
    if set(got) != set(want):
        return False
    for labels, value in want.items():
        other = got[labels]
        if math.isnan(value) or math.isnan(other):
            if not (math.isnan(value) and math.isnan(other)):
                return False
        elif value != pytest.approx(other, rel=1e-9, abs=1e-12):
            return False
    return True


HTTP_REQUESTS = {
    'http_requests{job="api-server", instance="0", group="production"}': "0+10x10",
    'http_requests{job="api-server", instance="1", group="production"}': "0+20x10",
    'http_requests{job="api-server", instance="0", group="canary"}': "0+30x10",
    'http_requests{job="api-server", instance="1", group="canary"}': "0+40x10",
    'http_requests{job="app-server", instance="0", group="production"}': "0+50x10",
    'http_requests{job="app-server", instance="1", group="production"}': "0+60x10",
    'http_requests{job="app-server", instance="0", group="canary"}': "0+70x10",
    'http_requests{job="app-server", instance="1", group="canary"}': "0+80x10",
    'vector_matching_a{l="x"}': "0+1x100",
    'vector_matching_a{l="y"}': "0+2x50",
    'vector_matching_b{l="x"}': "0+4x25",
    'foo{job="api-server", instance="0", region="europe"}': "0+90x10",
    'foo{job="api-server"}': "0+100x10",
}

# (query, time, expected samples): from aggregators.test and operators.test, loaded at 5m.
AGGREGATION_AND_OPERATORS = [
    ('SUM BY (group) (http_requests{job="api-server"})', "50m", {'{group="canary"}': 700, '{group="production"}': 300}),
    ('sum(http_requests{job="api-server"}) by (group)', "50m", {'{group="canary"}': 700, '{group="production"}': 300}),
    ('avg by (group) (http_requests{job="api-server"})', "50m", {'{group="canary"}': 350, '{group="production"}': 150}),
    ('count by (group) (http_requests{job="api-server"})', "50m", {'{group="canary"}': 2, '{group="production"}': 2}),
    (
        'sum without (instance) (http_requests{job="api-server"})',
        "50m",
        {'{group="canary",job="api-server"}': 700, '{group="production",job="api-server"}': 300},
    ),
    ('sum by () (http_requests{job="api-server"})', "50m", {"{}": 1000}),
    (
        'sum without () (http_requests{job="api-server",group="production"})',
        "50m",
        {
            '{group="production",job="api-server",instance="0"}': 100,
            '{group="production",job="api-server",instance="1"}': 200,
        },
    ),
    (
        'sum without (instance) (http_requests{job="api-server"} or foo)',
        "50m",
        {
            '{group="canary",job="api-server"}': 700,
            '{group="production",job="api-server"}': 300,
            '{region="europe",job="api-server"}': 900,
            '{job="api-server"}': 1000,
        },
    ),
    (
        "sum(http_requests) by (job) + min(http_requests) by (job) + max(http_requests) by (job) + "
        "avg(http_requests) by (job)",
        "50m",
        {'{job="app-server"}': 4550, '{job="api-server"}': 1750},
    ),
    ("SUM(http_requests) BY (job, nonexistent)", "50m", {'{job="api-server"}': 1000, '{job="app-server"}': 2600}),
    ("MIN(http_requests) BY (job)", "50m", {'{job="api-server"}': 100, '{job="app-server"}': 500}),
    ("MAX(http_requests) BY (job)", "50m", {'{job="api-server"}': 400, '{job="app-server"}': 800}),
    ("group by (job) (http_requests)", "50m", {'{job="api-server"}': 1, '{job="app-server"}': 1}),
    ('stddev(http_requests{job="api-server"})', "50m", {"{}": 111.80339887498948}),
    ('stdvar(http_requests{job="api-server"})', "50m", {"{}": 12500}),
    ("quantile(0.8, http_requests) by (job)", "50m", {'{job="api-server"}': 340, '{job="app-server"}': 740}),
    (
        "topk(1, http_requests) by (job)",
        "50m",
        {
            'http_requests{group="canary", instance="1", job="api-server"}': 400,
            'http_requests{group="canary", instance="1", job="app-server"}': 800,
        },
    ),
    (
        'bottomk(2, http_requests{job="api-server"})',
        "50m",
        {
            'http_requests{group="production", instance="0", job="api-server"}': 100,
            'http_requests{group="production", instance="1", job="api-server"}': 200,
        },
    ),
    (
        "SUM(http_requests) BY (job) - COUNT(http_requests) BY (job)",
        "50m",
        {'{job="api-server"}': 996, '{job="app-server"}': 2596},
    ),
    ("2 - SUM(http_requests) BY (job)", "50m", {'{job="api-server"}': -998, '{job="app-server"}': -2598}),
    (
        '-http_requests{job="api-server",instance="0",group="production"}',
        "50m",
        {'{job="api-server",instance="0",group="production"}': -100},
    ),
    (
        '+http_requests{job="api-server",instance="0",group="production"}',
        "50m",
        {'http_requests{job="api-server",instance="0",group="production"}': 100},
    ),
    ("- - - SUM(http_requests) BY (job)", "50m", {'{job="api-server"}': -1000, '{job="app-server"}': -2600}),
    ("- - - 1", "50m", {"{}": -1}),
    ("-2^---1*3", "50m", {"{}": -1.5}),
    ("2/-2^---1*3+2", "50m", {"{}": -10}),
    (
        "-10^3 * - SUM(http_requests) BY (job) ^ -1",
        "50m",
        {'{job="api-server"}': 1, '{job="app-server"}': 0.38461538461538464},
    ),
    ("SUM(http_requests) BY (job) % 3", "50m", {'{job="api-server"}': 1, '{job="app-server"}': 2}),
    ("SUM(http_requests) BY (job) % 0.3", "50m", {'{job="api-server"}': 0.1, '{job="app-server"}': 0.2}),
    ("SUM(http_requests) BY (job) % 2 ^ 3 ^ 2", "50m", {'{job="api-server"}': 488, '{job="app-server"}': 40}),
    ("SUM(http_requests) BY (job) % 2 ^ 3 ^ 2 ^ 2", "50m", {'{job="api-server"}': 1000, '{job="app-server"}': 2600}),
    (
        "COUNT(http_requests) BY (job) ^ COUNT(http_requests) BY (job)",
        "50m",
        {'{job="api-server"}': 256, '{job="app-server"}': 256},
    ),
    ("SUM(http_requests) BY (job) / 0", "50m", {'{job="api-server"}': math.inf, '{job="app-server"}': math.inf}),
    (
        '-1 * http_requests{group="canary", instance="0", job="api-server"} / 0',
        "50m",
        {'{group="canary", instance="0", job="api-server"}': -math.inf},
    ),
    (
        '0 * http_requests{group="canary", instance="0", job="api-server"} / 0',
        "50m",
        {'{group="canary", instance="0", job="api-server"}': math.nan},
    ),
    (
        '0 * http_requests{group="canary", instance="0", job="api-server"} % 0',
        "50m",
        {'{group="canary", instance="0", job="api-server"}': math.nan},
    ),
    (
        'http_requests{job="api-server", group="canary"} + rate(http_requests{job="api-server"}[5m]) * 5 * 60',
        "50m",
        {
            '{group="canary", instance="0", job="api-server"}': 330,
            '{group="canary", instance="1", job="api-server"}': 440,
        },
    ),
    (
        'rate(http_requests{group="production"}[25m]) * 25 * 60',
        "50m",
        {
            '{group="production", instance="0", job="api-server"}': 50,
            '{group="production", instance="0", job="app-server"}': 249.99999999999997,
            '{group="production", instance="1", job="api-server"}': 100,
            '{group="production", instance="1", job="app-server"}': 300,
        },
    ),
    (
        'http_requests{group="canary"} and http_requests{instance="0"}',
        "50m",
        {
            'http_requests{group="canary", instance="0", job="api-server"}': 300,
            'http_requests{group="canary", instance="0", job="app-server"}': 700,
        },
    ),
    (
        '(http_requests{group="canary"} + 1) and on(instance) http_requests{instance="0", group="production"}',
        "50m",
        {
            '{group="canary", instance="0", job="api-server"}': 301,
            '{group="canary", instance="0", job="app-server"}': 701,
        },
    ),
    (
        '(http_requests{group="canary"} + 1) or http_requests{instance="1"}',
        "50m",
        {
            '{group="canary", instance="0", job="api-server"}': 301,
            '{group="canary", instance="0", job="app-server"}': 701,
            '{group="canary", instance="1", job="api-server"}': 401,
            '{group="canary", instance="1", job="app-server"}': 801,
            'http_requests{group="production", instance="1", job="api-server"}': 200,
            'http_requests{group="production", instance="1", job="app-server"}': 600,
        },
    ),
    (
        '(http_requests{group="canary"} + 1) or on(instance) (http_requests or cpu_count or vector_matching_a)',
        "50m",
        {
            '{group="canary", instance="0", job="api-server"}': 301,
            '{group="canary", instance="0", job="app-server"}': 701,
            '{group="canary", instance="1", job="api-server"}': 401,
            '{group="canary", instance="1", job="app-server"}': 801,
            'vector_matching_a{l="x"}': 10,
            'vector_matching_a{l="y"}': 20,
        },
    ),
    (
        'http_requests{group="canary"} unless http_requests{instance="0"}',
        "50m",
        {
            'http_requests{group="canary", instance="1", job="api-server"}': 400,
            'http_requests{group="canary", instance="1", job="app-server"}': 800,
        },
    ),
    ('http_requests{group="canary"} unless on(job) http_requests{instance="0"}', "50m", {}),
    (
        'http_requests{group="canary"} / on(instance,job) http_requests{group="production"}',
        "50m",
        {
            '{instance="0", job="api-server"}': 3,
            '{instance="0", job="app-server"}': 1.4,
            '{instance="1", job="api-server"}': 2,
            '{instance="1", job="app-server"}': 1.3333333333333333,
        },
    ),
    (
        'http_requests{group="canary"} / ignoring(group) http_requests{group="production"}',
        "50m",
        {
            '{instance="0", job="api-server"}': 3,
            '{instance="0", job="app-server"}': 1.4,
            '{instance="1", job="api-server"}': 2,
            '{instance="1", job="app-server"}': 1.3333333333333333,
        },
    ),
    ("SUM(http_requests) BY (job) > 1000", "50m", {'{job="app-server"}': 2600}),
    ("1000 < SUM(http_requests) BY (job)", "50m", {'{job="app-server"}': 2600}),
    ("SUM(http_requests) BY (job) <= 1000", "50m", {'{job="api-server"}': 1000}),
    ("SUM(http_requests) BY (job) == bool 1000", "50m", {'{job="api-server"}': 1, '{job="app-server"}': 0}),
    (
        "SUM(http_requests) BY (job) != bool SUM(http_requests) BY (job)",
        "50m",
        {'{job="api-server"}': 0, '{job="app-server"}': 0},
    ),
    ("0 == bool 1", "50m", {"{}": 0}),
    (
        'http_requests{job="api-server", instance="0", group="production"} == bool 100',
        "50m",
        {'{job="api-server", instance="0", group="production"}': 1},
    ),
    # comparisons keep the metric name, arithmetic drops it
    (
        'http_requests{job="api-server", group="production"} > 150',
        "50m",
        {'http_requests{job="api-server", instance="1", group="production"}': 200},
    ),
    ("vector_matching_a - on(l) vector_matching_b", "50m", {'{l="x"}': -30}),
    ("vector(1) + vector(2)", "50m", {"{}": 3}),
    ("scalar(vector_matching_b) * 2", "50m", {"{}": 80}),
    ("scalar(http_requests)", "50m", {"{}": math.nan}),
    ("time()", "50m", {"{}": 3000}),
    ("vector(time())", "50m", {"{}": 3000}),
    ('absent(nonexistent{job="x", a=~"b", c="d", c="e"})', "50m", {'{job="x"}': 1}),
    ("absent(http_requests)", "50m", {}),
    ("absent(sum(nonexistent))", "50m", {"{}": 1}),
    (
        'clamp_min(http_requests{job="api-server", group="canary"}, 350)',
        "50m",
        {
            '{job="api-server", group="canary", instance="0"}': 350,
            '{job="api-server", group="canary", instance="1"}': 400,
        },
    ),
    (
        'clamp_max(http_requests{job="api-server", group="canary"}, 350)',
        "50m",
        {
            '{job="api-server", group="canary", instance="0"}': 300,
            '{job="api-server", group="canary", instance="1"}': 350,
        },
    ),
    ('clamp(http_requests{job="api-server", group="canary"}, 350, 300)', "50m", {}),
    (
        'round(0.004 * http_requests{group="production",job="api-server"})',
        "50m",
        {
            '{group="production", instance="0", job="api-server"}': 0,
            '{group="production", instance="1", job="api-server"}': 1,
        },
    ),
    (
        'round(-1 * (0.004 * http_requests{group="production",job="api-server"}))',
        "50m",
        {
            '{group="production", instance="0", job="api-server"}': 0,
            '{group="production", instance="1", job="api-server"}': -1,
        },
    ),
    (
        'round(0.005 * http_requests{group="production",job="api-server"})',
        "50m",
        {
            '{group="production", instance="0", job="api-server"}': 1,
            '{group="production", instance="1", job="api-server"}': 1,
        },
    ),
    (
        'round(http_requests{group="production",job="api-server"}, 30)',
        "50m",
        {
            '{group="production", instance="0", job="api-server"}': 90,
            '{group="production", instance="1", job="api-server"}': 210,
        },
    ),
    (
        'ceil(0.004 * http_requests{group="production",job="api-server"})',
        "50m",
        {
            '{group="production", instance="0", job="api-server"}': 1,
            '{group="production", instance="1", job="api-server"}': 1,
        },
    ),
    ("sqrt(vector_matching_b)", "50m", {'{l="x"}': math.sqrt(40)}),
    ("ln(vector_matching_b - 40)", "50m", {'{l="x"}': -math.inf}),
    ("exp(vector_matching_b * 100)", "50m", {'{l="x"}': math.inf}),
]


@pytest.mark.parametrize(
    ("query", "at", "want"), AGGREGATION_AND_OPERATORS, ids=[c[0] for c in AGGREGATION_AND_OPERATORS]
)
def test_aggregations_and_operators(query: str, at: str, want: dict[str, float]) -> None:
    engine = Engine(load("5m", HTTP_REQUESTS))
    got = evaluate(engine, query, at)
    assert same(got, expected(want)), got


RATE_SERIES = {
    'http_requests{path="/foo"}': "0+10x10",
    'http_requests{path="/bar"}': "0+10x5 0+10x5",
    "testcounter_reset_middle": "0+10x4 0+10x5",
    "testcounter_reset_end": "0+10x9 0 10",
    'calculate_rate_offset{x="a"}': "0+10x10",
    'calculate_rate_offset{x="b"}': "0+20x10",
    "calculate_rate_window": "0+80x10",
    'resets_series{path="/foo"}': "1 2 3 0 1 0 0 1 2 0",
    'resets_series{path="/bar"}': "1 2 3 4 5 1 2 3 4 5",
    'resets_series{path="/biz"}': "0 0 0 0 0 1 1 1 1 1",
    'delta_series{path="/foo"}': "0 50 100 150 200",
    'delta_series{path="/bar"}': "200 150 100 50 0",
    'reset_once{path="/foo"}': "0 1 2 3 2 3 4",
}

# from functions.test, loaded at 5m
RANGE_FUNCTIONS = [
    ("increase(http_requests[50m])", "50m", {'{path="/foo"}': 100, '{path="/bar"}': 90}),
    ("increase(http_requests[100m])", "50m", {'{path="/foo"}': 100, '{path="/bar"}': 90}),
    ("increase(reset_once[30m])", "30m", {'{path="/foo"}': 7}),
    ("rate(testcounter_reset_middle[50m])", "50m", {"{}": 0.03}),
    ("rate(testcounter_reset_end[5m])", "50m", {"{}": 0}),
    ("rate(calculate_rate_window[50m])", "50m", {"{}": 0.26666666666666666}),
    (
        "rate(calculate_rate_offset[10m] offset 5m)",
        "50m",
        {'{x="a"}': 0.03333333333333333, '{x="b"}': 0.06666666666666667},
    ),
    ("irate(http_requests[50m])", "50m", {'{path="/foo"}': 0.03333333333333333, '{path="/bar"}': 0.03333333333333333}),
    ("irate(http_requests[50m])", "30m", {'{path="/foo"}': 0.03333333333333333, '{path="/bar"}': 0}),
    ("delta(delta_series[20m])", "20m", {'{path="/foo"}': 200, '{path="/bar"}': -200}),
    ("idelta(delta_series[20m])", "20m", {'{path="/foo"}': 50, '{path="/bar"}': -50}),
    ("deriv(testcounter_reset_middle[100m])", "50m", {"{}": 0.010606060606060607}),
    ("predict_linear(testcounter_reset_middle[100m], 3600)", "50m", {"{}": 76.81818181818181}),
    ("resets(resets_series[5m])", "50m", {'{path="/foo"}': 0, '{path="/bar"}': 0, '{path="/biz"}': 0}),
    ("resets(resets_series[20m])", "50m", {'{path="/foo"}': 1, '{path="/bar"}': 0, '{path="/biz"}': 0}),
    ("resets(resets_series[30m])", "50m", {'{path="/foo"}': 2, '{path="/bar"}': 1, '{path="/biz"}': 0}),
    ("resets(resets_series[50m])", "50m", {'{path="/foo"}': 3, '{path="/bar"}': 1, '{path="/biz"}': 0}),
    ("changes(resets_series[20m])", "50m", {'{path="/foo"}': 3, '{path="/bar"}': 3, '{path="/biz"}': 0}),
    ("changes(resets_series[30m])", "50m", {'{path="/foo"}': 4, '{path="/bar"}': 5, '{path="/biz"}': 1}),
    ("changes((resets_series[50m]))", "50m", {'{path="/foo"}': 8, '{path="/bar"}': 9, '{path="/biz"}': 1}),
    ("changes(nonexistent_metric[50m])", "50m", {}),
    ("count_over_time(http_requests[20m])", "50m", {'{path="/foo"}': 5, '{path="/bar"}': 5}),
    ("sum_over_time(delta_series[20m])", "20m", {'{path="/foo"}': 500, '{path="/bar"}': 500}),
    ("avg_over_time(delta_series[20m])", "20m", {'{path="/foo"}': 100, '{path="/bar"}': 100}),
    ("max_over_time(delta_series[20m])", "20m", {'{path="/foo"}': 200, '{path="/bar"}': 200}),
    ("min_over_time(delta_series[15m])", "20m", {'{path="/foo"}': 50, '{path="/bar"}': 0}),
    ("last_over_time(delta_series[20m])", "20m", {'delta_series{path="/foo"}': 200, 'delta_series{path="/bar"}': 0}),
    ("quantile_over_time(0.5, delta_series[20m])", "20m", {'{path="/foo"}': 100, '{path="/bar"}': 100}),
    (
        "stddev_over_time(delta_series[20m])",
        "20m",
        {'{path="/foo"}': 70.71067811865476, '{path="/bar"}': 70.71067811865476},
    ),
    ("present_over_time(delta_series[1m])", "20m", {'{path="/foo"}': 1, '{path="/bar"}': 1}),
    ('absent_over_time(delta_series{path="/foo"}[1m])', "20m", {}),
    ('absent_over_time(nonexistent{job="x"}[1m])', "20m", {'{job="x"}': 1}),
]


@pytest.mark.parametrize(("query", "at", "want"), RANGE_FUNCTIONS, ids=[f"{c[0]}@{c[1]}" for c in RANGE_FUNCTIONS])
def test_range_functions(query: str, at: str, want: dict[str, float]) -> None:
    engine = Engine(load("5m", RATE_SERIES))
    assert same(evaluate(engine, query, at), expected(want))


def test_rate_extrapolation_stops_at_the_counters_zero_point() -> None:
    engine = Engine(load("4m", {f'testcounter_zero_cutoff{{start="{m}m"}}': f"{60 * m}+240x10" for m in range(6)}))
    near_start = {f'{{start="{m}m"}}': v for m, v in enumerate([0.5, 0.55, 0.6, 0.65, 0.7, 0.6])}
    assert same(evaluate(engine, "rate(testcounter_zero_cutoff[20m])", "10m"), expected(near_start))
    later = {f'{{start="{m}m"}}': 0.6 for m in range(6)}
    assert same(evaluate(engine, "rate(testcounter_zero_cutoff[20m])", "50m"), expected(later))


SELECTOR_SERIES = {
    'http_requests{job="api-server", instance="0", group="production"}': "0+10x1000 100+30x1000",
    'http_requests{job="api-server", instance="1", group="production"}': "0+20x1000 200+30x1000",
    'http_requests{job="api-server", instance="0", group="canary"}': "0+30x1000 300+80x1000",
    'http_requests{job="api-server", instance="1", group="canary"}': "0+40x2000",
}
ALL_FOUR = {
    '{job="api-server", instance="0", group="production"}': 1,
    '{job="api-server", instance="1", group="production"}': 2,
    '{job="api-server", instance="0", group="canary"}': 3,
    '{job="api-server", instance="1", group="canary"}': 4,
}
PRODUCTION = {k: v for k, v in ALL_FOUR.items() if "production" in k}

# from selectors.test, loaded at 10s
SELECTORS = [
    ("rate(http_requests[1m])", "8000s", ALL_FOUR),
    (
        "rate(http_requests[1m])",
        "18000s",
        {
            '{job="api-server", instance="0", group="production"}': 3,
            '{job="api-server", instance="1", group="production"}': 3,
            '{job="api-server", instance="0", group="canary"}': 8,
            '{job="api-server", instance="1", group="canary"}': 4,
        },
    ),
    ('rate(http_requests{group=~"pro.*"}[1m])', "8000s", PRODUCTION),
    (
        'rate(http_requests{group=~".*ry", instance="1"}[1m])',
        "18000s",
        {'{job="api-server", instance="1", group="canary"}': 4},
    ),
    ('rate(http_requests{instance!="3"}[1m] offset 10000s)', "18000s", ALL_FOUR),
    ('rate(http_requests{instance!="3"}[1m] offset -4000s)', "4000s", ALL_FOUR),
    (
        "rate(http_requests[40s]) - rate(http_requests[1m] offset 10000s)",
        "18000s",
        {
            '{job="api-server", instance="0", group="production"}': 2,
            '{job="api-server", instance="1", group="production"}': 1,
            '{job="api-server", instance="0", group="canary"}': 5,
            '{job="api-server", instance="1", group="canary"}': 0,
        },
    ),
    (
        'http_requests{foo!="bar", job="api-server", instance="1", x!="y", z="", group!=""}',
        "0s",
        {
            'http_requests{job="api-server", instance="1", group="production"}': 0,
            'http_requests{job="api-server", instance="1", group="canary"}': 0,
        },
    ),
    ('rate(http_requests{group=~"(?i:PRO).*"}[1m])', "8000s", PRODUCTION),
    ('rate(http_requests{group=~".*(?i:DUC).*"}[1m])', "8000s", PRODUCTION),
    ('rate(http_requests{group=~"(?i:PRODUCTION)"}[1m])', "8000s", PRODUCTION),
]


@pytest.mark.parametrize(("query", "at", "want"), SELECTORS, ids=[f"{c[0]}@{c[1]}" for c in SELECTORS])
def test_selectors(query: str, at: str, want: dict[str, float]) -> None:
    engine = Engine(load("10s", SELECTOR_SERIES))
    assert same(evaluate(engine, query, at), expected(want))


def test_offset_with_or_keeps_each_sides_names() -> None:
    engine = Engine(load("1m", {'metric1{a="a"}': "0+1x100", 'metric2{b="b"}': "0+1x50"}))
    got = evaluate(engine, "metric1 offset 15m or metric2 offset 45m", "90m")
    assert same(got, expected({'metric1{a="a"}': 75, 'metric2{b="b"}': 45}))


# from staleness.test: a marker hides the series at once; otherwise 5 minutes of lookback
STALENESS = [
    ("metric", "10s", {"metric": 1}),
    ("metric", "20s", {}),
    ("metric", "30s", {"metric": 2}),
    ("metric", "330s", {"metric": 2}),
    ("metric", "331s", {}),
    ("count_over_time(metric[1m])", "30s", {"{}": 3}),
    ("count_over_time(metric[1s])", "10s", {"{}": 1}),
    ("count_over_time(metric[1s])", "20s", {}),
    ("count_over_time(metric[10s])", "20s", {"{}": 1}),
]


@pytest.mark.parametrize(("query", "at", "want"), STALENESS, ids=[f"{c[0]}@{c[1]}" for c in STALENESS])
def test_staleness(query: str, at: str, want: dict[str, float]) -> None:
    engine = Engine(load("10s", {"metric": "0 1 stale 2"}))
    assert same(evaluate(engine, query, at), expected(want))


def test_a_single_sample_goes_stale_after_the_lookback() -> None:
    engine = Engine(load("10s", {"metric": "0"}))
    assert same(evaluate(engine, "metric", "300s"), expected({"metric": 0}))
    assert evaluate(engine, "metric", "301s") == {}
    shorter = Engine(engine.storage, lookback_delta_s=60)
    assert evaluate(shorter, "metric", "61s") == {}


HISTOGRAMS = {
    'testhistogram_bucket{le="0.1", start="positive"}': "0+5x10",
    'testhistogram_bucket{le=".2", start="positive"}': "0+7x10",
    'testhistogram_bucket{le="1e0", start="positive"}': "0+11x10",
    'testhistogram_bucket{le="+Inf", start="positive"}': "0+12x10",
    'testhistogram_bucket{le="-.2", start="negative"}': "0+1x10",
    'testhistogram_bucket{le="-0.1", start="negative"}': "0+2x10",
    'testhistogram_bucket{le="0.3", start="negative"}': "0+2x10",
    'testhistogram_bucket{le="+Inf", start="negative"}': "0+3x10",
    'testhistogram2_bucket{le="0"}': "0+0x10",
    'testhistogram2_bucket{le="2"}': "0+1x10",
    'testhistogram2_bucket{le="4"}': "0+2x10",
    'testhistogram2_bucket{le="6"}': "0+3x10",
    'testhistogram2_bucket{le="+Inf"}': "0+3x10",
    'request_duration_seconds_bucket{job="job1", instance="ins1", le="0.1"}': "0+1x10",
    'request_duration_seconds_bucket{job="job1", instance="ins1", le="0.2"}': "0+3x10",
    'request_duration_seconds_bucket{job="job1", instance="ins1", le="+Inf"}': "0+4x10",
    'request_duration_seconds_bucket{job="job1", instance="ins2", le="0.1"}': "0+2x10",
    'request_duration_seconds_bucket{job="job1", instance="ins2", le="0.2"}': "0+5x10",
    'request_duration_seconds_bucket{job="job1", instance="ins2", le="+Inf"}': "0+6x10",
    'request_duration_seconds_bucket{job="job2", instance="ins1", le="0.1"}': "0+3x10",
    'request_duration_seconds_bucket{job="job2", instance="ins1", le="0.2"}': "0+4x10",
    'request_duration_seconds_bucket{job="job2", instance="ins1", le="+Inf"}': "0+6x10",
    'request_duration_seconds_bucket{job="job2", instance="ins2", le="0.1"}': "0+4x10",
    'request_duration_seconds_bucket{job="job2", instance="ins2", le="0.2"}': "0+7x10",
    'request_duration_seconds_bucket{job="job2", instance="ins2", le="+Inf"}': "0+9x10",
    'mixed_bucket{job="job1", instance="ins1", le="0.1"}': "0+1x10",
    'mixed_bucket{job="job1", instance="ins1", le="0.2"}': "0+1x10",
    'mixed_bucket{job="job1", instance="ins1", le="2e-1"}': "0+1x10",
    'mixed_bucket{job="job1", instance="ins1", le="2.0e-1"}': "0+1x10",
    'mixed_bucket{job="job1", instance="ins1", le="+Inf"}': "0+4x10",
    'mixed_bucket{job="job1", instance="ins2", le="+inf"}': "0+0x10",
    'mixed_bucket{job="job1", instance="ins2", le="+Inf"}': "0+0x10",
    'nonmonotonic_bucket{le="0.1"}': "0+2x10",
    'nonmonotonic_bucket{le="1"}': "0+1x10",
    'nonmonotonic_bucket{le="10"}': "0+5x10",
    'nonmonotonic_bucket{le="100"}': "0+4x10",
    'nonmonotonic_bucket{le="1000"}': "0+9x10",
    'nonmonotonic_bucket{le="+Inf"}': "0+8x10",
}
BOTH = ('{start="positive"}', '{start="negative"}')

# from histograms.test, loaded at 5m
HISTOGRAM_QUANTILES = [
    ("histogram_quantile(-0.1, testhistogram_bucket)", "50m", dict.fromkeys(BOTH, -math.inf)),
    ("histogram_quantile(1.01, testhistogram_bucket)", "50m", dict.fromkeys(BOTH, math.inf)),
    ("histogram_quantile(NaN, testhistogram_bucket)", "50m", dict.fromkeys(BOTH, math.nan)),
    ('histogram_quantile(0, testhistogram_bucket{start="positive"})', "50m", {BOTH[0]: 0}),
    ('histogram_quantile(0, testhistogram_bucket{start="negative"})', "50m", {BOTH[1]: -0.2}),
    ("histogram_quantile(1, testhistogram_bucket)", "50m", {BOTH[0]: 1, BOTH[1]: 0.3}),
    ("histogram_quantile(0.2, testhistogram_bucket)", "50m", {BOTH[0]: 0.048, BOTH[1]: -0.2}),
    ("histogram_quantile(0.5, testhistogram_bucket)", "50m", {BOTH[0]: 0.15, BOTH[1]: -0.15}),
    ("histogram_quantile(0.8, testhistogram_bucket)", "50m", {BOTH[0]: 0.72, BOTH[1]: 0.3}),
    ("histogram_quantile(0.8, rate(testhistogram_bucket[5m]))", "50m", {BOTH[0]: 0.72, BOTH[1]: 0.3}),
    ("histogram_quantile(1./6., testhistogram2_bucket)", "7m", {"{}": 1}),
    ("histogram_quantile(0.5, testhistogram2_bucket)", "7m", {"{}": 3}),
    ("histogram_quantile(5./6., rate(testhistogram2_bucket[15m]))", "47m", {"{}": 5}),
    ("histogram_quantile(0.3, sum(rate(request_duration_seconds_bucket[5m])) by (le))", "50m", {"{}": 0.075}),
    (
        "histogram_quantile(0.5, sum(rate(request_duration_seconds_bucket[5m])) by (le))",
        "50m",
        {"{}": 0.1277777777777778},
    ),
    (
        "histogram_quantile(0.5, avg(rate(request_duration_seconds_bucket[5m])) by (le))",
        "50m",
        {"{}": 0.12777777777777778},
    ),
    (
        "histogram_quantile(0.3, sum(rate(request_duration_seconds_bucket[5m])) by (le, job))",
        "50m",
        {'{job="job1"}': 0.1, '{job="job2"}': 0.0642857142857143},
    ),
    (
        "histogram_quantile(0.5, rate(request_duration_seconds_bucket[5m]))",
        "50m",
        {
            '{instance="ins1", job="job1"}': 0.15,
            '{instance="ins2", job="job1"}': 0.13333333333333333,
            '{instance="ins1", job="job2"}': 0.1,
            '{instance="ins2", job="job2"}': 0.11666666666666667,
        },
    ),
    ("histogram_quantile(0.01, nonmonotonic_bucket)", "50m", {"{}": 0.0045}),
    ("histogram_quantile(0.5, nonmonotonic_bucket)", "50m", {"{}": 8.5}),
    ("histogram_quantile(0.99, nonmonotonic_bucket)", "50m", {"{}": 979.75}),
    (
        "histogram_quantile(0.5, rate(mixed_bucket[5m]))",
        "50m",
        {'{instance="ins1", job="job1"}': 0.15, '{instance="ins2", job="job1"}': math.nan},
    ),
    (
        "histogram_quantile(0.75, rate(mixed_bucket[5m]))",
        "50m",
        {'{instance="ins1", job="job1"}': 0.2, '{instance="ins2", job="job1"}': math.nan},
    ),
    (
        "histogram_quantile(1, rate(mixed_bucket[5m]))",
        "50m",
        {'{instance="ins1", job="job1"}': 0.2, '{instance="ins2", job="job1"}': math.nan},
    ),
]


@pytest.mark.parametrize(
    ("query", "at", "want"), HISTOGRAM_QUANTILES, ids=[f"{c[0]}@{c[1]}" for c in HISTOGRAM_QUANTILES]
)
def test_histogram_quantile(query: str, at: str, want: dict[str, float]) -> None:
    engine = Engine(load("5m", HISTOGRAMS))
    assert same(evaluate(engine, query, at), expected(want)), evaluate(engine, query, at)


def test_histogram_quantile_of_an_empty_first_bucket_is_nan_as_go_divides() -> None:
    engine = Engine(load("1m", {'b_bucket{le="1"}': "0x3", 'b_bucket{le="+Inf"}': "5x3"}))
    got = evaluate(engine, "histogram_quantile(0, b_bucket)", "2m")
    assert list(got) == [()] and math.isnan(got[()])


def test_histogram_quantile_without_an_inf_bucket_is_nan_and_skips_bad_le() -> None:
    engine = Engine(load("1m", {'b_bucket{le="1"}': "1x5", 'b_bucket{le="2"}': "2x5", 'b_bucket{le="x"}': "3x5"}))
    got = evaluate(engine, "histogram_quantile(0.5, b_bucket)", "2m")
    assert list(got) == [()] and math.isnan(got[()])


LABEL_SERIES = {
    'testmetric{src="source-value-10",dst="original-destination-value"}': "0",
    'testmetric{src="source-value-20",dst="original-destination-value"}': "1",
}
ORIGINAL = {
    'testmetric{src="source-value-10",dst="original-destination-value"}': 0,
    'testmetric{src="source-value-20",dst="original-destination-value"}': 1,
}
LABEL_FUNCTIONS = [
    (
        'label_replace(testmetric, "dst", "destination-value-$1", "src", "source-value-(.*)")',
        {
            'testmetric{src="source-value-10",dst="destination-value-10"}': 0,
            'testmetric{src="source-value-20",dst="destination-value-20"}': 1,
        },
    ),
    ('label_replace(testmetric, "dst", "destination-value-$1", "src", "value-(.*)")', ORIGINAL),
    (
        'label_replace(testmetric, "dst", "$1-value-$2", "src", "(.*)-value-(.*)")',
        {
            'testmetric{src="source-value-10",dst="source-value-10"}': 0,
            'testmetric{src="source-value-20",dst="source-value-20"}': 1,
        },
    ),
    ('label_replace(testmetric, "dst", "value-$1", "nonexistent-src", "source-value-(.*)")', ORIGINAL),
    (
        'label_replace(testmetric, "dst", "value-$1", "nonexistent-src", "(.*)")',
        {'testmetric{src="source-value-10",dst="value-"}': 0, 'testmetric{src="source-value-20",dst="value-"}': 1},
    ),
    ('label_replace((((testmetric))), (("dst")), (("value-$1")), (("src")), (("non-matching-regex")))', ORIGINAL),
    (
        'label_replace(testmetric, "dst", "", "dst", ".*")',
        {'testmetric{src="source-value-10"}': 0, 'testmetric{src="source-value-20"}': 1},
    ),
    (  # Go's expansion: `$2y` names a group "2y" (none: empty), `$$` is a dollar
        'label_replace(testmetric, "dst", "${1}x$2y$$", "src", "(?P<a>.*)-(.*)-10")',
        {
            'testmetric{src="source-value-10",dst="sourcex$"}': 0,
            'testmetric{src="source-value-20",dst="original-destination-value"}': 1,
        },
    ),
    (
        'label_join(testmetric, "dst", "-", "src", "src", "dst")',
        {
            'testmetric{src="source-value-10",dst="source-value-10-source-value-10-original-destination-value"}': 0,
            'testmetric{src="source-value-20",dst="source-value-20-source-value-20-original-destination-value"}': 1,
        },
    ),
    (
        'label_join(testmetric, "dst", ",", "nothing")',
        {'testmetric{src="source-value-10"}': 0, 'testmetric{src="source-value-20"}': 1},
    ),
]


@pytest.mark.parametrize(("query", "want"), LABEL_FUNCTIONS, ids=[c[0] for c in LABEL_FUNCTIONS])
def test_label_functions(query: str, want: dict[str, float]) -> None:
    engine = Engine(load("5m", LABEL_SERIES))
    assert same(evaluate(engine, query, "0m"), expected(want))


@pytest.mark.parametrize(
    "query",
    [
        'label_replace(testmetric, "dst", "value-$1", "src", "(.*")',
        'label_replace(testmetric, "invalid-label-name", "", "src", "(.*)")',
        'label_replace(testmetric, "src", "", "", "")',  # two samples with the same labels
    ],
)
def test_label_replace_failures_are_execution_errors(query: str) -> None:
    engine = Engine(load("5m", LABEL_SERIES))
    with pytest.raises(PromQLError) as caught:
        engine.instant(query, 0)
    assert caught.value.error_type == "execution"


def test_timestamp_reads_the_samples_own_time() -> None:
    engine = Engine(load("10s", {"metric": "1 1"}))
    for at, want in (("0s", 0), ("5s", 0), ("10s", 10)):
        assert same(evaluate(engine, "timestamp(metric)", at), {(): want})
        assert same(evaluate(engine, "timestamp(((metric)))", at), {(): want})
    assert same(evaluate(engine, "timestamp(metric + 1)", "5s"), {(): 5})  # not a selector: evaluation time


GROUPING = {
    'node_var{instance="abc",job="node"}': "2",
    'node_role{instance="abc",job="node",role="prometheus"}': "1",
    'node_cpu{instance="abc",job="node",mode="idle"}': "3",
    'node_cpu{instance="abc",job="node",mode="user"}': "1",
    'node_cpu{instance="def",job="node",mode="idle"}': "8",
    'node_cpu{instance="def",job="node",mode="user"}': "2",
}
GROUP_MODIFIERS = [
    ("node_role * on (instance) group_right (role) node_var", {'{instance="abc",job="node",role="prometheus"}': 2}),
    ("node_var * on (instance) group_left (role) node_role", {'{instance="abc",job="node",role="prometheus"}': 2}),
    ("node_var * ignoring (role) group_left (role) node_role", {'{instance="abc",job="node",role="prometheus"}': 2}),
    ("node_role * ignoring (role) group_right (role) node_var", {'{instance="abc",job="node",role="prometheus"}': 2}),
    (
        "node_cpu * ignoring (role, mode) group_left (role) node_role",
        {
            '{instance="abc",job="node",mode="idle",role="prometheus"}': 3,
            '{instance="abc",job="node",mode="user",role="prometheus"}': 1,
        },
    ),
    (
        "node_cpu / on (instance) group_left sum by (instance) (node_cpu)",
        {
            '{instance="abc",job="node",mode="idle"}': 0.75,
            '{instance="abc",job="node",mode="user"}': 0.25,
            '{instance="def",job="node",mode="idle"}': 0.8,
            '{instance="def",job="node",mode="user"}': 0.2,
        },
    ),
]


@pytest.mark.parametrize(("query", "want"), GROUP_MODIFIERS, ids=[c[0] for c in GROUP_MODIFIERS])
def test_group_left_and_right(query: str, want: dict[str, float]) -> None:
    engine = Engine(load("5m", GROUPING))
    assert same(evaluate(engine, query, "5m"), expected(want))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("node_cpu * node_role", None),  # nothing matches one-to-one (role, mode differ): empty, no error
        (
            "node_cpu * on(instance) node_var",
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
        ),
        ("node_var * on(job) group_left node_cpu", "found duplicate series for the match group"),
    ],
)
def test_vector_matching_errors(query: str, message: str | None) -> None:
    engine = Engine(load("5m", GROUPING))
    if message is None:
        assert evaluate(engine, query, "5m") == {}
        return
    with pytest.raises(PromQLError) as caught:
        engine.instant(query, 300)
    assert caught.value.error_type == "execution" and message in caught.value.message


def test_prometheus_3_semantics_are_available_left_open_ranges() -> None:
    storage = load("1m", {"c": "0+10x10"})
    closed = evaluate(Engine(storage), "count_over_time(c[5m])", "5m")
    left_open = evaluate(Engine(storage, left_open=True), "count_over_time(c[5m])", "5m")
    assert closed == {(): 6.0} and left_open == {(): 5.0}
