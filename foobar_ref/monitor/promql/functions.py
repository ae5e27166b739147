"""PromQL's functions, computed as Prometheus 2.42 computes them (promql/functions.go, quantile.go). Pure.

Range functions see one series' window: parallel `t_ms`/`values` columns and the slice [lo, hi) of
samples inside the range (staleness markers already removed).  They return a float, or None when
the series gives no output at this step (fewer than two samples for a rate, say).  The arithmetic
follows Go's operation order, so results agree with Prometheus to the last bit (promtool's rule
tests compare floats exactly): `extrapolatedRate` adds counter-reset corrections after `last -
first`, sums and means use Kahan-Neumaier compensation where Prometheus does, and Go's float
special cases (x/0, Pow, Mod, Log of 0) give Inf or NaN rather than Python exceptions.  Go's
`math.Pow`, `Atan2` and `Log` (with `Log2`, `Log10`) are ported step for step, since C's versions
round differently in the last bit; `exp` stays C's (Go's amd64 Exp itself depends on whether the
processor has FMA).

Where Prometheus 3 changed a computation (the order of the zero-point and threshold checks in
`extrapolatedRate`), the 2.42 behaviour is kept: it is the Prometheus this project's promtool and
federation tests run against.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

NAN = math.nan
INF = math.inf


# --- Go's float arithmetic -----------------------------------------------------------------------------


def go_div(lhs: float, rhs: float) -> float:
    if rhs == 0:
        if lhs == 0 or lhs != lhs:
            return NAN
        return math.copysign(INF, lhs) * math.copysign(1.0, rhs)
    return lhs / rhs


def _odd_integer(value: float) -> bool:
    return abs(value) < 2.0**53 and value == math.floor(value) and int(value) % 2 == 1


def go_pow(x: float, y: float) -> float:
    """Go's math.Pow, step for step (C's pow rounds differently in the last bit for fractional powers)."""
    special = _pow_special(x, y)
    if special is not None:
        return special
    fraction, whole = math.modf(abs(y))
    if fraction != 0 and x < 0:
        return NAN
    if whole >= 2.0**63:
        return 1.0 if x == -1 else 0.0 if (abs(x) < 1) == (y > 0) else INF
    result, exponent = 1.0, 0
    if fraction != 0:
        if fraction > 0.5:
            fraction, whole = fraction - 1, whole + 1
        result = _exp(fraction * go_log(x))
    mantissa, mantissa_exponent = math.frexp(x)
    bits = int(whole)
    while bits:
        if mantissa_exponent < -(1 << 12) or mantissa_exponent > (1 << 12):
            exponent += mantissa_exponent
            break
        if bits & 1:
            result *= mantissa
            exponent += mantissa_exponent
        mantissa *= mantissa
        mantissa_exponent <<= 1
        if mantissa < 0.5:
            mantissa += mantissa
            mantissa_exponent -= 1
        bits >>= 1
    if y < 0:
        result, exponent = 1 / result, -exponent
    try:
        return math.ldexp(result, exponent)
    except OverflowError:
        return math.copysign(INF, result)


def _pow_special(x: float, y: float) -> float | None:
    if y == 0 or x == 1:
        return 1.0
    if y == 1:
        return x
    if x != x or y != y:
        return NAN
    if x == 0:
        if y < 0:
            return math.copysign(INF, x) if _odd_integer(y) else INF
        return x if _odd_integer(y) else 0.0
    if math.isinf(y):
        return 1.0 if x == -1 else 0.0 if (abs(x) < 1) == (y > 0) else INF
    if math.isinf(x):
        if x < 0:
            return go_pow(1 / x, -y)  # Pow(-0, -y)
        return 0.0 if y < 0 else INF
    if y == 0.5:
        return math.sqrt(x) if x >= 0 else NAN
    if y == -0.5:
        return go_div(1.0, math.sqrt(x)) if x >= 0 else NAN
    return None


def go_atan2(y: float, x: float) -> float:
    """Go's math.Atan2 over its Cephes arctangent (portable Go on amd64), to the last bit."""
    if y != y or x != x:
        return NAN
    if y == 0:
        return math.copysign(0.0, y) if x >= 0 and math.copysign(1.0, x) > 0 else math.copysign(math.pi, y)
    if x == 0:
        return math.copysign(math.pi / 2, y)
    if math.isinf(x):
        if x > 0:
            return math.copysign(math.pi / 4, y) if math.isinf(y) else math.copysign(0.0, y)
        return math.copysign(3 * math.pi / 4, y) if math.isinf(y) else math.copysign(math.pi, y)
    if math.isinf(y):
        return math.copysign(math.pi / 2, y)
    quotient = _atan(y / x)
    if x < 0:
        return quotient + math.pi if quotient <= 0 else quotient - math.pi
    return quotient


