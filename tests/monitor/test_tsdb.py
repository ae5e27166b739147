"""The monitor's time-series storage: appends in order, staleness markers, selection, retention and memory bounds."""

from __future__ import annotations

import math

import pytest

from foobar_ref.monitor.tsdb import (
    STALE_NAN,
    Matcher,
    MatcherError,
    Storage,
    is_stale,
    label_value,
    labels_from,
)

UP_A = labels_from({"__name__": "up", "job": "web", "instance": "a"})
UP_B = labels_from({"__name__": "up", "job": "web", "instance": "b"})
REQS = labels_from({"__name__": "requests_total", "job": "db", "instance": "a"})


def everything(storage: Storage, *matchers: Matcher) -> dict:
    return {labels: list(zip(s.t_ms, s.values, strict=True)) for labels, s in storage.select(matchers, 0, 10**12)}


def test_labels_are_sorted_by_name_and_empty_values_dropped() -> None:
    assert labels_from({"b": "2", "a": "1", "c": ""}) == (("a", "1"), ("b", "2"))
    assert label_value(UP_A, "instance") == "a" and label_value(UP_A, "missing") == ""


def test_samples_come_back_in_time_order_within_the_window() -> None:
    storage = Storage()
    for t in range(0, 50_000, 10_000):
        storage.append(UP_A, t, t / 1000)
    selected = list(storage.select([Matcher.make("__name__", "=", "up")], 10_000, 30_000))
    assert len(selected) == 1
    labels, samples = selected[0]
    assert labels == UP_A
    assert list(samples.t_ms) == [10_000, 20_000, 30_000] and list(samples.values) == [10.0, 20.0, 30.0]
    assert storage.sample_count() == 5 and storage.series_count() == 1


def test_out_of_order_samples_are_dropped_and_counted_duplicates_ignored() -> None:
    storage = Storage()
    storage.append(UP_A, 2000, 1.0)
    storage.append(UP_A, 1000, 5.0)  # older: dropped
    storage.append(UP_A, 2000, 7.0)  # same time, other value: dropped
    storage.append(UP_A, 2000, 1.0)  # exact duplicate: ignored, not counted
    assert storage.out_of_order_dropped == 2
    assert everything(storage) == {UP_A: [(2000, 1.0)]}


def test_staleness_marker_is_a_distinct_nan() -> None:
    assert is_stale(STALE_NAN) and not is_stale(math.nan) and not is_stale(0.0)
    storage = Storage()
    storage.append(UP_A, 1000, 1.0)
    storage.mark_stale(UP_A, 2000)
    storage.mark_stale(UP_A, 3000)  # already stale: no second marker
    storage.mark_stale(UP_B, 3000)  # unknown series: nothing
    values = everything(storage)[UP_A]
    assert [t for t, _ in values] == [1000, 2000] and is_stale(values[1][1])
    assert UP_B not in everything(storage)


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        ([("__name__", "=", "up")], {UP_A, UP_B}),
        ([("instance", "=", "a")], {UP_A, REQS}),
        ([("__name__", "=", "up"), ("instance", "!=", "a")], {UP_B}),
        ([("job", "=~", "we.")], {UP_A, UP_B}),
        ([("job", "=~", "e")], set()),  # anchored at both ends
        ([("job", "!~", "web|db")], set()),
        ([("job", "=~", "web|db"), ("missing", "=", "")], {UP_A, UP_B, REQS}),  # absent label matches ""
        ([("missing", "!=", "")], set()),
        ([("__name__", "=~", ".+_total")], {REQS}),
    ],
)
def test_select_applies_every_matcher(matchers: list[tuple[str, str, str]], expected: set) -> None:
    storage = Storage()
    for labels in (UP_A, UP_B, REQS):
        storage.append(labels, 1000, 1.0)
    built = [Matcher.make(*m) for m in matchers]
    assert set(everything(storage, *built)) == expected
    assert set(storage.series(built)) == expected


def test_selection_keeps_creation_order_and_series_are_sorted() -> None:
    storage = Storage()
    for labels in (UP_B, REQS, UP_A):
        storage.append(labels, 1000, 1.0)
    assert list(everything(storage)) == [UP_B, REQS, UP_A]  # as Prometheus's head block hands them out
    assert storage.series([Matcher.make("job", "=~", ".+")]) == sorted([UP_A, UP_B, REQS])


def test_label_values_and_names() -> None:
    storage = Storage()
    for labels in (UP_A, UP_B, REQS):
        storage.append(labels, 1000, 1.0)
    assert storage.label_values("instance") == ["a", "b"]
    assert storage.label_values("__name__") == ["requests_total", "up"]
    assert storage.label_values("nothing") == []
    assert storage.label_names() == ["__name__", "instance", "job"]


@pytest.mark.parametrize("pattern", ["(", "a(?=b)", "(a)\\1", "x" * 5000])
def test_bad_or_unsupported_regexes_are_refused(pattern: str) -> None:
    with pytest.raises(MatcherError):
        Matcher.make("job", "=~", pattern)


def test_retention_drops_old_samples_and_empty_series() -> None:
    storage = Storage(retention_s=60)
    for t in range(0, 120_000, 10_000):
        storage.append(UP_A, t, 1.0)
    storage.append(UP_B, 0, 1.0)
    dropped = storage.expire(now_ms=120_000)
    assert dropped == 7  # UP_A's 0..50 s and UP_B's only sample
    assert storage.series_count() == 1 and storage.label_values("instance") == ["a"]
    assert [t for t, _ in everything(storage)[UP_A]] == list(range(60_000, 120_000, 10_000))
    assert storage.expired_samples == 7


def test_memory_bound_drops_the_oldest_samples_first() -> None:
    storage = Storage(retention_s=10**6, max_bytes=10**9)
    series = [labels_from({"__name__": "m", "i": str(i)}) for i in range(50)]
    for t in range(2000):
        for labels in series:
            storage.append(labels, t * 1000, float(t))
    full = storage.memory_bytes()
    assert full > 50 * 2000 * 16  # at least the columns
    storage.max_bytes = full // 2
    dropped = storage.expire(now_ms=2_000_000)
    assert dropped > 0 and storage.memory_bytes() <= full // 2
    kept = everything(storage)
    first_times = {samples[0][0] for samples in kept.values()}
    assert len(kept) == 50 and len(first_times) == 1  # one cut-off for every series: the history shortens evenly
    assert all(samples[-1][0] == 1_999_000 for samples in kept.values())  # the newest samples are kept


def test_memory_estimate_grows_with_samples_and_stays_compact() -> None:
    storage = Storage()
    empty = storage.memory_bytes()
    labels = [labels_from({"__name__": "m", "hop": f"h{i}"}) for i in range(100)]
    for t in range(720):
        for one in labels:
            storage.append(one, t * 5000, 1.0)
    per_sample = (storage.memory_bytes() - empty) / storage.sample_count()
    assert 16 <= per_sample < 25  # two 8-byte columns, plus the series' share and array headroom
