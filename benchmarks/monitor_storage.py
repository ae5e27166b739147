"""The monitor's storage figures: memory for 1 h of 5,000 series at 5 s, and the time of dashboard queries over it.

    .venv/bin/python benchmarks/monitor_storage.py [--series 5000] [--hours 1] [--interval 5]

Not a test: it prints figures.  The series are shaped like the catalogue's (HTTP request counters by
hop, method and code; latency buckets by hop and le; process and host gauges), filled up to
`--series` with per-rule firewall counters.  Memory is measured three ways: the storage's own
estimate (`memory_bytes`), the bytes Python allocated while filling it (tracemalloc), and the
process's resident size before and after.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc

from foobar_ref.monitor.promql import Engine
from foobar_ref.monitor.tsdb import Labels, Storage, labels_from

HOPS = [f"{kind}-{n:02d}" for kind in ("web", "store", "lb", "firewall", "db", "dns") for n in (1, 2)]
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
DASHBOARD = [
    ("QPS per hop", "sum by (hop) (rate(foobar_http_requests_total[1m]))"),
    (
        "error ratio per hop",
        'sum by (hop) (rate(foobar_http_requests_total{code=~"5.."}[1m])) '
        "/ sum by (hop) (rate(foobar_http_requests_total[1m]))",
    ),
    (
        "p99 per hop",
        "histogram_quantile(0.99, sum by (hop, le) (rate(foobar_http_request_duration_seconds_bucket[1m])))",
    ),
    (
        "firewall refusals",
        'sum by (hop, rule) (rate(foobar_firewall_rule_connections_total{action=~"drop|reject"}[1m]))',
    ),
    ("CPU per hop", "rate(foobar_process_cpu_seconds_total[1m])"),
]


def catalogue_like(count: int) -> list[tuple[Labels, float]]:
    """(labels, per-scrape increment) for `count` series."""
    base = {"job": "monitor-client", "instance": "127.0.2.1:9100", "host": "web-01"}
    out: list[tuple[Labels, float]] = []
    for hop in HOPS:
        for method in ("GET", "POST"):
            for code in ("200", "404", "500"):
                labels = {**base, "__name__": "foobar_http_requests_total", "hop": hop, "method": method, "code": code}
                out.append((labels_from(labels), 5.0 if code == "200" else 0.1))
        for le in BUCKETS:
            labels = {**base, "__name__": "foobar_http_request_duration_seconds_bucket", "hop": hop, "le": le}
            out.append((labels_from(labels), 5.0 * min(1.0, (BUCKETS.index(le) + 1) / 8)))
        for name in ("foobar_process_cpu_seconds_total", "foobar_process_resident_memory_bytes"):
            out.append((labels_from({**base, "__name__": name, "hop": hop}), 0.01))
    rule = 0
    while len(out) < count:
        hop, action = HOPS[rule % len(HOPS)], ("accept", "drop", "reject")[rule % 3]
        labels = {
            **base,
            "__name__": "foobar_firewall_rule_connections_total",
            "hop": hop,
            "rule": str(rule),
            "action": action,
        }
        out.append((labels_from(labels), 0.5))
        rule += 1
    return out[:count]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args()
    series = catalogue_like(args.series)
    samples = int(args.hours * 3600 / args.interval)
    step_ms = int(args.interval * 1000)
    start_ms = 1_700_000_000_000
    storage = Storage(retention_s=args.hours * 3600 + 60, max_bytes=1 << 40)

    gc.collect()
    rss_before = rss_bytes()
    tracemalloc.start()
    began = time.perf_counter()
    for index in range(samples):
        t_ms = start_ms + index * step_ms
        for labels, increment in series:
            storage.append(labels, t_ms, index * increment)
    fill_s = time.perf_counter() - began
    allocated, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gc.collect()
    rss_after = rss_bytes()
    mib = 1024 * 1024
    print(f"{storage.series_count()} series x {samples} samples = {storage.sample_count():,} samples")
    print(f"  storage estimate (memory_bytes): {storage.memory_bytes() / mib:7.1f} MiB")
    print(f"  allocated while filling (tracemalloc): {allocated / mib:7.1f} MiB")
    print(f"  resident size grew by: {(rss_after - rss_before) / mib:7.1f} MiB (now {rss_after / mib:.1f} MiB in all)")
    print(f"  filling took {fill_s:.1f} s ({fill_s / storage.sample_count() * 1e6:.2f} us per append)")

    engine = Engine(storage)
    end_s = (start_ms + (samples - 1) * step_ms) / 1000
    for title, query in DASHBOARD:
        began = time.perf_counter()
        instant = engine.instant(query, end_s)
        instant_s = time.perf_counter() - began
        began = time.perf_counter()
        matrix = engine.range(query, end_s - 900, end_s, 5)
        range_s = time.perf_counter() - began
        began = time.perf_counter()
        engine.range(query, end_s - 3600 + 60, end_s, 15)
        hour_s = time.perf_counter() - began
        print(
            f"  {title:20s} instant {instant_s * 1000:7.1f} ms ({len(instant.samples)} series); "  # type: ignore[union-attr]
            f"15 min at 5 s {range_s * 1000:7.1f} ms ({len(matrix.series)} series); "
            f"1 h at 15 s {hour_s * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    main()
