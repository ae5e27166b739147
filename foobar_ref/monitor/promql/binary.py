"""PromQL's binary operators between scalars and instant vectors, with vector matching. Pure.

Follows Prometheus 2.42's VectorBinop/VectorscalarBinop: samples pair up on a *signature* (the
labels named by `on(...)`, or all but `__name__` and those named by `ignoring(...)`); one-to-one
matching refuses a second match ("multiple matches for labels: many-to-one matching must be
explicit (group_left/group_right)"), `group_left`/`group_right` let the "many" side keep its labels
and copy the `include` ones from the "one" side.  Comparisons filter (keeping the left value and
name) unless `bool` asks for 0/1; arithmetic drops `__name__`.  `and`/`or`/`unless` keep or drop
whole samples by signature.
"""

from __future__ import annotations

from foobar_ref.monitor.promql.ast import COMPARISON_OPERATORS, VectorMatching
from foobar_ref.monitor.promql.errors import PromQLError
from foobar_ref.monitor.promql.gomath import go_atan2, go_div, go_mod, go_pow
from foobar_ref.monitor.promql.values import Sample
from foobar_ref.monitor.tsdb import METRIC_NAME, Labels

_DROPS_NAME = ("+", "-", "*", "/", "%", "^")


def arithmetic(op: str, lhs: float, rhs: float) -> float:
    if op == "+":
        return lhs + rhs
    if op == "-":
        return lhs - rhs
    if op == "*":
        return lhs * rhs
    if op == "/":
        return go_div(lhs, rhs)
    if op == "^":
        return go_pow(lhs, rhs)
    if op == "%":
        return go_mod(lhs, rhs)
    if op == "atan2":
        return go_atan2(lhs, rhs)
    raise AssertionError(op)


def compare(op: str, lhs: float, rhs: float) -> bool:
    if op == "==":
        return lhs == rhs
    if op == "!=":
        return lhs != rhs
    if op == ">":
        return lhs > rhs
    if op == "<":
        return lhs < rhs
    if op == ">=":
        return lhs >= rhs
    if op == "<=":
        return lhs <= rhs
    raise AssertionError(op)


def element(op: str, lhs: float, rhs: float) -> tuple[float, bool]:
    """(value, keep) of one pair, as vectorElemBinop: comparisons keep the left value when true."""
    if op in COMPARISON_OPERATORS:
        return lhs, compare(op, lhs, rhs)
    return arithmetic(op, lhs, rhs), True


def scalar_binary(op: str, lhs: float, rhs: float) -> float:
    if op in COMPARISON_OPERATORS:
        return 1.0 if compare(op, lhs, rhs) else 0.0
    return arithmetic(op, lhs, rhs)


def drop_name(labels: Labels) -> Labels:
    return tuple(pair for pair in labels if pair[0] != METRIC_NAME)


def vector_scalar(op: str, vector: list[Sample], scalar: float, swap: bool, return_bool: bool) -> list[Sample]:
    out: list[Sample] = []
    comparison = op in COMPARISON_OPERATORS
    for labels, sample_value in vector:
        lhs, rhs = (scalar, sample_value) if swap else (sample_value, scalar)
        value, keep = element(op, lhs, rhs)
        if comparison and swap:
            value = rhs
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if keep:
            if op in _DROPS_NAME or return_bool:
                labels = drop_name(labels)
            out.append(Sample(labels, value))
    return out


class Memo:
    """Per-node caches kept across the steps of one evaluation: signatures and result labels."""

    def __init__(self) -> None:
        self.signatures: dict[Labels, Labels] = {}
        self.results: dict[tuple[Labels, Labels], Labels] = {}

    def signature(self, labels: Labels, matching: VectorMatching) -> Labels:
        found = self.signatures.get(labels)
        if found is None:
            found = self.signatures[labels] = signature(labels, matching)
        return found

    def result(self, many: Labels, one: Labels, op: str, matching: VectorMatching) -> Labels:
        found = self.results.get((many, one))
        if found is None:
            found = self.results[(many, one)] = result_labels(many, one, op, matching)
        return found


