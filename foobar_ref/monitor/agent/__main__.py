"""python -m foobar_ref.monitor.agent --topology FILE --hop mon-web-01 --state DIR [--source-timeout-s 1]

The monitoring client of one host (see the package's docstring): GET /metrics on
the host's inner address, port `metrics`, accepting connections only from the
host's public address, where its firewall relays from (a host without a
firewall: from anyone).  --source-timeout-s is each source's budget in one
scrape (default 1 s); a scraper that sends X-Prometheus-Scrape-Timeout-Seconds
gets a smaller one when it waits less.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from foobar_ref.launcher.plan import StatePaths
from foobar_ref.monitor.agent.access_log import AccessLogSource
from foobar_ref.monitor.agent.collector import Collector, DatabaseSource, HopOnHost, Source
from foobar_ref.monitor.agent.mariadb import MariadbSource
from foobar_ref.monitor.agent.node import NodeSource
from foobar_ref.monitor.agent.processes import ProcessSource
from foobar_ref.monitor.agent.server import MetricsServer
from foobar_ref.mysql.config import credentials_path
from foobar_ref.mysql.setup import MONITOR_USER
from foobar_ref.observe.access_log import access_log_path
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, bind_admin_socket, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args, seconds
from foobar_ref.runtime.trio_shell import Listener, open_tcp_listener, run_hop
from foobar_ref.topology import Topology

SOURCE_TIMEOUT_S = 1.0


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-timeout-s", type=seconds, default=SOURCE_TIMEOUT_S,
        help=f"each source's budget in one scrape, seconds (default {SOURCE_TIMEOUT_S:g})",
    )  # fmt: skip


def build_collector(topo: Topology, hop: str, state_dir: Path, metrics: Metrics, timeout_s: float) -> Collector:
    """Every source of the client's host, from the topology."""
    host = topo.host_of(hop).name
    kinds = {s.name: s.kind for s in topo.services}
    hops = [
        HopOnHost(name, None if kinds.get(name) == "mariadb" or name == hop else admin_socket_path(state_dir, name))
        for name in topo.hops_on_host(host)
    ]
    access_logs: list[Source] = [
        AccessLogSource(name, access_log_path(state_dir, name))
        for name in topo.hops_on_host(host)
        if kinds.get(name) == "web"
    ]
    local: list[Source] = [
        ProcessSource(StatePaths(state_dir).stack_file, topo.hops_on_host(host)),
        NodeSource(state_dir),
    ]
    databases: list[DatabaseSource] = [
        MariadbSource(name, topo.listen(name, "mysql"), topo.source_for(hop), _password(state_dir), timeout_s)
        for name in topo.hops_on_host(host)
        if kinds.get(name) == "mariadb"
    ]
    return Collector(hop, hops, local + access_logs, databases, metrics.registry, timeout_s)


def _password(state_dir: Path):  # type: ignore[no-untyped-def]
    def read() -> str:
        return str(json.loads(credentials_path(state_dir).read_text())[MONITOR_USER])

    return read


def main() -> None:
    args = parse_hop_args("monitor.agent", extend=_flags)
    topo, hop = args.topology, args.hop
    if topo.service(hop).kind != "monitor-client":
        print(f"monitor.agent: {hop!r} is a {topo.service(hop).kind} service, not a monitor-client", file=sys.stderr)
        raise SystemExit(2)
    metrics = Metrics()
    collector = build_collector(topo, hop, args.state_dir, metrics, args.extra.source_timeout_s)
    host = topo.host_of(hop)
    server = MetricsServer(hop, host.name, collector, metrics)
    allowed = frozenset({host.address}) if host.inner else None  # behind a firewall: only what it relays

    def build():  # type: ignore[no-untyped-def]
        listener = open_tcp_listener(*topo.listen(hop, "metrics"))
        admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
        return [Listener(listener, server.handle, allowed)], [lambda: serve_admin(admin, metrics)]

    run_hop(hop, build, metrics)


if __name__ == "__main__":
    main()
