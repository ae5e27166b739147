"""PromQL's functions, computed as Prometheus 2.42 computes them (promql/functions.go, quantile.go). Pure.

Range functions see one series' window: parallel `t_ms`/`values` columns and the slice [lo, hi) of
samples inside the range (staleness markers already removed).  They return a float, or None when
the series gives no output at this step (fewer than two samples for a rate, say).  The arithmetic
follows Go's operation order, so results agree with Prometheus to the last bit (promtool's rule
tests compare floats exactly): `extrapolatedRate` adds counter-reset corrections after `last -
first`, sums and means use Kahan-Neumaier compensation where Prometheus does, and Go's float
special cases give Inf or NaN rather than Python exceptions (gomath.py).

Where Prometheus 3 changed a computation (the order of the zero-point and threshold checks in
`extrapolatedRate`), the 2.42 behaviour is kept: it is the Prometheus this project's promtool and
federation tests run against.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

from foobar_ref.monitor.promql.gomath import INF, NAN, go_div, go_log, go_log2, go_log10, kahan_inc
from foobar_ref.monitor.promql.gomath import exp as go_exp


def _integral(function: Callable[[float], int]) -> Callable[[float], float]:
    def rounded(value: float) -> float:
        return value if math.isinf(value) or value != value else float(function(value))

    return rounded


def _sgn(value: float) -> float:
    return -1.0 if value < 0 else 1.0 if value > 0 else value


SIMPLE: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": _integral(math.ceil),
    "floor": _integral(math.floor),
    "exp": go_exp,
    "sqrt": lambda v: NAN if v < 0 else math.sqrt(v),
    "ln": go_log,
    "log2": go_log2,
    "log10": go_log10,
    "sgn": _sgn,
}


def round_to(value: float, to_nearest: float) -> float:
    inverse = go_div(1.0, to_nearest)
    scaled = value * inverse + 0.5
    if math.isinf(scaled) or scaled != scaled:
        return go_div(scaled, inverse)
    return go_div(float(math.floor(scaled)), inverse)


# --- range functions -----------------------------------------------------------------------------------


class Window:
    """One series' samples in a range at one step: t_ms[lo:hi], values[lo:hi], with resets precomputed."""

    __slots__ = ("t_ms", "values", "lo", "hi", "resets")

    def __init__(self, t_ms: Sequence[int], values: Sequence[float], lo: int, hi: int, resets: list[int]) -> None:
        self.t_ms, self.values, self.lo, self.hi, self.resets = t_ms, values, lo, hi, resets

    def count(self) -> int:
        return self.hi - self.lo

    def floats(self) -> Sequence[float]:
        return self.values[self.lo : self.hi]


