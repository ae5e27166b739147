"""One /metrics page from the client's own families and its hops' pages, every hop series labelled `hop`.

Theory of operation
-------------------
The client's own families (host, processes, database, access log, its own
counters) are prometheus_client metric families; each hop's page arrives as
exposition text from the hop's admin socket, written by prometheus_client too.
A family may come from several places (every hop keeps `foobar_requests_total`),
and the text format wants each family once, so pages are merged family by
family.

Plain text (format 0.0.4, what the monitoring service and Prometheus read) takes
the fast way: the client's families are rendered by `text_of`, which writes
exactly what prometheus_client's `generate_latest` writes (a test holds them
equal) in about a third of its time, then
every page is cut into family blocks (`# HELP`, `# TYPE`, samples) and blocks of
the same name are joined, the first HELP and TYPE kept; a block whose TYPE
disagrees with the first is dropped and counted.  A hop's samples are copied as
they are when each line already carries `hop="<that hop>"` (every hop labels
its series so: counted with two `str.count`s over the whole block); a line that
does not has its labels parsed and rewritten with `hop` set.  Lines that do not
parse are dropped and counted, so the page always parses.

Why not parse the pages with prometheus_client's parser: on this kind of
machine it costs about 30 us a line, about 10 ms for one host's hops at every
scrape, against a few hundred microseconds for this block merge.

OpenMetrics (asked for with `Accept: application/openmetrics-text`) takes the
slow, exact way: the hops' pages are parsed into families, relabelled, merged
with the client's own, and rendered by prometheus_client's OpenMetrics encoder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

HopPage = tuple[str, str]  # (hop, exposition text)
_SUFFIXES = ("_bucket", "_sum", "_count")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,?)')


class Families(Collector):
    """A fixed list of families, for an encoder (anything with `collect()`)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


@dataclass
class Rendered:
    body: bytes
    content_type: str
    dropped_lines: int = 0


def render(own: Collector, hop_pages: list[HopPage], accept: str | None, writer: TextWriter | None = None) -> Rendered:
    """The page in the format `accept` asks for (prometheus_client's negotiation)."""
    encoder, content_type = choose_encoder(accept or "")
    if encoder is generate_latest or getattr(encoder, "func", None) is generate_latest:
        body, dropped = merge_text(own, hop_pages, writer or TextWriter())
        return Rendered(body, content_type, dropped)
    families, dropped = merge_families(own, hop_pages)
    return Rendered(encoder(Families(families)), content_type, dropped)


# --- text: the client's families, then family blocks joined by name ------------------------------

_TEXT_TYPES = {"unknown": "untyped", "stateset": "gauge", "gaugehistogram": "histogram", "info": "gauge"}
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")
_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
MAX_KEPT_SERIES = 50_000
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Block:
    name: str
    help: str = ""
    type: str = ""
    samples: list[str] = field(default_factory=list)

    def owns(self, sample_name: str) -> bool:
        return sample_name == self.name or (
            sample_name.startswith(self.name) and sample_name[len(self.name) :] in _SUFFIXES
        )

    def text(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type or 'untyped'}\n" + "".join(self.samples)


class TextWriter:
    """Writes families in the text format as `generate_latest` does (a test holds them equal).

    A series' text up to its value (`name{labels} `) is kept from one scrape to the next: the same
    series come back every scrape, and escaping and sorting their labels is most of the cost.
    """

    def __init__(self) -> None:
        self._series: dict[SeriesKey, str] = {}

    def blocks(self, collector: Collector) -> dict[str, _Block] | None:
        """The families as blocks by name; None when one needs what only generate_latest does."""
        blocks: dict[str, _Block] = {}
        for metric in collector.collect():
            name = metric.name + ("_total" if metric.type == "counter" else "_info" if metric.type == "info" else "")
            if not _LEGACY_NAME.fullmatch(name):
                return None
            block = blocks.get(name)
            if block is None:
                doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
                block = blocks[name] = _Block(name, doc, _TEXT_TYPES.get(metric.type, metric.type))
            lines = []
            for sample in metric.samples:
                if sample.timestamp is not None or sample.name[len(metric.name) :] in _OPENMETRICS_ONLY:
                    return None
                key = (sample.name, tuple(sample.labels.items()))
                prefix = self._series.get(key) or self._keep(key)
                lines.append(f"{prefix}{floatToGoString(sample.value)}\n")
            block.samples.append("".join(lines))
        return blocks

    def _keep(self, key: SeriesKey) -> str:
        name, labels = key
        prefix = f"{name}{{{','.join([f'{k}={_quoted(v)}' for k, v in sorted(labels)])}}} " if labels else f"{name} "
        if len(self._series) >= MAX_KEPT_SERIES:
            self._series.clear()  # series come and go (a hop restarted, a rule set reloaded): start afresh
        self._series[key] = prefix
        return prefix


def text_of(collector: Collector, writer: TextWriter | None = None) -> str:
    """`generate_latest(collector)` (format 0.0.4), written by `TextWriter`."""
    blocks = (writer or TextWriter()).blocks(collector)
    if blocks is None:
        return generate_latest(collector).decode()
    return "".join(block.text() for block in blocks.values())


def merge_text(own: Collector, hop_pages: list[HopPage], writer: TextWriter) -> tuple[bytes, int]:
    """(the merged page, how many lines were dropped)."""
    blocks = writer.blocks(own)
    dropped = 0
    if blocks is None:
        blocks = {}
        dropped = _add_page(blocks, generate_latest(own).decode(), None)
    for hop, text in hop_pages:
        dropped += _add_page(blocks, text, _Relabel(hop))
    return "".join(block.text() for block in blocks.values()).encode(), dropped


