"""The PromQL engine: evaluates a parsed query at one time or over a range of steps. Pure, no clock.

Theory of operation
-------------------
A query is parsed once, then its selectors are *loaded* once for the whole evaluation: each vector
selector's series with their samples in [first step - offset - lookback, last step - offset], each
range selector's in [first step - offset - range, last step - offset] with staleness markers left out
and counter resets indexed.  Evaluation then walks the tree at each step (an instant query is a
range of one step); a selector answers by bisecting its columns, so a range query costs one storage
scan per selector, not one per step.

Time semantics are Prometheus 2.42's, the version promtool and the federation tests run: a vector
selector takes a series' latest sample at or after `t - lookback_delta` (5 min), unless that sample
is a staleness marker, in which case the series is absent at once; a range selector `[r]` takes the
samples in the closed interval [t - r, t].  `left_open=True` gives Prometheus 3's (t - r, t] and
(t - lookback, t] instead.

Bounds: at most `max_samples` samples in play at one step (selected points and range windows) and
in a range query's result (Prometheus's `query.max-samples`), `LOAD_FACTOR` times that copied from
the storage for one query, `max_points` steps per range query (11,000), `max_series` series in a result,
`max_query_length` characters of query text.  `should_stop`, when given, is asked between steps;
answering True ends the query with a `timeout` error (the caller owns the clock).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from foobar_ref.monitor.promql import ast, binary, functions
from foobar_ref.monitor.promql.aggregation import aggregate
from foobar_ref.monitor.promql.calls import call_instant, call_range
from foobar_ref.monitor.promql.errors import PromQLError
from foobar_ref.monitor.promql.parser import parse
from foobar_ref.monitor.promql.values import Matrix, Result, Sample, Scalar, Series, String, Vector
from foobar_ref.monitor.tsdb import METRIC_NAME, Labels, Storage, is_stale

Value = float | str | list[Sample] | list[Series]
LOAD_FACTOR = 4  # the columns copied for one query may hold this many times max_samples (a memory guard)


@dataclass
class LoadedSeries:
    """One selected series' columns for the whole evaluation."""

    labels: Labels
    unnamed: Labels
    t_ms: Sequence[int]
    values: Sequence[float]
    resets: list[int] = field(default_factory=list)


class Engine:
    """Instant and range queries over a `Storage`, as Prometheus's query API answers them."""

    def __init__(
        self,
        storage: Storage,
        lookback_delta_s: float = 300.0,
        *,
        max_samples: int = 5_000_000,
        max_points: int = 11_000,
        max_series: int = 50_000,
        max_query_length: int = 64 * 1024,
        left_open: bool = False,
    ) -> None:
        self.storage = storage
        self.lookback_ms = int(lookback_delta_s * 1000)
        self.max_samples = max_samples
        self.max_points = max_points
        self.max_series = max_series
        self.max_query_length = max_query_length
        self.left_open = left_open

    def parse(self, query: str) -> ast.Node:
        if len(query) > self.max_query_length:
            raise PromQLError("bad_data", f"query longer than {self.max_query_length} characters")
        return parse(query)

    def instant(self, query: str, t_s: float, should_stop: Callable[[], bool] | None = None) -> Result:
        return self.instant_node(self.parse(query), t_s, should_stop)

    def instant_node(self, node: ast.Node, t_s: float, should_stop: Callable[[], bool] | None = None) -> Result:
        t_ms = to_ms(t_s)
        evaluation = _Evaluation(self, node, t_ms, t_ms, 1, should_stop)
        value = evaluation.at(node, t_ms)
        if node.type == ast.SCALAR:
            assert isinstance(value, float)
            return Scalar(t_ms, value)
        if node.type == ast.STRING:
            assert isinstance(value, str)
            return String(t_ms, value)
        if node.type == ast.MATRIX:
            matrix = cast(list[Series], value)
            self._check_series(len(matrix))
            return Matrix(sorted(matrix))
        vector = cast(list[Sample], value)
        self._check_series(len(vector))
        return Vector(t_ms, vector)

    def range(
        self, query: str, start_s: float, end_s: float, step_s: float, should_stop: Callable[[], bool] | None = None
    ) -> Matrix:
        node = self.parse(query)
        start_ms, end_ms, step_ms = to_ms(start_s), to_ms(end_s), to_ms(step_s)
        if step_ms <= 0:
            raise PromQLError(
                "bad_data", "zero or negative query resolution step widths are not accepted. Try a positive integer"
            )
        if end_ms < start_ms:
            raise PromQLError("bad_data", "end timestamp must not be before start time")
        if (end_ms - start_ms) // step_ms + 1 > self.max_points:
            raise PromQLError(
                "bad_data",
                f"exceeded maximum resolution of {self.max_points:,} points per timeseries. "
                "Try decreasing the query resolution (?step=XX)",
            )
        if node.type not in (ast.SCALAR, ast.VECTOR):
            raise PromQLError(
                "bad_data",
                f'invalid expression type "{ast.DOCUMENTED_TYPE[node.type]}" for range query, must be Scalar or '
                "instant Vector",
            )
        return self._range(node, start_ms, end_ms, step_ms, should_stop)

    def _range(
        self, node: ast.Node, start_ms: int, end_ms: int, step_ms: int, should_stop: Callable[[], bool] | None
    ) -> Matrix:
        evaluation = _Evaluation(self, node, start_ms, end_ms, step_ms, should_stop)
        series: dict[Labels, list[tuple[int, float]]] = {}
        points = 0
        for t_ms in range(start_ms, end_ms + 1, step_ms):
            evaluation.check_stop()
            value = evaluation.at(node, t_ms)
            samples = [Sample((), value)] if isinstance(value, float) else cast(list[Sample], value)
            for labels, sample_value in samples:
                series.setdefault(labels, []).append((t_ms, sample_value))
            points += len(samples)
            if points > self.max_samples:
                raise too_many_samples()
            self._check_series(len(series))
        return Matrix([Series(labels, series[labels]) for labels in sorted(series)])

    def _check_series(self, count: int) -> None:
        if count > self.max_series:
            raise PromQLError("execution", f"query result would hold more than {self.max_series} series")


