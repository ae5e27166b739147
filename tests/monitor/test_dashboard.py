"""The dashboard in headless Chromium, against a monitor fed by fake monitoring clients over real sockets.

Three fake clients (lb-01, web-01, web-02 in 127.90.x.y) expose what the real ones do, with
counters growing in time: every hop's requests and latency histogram, per-hop process figures,
the balancer's backends, the firewalls' rules, MariaDB's replication and the host's node figures.
Chromium loads `/`, runs its script (`--virtual-time-budget`), and the DOM it dumps must show every
hop with a non-zero QPS, and every panel filled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.monitor.monitorproc import (
    METRICS_PORT,
    MONITOR,
    RULES,
    FakeTarget,
    api,
    monitor_process,
    wait_until,
    write_topology,
)

HOSTS = {"lb-01": "127.90.1.1", "web-01": "127.90.2.1", "web-02": "127.90.2.2"}
HOPS = {  # hop -> (host, kind, requests per second)
    "lb-01": ("lb-01", "http", 40.0),
    "firewall-1": ("lb-01", "firewall", 42.0),
    "web-01": ("web-01", "http", 20.0),
    "store-01": ("web-01", "http", 12.0),
    "firewall-2": ("web-01", "firewall", 21.0),
    "web-02": ("web-02", "http", 20.0),
    "store-02": ("web-02", "http", 11.0),
    "firewall-3": ("web-02", "firewall", 21.0),
}
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
SHARES = (0.05, 0.25, 0.55, 0.8, 0.95, 0.99, 0.995, 1.0)  # cumulative share of requests under each bucket
RULE_TEXTS = {
    "1": 'tcp dport 80 ip saddr @lb-01 log prefix "fw accept: " accept comment "the balancer"',
    "2": 'tcp dport 9100 ip saddr @monitor accept comment "monitoring"',
    "3": "ip saddr @client reject",
    "policy": "policy drop",
}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)


def hop_lines(hop: str, kind: str, qps: float, elapsed: float) -> list[str]:
    count = qps * elapsed
    lines = [
        f'foobar_hop_up{{hop="{hop}"}} 1',
        f'foobar_process_cpu_seconds_total{{hop="{hop}"}} {0.004 * qps * elapsed:.4f}',
        f'foobar_process_resident_memory_bytes{{hop="{hop}"}} {40_000_000 + 1000 * len(hop)}',
        f'foobar_requests_total{{hop="{hop}",outcome="{"accept" if kind == "firewall" else "200"}"}} {count:.0f}',
    ]
    if kind == "http":
        lines += [
            f'foobar_http_requests_total{{hop="{hop}",method="GET",code="200"}} {count * 0.99:.0f}',
            f'foobar_http_requests_total{{hop="{hop}",method="GET",code="502"}} {count * 0.01:.0f}',
            f'foobar_http_health_checks_total{{hop="{hop}",code="200"}} {elapsed:.0f}',
        ]
        lines += [
            f'foobar_http_request_duration_seconds_bucket{{hop="{hop}",le="{le}"}} {count * share:.0f}'
            for le, share in zip(BUCKETS, SHARES, strict=True)
        ]
        lines += [
            f'foobar_http_request_duration_seconds_bucket{{hop="{hop}",le="+Inf"}} {count:.0f}',
            f'foobar_http_request_duration_seconds_count{{hop="{hop}"}} {count:.0f}',
            f'foobar_http_request_duration_seconds_sum{{hop="{hop}"}} {count * 0.006:.3f}',
        ]
    else:
        for handle, rule in RULE_TEXTS.items():
            share = {"1": 0.95, "2": 0.05, "3": 0.002, "policy": 0.001}[handle]
            lines.append(f'foobar_firewall_rule_connections_total{{hop="{hop}",handle="{handle}",rule="{_q(rule)}"}} '
                         f"{count * share:.0f}")  # fmt: skip
        lines += [
            f'foobar_firewall_connections_total{{hop="{hop}",action="accept",rule="1"}} {count * 0.998:.0f}',
            f'foobar_firewall_connections_total{{hop="{hop}",action="reject",rule="3"}} {count * 0.002:.0f}',
        ]
    return lines


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def host_page(host: str, started: float) -> str:
    elapsed = time.monotonic() - started + 60  # as if the stack had been up a minute already
    lines = [
        line for hop, (owner, kind, qps) in HOPS.items() if owner == host for line in hop_lines(hop, kind, qps, elapsed)
    ]
    for cpu in ("0", "1"):
        lines += [
            f'node_cpu_seconds_total{{cpu="{cpu}",mode="idle"}} {1000 + elapsed * 0.6:.2f}',
            f'node_cpu_seconds_total{{cpu="{cpu}",mode="user"}} {500 + elapsed * 0.3:.2f}',
            f'node_cpu_seconds_total{{cpu="{cpu}",mode="system"}} {200 + elapsed * 0.1:.2f}',
        ]
    lines += [
        "node_memory_MemTotal_bytes 8e+09",
        "node_memory_MemAvailable_bytes 5.2e+09",
        "node_load1 0.83",
        'node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4e+10',
        'node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1e+11',
    ]
    if host == "lb-01":
        for backend, up in (("web-01", 1), ("web-02", 1)):
            lines += [
                f'foobar_balancer_backend_up{{hop="lb-01",backend="{backend}"}} {up}',
                f'foobar_balancer_upstream_requests_total{{hop="lb-01",backend="{backend}",status="200"}} '
                f"{20 * elapsed:.0f}",
            ]
    if host == "web-01":
        lines += ['mysql_up{hop="db-01"} 1', f'mysql_global_status_queries{{hop="db-01"}} {30 * elapsed:.0f}']
    if host == "web-02":
        lines += [
            'mysql_up{hop="db-02"} 1',
            'mysql_slave_status_seconds_behind_master{hop="db-02"} 0',
            'mysql_slave_status_slave_io_running{hop="db-02"} 1',
            'mysql_slave_status_slave_sql_running{hop="db-02"} 1',
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fed_monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("monitor-dashboard")
    started = time.monotonic()
    targets = [
        FakeTarget((address, METRICS_PORT), lambda host=host: host_page(host, started)).start()  # type: ignore[misc]
        for host, address in HOSTS.items()
    ]
    rules = folder / "rules.yml"
    rules.write_text(RULES)
    topology = write_topology(folder, HOSTS, rules, scrape_interval_s=1, scrape_timeout_s=0.5, evaluation_interval_s=1)
    try:
        with monitor_process(folder, topology):
            yield folder
    finally:
        for target in targets:
            target.stop()


class Rows(HTMLParser):
    """Every element's data-* attributes, by attribute name."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str]] = []
        self.banner_hidden = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if values.get("id") == "banner":
            self.banner_hidden = "hidden" in values
        if any(k.startswith("data-") for k in values):
            self.found.append(values)

    def having(self, attribute: str) -> list[dict[str, str]]:
        return [row for row in self.found if attribute in row]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed for the dashboard test (make test installs it)"
    return found


