"""Function calls at one step: range functions over a selector's windows, the others over instant values. Pure.

Output labels follow Prometheus: functions drop `__name__` (`last_over_time`, `label_replace`,
`label_join`, `sort`, `sort_desc` and `absent`'s own labels aside); `absent` and `absent_over_time`
build their labels from the selector's equality matchers; `timestamp` of a plain selector reads the
samples' own times; `histogram_quantile` groups classic buckets by every label but `le`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from foobar_ref.monitor.promql import ast, functions
from foobar_ref.monitor.promql.binary import drop_name
from foobar_ref.monitor.promql.errors import PromQLError
from foobar_ref.monitor.promql.values import Sample
from foobar_ref.monitor.tsdb import METRIC_NAME, Labels, MatcherError, compile_label_regex

if TYPE_CHECKING:
    from foobar_ref.monitor.promql.engine import _Evaluation

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SIMPLE_RANGE = {
    "avg_over_time": functions.avg_over_time,
    "sum_over_time": functions.sum_over_time,
    "min_over_time": functions.min_over_time,
    "max_over_time": functions.max_over_time,
    "stdvar_over_time": functions.variance_over_time,
    "stddev_over_time": lambda w: math.sqrt(functions.variance_over_time(w)),
    "count_over_time": lambda w: float(w.count()),
    "present_over_time": lambda w: 1.0,
    "last_over_time": lambda w: w.values[w.hi - 1],
    "changes": functions.changes,
    "resets": functions.resets,
    "deriv": functions.deriv,
    "irate": lambda w: functions.instant_value(w, True),
    "idelta": lambda w: functions.instant_value(w, False),
}
_EXTRAPOLATED = {"rate": (True, True), "increase": (True, False), "delta": (False, False)}


def call_range(evaluation: _Evaluation, node: ast.Call, t_ms: int) -> list[Sample]:
    name = node.function.name
    index = next(i for i, arg in enumerate(node.args) if arg.type == ast.MATRIX)
    selector = ast.unwrap_parens(node.args[index])
    assert isinstance(selector, ast.MatrixSelector)
    scalars = [evaluation.scalar(arg, t_ms) for i, arg in enumerate(node.args) if i != index]
    windows = evaluation.windows(selector, t_ms)
    if name == "absent_over_time":
        return [] if windows else [Sample(absent_labels(selector), 1.0)]
    out: list[Sample] = []
    for series, window in windows:
        value = _range_value(name, window, selector, t_ms, scalars)
        if value is not None:
            out.append(Sample(series.labels if name == "last_over_time" else series.unnamed, value))
    return out


def _range_value(
    name: str, window: functions.Window, selector: ast.MatrixSelector, t_ms: int, scalars: list[float]
) -> float | None:
    if name in _EXTRAPOLATED:
        is_counter, is_rate = _EXTRAPOLATED[name]
        end = t_ms - selector.vector.offset_ms
        range_s = selector.range_ms / 1000
        return functions.extrapolated_rate(window, end - selector.range_ms, end, range_s, is_counter, is_rate)
    if name == "quantile_over_time":
        return functions.quantile(scalars[0], window.floats())
    if name == "predict_linear":
        return functions.predict_linear(window, t_ms, scalars[0])
    return _SIMPLE_RANGE[name](window)  # type: ignore[no-any-return]


def call_instant(evaluation: _Evaluation, node: ast.Call, t_ms: int) -> float | list[Sample]:
    name = node.function.name
    if name == "time":
        return t_ms / 1000
    if name == "pi":
        return math.pi
    if name == "timestamp":
        return _timestamp(evaluation, node, t_ms)
    if name == "vector":
        return [Sample((), evaluation.scalar(node.args[0], t_ms))]
    if name == "histogram_quantile":
        return _histogram_quantile(evaluation.scalar(node.args[0], t_ms), evaluation.vector(node.args[1], t_ms))
    vector = evaluation.vector(node.args[0], t_ms)
    if name == "scalar":
        return vector[0].value if len(vector) == 1 else math.nan
    if name == "absent":
        return [] if vector else [Sample(absent_labels(ast.unwrap_parens(node.args[0])), 1.0)]
    if name in ("sort", "sort_desc"):
        return sorted(vector, key=lambda s: _sort_key(s.value, name == "sort_desc"))
    if name == "label_replace":
        return _label_replace(vector, *_strings(evaluation, node, t_ms, 4))
    if name == "label_join":
        target, separator, *sources = _strings(evaluation, node, t_ms, len(node.args) - 1)
        return _label_join(vector, target, separator, sources)
    scalars = [evaluation.scalar(arg, t_ms) for arg in node.args[1:]]
    if name == "clamp" and scalars[1] < scalars[0]:
        return []  # an empty range clamps everything away
    transform = _value_function(name, scalars)
    return [Sample(drop_name(s.labels), transform(s.value)) for s in vector]


def _strings(evaluation: _Evaluation, node: ast.Call, t_ms: int, count: int) -> list[str]:
    found = [evaluation.at(arg, t_ms) for arg in node.args[1 : 1 + count]]
    assert all(isinstance(text, str) for text in found)
    return cast(list[str], found)


def _value_function(name: str, scalars: list[float]) -> Callable[[float], float]:
    if name in functions.SIMPLE:
        return functions.SIMPLE[name]
    if name == "clamp":
        low, high = scalars
        return lambda v: _go_max(low, _go_min(high, v))
    if name == "clamp_min":
        return lambda v: _go_max(scalars[0], v)
    if name == "clamp_max":
        return lambda v: _go_min(scalars[0], v)
    if name == "round":
        nearest = scalars[0] if scalars else 1.0
        return lambda v: functions.round_to(v, nearest)
    raise AssertionError(name)


def _go_max(a: float, b: float) -> float:
    if math.isinf(a) and a > 0 or math.isinf(b) and b > 0:
        return math.inf
    if a != a or b != b:
        return math.nan
    return a if a > b else b


def _go_min(a: float, b: float) -> float:
    if math.isinf(a) and a < 0 or math.isinf(b) and b < 0:
        return -math.inf
    if a != a or b != b:
        return math.nan
    return a if a < b else b


def _sort_key(value: float, descending: bool) -> tuple[int, float]:
    if value != value:
        return (1, 0.0)
    return (0, -value if descending else value)


def _timestamp(evaluation: _Evaluation, node: ast.Call, t_ms: int) -> list[Sample]:
    arg = ast.unwrap_parens(node.args[0])
    if isinstance(arg, ast.VectorSelector):
        samples = evaluation.vector_selector(arg, t_ms, with_time=True)
        return [Sample(drop_name(s.labels), s.value) for s in samples]
    vector = evaluation.at(arg, t_ms)
    assert isinstance(vector, list)
    return [Sample(drop_name(s.labels), t_ms / 1000) for s in vector]


def absent_labels(node: ast.Node) -> Labels:
    if isinstance(node, ast.MatrixSelector):
        node = node.vector
    if not isinstance(node, ast.VectorSelector):
        return ()
    result: dict[str, str] = {}
    seen: set[str] = set()
    for matcher in node.matchers:
        if matcher.name == METRIC_NAME:
            continue
        if matcher.op == "=" and matcher.name not in seen:
            result[matcher.name] = matcher.value
            seen.add(matcher.name)
        else:
            result.pop(matcher.name, None)
    return tuple(sorted((k, v) for k, v in result.items() if v))


def _histogram_quantile(q: float, vector: list[Sample]) -> list[Sample]:
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, value in vector:
        key, bound = _bucket(labels)
        if bound is not None:
            groups.setdefault(key, []).append((bound, value))
    return [
        Sample(tuple(p for p in key if p[0] != METRIC_NAME), functions.bucket_quantile(q, buckets))
        for key, buckets in groups.items()
    ]


@functools.lru_cache(maxsize=65_536)
def _bucket(labels: Labels) -> tuple[Labels, float | None]:
    """A bucket series' histogram (its labels but `le`) and upper bound (None when `le` is not a number)."""
    bound = functions.parse_bucket_bound(dict(labels).get("le", ""))
    return tuple(pair for pair in labels if pair[0] != "le"), bound


