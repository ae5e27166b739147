"""python -m foobar_ref.launcher --topology FILE --state DIR [--capture]: the supervisor that `up --detach` leaves.

It adopts the hops the state folder's stack file records as running, starts
the others, and supervises them until SIGTERM (`foobar-ref down`), which it
answers by exiting and leaving every hop running.  Its log is
`<state>/logs/supervisor.log`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foobar_ref import topology
from foobar_ref.launcher.plan import StatePaths
from foobar_ref.launcher.process import LaunchError
from foobar_ref.launcher.supervise import run_supervisor


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m foobar_ref.launcher")
    parser.add_argument("--topology", type=Path, default=None, help="topology TOML (default: the seed)")
    parser.add_argument("--state", type=Path, required=True, help="state folder")
    parser.add_argument("--capture", action="store_true", help="firewalls record the bytes they relay")
    args = parser.parse_args()
    try:
        topo = topology.load(args.topology)
    except topology.TopologyError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(2) from None
    try:
        code = run_supervisor(topo, StatePaths(args.state.resolve()), args.capture, "detached", lambda line: None)
    except LaunchError as err:
        print(f"supervisor: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
