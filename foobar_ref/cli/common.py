"""What every command group shares: the consoles, the --topology and --state options, loading a topology.

No command module imports another's names: each takes what it needs from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from foobar_ref import topology as topology_module
from foobar_ref.launcher.plan import StatePaths

console = Console(highlight=False, soft_wrap=True)  # soft_wrap: never break a path or an address
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

TopologyOpt = Annotated[
    Path | None, typer.Option("--topology", "-t", help="topology TOML (default: the running stack's, else the seed)")
]
StateOpt = Annotated[Path, typer.Option("--state", "-s", help="state folder: certificates, logs, databases, pids")]
DEFAULT_STATE = Path(".foobar-ref")


def load_topology(path: Path | None) -> topology_module.Topology:
    """The topology file, or exit 2 listing every problem with it."""
    try:
        return topology_module.load(path)
    except topology_module.TopologyError as err:
        err_console.print("[red]topology refused:[/red]")
        for problem in err.problems:
            err_console.print(f"  {problem}", markup=False)
        raise typer.Exit(2) from None


def stack_topology(state: StatePaths, given: Path | None) -> topology_module.Topology:
    """The topology the running stack was started with, unless one is given."""
    if given is None and state.stack_file.exists():
        try:
            recorded = json.loads(state.stack_file.read_text()).get("topology")
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded:
            return load_topology(Path(recorded))
    return load_topology(given)


def say(line: str) -> None:
    console.print(line, markup=False)
