"""The arguments every hop takes: `--topology FILE --hop NAME --state DIR`.

Settings come in explicitly (no globals, no hidden environment variables), so a
hop can run alone, under the supervisor, or on another machine.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from foobar_ref import topology

MAX_SETTING_S = 86400.0


def seconds(text: str) -> float:
    """argparse type for a timeout or hold time: a positive number of seconds, at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, found {text!r}") from None
    if not 0 < value <= MAX_SETTING_S:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, {MAX_SETTING_S:g}], found {text}")
    return value


@dataclass(frozen=True)
class HopArgs:
    topology: topology.Topology
    hop: str
    state_dir: Path
    extra: argparse.Namespace


def parse_hop_args(kind: str, argv: list[str] | None = None, extend=None) -> HopArgs:  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser(prog=f"python -m foobar_ref.{kind}")
    parser.add_argument("--topology", type=Path, default=None, help="topology TOML (default: the seed)")
    parser.add_argument("--hop", required=True, help="the hop's name in the topology, e.g. web-01")
    parser.add_argument("--state", type=Path, default=Path(".foobar-ref"), help="state folder")
    if extend is not None:
        extend(parser)
    ns = parser.parse_args(argv)
    try:
        topo = topology.load(ns.topology)
    except topology.TopologyError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(2) from None
    names = {s.name for s in topo.services} | {f.name for f in topo.firewalls}
    if ns.hop not in names:
        print(f"{kind}: no hop named {ns.hop!r} in {topo.path} (known: {', '.join(sorted(names))})", file=sys.stderr)
        raise SystemExit(2)
    return HopArgs(topo, ns.hop, ns.state.resolve(), ns)