def signature(labels: Labels, matching: VectorMatching) -> Labels:
    if matching.on:
        return tuple(pair for pair in labels if pair[0] in matching.labels)
    return tuple(pair for pair in labels if pair[0] != METRIC_NAME and pair[0] not in matching.labels)


def set_operation(
    op: str, lhs: list[Sample], rhs: list[Sample], matching: VectorMatching, memo: Memo | None = None
) -> list[Sample]:
    memo = memo or Memo()
    if op == "and":
        if not lhs or not rhs:
            return []
        right = {memo.signature(s.labels, matching) for s in rhs}
        return [s for s in lhs if memo.signature(s.labels, matching) in right]
    if op == "or":
        if not lhs or not rhs:
            return lhs + rhs
        left = {memo.signature(s.labels, matching) for s in lhs}
        return lhs + [s for s in rhs if memo.signature(s.labels, matching) not in left]
    if not lhs or not rhs:  # unless
        return list(lhs)
    right = {memo.signature(s.labels, matching) for s in rhs}
    return [s for s in lhs if memo.signature(s.labels, matching) not in right]


def vector_binary(
    op: str,
    lhs: list[Sample],
    rhs: list[Sample],
    matching: VectorMatching,
    return_bool: bool,
    memo: Memo | None = None,
) -> list[Sample]:
    memo = memo or Memo()
    if not lhs or not rhs:
        return []
    one_to_many = matching.card == "one-to-many"
    if one_to_many:
        lhs, rhs = rhs, lhs
    right = _one_side(rhs, matching, memo, "left" if one_to_many else "right")
    matched: dict[Labels, set[Labels]] = {}
    out: list[Sample] = []
    for sample in lhs:
        key = memo.signature(sample.labels, matching)
        other = right.get(key)
        if other is None:
            continue
        left_value, right_value = (other.value, sample.value) if one_to_many else (sample.value, other.value)
        value, keep = element(op, left_value, right_value)
        if return_bool:
            value = 1.0 if keep else 0.0
        elif not keep:
            continue
        labels = memo.result(sample.labels, other.labels, op, matching)
        if return_bool:
            labels = drop_name(labels)
        _check_unique(matched, key, labels, matching)
        out.append(Sample(labels, value))
    return out


def _one_side(samples: list[Sample], matching: VectorMatching, memo: Memo, side: str) -> dict[Labels, Sample]:
    """The "one" side of a match by signature; a second sample with the same signature is refused."""
    found: dict[Labels, Sample] = {}
    for sample in samples:
        key = memo.signature(sample.labels, matching)
        if key in found:
            raise PromQLError(
                "execution",
                f"found duplicate series for the match group {format_labels(key)} on the {side} hand-side of the "
                f"operation: [{format_labels(sample.labels)}, {format_labels(found[key].labels)}];many-to-many "
                "matching not allowed: matching labels must be unique on one side",
            )
        found[key] = sample
    return found


def _check_unique(matched: dict[Labels, set[Labels]], key: Labels, labels: Labels, matching: VectorMatching) -> None:
    seen = matched.get(key)
    if matching.card == "one-to-one":
        if seen is not None:
            raise PromQLError(
                "execution",
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            )
        matched[key] = set()
        return
    if seen is None:
        seen = matched[key] = set()
    elif labels in seen:
        raise PromQLError("execution", "multiple matches for labels: grouping labels must ensure unique matches")
    seen.add(labels)


def result_labels(many: Labels, one: Labels, op: str, matching: VectorMatching) -> Labels:
    result = dict(many)
    if op in _DROPS_NAME:
        result.pop(METRIC_NAME, None)
    if matching.card == "one-to-one":
        if matching.on:
            result = {name: value for name, value in result.items() if name in matching.labels}
        else:
            for name in matching.labels:
                result.pop(name, None)
    one_labels = dict(one)
    for name in matching.include:
        if one_labels.get(name):
            result[name] = one_labels[name]
        else:
            result.pop(name, None)
    return tuple(sorted(result.items()))


def format_labels(labels: Labels) -> str:
    """Labels as Prometheus prints them: `{a="1", b="2"}`."""
    inner = ", ".join(f"{name}={_go_quoted(value)}" for name, value in labels)
    return "{" + inner + "}"


def _go_quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'