def extrapolated_rate(
    window: Window, range_start_ms: int, range_end_ms: int, range_s: float, is_counter: bool, is_rate: bool
) -> float | None:
    """rate, increase and delta: Prometheus 2.42's extrapolatedRate."""
    t_ms, values, lo, hi = window.t_ms, window.values, window.lo, window.hi
    if hi - lo < 2:
        return None
    first, last = values[lo], values[hi - 1]
    result = last - first
    if is_counter:
        for index in window.resets[bisect_right(window.resets, lo) : bisect_left(window.resets, hi)]:
            result += values[index - 1]
    duration_to_start = (t_ms[lo] - range_start_ms) / 1000
    duration_to_end = (range_end_ms - t_ms[hi - 1]) / 1000
    sampled_interval = (t_ms[hi - 1] - t_ms[lo]) / 1000
    average_between = sampled_interval / (hi - lo - 1)
    if is_counter and result > 0 and first >= 0:
        duration_to_zero = sampled_interval * (first / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    threshold = average_between * 1.1
    extrapolate_to = sampled_interval
    extrapolate_to += duration_to_start if duration_to_start < threshold else average_between / 2
    extrapolate_to += duration_to_end if duration_to_end < threshold else average_between / 2
    factor = extrapolate_to / sampled_interval
    if is_rate:
        factor /= range_s
    return result * factor


def instant_value(window: Window, is_rate: bool) -> float | None:
    """irate and idelta: the last two samples."""
    if window.count() < 2:
        return None
    last, previous = window.values[window.hi - 1], window.values[window.hi - 2]
    interval_ms = window.t_ms[window.hi - 1] - window.t_ms[window.hi - 2]
    if interval_ms == 0:
        return None
    result = last if is_rate and last < previous else last - previous
    return result / (interval_ms / 1000) if is_rate else result


def linear_regression(window: Window, intercept_ms: int) -> tuple[float, float]:
    n = 0.0
    sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    first = window.values[window.lo]
    constant = True
    for index in range(window.lo, window.hi):
        value = window.values[index]
        if constant and index > window.lo and value != first:
            constant = False
        n += 1.0
        x = (window.t_ms[index] - intercept_ms) / 1e3
        sum_x, c_x = kahan_inc(x, sum_x, c_x)
        sum_y, c_y = kahan_inc(value, sum_y, c_y)
        sum_xy, c_xy = kahan_inc(x * value, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_inc(x * x, sum_x2, c_x2)
    if constant:
        return (NAN, NAN) if math.isinf(first) else (0.0, first)
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = go_div(cov_xy, var_x)
    return slope, sum_y / n - slope * sum_x / n


def deriv(window: Window) -> float | None:
    if window.count() < 2:
        return None
    return linear_regression(window, window.t_ms[window.lo])[0]


def predict_linear(window: Window, eval_ms: int, seconds: float) -> float | None:
    if window.count() < 2:
        return None
    slope, intercept = linear_regression(window, eval_ms)
    return slope * seconds + intercept


def changes(window: Window) -> float:
    values, count = window.values, 0
    previous = values[window.lo]
    for index in range(window.lo + 1, window.hi):
        current = values[index]
        if current != previous and not (current != current and previous != previous):
            count += 1
        previous = current
    return float(count)


def resets(window: Window) -> float:
    return float(bisect_left(window.resets, window.hi) - bisect_right(window.resets, window.lo))


def avg_over_time(window: Window) -> float:
    mean = compensation = count = 0.0
    for value in window.floats():
        count += 1
        if math.isinf(mean):
            if math.isinf(value) and (mean > 0) == (value > 0):
                continue
            if not math.isinf(value) and value == value:
                continue
        mean, compensation = kahan_inc(value / count - mean / count, mean, compensation)
    return mean if math.isinf(mean) else mean + compensation


def sum_over_time(window: Window) -> float:
    total = compensation = 0.0
    for value in window.floats():
        total, compensation = kahan_inc(value, total, compensation)
    return total if math.isinf(total) else total + compensation


def max_over_time(window: Window) -> float:
    values = window.floats()
    best = values[0]
    for value in values:
        if value > best or best != best:
            best = value
    return best


def min_over_time(window: Window) -> float:
    values = window.floats()
    best = values[0]
    for value in values:
        if value < best or best != best:
            best = value
    return best


def variance_over_time(window: Window) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for value in window.floats():
        count += 1
        delta = value - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (value - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def quantile(q: float, values: Sequence[float]) -> float:
    """Prometheus's quantile(): linear interpolation between the closest ranks (NaN sorts first)."""
    if not values or q != q:
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    ordered = sorted(values, key=lambda v: (v == v, v if v == v else 0.0))
    rank = q * (len(ordered) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


# --- histogram_quantile ---------------------------------------------------------------------------------


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus 2.42's bucketQuantile over (upper bound, cumulative count) pairs of classic buckets."""
    if q != q:
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    buckets = sorted(buckets, key=lambda bucket: bucket[0])
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return NAN
    buckets = _monotonic(_coalesce(buckets))
    if len(buckets) < 2:
        return NAN
    observations = buckets[-1][1]
    if observations == 0:
        return NAN
    rank = q * observations
    index = next((i for i in range(len(buckets) - 1) if buckets[i][1] >= rank), len(buckets) - 1)
    if index == len(buckets) - 1:
        return buckets[-2][0]
    if index == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[index][0], buckets[index][1]
    if index > 0:
        start = buckets[index - 1][0]
        count -= buckets[index - 1][1]
        rank -= buckets[index - 1][1]
    return start + (end - start) * go_div(rank, count)


def _coalesce(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged = [buckets[0]]
    for bound, count in buckets[1:]:
        if bound == merged[-1][0]:
            merged[-1] = (bound, merged[-1][1] + count)
        else:
            merged.append((bound, count))
    return merged


def _monotonic(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    highest = buckets[0][1]
    fixed = [buckets[0]]
    for bound, count in buckets[1:]:
        if count > highest:
            highest = count
        fixed.append((bound, max(count, highest)))
    return fixed


def parse_bucket_bound(text: str) -> float | None:
    """An `le` label's value as Go's ParseFloat reads it, or None."""
    lowered = text.strip().lower()
    if "_" in lowered:
        return None
    if lowered in ("+inf", "inf", "infinity", "+infinity"):
        return INF
    if lowered in ("-inf", "-infinity"):
        return -INF
    if lowered == "nan":
        return NAN
    try:
        return float(int(text, 16)) if lowered.startswith(("0x", "-0x", "+0x")) else float(text)
    except ValueError:
        return None