def _label_replace(vector: list[Sample], target: str, replacement: str, source: str, regex: str) -> list[Sample]:
    try:
        pattern = compile_label_regex(regex)
    except MatcherError:
        raise PromQLError("execution", f"invalid regular expression in label_replace(): {regex}") from None
    if not _LABEL_NAME.fullmatch(target):
        raise PromQLError("execution", f"invalid destination label name in label_replace(): {target}")
    out = []
    for labels, value in vector:
        match = pattern.fullmatch(dict(labels).get(source, ""))
        if match is None:
            out.append(Sample(labels, value))
            continue
        result = {k: v for k, v in labels if k != target}
        expanded = go_expand(replacement, match)
        if expanded:
            result[target] = expanded
        out.append(Sample(tuple(sorted(result.items())), value))
    return out


def _label_join(vector: list[Sample], target: str, separator: str, sources: list[str]) -> list[Sample]:
    for name in [*sources, target]:
        if not _LABEL_NAME.fullmatch(name):
            raise PromQLError("execution", f"invalid label name in label_join(): {name}")
    out = []
    for labels, value in vector:
        mapping = dict(labels)
        joined = separator.join(mapping.get(name, "") for name in sources)
        mapping.pop(target, None)
        if joined:
            mapping[target] = joined
        out.append(Sample(tuple(sorted(mapping.items())), value))
    return out


_TEMPLATE_NAME = re.compile(r"\{([a-zA-Z0-9_]+)\}|([a-zA-Z0-9_]+)")


def go_expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: `$1`, `${1}`, `$name`, `${name}` and `$$`; a `$` starting no name stays."""
    out: list[str] = []
    index = 0
    while True:
        dollar = template.find("$", index)
        if dollar < 0:
            out.append(template[index:])
            return "".join(out)
        out.append(template[index:dollar])
        if template.startswith("$$", dollar):
            out.append("$")
            index = dollar + 2
            continue
        name_match = _TEMPLATE_NAME.match(template, dollar + 1)
        if name_match is None:
            out.append("$")
            index = dollar + 1
            continue
        name = name_match.group(1) or name_match.group(2)
        out.append(_group(match, name))
        index = name_match.end()


def _group(match: re.Match[str], name: str) -> str:
    try:
        found = match.group(int(name)) if name.isdigit() else match.group(name)
    except (IndexError, ValueError):
        return ""
    return found or ""
