"""The stack's lifecycle: `up`, `down`, `status`, `certs` (one hop: cli/hops.py)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

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
from foobar_ref.launcher.policy import Phase


def up(
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="start in the background and return")] = False,
    capture: Annotated[bool, typer.Option(help="firewalls record the bytes they relay")] = False,
) -> None:
    """Start every hop of the topology in dependency order, under a supervisor that restarts what fails.

    A stack that already runs is adopted: hops still running are kept, the missing ones started.
    """
    paths = StatePaths(state.resolve())
    topo = _stack_topology(paths, topology)
    if supervise.supervisor_alive(paths):
        _heal(paths)
        return

    def ready() -> None:
        console.print(f"\nsite: {topo.site_url}   resolver: {topo.resolver[0]}:{topo.resolver[1]}")
        if topo.monitor_url:
            console.print(f"monitor: {topo.monitor_url} (dashboard)   live view: foobar-ref top")
        console.print(f"try:  foobar-ref get -v {topo.site_url}   stop: foobar-ref down")
        supervisor = supervise.supervisor_pid(paths)
        where = f"pid {supervisor}" if detach and supervisor else "this process"
        console.print(f"supervisor: {where}, log {paths.supervisor_log}   foobar-ref status | restart HOP")
        if not detach:
            console.print("running in the foreground; Ctrl-C stops every hop")

    try:
        supervise.up(topo, paths, capture=capture, detach=detach, say=say, on_ready=ready)
    except supervise.LaunchError as err:
        err_console.print(f"[red]up failed:[/red] {err}", markup=True)
        raise typer.Exit(1) from None


def _heal(paths: StatePaths) -> None:
    running = [r for r in supervise.read_stack(paths) if r.alive()]
    pid = supervise.supervisor_pid(paths)
    console.print(f"a stack is already running ({len(running)} hops up), supervised by pid {pid}")
    try:
        hops = supervise.heal(paths, say)
    except supervise.LaunchError as err:
        err_console.print(f"[red]up failed:[/red] {err}", markup=True)
        raise typer.Exit(1) from None
    started = [r.name for r in hops if r.alive() and r.name not in {h.name for h in running}]
    failed = [r.name for r in hops if r.status is not None and r.status.phase is Phase.FAILED]
    console.print(f"started: {', '.join(started)}" if started else "every hop runs")
    if failed:
        err_console.print(f"[red]failed:[/red] {', '.join(failed)} (foobar-ref status says why)", markup=True)
        raise typer.Exit(1)


def down(state: StateOpt = DEFAULT_STATE) -> None:
    """Stop the supervisor, then every hop (SIGTERM, then SIGKILL after a bound)."""
    paths = StatePaths(state.resolve())
    count = supervise.down(paths, say=say)
    console.print(f"{count} hops were running; none is left" if count else "no stack was running")


def status(
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What runs, where it listens, its pid, uptime, restarts and last exit."""
    paths = StatePaths(state.resolve())
    topo = _stack_topology(paths, topology)
    running = supervise.read_stack(paths)
    now = time.time()
    hops = [_hop_report(r, now) for r in running]
    supervisor = supervise.supervisor_pid(paths)
    report = {
        "url": topo.site_url,
        "resolver": f"{topo.resolver[0]}:{topo.resolver[1]}",
        "monitor": topo.monitor_url,
        "ca": str(paths.certs / "ca.crt"),
        "state": str(paths.root),
        "topology": str(topo.path),
        "supervisor": {"pid": supervisor, "up": supervisor is not None, "log": str(paths.supervisor_log)},
        "hops": hops,
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    if not hops:
        console.print("no stack is running (foobar-ref up starts one)")
        return
    table = Table("hop", "role", "state", "pid", "uptime", "restarts", "last exit", "listen")
    for hop in hops:
        shown = hop["state"] if hop["state"] == "running" else f"[red]{hop['state']}[/red]"
        uptime = _duration(hop["uptime_s"]) if hop["uptime_s"] is not None else "-"
        pid = str(hop["pid"]) if hop["pid"] else "-"
        table.add_row(hop["name"], hop["role"], shown, pid, uptime, str(hop["restarts"]), hop["last_exit"] or "-",
                      " ".join(hop["listen"]))  # fmt: skip
    console.print(table)
    console.print(f"site {report['url']}  resolver {report['resolver']}  CA {report['ca']}")
    if supervisor:
        console.print(f"supervisor pid {supervisor}, log {paths.supervisor_log}")
    else:
        console.print("[red]no supervisor runs[/red]: nothing restarts a hop that exits (foobar-ref up adopts them)")
    if topo.monitor_url:
        console.print(f"monitor {topo.monitor_url}  (dashboard, alerts; foobar-ref top)")


def _hop_report(running: supervise.Running, now: float) -> dict[str, Any]:
    status = running.status
    alive = running.alive()
    up_since = status.up_since if status is not None and alive and status.up_since else None
    return {
        "name": running.name,
        "role": running.role,
        "pid": running.pid,
        "listen": list(running.listen),
        "up": alive,
        "state": supervise.phase_of(running),
        "uptime_s": round(now - up_since, 3) if up_since else None,
        "up_since": up_since,
        "restarts": status.restarts if status is not None else 0,
        "last_exit": status.last_exit if status is not None else "",
        "last_exit_at": (status.last_exit_at or None) if status is not None else None,
    }


def _duration(seconds: object) -> str:
    total = int(float(str(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


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
