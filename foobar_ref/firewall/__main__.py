"""python -m foobar_ref.firewall --topology FILE --hop firewall-2 --state DIR [--capture DIR]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foobar_ref.firewall.capture import Capture
from foobar_ref.firewall.core import DROP_HOLD_S, IDLE_TIMEOUT_S, Limits
from foobar_ref.firewall.shell import FirewallHop
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args
from foobar_ref.runtime.trio_shell import run_hop


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, found {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 86400], found {text}")
    return value


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--capture", type=Path, default=None, help="record relayed bytes into this folder")
    parser.add_argument("--drop-hold-s", type=_seconds, default=DROP_HOLD_S, help="hold a dropped connection this long")
    parser.add_argument("--idle-timeout-s", type=_seconds, default=IDLE_TIMEOUT_S, help="close a relay idle this long")


def main() -> None:
    args = parse_hop_args("firewall", extend=_flags)
    topo, hop = args.topology, args.hop
    if hop not in {fw.name for fw in topo.firewalls}:
        known = ", ".join(fw.name for fw in topo.firewalls) or "none"
        print(f"firewall: {hop!r} is not a firewall in {topo.path} (firewalls: {known})", file=sys.stderr)
        raise SystemExit(2)
    capture = None
    if args.extra.capture is not None:
        try:
            capture = Capture(args.extra.capture.resolve())
        except OSError as err:
            print(f"{hop}: cannot use capture folder {args.extra.capture}: {err.strerror or err}", file=sys.stderr)
            raise SystemExit(2) from None
    metrics = Metrics()
    limits = Limits(drop_hold_s=args.extra.drop_hold_s, idle_timeout_s=args.extra.idle_timeout_s)
    firewall = FirewallHop(topo, hop, metrics, limits, capture)
    admin = admin_socket_path(args.state_dir, hop)

    def build():  # type: ignore[no-untyped-def]
        return firewall.listeners(), [lambda: serve_admin(admin, metrics)]

    try:
        run_hop(hop, build, metrics)
    finally:
        if capture is not None:
            capture.close()


if __name__ == "__main__":
    main()
