"""The stack's lifecycle and the browser: `up`, `down`, `status`, `get`, `certs`."""

from __future__ import annotations

import json
import signal
import time
from typing import Annotated

import typer
from rich.table import Table

from foobar_ref import certs as certs_module
from foobar_ref.cli.common import (
    DEFAULT_STATE,
    StateOpt,
    TopologyOpt,
    console,
    err_console,
    say,
)
from foobar_ref.cli.common import load_topology as _load
from foobar_ref.cli.common import stack_topology as _stack_topology
from foobar_ref.launcher import supervise
from foobar_ref.launcher.plan import StatePaths


def up(
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="start in the background and return")] = False,
    capture: Annotated[bool, typer.Option(help="firewalls record the bytes they relay")] = False,
) -> None:
    """Start every hop of the topology, in dependency order."""
    topo = _load(topology)
    paths = StatePaths(state.resolve())
    try:
        supervise.up(topo, paths, capture=capture, say=say)
    except supervise.AlreadyRunning as err:
        console.print(str(err))
        return
    except supervise.LaunchError as err:
        err_console.print(f"[red]up failed:[/red] {err}", markup=True)
        raise typer.Exit(1) from None
    console.print(f"\nsite: {topo.site_url}   resolver: {topo.resolver[0]}:{topo.resolver[1]}")
    if topo.monitor_url:
        console.print(f"monitor: {topo.monitor_url} (dashboard)   live view: foobar-ref top")
    console.print(f"try:  foobar-ref get -v {topo.site_url}   stop: foobar-ref down")
    if detach:
        return
    console.print("running in the foreground; Ctrl-C stops every hop")
    _wait_for_signal()
    supervise.down(paths, say=say)


def _wait_for_signal() -> None:
    stop = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop:
        time.sleep(0.2)


def down(state: StateOpt = DEFAULT_STATE) -> None:
    """Stop every hop (SIGTERM, then SIGKILL after a bound)."""
    paths = StatePaths(state.resolve())
    count = supervise.down(paths, say=say)
    console.print(f"{count} hops were running; none is left" if count else "no stack was running")


def status(
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What runs, where it listens, and its pid."""
    paths = StatePaths(state.resolve())
    topo = _stack_topology(paths, topology)
    running = supervise.read_stack(paths)
    hops = [{"name": r.name, "role": r.role, "pid": r.pid, "listen": list(r.listen), "up": r.alive()} for r in running]
    report = {
        "url": topo.site_url,
        "resolver": f"{topo.resolver[0]}:{topo.resolver[1]}",
        "monitor": topo.monitor_url,
        "ca": str(paths.certs / "ca.crt"),
        "state": str(paths.root),
        "topology": str(topo.path),
        "hops": hops,
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    if not hops:
        console.print("no stack is running (foobar-ref up starts one)")
        return
    table = Table("hop", "role", "pid", "up", "listen")
    for r in running:
        table.add_row(r.name, r.role, str(r.pid), "yes" if r.alive() else "[red]no[/red]", " ".join(r.listen))
    console.print(table)
    console.print(f"site {report['url']}  resolver {report['resolver']}  CA {report['ca']}")
    if topo.monitor_url:
        console.print(f"monitor {topo.monitor_url}  (dashboard, alerts; foobar-ref top)")


def certs(
    state: StateOpt = DEFAULT_STATE,
    topology: TopologyOpt = None,
    force: Annotated[bool, typer.Option("--force", help="make new ones even if valid ones exist")] = False,
) -> None:
    """Make the local CA and the site's certificate (when missing), and describe them."""
    topo = _load(topology)
    paths = (
        certs_module.make(state.resolve(), topo.site_names)
        if force
        else certs_module.ensure(state.resolve(), topo.site_names)
    )
    for line in certs_module.describe(paths):
        console.print(line, markup=False)


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to the CLI."""
    for command in (up, down, status, certs):
        app.command()(command)