def browse(url: str, *flags: str, budget_ms: int = 8000) -> subprocess.CompletedProcess[str]:
    """Chromium loads `url` and runs its scripts for `budget_ms` of virtual time (timers fast-forwarded)."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--virtual-time-budget={budget_ms}",
                f"--user-data-dir={profile}",
                *flags,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )


def test_the_dashboard_shows_every_hop_with_traffic(fed_monitor: Path) -> None:
    def every_hop_counted() -> bool:
        query = "sum by (hop) (rate(foobar_requests_total[1m]))"
        rates = {r["metric"]["hop"]: float(r["value"][1]) for r in api("/api/v1/query", query=query)["result"]}
        return all(rates.get(hop, 0) > 0 for hop in HOPS)

    wait_until(every_hop_counted, 20, "a rate for every hop")
    done = browse(f"http://{MONITOR[0]}:{MONITOR[1]}/", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    page = Rows()
    page.feed(done.stdout)
    qps = {row["data-hop"]: float(row["data-qps"] or 0) for row in page.having("data-hop")}
    assert set(HOPS) <= set(qps), qps
    assert all(qps[hop] > 0 for hop in HOPS), qps
    assert qps["monitor"] > 0  # the monitor counts its own answers, the page's queries among them
    assert {row["data-backend"] for row in page.having("data-backend")} == {"web-01", "web-02"}
    assert {row["data-db"] for row in page.having("data-db")} == {"db-01", "db-02"}
    assert {row["data-firewall"] for row in page.having("data-firewall")} == {"firewall-1", "firewall-2", "firewall-3"}
    handles = [row["data-handle"] for row in page.having("data-firewall") if row["data-firewall"] == "firewall-1"]
    assert handles == ["1", "2", "3", "policy"]  # in rule order, the policy last
    assert {row["data-health"] for row in page.having("data-target")} == {"up"}
    assert {row["data-host"] for row in page.having("data-host")} == set(HOSTS)
    assert page.banner_hidden, "a panel failed to refresh"
    assert done.stdout.count("uplot") >= 5  # the five charts were drawn


def test_charts_keep_their_points_across_refreshes(fed_monitor: Path) -> None:
    """Refreshes ask only for the newest steps: the kept points and the new ones join without a gap."""
    done = browse(f"http://{MONITOR[0]}:{MONITOR[1]}/", "--dump-dom", budget_ms=30_000)
    assert done.returncode == 0, done.stderr[-2000:]
    page = Rows()
    page.feed(done.stdout)
    refreshed = int(next(row["data-refreshed"] for row in page.having("data-refreshed")))
    assert refreshed >= 4
    charts = {row["id"]: json.loads(row["data-points"]) for row in page.having("data-points")}
    assert set(charts) == {"chart-qps", "chart-p99", "chart-errors", "chart-cpu", "chart-host-cpu"}
    assert set(HOPS) <= set(charts["chart-qps"])
    for chart, series in charts.items():
        for name, (points, gaps) in series.items():
            assert gaps == 0, (chart, name, points, gaps)
    assert all(charts["chart-qps"][hop][0] >= refreshed for hop in HOPS), charts["chart-qps"]


def test_a_screenshot_renders(fed_monitor: Path) -> None:
    shot = fed_monitor / "dashboard.png"
    done = browse(f"http://{MONITOR[0]}:{MONITOR[1]}/", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
