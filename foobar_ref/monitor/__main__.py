"""python -m foobar_ref.monitor --topology FILE --hop monitor --state DIR [--max-storage-mb N]

The monitoring service: scrapes every monitoring client, evaluates the alert rules, notifies, and
serves the dashboard and a Prometheus-compatible API (see service.py).  A rule file that cannot
be used stops it before READY, with every problem as `file:line: message` on stderr (exit 2).
"""

from __future__ import annotations

import argparse
import sys
import time

from foobar_ref.monitor.alerting import RuleManager
from foobar_ref.monitor.promql import Engine
from foobar_ref.monitor.rules import RuleFileError
from foobar_ref.monitor.service import (
    DEFAULT_MAX_STORAGE_BYTES,
    LOOKBACK_DELTA_S,
    MonitorMetrics,
    MonitorService,
    default_rule_file,
)
from foobar_ref.monitor.tsdb import Storage
from foobar_ref.runtime.admin import admin_socket_path, bind_admin_socket, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args
from foobar_ref.runtime.trio_shell import Listener, log, open_tcp_listener, run_hop

MIB = 1024 * 1024


def _megabytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of MiB, found {text!r}") from None
    if not 1 <= value <= 64 * 1024:
        raise argparse.ArgumentTypeError(f"expected MiB in [1, 65536], found {value}")
    return value


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-storage-mb",
        type=_megabytes,
        default=DEFAULT_MAX_STORAGE_BYTES // MIB,
        help="memory bound of the sample storage; the oldest samples go first (default %(default)s)",
    )


def main() -> None:
    args = parse_hop_args("monitor", extend=_flags)
    topo, hop = args.topology, args.hop
    settings = topo.service(hop).monitor
    if settings is None:
        print(f"monitor: {hop} is not a service of kind 'monitor' in {topo.path}", file=sys.stderr)
        raise SystemExit(2)
    storage = Storage(settings.retention_s, args.extra.max_storage_mb * MIB)
    # Prometheus refuses a range query when (end - start) / step > 11,000: up to 11,001 points
    engine = Engine(storage, lookback_delta_s=LOOKBACK_DELTA_S, max_points=11_001)
    rule_file = settings.rule_file or default_rule_file()
    try:
        rules = RuleManager(
            rule_file, engine, storage, default_interval_s=settings.evaluation_interval_s, timer=time.perf_counter
        )
    except RuleFileError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        log(hop, "rule_file_refused", file=str(rule_file), problems=err.problems)
        raise SystemExit(2) from None
    metrics = MonitorMetrics()
    monitor = MonitorService(topo, hop, metrics, rules, storage, engine)
    log(hop, "rules_loaded", file=str(rule_file), targets=[t.target.instance for t in monitor.targets])

    def build():  # type: ignore[no-untyped-def]
        listener = open_tcp_listener(*topo.listen(hop, "http"))
        admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
        return [Listener(listener, monitor.handle)], [*monitor.tasks(), lambda: serve_admin(admin, metrics)]

    run_hop(hop, build, metrics)


if __name__ == "__main__":
    main()