def _add_page(blocks: dict[str, _Block], text: str, relabel: _Relabel | None) -> int:
    """Family by family when laid out as prometheus_client writes it (HELP, TYPE, samples), else line by line."""
    if not text.startswith("# HELP "):
        return _add_lines(blocks, text.split("\n"), relabel, None)
    return sum(_add_family(blocks, chunk, relabel) for chunk in text[len("# HELP ") :].split("\n# HELP "))


def _add_family(blocks: dict[str, _Block], chunk: str, relabel: _Relabel | None) -> int:
    """One family's text after `# HELP `: its samples are taken whole when every line is already right."""
    chunk = chunk.rstrip("\n") + "\n"
    help_end = chunk.find("\n")
    name, _, doc = chunk[:help_end].partition(" ")
    type_end = chunk.find("\n", help_end + 1)
    type_prefix = f"# TYPE {name} "
    if not name or not chunk.startswith(type_prefix, help_end + 1):
        return _add_lines(blocks, ["# HELP " + chunk[:help_end], *chunk[help_end + 1 :].split("\n")], relabel, None)
    block = blocks.get(name) or blocks.setdefault(name, _Block(name))
    samples = chunk[type_end + 1 :]
    kind = chunk[help_end + 1 + len(type_prefix) : type_end]
    if block.type and block.type != kind:
        return samples.count("\n")  # same name, another type: the first one seen wins, these are dropped
    block.help, block.type = block.help or doc, kind
    if not samples:
        return 0
    lines = samples.count("\n")
    if ("\n" + samples).count("\n" + name) == lines and (relabel is None or relabel.all_labelled(samples, lines)):
        block.samples.append(samples)
        return 0
    return _add_lines(blocks, samples.split("\n"), relabel, block)


def _add_lines(blocks: dict[str, _Block], lines: list[str], relabel: _Relabel | None, current: _Block | None) -> int:
    dropped = 0
    for line in lines:
        if not line:
            continue
        if line[0] == "#":
            current, bad = _meta(blocks, line, current)
            dropped += bad
            continue
        end = _name_end(line)
        if current is None or end < 0 or not current.owns(line[:end]):
            dropped += 1
            continue
        sample = line if relabel is None else relabel(line, end)
        if sample is None:
            dropped += 1
            continue
        current.samples.append(sample + "\n")
    return dropped


def _meta(blocks: dict[str, _Block], line: str, current: _Block | None) -> tuple[_Block | None, int]:
    """A `# HELP` or `# TYPE` line: the block it opens (None: skip its samples), and 1 if it was refused."""
    parts = line.split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
        return current, 0  # another comment
    name = parts[2]
    rest = parts[3] if len(parts) > 3 else ""
    block = blocks.get(name)
    if block is None:
        block = blocks[name] = _Block(name)
    if parts[1] == "HELP":
        block.help = block.help or rest
        return block, 0
    if block.type and block.type != rest:
        return None, 1  # same name, another type: the first one seen wins, these samples are dropped
    block.type = rest
    return block, 0


def _name_end(line: str) -> int:
    """Where a sample line's metric name ends (at `{` or the space before the value), -1 if it does not."""
    space = line.find(" ")
    brace = line.find("{", 0, space if space >= 0 else len(line))
    return brace if brace >= 0 else space


class _Relabel:
    """Sets `hop` on one hop's sample lines.

    A value inside a label is escaped (a quote in it is written `\\"`), so `{hop="x"` or `,hop="x"`
    in a line can only be the label itself: a line that holds it is right as it is.
    """

    def __init__(self, hop: str) -> None:
        self.value = _escape(hop)
        self.first = '{hop="' + self.value + '"'
        self.later = ',hop="' + self.value + '"'

    def all_labelled(self, samples: str, lines: int) -> bool:
        """Do all of these `lines` sample lines carry this hop's label already?"""
        return samples.count(self.first) + samples.count(self.later) == lines

    def __call__(self, line: str, end: int) -> str | None:
        if line[end] == " ":
            return f'{line[:end]}{{hop="{self.value}"}}{line[end:]}'
        if self.first in line or self.later in line:
            return line
        return self._rewrite(line, end)

    def _rewrite(self, line: str, end: int) -> str | None:
        labels: list[tuple[str, str]] = []
        pos = end + 1
        while pos < len(line) and line[pos] != "}":
            match = _LABEL.match(line, pos)
            if match is None:
                return None
            if match.group(1) != "hop":
                labels.append((match.group(1), match.group(2)))
            pos = match.end()
        if pos >= len(line):
            return None
        text = ",".join([f'hop="{self.value}"'] + [f'{k}="{v}"' for k, v in labels])
        return f"{line[:end]}{{{text}}}{line[pos + 1 :]}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _quoted(value: str) -> str:
    return f'"{_escape(value)}"'


# --- OpenMetrics: parsed families ----------------------------------------------------------


def merge_families(own: Collector, hop_pages: list[HopPage]) -> tuple[list[Metric], int]:
    merged: dict[str, Metric] = {}
    dropped = 0
    for family in own.collect():
        dropped += _merge_family(merged, family, lambda labels: labels)
    for hop, text in hop_pages:
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError:
            dropped += 1
            continue
        for family in parsed:
            dropped += _merge_family(merged, family, _set_hop(hop))
    return list(merged.values()), dropped


def _set_hop(hop: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda labels: {"hop": hop, **{k: v for k, v in labels.items() if k != "hop"}}


def _merge_family(merged: dict[str, Metric], family: Metric, labels: Callable[[dict[str, str]], dict[str, str]]) -> int:
    target = merged.get(family.name)
    if target is None:
        target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
    elif target.type != family.type:
        return len(family.samples)
    target.samples.extend(s._replace(labels=labels(s.labels)) for s in family.samples)
    return 0
