"""Per-process Prometheus metrics: one registry per hop, the same names everywhere.

Every hop counts what it handled in `foobar_requests_total{hop, outcome}` so QPS
reads the same way for DNS queries, relayed connections and HTTP requests.  Hops
add their own series on the same registry (`metrics.registry`); HTTP hops add
the HTTP series of `observe.http_metrics`.  The whole catalogue is in
`foobar_ref/monitor/__init__.py`.

No `_created` series: prometheus_client would add one gauge per counter and
histogram child (the time it was first used), which doubles a page that the
monitoring client reads, relabels and serves on every scrape, and which
Prometheus stores as series of their own.  Turned off once per process, here.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

# Latency buckets in seconds, shared by every duration histogram of the project so that
# `histogram_quantile` reads the same resolution for every hop: 0.5 ms to 10 s.
DURATION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "foobar_requests", "Requests handled, by outcome", ["hop", "outcome"], registry=self.registry
        )
        self.refused_peers = Counter(
            "foobar_refused_peers",
            "Connections closed because the peer may not connect",
            ["hop"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "foobar_request_seconds",
            "Time to handle one request",
            ["hop"],
            registry=self.registry,
            buckets=DURATION_BUCKETS_S,
        )

    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def parse_exposition(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a Prometheus text page, keyed by (name, sorted labels): for tools and tests."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
