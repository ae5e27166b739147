"""python -m foobar_ref.firewall --topology FILE --hop firewall-2 --state DIR [--capture DIR] [--relay MODE] [limits]

Limits (core.py's fair limits): --max-tracked relays in all, --max-per-source for one
source, --max-held dropped connections, --silent-timeout-s under pressure.

The rule set is read (from the topology's `rules_file`, or its inline `rules`)
before anything listens: a rule set that cannot be fully read stops the hop
with exit code 2 and `file:line:column: message` on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foobar_ref import topology
from foobar_ref.firewall import rules
from foobar_ref.firewall.capture import Capture
from foobar_ref.firewall.core import DROP_HOLD_S, IDLE_TIMEOUT_S, MAX_HELD, MAX_RELAYED, SILENT_TIMEOUT_S, Limits
from foobar_ref.firewall.metrics_view import FirewallCollector
from foobar_ref.firewall.ruleset import RuleSet
from foobar_ref.firewall.shell import FirewallHop
from foobar_ref.firewall.splice_relay import RELAY_MODES, available
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, bind_admin_socket, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args, seconds
from foobar_ref.runtime.trio_shell import log, run_hop


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"expected a count 1-1000000, found {text!r}")
    return int(text)


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--capture", type=Path, default=None, help="record relayed bytes into this folder")
    parser.add_argument("--drop-hold-s", type=seconds, default=DROP_HOLD_S, help="hold a dropped connection this long")
    parser.add_argument("--idle-timeout-s", type=seconds, default=IDLE_TIMEOUT_S, help="close a relay idle this long")
    parser.add_argument("--max-tracked", type=_count, default=MAX_RELAYED, help="relayed connections tracked at most")
    parser.add_argument("--max-held", type=_count, default=MAX_HELD, help="dropped connections held at most")
    parser.add_argument(
        "--max-per-source",
        type=_count,
        default=None,
        help="relayed connections one source may hold (default: 7/8 of --max-tracked; the rest is kept for "
        "sources under their fair share)",
    )
    parser.add_argument(
        "--silent-timeout-s",
        type=seconds,
        default=SILENT_TIMEOUT_S,
        help="under pressure (the relay table 7/8 full), close a relay whose client sent nothing this long",
    )
    parser.add_argument(
        "--relay",
        choices=RELAY_MODES,
        default="auto",
        help="copy: recv/send through a buffer; splice: os.splice through a pipe; auto (default): copy, then "
        "splice once a direction moved 256 KiB (capture always copies; see benchmarks/README-firewall.md)",
    )
    parser.add_argument(
        "--log-connections", action="store_true", help="log every closed connection, not only the unusual ones"
    )


def reload_rules(topology_path: Path, hop: str) -> RuleSet:
    """Read the topology again (it names the rule file) and then the rules."""
    topo = topology.load(topology_path)
    if hop not in {fw.name for fw in topo.firewalls}:
        raise rules.RuleError(str(topology_path), 1, 1, f"{hop!r} is no longer a firewall in the topology")
    return rules.load_for(topo, hop)


def main() -> None:
    args = parse_hop_args("firewall", extend=_flags)
    topo, hop = args.topology, args.hop
    if hop not in {fw.name for fw in topo.firewalls}:
        known = ", ".join(fw.name for fw in topo.firewalls) or "none"
        print(f"firewall: {hop!r} is not a firewall in {topo.path} (firewalls: {known})", file=sys.stderr)
        raise SystemExit(2)
    try:
        ruleset = rules.load_for(topo, hop)
    except rules.RuleError as err:
        print(f"{hop}: rule set refused, not starting: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    capture = None
    if args.extra.capture is not None:
        try:
            capture = Capture(args.extra.capture.resolve())
        except OSError as err:
            print(f"{hop}: cannot use capture folder {args.extra.capture}: {err.strerror or err}", file=sys.stderr)
            raise SystemExit(2) from None
    extra = args.extra
    if extra.relay == "splice" and not available():
        print(f"{hop}: --relay splice needs os.splice (Linux), not available here", file=sys.stderr)
        raise SystemExit(2)
    relay_mode = extra.relay if available() else "copy"  # auto without os.splice: copy only
    limits = Limits(
        drop_hold_s=extra.drop_hold_s,
        idle_timeout_s=extra.idle_timeout_s,
        max_held=extra.max_held,
        max_relayed=extra.max_tracked,
        max_per_source=extra.max_per_source or 0,
        silent_timeout_s=extra.silent_timeout_s,
    )
    metrics = Metrics()
    loader = lambda: reload_rules(topo.path, hop)  # noqa: E731
    firewall = FirewallHop(topo, hop, metrics, limits, capture, ruleset, loader, extra.log_connections, relay_mode)
    metrics.registry.register(FirewallCollector(firewall))
    admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
    for warning in ruleset.warnings:
        log(hop, "rules_warning", source=ruleset.source, warning=warning)

    def build():  # type: ignore[no-untyped-def]
        listeners = firewall.listeners()
        return [], [*firewall.tasks(listeners), lambda: serve_admin(admin, metrics, firewall.admin_routes())]

    try:
        run_hop(hop, build, metrics, listen_extra=firewall.addresses)
    finally:
        if capture is not None:
            capture.close()


if __name__ == "__main__":
    main()
