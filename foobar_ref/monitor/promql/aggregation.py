"""PromQL's aggregation operators (sum, avg, count, min, max, group, stddev, stdvar, topk, bottomk, quantile). Pure.

Prometheus 2.42's `aggregation`: samples fall into groups by the `by` labels (or all but the
`without` ones and `__name__`); groups come out in the order first seen; `sum` adds in input order,
`avg` keeps an incremental mean, `stddev`/`stdvar` Welford's running variance, `topk`/`bottomk`
select with Go's binary heap (so ties resolve as Prometheus resolves them) and keep the samples'
own labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from foobar_ref.monitor.promql.errors import PromQLError
from foobar_ref.monitor.promql.functions import quantile
from foobar_ref.monitor.promql.values import Sample, go_value
from foobar_ref.monitor.tsdb import METRIC_NAME, Labels


class _Group:
    __slots__ = ("labels", "value", "mean", "count", "heap")

    def __init__(self, labels: Labels, value: float) -> None:
        self.labels, self.value, self.mean, self.count = labels, value, value, 1
        self.heap: list[Sample] = []


def _group_labels(labels: Labels, grouping: list[str], without: bool) -> Labels:
    if without:
        return tuple(pair for pair in labels if pair[0] != METRIC_NAME and pair[0] not in grouping)
    return tuple(pair for pair in labels if pair[0] in grouping)


def aggregate(
    op: str,
    samples: list[Sample],
    grouping: list[str],
    without: bool,
    param: float | None,
    keys: dict[Labels, Labels] | None = None,
) -> list[Sample]:
    """Aggregate one step's samples; `keys` caches each input's group labels across steps."""
    keys = {} if keys is None else keys
    k = 0
    if op in ("topk", "bottomk"):
        assert param is not None
        if param != param or abs(param) >= 2.0**63:
            raise PromQLError("execution", f"Scalar value {go_value(param)} overflows int64")
        k = int(param)
        if k < 1:
            return []
    groups: dict[Labels, _Group] = {}
    for sample in samples:
        key = keys.get(sample.labels)
        if key is None:
            key = keys[sample.labels] = _group_labels(sample.labels, grouping, without)
        group = groups.get(key)
        if group is None:
            groups[key] = _new_group(op, key, sample)
        else:
            _add(op, group, sample, k)
    out: list[Sample] = []
    for group in groups.values():
        out.extend(_result(op, group, param))
    return out


def _new_group(op: str, key: Labels, sample: Sample) -> _Group:
    group = _Group(key, sample.value)
    if op in ("stddev", "stdvar"):
        group.value = 0.0
    elif op in ("topk", "bottomk", "quantile"):
        group.heap = [sample]
    elif op == "group":
        group.value = 1.0
    return group


def _add(op: str, group: _Group, sample: Sample, k: int) -> None:
    value = sample.value
    if op == "sum":
        group.value += value
    elif op == "avg":
        group.count += 1
        if math.isinf(group.mean):
            if math.isinf(value) and (group.mean > 0) == (value > 0):
                return
            if not math.isinf(value) and value == value:
                return
        group.mean += value / group.count - group.mean / group.count
    elif op == "max":
        if group.value < value or group.value != group.value:
            group.value = value
    elif op == "min":
        if group.value > value or group.value != group.value:
            group.value = value
    elif op == "count":
        group.count += 1
    elif op in ("stddev", "stdvar"):
        group.count += 1
        delta = value - group.mean
        group.mean += delta / group.count
        group.value += delta * (value - group.mean)
    elif op == "topk":
        _select(group.heap, sample, k, _lower)
    elif op == "bottomk":
        _select(group.heap, sample, k, _higher)
    elif op == "quantile":
        group.heap.append(sample)


def _result(op: str, group: _Group, param: float | None) -> list[Sample]:
    if op == "avg":
        return [Sample(group.labels, group.mean)]
    if op == "count":
        return [Sample(group.labels, float(group.count))]
    if op == "stdvar":
        return [Sample(group.labels, group.value / group.count)]
    if op == "stddev":
        return [Sample(group.labels, math.sqrt(group.value / group.count))]
    if op in ("topk", "bottomk"):
        descending = op == "topk"
        return sorted(group.heap, key=lambda s: _order_key(s.value, descending))
    if op == "quantile":
        assert param is not None
        return [Sample(group.labels, quantile(param, [s.value for s in group.heap]))]
    return [Sample(group.labels, group.value)]


def _order_key(value: float, descending: bool) -> tuple[int, float]:
    if value != value:
        return (1, 0.0)  # NaN last either way
    return (0, -value if descending else value)


# Go's container/heap over a min-heap (topk) or max-heap (bottomk), with NaN at the top.


def _lower(a: Sample, b: Sample) -> bool:
    return a.value != a.value or a.value < b.value


def _higher(a: Sample, b: Sample) -> bool:
    return a.value != a.value or a.value > b.value


def _select(heap: list[Sample], sample: Sample, k: int, less: Callable[[Sample, Sample], bool]) -> None:
    top = heap[0].value
    beats = sample.value > top if less is _lower else sample.value < top
    if len(heap) < k or beats or top != top:
        if len(heap) == k:
            if k == 1:
                heap[0] = sample
                return
            _pop(heap, less)
        heap.append(sample)
        _up(heap, len(heap) - 1, less)


def _up(heap: list[Sample], index: int, less: Callable[[Sample, Sample], bool]) -> None:
    while index > 0:
        parent = (index - 1) // 2
        if parent == index or not less(heap[index], heap[parent]):
            break
        heap[parent], heap[index] = heap[index], heap[parent]
        index = parent


def _pop(heap: list[Sample], less: Callable[[Sample, Sample], bool]) -> None:
    last = len(heap) - 1
    heap[0], heap[last] = heap[last], heap[0]
    _down(heap, 0, last, less)
    heap.pop()


def _down(heap: list[Sample], index: int, size: int, less: Callable[[Sample, Sample], bool]) -> None:
    while True:
        child = 2 * index + 1
        if child >= size:
            return
        if child + 1 < size and less(heap[child + 1], heap[child]):
            child += 1
        if not less(heap[child], heap[index]):
            return
        heap[index], heap[child] = heap[child], heap[index]
        index = child
