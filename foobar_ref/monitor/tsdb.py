"""The monitoring service's time-series storage: samples in memory, bounded by age and by bytes. Pure.

Theory of operation
-------------------
A series is identified by its `Labels`: a tuple of (name, value) pairs sorted by name, including
`("__name__", metric)`.  Each series keeps two parallel columns, `array('q')` of timestamps in
milliseconds and `array('d')` of values, so a sample costs 16 bytes and no Python object (measured:
63 MiB for 1 h of 5,000 series at 5 s, benchmarks/monitor_storage.py).  Appends must come in time
order per series: a sample older than the series' newest one is dropped and counted
(`out_of_order_dropped`), an exact duplicate is ignored.

Staleness is Prometheus's: when a series disappears from its target (or from a rule's output), the
caller writes a *staleness marker*, a NaN with the bit pattern 0x7ff0000000000002, with
`mark_stale`.  `is_stale(v)` tells it apart from an ordinary NaN; the query engine drops a series
from instant vectors as soon as its latest sample is a marker, and leaves markers out of ranges.

`expire(now_ms)` first drops samples older than `retention_s`, then, while the estimate of
`memory_bytes()` is above `max_bytes`, the oldest samples of every series (one time cut-off found by
bisection, so the history shortens evenly).  A series left with no sample is forgotten.

The index is an inverted one (label name -> value -> series), so `select` intersects the postings of
its equality matchers before testing the rest.  It yields series in creation order, the order
Prometheus's in-memory head block gives its engine, so sums and means add up in Prometheus's order
and agree with it to the last bit; `series` answers sorted by labels.  Label strings are interned.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

Labels = tuple[tuple[str, str], ...]

METRIC_NAME = "__name__"
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
MAX_REGEX_LENGTH = 4096  # characters; longer patterns are refused rather than compiled
_INDEX_SLOT_BYTES = 100  # one entry of the series table, as allocated (tracemalloc, CPython 3.11)
_POSTING_SLOT_BYTES = 80  # one series' entry in a posting set and its share of the set's growth (tracemalloc)
_SAMPLE_BYTES = 16  # one int64 timestamp and one float64 value


def is_stale(value: float) -> bool:
    """True when `value` is Prometheus's staleness marker (an ordinary NaN is not)."""
    return value != value and struct.pack("<d", value) == _STALE_BYTES


_STALE_BYTES = struct.pack("<d", STALE_NAN)


def labels_from(mapping: dict[str, str] | Iterable[tuple[str, str]]) -> Labels:
    """Sorted `Labels` from a mapping or pairs; empty values are dropped, as Prometheus drops them."""
    pairs = mapping.items() if isinstance(mapping, dict) else mapping
    return tuple(sorted((name, value) for name, value in pairs if value != ""))


def label_value(labels: Labels, name: str) -> str:
    for label, value in labels:
        if label == name:
            return value
    return ""


class MatcherError(ValueError):
    """A matcher that cannot be built (an invalid regular expression, one too long)."""


@dataclass(frozen=True)
class Matcher:
    """One label matcher: `name op "value"` with op `=`, `!=`, `=~` or `!~` (regexes anchored at both ends)."""

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, op: str, value: str) -> Matcher:
        if op not in ("=", "!=", "=~", "!~"):
            raise MatcherError(f"unknown matcher operator {op!r}")
        if op in ("=~", "!~"):
            return cls(name, op, value, compile_label_regex(value))
        return cls(name, op, value)

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(value) is not None
        return found if self.op == "=~" else not found

    def matches_empty(self) -> bool:
        return self.matches("")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def compile_label_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2-style pattern for full matching; constructs RE2 lacks are refused."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise MatcherError(f"regular expression longer than {MAX_REGEX_LENGTH} characters")
    if re.search(r"\(\?<?[=!]|\\[1-9]|\(\?P=", pattern):
        raise MatcherError(f"invalid regular expression {pattern!r}: lookaround and backreferences are not RE2")
    try:
        return re.compile(f"(?:{pattern})")
    except re.error as error:
        raise MatcherError(f"invalid regular expression {pattern!r}: {error}") from None


class Samples(NamedTuple):
    """A copy of one series' samples in a time window: parallel timestamps (ms) and values."""

    t_ms: array[int]
    values: array[float]


class _Series:
    __slots__ = ("labels", "ref", "t_ms", "values")

    def __init__(self, labels: Labels, ref: int) -> None:
        self.labels = labels
        self.ref = ref  # creation order: the order Prometheus's head block hands series to the engine
        self.t_ms: array[int] = array("q")
        self.values: array[float] = array("d")

    def drop_before(self, cutoff_ms: int) -> int:
        count = bisect_left(self.t_ms, cutoff_ms)
        if count:
            del self.t_ms[:count]
            del self.values[:count]
        return count


def _series_bytes(series: _Series) -> int:
    """A series' share of memory besides its columns: its object, labels, table and posting entries."""
    labels = series.labels
    own = sys.getsizeof(series) + sys.getsizeof(labels) + sum(sys.getsizeof(pair) for pair in labels)
    return own + _INDEX_SLOT_BYTES + len(labels) * _POSTING_SLOT_BYTES


