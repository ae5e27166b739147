"""PromQL, the subset the monitoring service's rules and dashboard use. Pure: no I/O, no clock.

    engine = Engine(storage)                       # storage: foobar_ref.monitor.tsdb.Storage
    result = engine.instant('sum by (hop) (rate(foobar_http_requests_total[1m]))', t_s=now)
    matrix = engine.range('up', start_s, end_s, step_s=15)
    result_json(result)      # the `data` of Prometheus's /api/v1/query answer

What is evaluated: number and string literals; vector selectors with `=`, `!=`, `=~`, `!~`
matchers (regexes anchored, RE2-like); range selectors and `offset`; `rate`, `irate`, `increase`,
`delta`, `idelta`, `deriv`, `predict_linear`, `changes`, `resets`, `*_over_time` (avg, min, max,
sum, count, last, stddev, stdvar, quantile, present, absent); `histogram_quantile` on classic
buckets; `absent`, `time`, `vector`, `scalar`, `timestamp`, `clamp*`, `round`, the arithmetic
functions (abs, ceil, floor, exp, sqrt, ln, log2, log10, sgn), `sort*`, `label_replace`,
`label_join`; aggregations `sum avg count min max group stddev stdvar topk bottomk quantile` with
`by`/`without`; binary `+ - * / % ^ atan2`, comparisons with and without `bool`, `and or unless`,
`on`/`ignoring` and `group_left`/`group_right`; unary minus; parentheses.

Anything else (subqueries, `@`, `count_values`, trigonometry, date functions, native histograms)
is refused with Prometheus's `bad_data` error naming line and column, never evaluated wrongly.

Modules: lexer, parser (text -> typed tree), ast, engine (loading and stepping), calls and
functions (Prometheus 2.42's arithmetic), aggregation, binary, values (results and their JSON).
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from foobar_ref.monitor.promql.engine import Engine, to_ms
from foobar_ref.monitor.promql.errors import PromQLError
from foobar_ref.monitor.promql.lexer import parse_duration_text
from foobar_ref.monitor.promql.parser import parse, parse_matchers, parse_metric
from foobar_ref.monitor.promql.values import (
    Matrix,
    Result,
    Sample,
    Scalar,
    Series,
    String,
    Vector,
    format_value,
    go_exponent,
    go_value,
    result_json,
    rfc3339,
)

__all__ = [
    "Engine",
    "Matrix",
    "PromQLError",
    "Result",
    "Sample",
    "Scalar",
    "Series",
    "String",
    "Vector",
    "format_duration",
    "format_value",
    "go_exponent",
    "go_value",
    "parse",
    "parse_duration",
    "parse_matchers",
    "parse_metric",
    "parse_time",
    "result_json",
    "rfc3339",
    "to_ms",
]

_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_duration(text: str) -> float:
    """Seconds of an API duration: a float number of seconds (`15`, `0.5`) or a duration (`5m`, `1h30m`)."""
    text = text.strip()
    if _FLOAT.fullmatch(text):
        seconds = float(text)
        if not math.isfinite(seconds) or seconds > 2**63 / 1e9:
            raise PromQLError("bad_data", f'cannot parse "{text}" to a valid duration. It overflows int64')
        return seconds
    milliseconds = parse_duration_text(text)
    if milliseconds is None:
        raise PromQLError("bad_data", f'cannot parse "{text}" to a valid duration')
    return milliseconds / 1000


def format_duration(seconds: float) -> str:
    """Prometheus's way of writing a duration: `1h30m`, `5m`, `15s`, `250ms`, `0s`."""
    milliseconds = round(seconds * 1000)
    if milliseconds == 0:
        return "0s"
    parts = []
    for unit, size in (("y", 31_536_000_000), ("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000)):
        if milliseconds >= size:
            parts.append(f"{milliseconds // size}{unit}")
            milliseconds %= size
    for unit, size in (("m", 60_000), ("s", 1000), ("ms", 1)):
        if milliseconds >= size:
            parts.append(f"{milliseconds // size}{unit}")
            milliseconds %= size
    return "".join(parts)


def parse_time(text: str) -> float:
    """Unix seconds of an API time: a float (`1700000000.5`) or RFC 3339 (`2023-11-14T22:13:20Z`)."""
    text = text.strip()
    if _FLOAT.fullmatch(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PromQLError("bad_data", f'cannot parse "{text}" to a valid timestamp') from None
    if moment.tzinfo is None:
        raise PromQLError("bad_data", f'cannot parse "{text}" to a valid timestamp')
    return moment.timestamp()