def to_ms(t_s: float) -> int:
    if not math.isfinite(t_s):
        raise PromQLError("bad_data", f"invalid time {t_s}")
    return round(t_s * 1000)


def too_many_samples() -> PromQLError:
    return PromQLError("execution", "query processing would load too many samples into memory in query execution")


class _Evaluation:
    """One query's evaluation: the loaded selectors, and the tree walked at each step."""

    def __init__(
        self,
        engine: Engine,
        node: ast.Node,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.engine = engine
        self.should_stop = should_stop
        self.lookback_ms = engine.lookback_ms
        self.left_open = engine.left_open
        self.loaded: dict[int, list[LoadedSeries]] = {}
        self.memos: dict[int, binary.Memo] = {}
        self.group_keys: dict[int, dict[Labels, Labels]] = {}
        self.step_samples = 0
        self._load(node, start_ms, end_ms)

    def check_stop(self) -> None:
        self.step_samples = 0
        if self.should_stop is not None and self.should_stop():
            raise PromQLError("timeout", "query timed out in expression evaluation")

    # --- loading -----------------------------------------------------------------------------------

    def _load(self, node: ast.Node, start_ms: int, end_ms: int) -> None:
        if isinstance(node, ast.MatrixSelector):
            selector = node.vector
            first = start_ms - selector.offset_ms - node.range_ms
            self.loaded[id(node)] = self._select(selector, first, end_ms - selector.offset_ms, for_range=True)
            return
        if isinstance(node, ast.VectorSelector):
            first = start_ms - node.offset_ms - self.lookback_ms
            self.loaded[id(node)] = self._select(node, first, end_ms - node.offset_ms, for_range=False)
            return
        for child in ast.walk(node)[1:]:
            if isinstance(child, ast.MatrixSelector | ast.VectorSelector) and id(child) not in self.loaded:
                if isinstance(child, ast.VectorSelector) and self._inside_range(node, child):
                    continue
                self._load(child, start_ms, end_ms)

    @staticmethod
    def _inside_range(root: ast.Node, selector: ast.VectorSelector) -> bool:
        return any(isinstance(n, ast.MatrixSelector) and n.vector is selector for n in ast.walk(root))

    def _select(self, selector: ast.VectorSelector, first_ms: int, last_ms: int, for_range: bool) -> list[LoadedSeries]:
        loaded: list[LoadedSeries] = []
        total = 0
        for labels, samples in self.engine.storage.select(selector.matchers, first_ms, last_ms):
            t_ms: Sequence[int] = samples.t_ms
            values: Sequence[float] = samples.values
            if for_range:
                t_ms, values = _without_stale(t_ms, values)
            total += len(t_ms)
            if total > self.engine.max_samples * LOAD_FACTOR:
                raise too_many_samples()
            unnamed = tuple(pair for pair in labels if pair[0] != METRIC_NAME)
            series = LoadedSeries(labels, unnamed, t_ms, values)
            if for_range:
                series.resets = [i for i in range(1, len(values)) if values[i] < values[i - 1]]
            loaded.append(series)
        return loaded

    # --- evaluation --------------------------------------------------------------------------------

    def count(self, samples: int) -> None:
        self.step_samples += samples
        if self.step_samples > self.engine.max_samples:
            raise too_many_samples()

    def vector(self, node: ast.Node, t_ms: int) -> list[Sample]:
        assert node.type == ast.VECTOR
        return cast(list[Sample], self.at(node, t_ms))

    def scalar(self, node: ast.Node, t_ms: int) -> float:
        value = self.at(node, t_ms)
        assert isinstance(value, float)
        return value

    def at(self, node: ast.Node, t_ms: int) -> Value:
        if isinstance(node, ast.NumberLiteral):
            return node.value
        if isinstance(node, ast.StringLiteral):
            return node.value
        if isinstance(node, ast.Paren):
            return self.at(node.expr, t_ms)
        if isinstance(node, ast.VectorSelector):
            return self.vector_selector(node, t_ms)
        if isinstance(node, ast.MatrixSelector):
            return self.matrix_selector(node, t_ms)
        if isinstance(node, ast.Unary):
            return self.unary(node, t_ms)
        if isinstance(node, ast.Binary):
            return _unique(self.binary(node, t_ms))
        if isinstance(node, ast.Aggregate):
            return self.aggregation(node, t_ms)
        if isinstance(node, ast.Call):
            if node.function.name in _RANGE_FUNCTIONS:
                return _unique(call_range(self, node, t_ms))
            return _unique(call_instant(self, node, t_ms))
        raise AssertionError(type(node))

    def vector_selector(self, node: ast.VectorSelector, t_ms: int, with_time: bool = False) -> list[Sample]:
        reference = t_ms - node.offset_ms
        oldest = reference - self.lookback_ms
        out: list[Sample] = []
        for series in self.loaded[id(node)]:
            index = bisect_right(series.t_ms, reference) - 1
            if index < 0:
                continue
            sample_ms = series.t_ms[index]
            if sample_ms < oldest or (self.left_open and sample_ms == oldest):
                continue
            value = series.values[index]
            if value != value and is_stale(value):
                continue
            out.append(Sample(series.labels, sample_ms / 1000 if with_time else value))
        self.count(len(out))
        return out

    def windows(self, node: ast.MatrixSelector, t_ms: int) -> list[tuple[LoadedSeries, functions.Window]]:
        reference = t_ms - node.vector.offset_ms
        start = reference - node.range_ms
        out = []
        total = 0
        for series in self.loaded[id(node)]:
            t_column = series.t_ms
            low = bisect_right(t_column, start) if self.left_open else bisect_left(t_column, start)
            high = bisect_right(t_column, reference)
            if low < high:
                out.append((series, functions.Window(t_column, series.values, low, high, series.resets)))
                total += high - low
        self.count(total)
        return out

    def matrix_selector(self, node: ast.MatrixSelector, t_ms: int) -> list[Series]:
        out = []
        for series, window in self.windows(node, t_ms):
            points = [(window.t_ms[i], window.values[i]) for i in range(window.lo, window.hi)]
            out.append(Series(series.labels, points))
        return out

    def unary(self, node: ast.Unary, t_ms: int) -> Value:
        if node.type == ast.SCALAR:
            return -self.scalar(node.expr, t_ms)
        return _unique([Sample(binary.drop_name(s.labels), -s.value) for s in self.vector(node.expr, t_ms)])

    def binary(self, node: ast.Binary, t_ms: int) -> Value:
        left_scalar, right_scalar = node.lhs.type == ast.SCALAR, node.rhs.type == ast.SCALAR
        if left_scalar and right_scalar:
            return binary.scalar_binary(node.op, self.scalar(node.lhs, t_ms), self.scalar(node.rhs, t_ms))
        if right_scalar:
            lhs, scalar = self.vector(node.lhs, t_ms), self.scalar(node.rhs, t_ms)
            return binary.vector_scalar(node.op, lhs, scalar, False, node.return_bool)
        if left_scalar:
            scalar, rhs = self.scalar(node.lhs, t_ms), self.vector(node.rhs, t_ms)
            return binary.vector_scalar(node.op, rhs, scalar, True, node.return_bool)
        lhs, rhs = self.vector(node.lhs, t_ms), self.vector(node.rhs, t_ms)
        assert node.matching is not None
        memo = self.memos.setdefault(id(node), binary.Memo())
        if node.op in ast.SET_OPERATORS:
            return binary.set_operation(node.op, lhs, rhs, node.matching, memo)
        return binary.vector_binary(node.op, lhs, rhs, node.matching, node.return_bool, memo)

    def aggregation(self, node: ast.Aggregate, t_ms: int) -> Value:
        param = self.scalar(node.param, t_ms) if node.param is not None else None
        keys = self.group_keys.setdefault(id(node), {})
        return aggregate(node.op, self.vector(node.expr, t_ms), node.grouping, node.without, param, keys)


_RANGE_FUNCTIONS = frozenset(name for name, spec in ast.FUNCTIONS.items() if ast.MATRIX in spec.arg_types)


def _unique(value: Value) -> Value:
    """Prometheus refuses a vector holding two samples with the same labels."""
    if isinstance(value, list) and len(value) > 1:
        labels = {sample[0] for sample in value}
        if len(labels) != len(value):
            raise PromQLError("execution", "vector cannot contain metrics with the same labelset")
    return value


def _without_stale(t_ms: Sequence[int], values: Sequence[float]) -> tuple[Sequence[int], Sequence[float]]:
    total = sum(values)
    if total == total:
        return t_ms, values
    keep = [i for i, v in enumerate(values) if not (v != v and is_stale(v))]
    return [t_ms[i] for i in keep], [values[i] for i in keep]
