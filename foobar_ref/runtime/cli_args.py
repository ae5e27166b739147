"""The arguments every hop takes: `--topology FILE --hop NAME --state DIR [--log FILE ...]`.

Settings come in explicitly (no globals, no hidden environment variables), so a
hop can run alone, under the supervisor, or on another machine.  `--log FILE`
sends the hop's JSON log lines to FILE, rotated past `--log-max-bytes` with
`--log-keep` old files kept (observe/log.py); without it they go to stdout.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from foobar_ref import topology
from foobar_ref.observe import log as logger

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


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) > 100:
        raise argparse.ArgumentTypeError(f"expected a count 0-100, found {text!r}")
    return int(text)


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
    parser.add_argument("--log", type=Path, default=None, help="write the log here, rotated (default: stdout)")
    parser.add_argument("--log-max-bytes", type=_positive, default=logger.LOG_MAX_BYTES, help="rotate past this size")
    parser.add_argument("--log-keep", type=_count, default=logger.LOG_KEEP, help="rotated log files kept")
    if extend is not None:
        extend(parser)
    ns = parser.parse_args(argv)
    if ns.log is not None:
        logger.configure(ns.log, ns.log_max_bytes, ns.log_keep)
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