class Storage:
    """Samples of every series, in memory, bounded by `retention_s` and `max_bytes`."""

    def __init__(self, retention_s: float = 3600.0, max_bytes: int = 100 * 1024 * 1024) -> None:
        self.retention_ms = int(retention_s * 1000)
        self.max_bytes = max_bytes
        self.out_of_order_dropped = 0
        self.expired_samples = 0
        self._series: dict[Labels, _Series] = {}
        self._postings: dict[str, dict[str, set[Labels]]] = {}
        self._strings: dict[str, str] = {}
        self._strings_bytes = 0
        self._series_bytes = 0
        self._samples = 0
        self._next_ref = 0

    # --- writing -----------------------------------------------------------------------------------

    def append(self, labels: Labels, t_ms: int, value: float) -> None:
        """Add a sample; one older than the series' newest is dropped and counted."""
        series = self._series.get(labels)
        if series is None:
            series = self._create(labels)
        elif series.t_ms and t_ms <= series.t_ms[-1]:
            last = series.values[-1]
            same = t_ms == series.t_ms[-1] and (last == value or (is_stale(last) and is_stale(value)))
            if not same:
                self.out_of_order_dropped += 1
            return
        series.t_ms.append(t_ms)
        series.values.append(value)
        self._samples += 1

    def mark_stale(self, labels: Labels, t_ms: int) -> None:
        """Write a staleness marker: the series disappeared from its target at `t_ms`."""
        series = self._series.get(labels)
        if series is None or not series.values or is_stale(series.values[-1]):
            return
        self.append(labels, t_ms, STALE_NAN)

    def expire(self, now_ms: int) -> int:
        """Drop samples older than the retention, then the oldest while over `max_bytes`; returns how many."""
        dropped = self._drop_before(now_ms - self.retention_ms)
        for _ in range(8):
            excess = self.memory_bytes() - self.max_bytes
            if excess <= 0 or not self._samples:
                break
            dropped += self._drop_before(self._cutoff_for(excess // _SAMPLE_BYTES + 1))
        self.expired_samples += dropped
        return dropped

    # --- reading -----------------------------------------------------------------------------------

    def series_count(self) -> int:
        return len(self._series)

    def sample_count(self) -> int:
        return self._samples

    def memory_bytes(self) -> int:
        """Bytes held: the columns as allocated, plus the series, index and label strings."""
        columns = sum(sys.getsizeof(s.t_ms) + sys.getsizeof(s.values) for s in list(self._series.values()))
        return columns + self._series_bytes + self._strings_bytes

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> Iterator[tuple[Labels, Samples]]:
        """Series matching every matcher, in creation order, with their samples in [start_ms, end_ms]."""
        for series in self._matching(matchers):
            low = bisect_left(series.t_ms, start_ms)
            high = bisect_right(series.t_ms, end_ms)
            if low < high:
                yield series.labels, Samples(series.t_ms[low:high], series.values[low:high])

    def series(self, matchers: Sequence[Matcher]) -> list[Labels]:
        """Label sets of the stored series matching every matcher (stale or not), sorted."""
        return sorted(series.labels for series in self._matching(matchers))

    def label_names(self) -> list[str]:
        return sorted(self._postings)

    def label_values(self, name: str) -> list[str]:
        return sorted(value for value, members in self._postings.get(name, {}).items() if members)

    # --- internals ---------------------------------------------------------------------------------

    def _create(self, labels: Labels) -> _Series:
        labels = tuple((self._intern(name), self._intern(value)) for name, value in labels)
        series = self._series[labels] = _Series(labels, self._next_ref)
        self._next_ref += 1
        for name, value in labels:
            self._postings.setdefault(name, {}).setdefault(value, set()).add(labels)
        self._series_bytes += _series_bytes(series)
        return series

    def _intern(self, text: str) -> str:
        known = self._strings.get(text)
        if known is None:
            known = self._strings[text] = sys.intern(text)
            self._strings_bytes += sys.getsizeof(text) + 100  # the string and its table slot
        return known

    def _forget(self, series: _Series) -> None:
        del self._series[series.labels]
        self._series_bytes -= _series_bytes(series)
        for name, value in series.labels:
            values = self._postings[name]
            members = values[value]
            members.discard(series.labels)
            if not members:
                del values[value]
                if not values:
                    del self._postings[name]

    def _drop_before(self, cutoff_ms: int) -> int:
        dropped = 0
        for series in list(self._series.values()):
            dropped += series.drop_before(cutoff_ms)
            if not series.t_ms:
                self._forget(series)
        self._samples -= dropped
        return dropped

    def _cutoff_for(self, samples_to_drop: int) -> int:
        """The smallest time before which at least `samples_to_drop` samples lie (all of them at most)."""
        firsts = [s.t_ms[0] for s in self._series.values() if s.t_ms]
        lasts = [s.t_ms[-1] for s in self._series.values() if s.t_ms]
        low, high = min(firsts), max(lasts) + 1
        while low < high:
            middle = (low + high) // 2
            older = sum(bisect_left(s.t_ms, middle) for s in self._series.values())
            if older >= samples_to_drop:
                high = middle
            else:
                low = middle + 1
        return low

    def _matching(self, matchers: Sequence[Matcher]) -> list[_Series]:
        candidates: set[Labels] | None = None
        for matcher in matchers:
            if matcher.op == "=" and matcher.value:
                members = self._postings.get(matcher.name, {}).get(matcher.value, set())
                candidates = set(members) if candidates is None else candidates & members
        pool: Iterable[Labels] = list(self._series) if candidates is None else candidates  # a snapshot
        found = [
            series
            for labels in pool
            if all(m.matches(label_value(labels, m.name)) for m in matchers)
            and (series := self._series.get(labels)) is not None
        ]
        found.sort(key=lambda series: series.ref)
        return found