def _atan(x: float) -> float:
    if x == 0:
        return x
    return _satan(x) if x > 0 else -_satan(-x)


def _satan(x: float) -> float:
    more_bits = 6.123233995736765886130e-17  # pi/2 = PIO2 + more_bits
    tan_3pi_8 = 2.41421356237309504880
    if x <= 0.66:
        return _xatan(x)
    if x > tan_3pi_8:
        return math.pi / 2 - _xatan(1 / x) + more_bits
    return math.pi / 4 + _xatan((x - 1) / (x + 1)) + 0.5 * more_bits


def _xatan(x: float) -> float:
    p0, p1, p2, p3, p4 = (
        -8.750608600031904122785e-01,
        -1.615753718733365076637e01,
        -7.500855792314704667340e01,
        -1.228866684490136173410e02,
        -6.485021904942025371773e01,
    )
    q0, q1, q2, q3, q4 = (
        2.485846490142306297962e01,
        1.650270098316988542046e02,
        4.328810604912902668951e02,
        4.853903996359136964868e02,
        1.945506571482613964425e02,
    )
    z = x * x
    z = z * ((((p0 * z + p1) * z + p2) * z + p3) * z + p4) / (((((z + q0) * z + q1) * z + q2) * z + q3) * z + q4)
    return x * z + x


def go_mod(lhs: float, rhs: float) -> float:
    try:
        return math.fmod(lhs, rhs)
    except ValueError:
        return NAN


def kahan_inc(increment: float, total: float, compensation: float) -> tuple[float, float]:
    """Prometheus's kahanSumInc (Neumaier's variant): one step of a compensated sum."""
    new_total = total + increment
    if abs(total) >= abs(increment):
        compensation += (total - new_total) + increment
    else:
        compensation += (increment - new_total) + total
    return new_total, compensation


_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LOG_L = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
_INVERSE_LN2 = 1.4426950408889634073599246810018920
_INVERSE_LN10 = 0.43429448190325182765112891891660508229439700580366656611445378


def go_log(x: float) -> float:
    """Go's math.Log (FreeBSD's algorithm, also what its amd64 assembly computes), to the last bit."""
    if x != x or x == INF:
        return x
    if x < 0:
        return NAN
    if x == 0:
        return -INF
    fraction, exponent = math.frexp(x)
    if fraction < math.sqrt(2) / 2:
        fraction, exponent = fraction * 2, exponent - 1
    f, k = fraction - 1, float(exponent)
    l1, l2, l3, l4, l5, l6, l7 = _LOG_L
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (l1 + s4 * (l3 + s4 * (l5 + s4 * l7)))
    t2 = s4 * (l2 + s4 * (l4 + s4 * l6))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def go_log2(x: float) -> float:
    fraction, exponent = math.frexp(x)
    if fraction == 0.5:
        return float(exponent - 1)  # exact for powers of two
    return go_log(fraction) * _INVERSE_LN2 + float(exponent)


def go_log10(x: float) -> float:
    return go_log(x) * _INVERSE_LN10


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return INF


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
    "exp": _exp,
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
