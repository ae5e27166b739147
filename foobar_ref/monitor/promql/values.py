"""PromQL's results and how Prometheus writes them: the API's JSON, and Go's float formats. Pure.

A result is a `Scalar`, a `String`, a `Vector` (samples at one time) or a `Matrix` (series of
points).  `result_json` gives the `data` object of `/api/v1/query` and `/api/v1/query_range` exactly as
Prometheus does: times as float seconds, values as strings written by Go's
`strconv.FormatFloat(v, 'f', -1, 64)` (shortest round-trip digits, no exponent, `+Inf`, `-Inf`,
`NaN`).  `go_value` is Go's `%v` of a float (what `{{ $value }}` prints) and `go_exponent` its
`'e', -1` form (the alerts API's `value`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from foobar_ref.monitor.tsdb import Labels


class Sample(NamedTuple):
    labels: Labels
    value: float


class Series(NamedTuple):
    labels: Labels
    points: list[tuple[int, float]]  # (t_ms, value), in time order


@dataclass(frozen=True)
class Scalar:
    t_ms: int
    value: float


@dataclass(frozen=True)
class String:
    t_ms: int
    value: str


@dataclass(frozen=True)
class Vector:
    t_ms: int
    samples: list[Sample]


@dataclass(frozen=True)
class Matrix:
    series: list[Series]


Result = Scalar | String | Vector | Matrix


def result_json(result: Result) -> dict[str, object]:
    """The `data` of Prometheus's query API for `result`."""
    if isinstance(result, Scalar):
        return {"resultType": "scalar", "result": [_seconds(result.t_ms), format_value(result.value)]}
    if isinstance(result, String):
        return {"resultType": "string", "result": [_seconds(result.t_ms), result.value]}
    if isinstance(result, Vector):
        seconds = _seconds(result.t_ms)
        return {
            "resultType": "vector",
            "result": [{"metric": dict(s.labels), "value": [seconds, format_value(s.value)]} for s in result.samples],
        }
    return {
        "resultType": "matrix",
        "result": [
            {"metric": dict(s.labels), "values": [[_seconds(t), format_value(v)] for t, v in s.points]}
            for s in result.series
        ],
    }


def _seconds(t_ms: int) -> float | int:
    return t_ms // 1000 if t_ms % 1000 == 0 else t_ms / 1000


def _digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of a finite, non-zero |value| and its decimal exponent."""
    sign, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    assert isinstance(exponent, int)
    return text, exponent + len(text) - 1


def _special(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return None


def format_value(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'f', -1, 64), with Prometheus's +Inf/-Inf/NaN."""
    special = _special(value)
    if special is not None:
        return special
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return ("-" if value < 0 else "") + _fixed(*_digits(value))


def _fixed(digits: str, exponent: int) -> str:
    if exponent < 0:
        return "0." + "0" * (-exponent - 1) + digits
    if exponent + 1 >= len(digits):
        return digits + "0" * (exponent + 1 - len(digits))
    return digits[: exponent + 1] + "." + digits[exponent + 1 :]


def _scientific(digits: str, exponent: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def go_value(value: float) -> str:
    """Go's fmt %v of a float64: shortest digits, exponent form below 1e-4 and from 1e6 up (`1e+06`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exponent = _digits(value)
    body = _scientific(digits, exponent) if exponent < -4 or exponent >= 6 else _fixed(digits, exponent)
    return ("-" if value < 0 else "") + body


def go_exponent(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'e', -1, 64): shortest digits in exponent form (`1e+00`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return ("-" if math.copysign(1.0, value) < 0 else "") + "0e+00"
    return ("-" if value < 0 else "") + _scientific(*_digits(value))


def rfc3339(t_s: float) -> str:
    """A time as Go's time.Time marshals to JSON (RFC 3339, nanoseconds without trailing zeros, UTC `Z`)."""
    whole = math.floor(t_s)
    nanos = round((t_s - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"
