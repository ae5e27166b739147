"""Prometheus text exposition (format 0.0.4) in, (series text, labels, value) out. Pure.

Theory of operation
-------------------
A scrape body is a list of lines: `# HELP` / `# TYPE` / other comments, blank
lines, and samples::

    name{label="value",other="v\\"q"} 1.5e3 1712345678000

Parsing a sample is the costly part, and a target exposes the same series
scrape after scrape, only the values change.  So, as Prometheus's scrape cache
does, a `SeriesCache` keeps each series' *text* (everything before the value:
`name{...}`) mapped to its parsed, relabelled labels; a known series costs one
split and one dictionary look-up.  A series not seen before is parsed with the
grammar below and checked (metric and label names, escapes, duplicate label
names); entries not seen in the last scrape are forgotten, so the cache stays as
large as one scrape.

Any line that is not valid text format fails the whole scrape, as in
Prometheus: `ExpositionError` names the line number and what was wrong, and the
caller counts it.  Timestamps in the text are validated and ignored: every
sample is stored at the scrape's start time (`honor_timestamps: false`), which
keeps staleness handling uniform.

Measured on this (shared, 2-core) machine on a 316-sample page written by
prometheus_client: its own parser (`text_string_to_metric_families`) took
10.7 ms per page; this one 3.4 ms for the first scrape and 0.5 ms for the
next ones (the cache), which is why the monitor does not use that parser.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})

# one `name="value"` pair, with optional spaces, then a comma or the end
_LABEL_PAIR = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(?:,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r"\\.")
_TIMESTAMP = re.compile(r"-?[0-9]+")


class ExpositionError(ValueError):
    """The body is not valid text exposition; the message names the line."""

    def __init__(self, line_number: int, message: str) -> None:
        super().__init__(f"line {line_number}: {message}")
        self.line_number = line_number


Relabel = Callable[[str, dict[str, str]], Labels]


def parse_value(text: str) -> float:
    """A sample value as Go's ParseFloat reads it: decimal, exponent, [+-]Inf, NaN (no `_`, no hex)."""
    try:
        if "_" not in text and text.isascii():  # Python's float() reads 1_000 and Arabic digits; Go's does not
            return float(text)
    except ValueError:
        pass
    raise ValueError(f"invalid value {text!r}")


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    """`name{a="1",b="2"}` -> ("name", {"a": "1", "b": "2"}); ValueError says what is wrong."""
    brace = text.find("{")
    name = text if brace < 0 else text[:brace].rstrip(" \t")
    if not METRIC_NAME.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}")
    labels: dict[str, str] = {}
    if brace < 0:
        return name, labels
    if not text.endswith("}"):
        raise ValueError("label set not closed with '}'")
    body, position = text[brace + 1 : -1], 0
    while position < len(body) and body[position:].strip(" \t"):
        match = _LABEL_PAIR.match(body, position)
        if match is None:
            raise ValueError(f"invalid label set at {body[position : position + 40]!r}")
        label, raw = match.group(1), match.group(2)
        if label in labels:
            raise ValueError(f"label {label!r} given twice")
        labels[label] = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(0), m.group(0)), raw) if "\\" in raw else raw
        position = match.end()
    return name, labels


def _check_comment(line: str, number: int) -> None:
    parts = line[1:].split(None, 3)
    if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
        return  # any other comment is free text
    if not METRIC_NAME.fullmatch(parts[1]):
        raise ExpositionError(number, f"invalid metric name {parts[1]!r} in # {parts[0]}")
    if parts[0] == "TYPE" and (len(parts) != 3 or parts[2] not in METRIC_TYPES):
        raise ExpositionError(number, f"invalid # TYPE line for {parts[1]} (expected one of {sorted(METRIC_TYPES)})")


def split_sample(line: str) -> tuple[str, str, str | None]:
    """(series text, value text, timestamp text or None); ValueError if the line has no value."""
    close = line.rfind("}")
    if close >= 0:
        series, rest = line[: close + 1], line[close + 1 :].split()
    else:
        series, *rest = line.split()
    if not rest or len(rest) > 2:
        raise ValueError("expected a value (and optionally a timestamp) after the series")
    return series, rest[0], (rest[1] if len(rest) == 2 else None)


@dataclass
class Page:
    """One parsed scrape body: its samples (each series once), and its series by text."""

    samples: list[tuple[Labels, float]]
    by_text: dict[str, Labels]
    duplicates: int  # samples dropped: a series given again (same text, or the same labels written otherwise)


class SeriesCache:
    """Series text -> relabelled labels, kept from one scrape to the next (see the theory above).

    Everything is keyed by the series *text*: Python caches a string's hash, not a tuple's, so
    look-ups, duplicate checks and the staleness difference cost no hashing of label tuples.
    """

    def __init__(self) -> None:
        self.known: dict[str, Labels] = {}

    def parse(self, text: str, relabel: Relabel) -> Page:
        """Every sample of `text`, labels passed through `relabel(name, labels)`; raises ExpositionError.

        The cache is not changed: `commit` the page once it is stored, or `forget` everything.
        """
        page = Page([], {}, 0)
        by_labels: set[Labels] | None = None  # built at the first series not in the cache
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.strip(" \t\r")
            if not line:
                continue
            if line[0] == "#":
                _check_comment(line, number)
                continue
            try:
                series, value_text, timestamp = split_sample(line)
                value = parse_value(value_text)
                if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp):
                    raise ValueError(f"invalid timestamp {timestamp!r}")
                if series in page.by_text:
                    page.duplicates += 1
                    continue
                labels = self.known.get(series)
                if labels is None:
                    labels = relabel(*parse_series(series))
                    by_labels = set(page.by_text.values()) if by_labels is None else by_labels
                if by_labels is not None:  # a new text may be a series already given, written otherwise
                    if labels in by_labels:
                        page.duplicates += 1
                        continue
                    by_labels.add(labels)
            except ValueError as err:
                raise ExpositionError(number, f"{err}: {_clip(line)}") from None
            page.by_text[series] = labels
            page.samples.append((labels, value))
        return page

    def commit(self, page: Page) -> tuple[list[Labels], int]:
        """Keep `page` as the last scrape: (labels of the series it no longer has, how many it added)."""
        old, self.known = self.known, page.by_text
        added = sum(1 for series in page.by_text if series not in old)
        gone = [labels for series, labels in old.items() if series not in page.by_text]
        if gone:  # a series may come back written another way: it is not gone
            present = set(page.by_text.values())
            gone = [labels for labels in gone if labels not in present]
        return gone, added

    def forget(self) -> list[Labels]:
        """Forget every series (a failed scrape): their labels, to mark stale."""
        gone, self.known = list(self.known.values()), {}
        return gone


def _clip(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else line[:limit] + "..."


def format_value(value: float) -> str:
    """A value as Prometheus writes it in text: integers without a dot, +Inf, -Inf, NaN."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_series(labels: Labels) -> str:
    """`name{a="1",b="2"}` from labels that include `__name__` (which is left out of the braces)."""
    name = next((v for k, v in labels if k == "__name__"), "")
    pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels if k != "__name__")
    return f"{name}{{{pairs}}}" if pairs else name
