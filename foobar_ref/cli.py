"""foobar-ref: start, inspect and use the whole infrastructure from one command.

foobar-ref up [--detach]        start every hop (certificates made when missing)
foobar-ref status [--json]      what runs, where, with which pid
foobar-ref get URL [-v]         the browser: DNS, TCP, TLS, HTTP, step by step
foobar-ref down                 stop every hop
foobar-ref certs                make or show the local CA and the site's certificate
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from foobar_ref import certs as certs_module
from foobar_ref import cli_dns, cli_fw, cli_trace
from foobar_ref import topology as topology_module
from foobar_ref.launcher import supervise
from foobar_ref.launcher.plan import StatePaths

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(highlight=False, soft_wrap=True)  # soft_wrap: never break a path or an address
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

TopologyOpt = Annotated[
    Path | None, typer.Option("--topology", "-t", help="topology TOML (default: the seed shipped in the package)")
]
StateOpt = Annotated[Path, typer.Option("--state", "-s", help="state folder: certificates, logs, databases, pids")]
DEFAULT_STATE = Path(".foobar-ref")


def _load(path: Path | None) -> topology_module.Topology:
    try:
        return topology_module.load(path)
    except topology_module.TopologyError as err:
        err_console.print("[red]topology refused:[/red]")
        for problem in err.problems:
            err_console.print(f"  {problem}", markup=False)
        raise typer.Exit(2) from None


def _stack_topology(state: StatePaths, given: Path | None) -> topology_module.Topology:
    """The topology the running stack was started with, unless one is given."""
    if given is None and state.stack_file.exists():
        recorded = json.loads(state.stack_file.read_text()).get("topology")
        if recorded:
            return _load(Path(recorded))
    return _load(given)


@app.command()
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
        supervise.up(topo, paths, capture=capture, say=lambda line: console.print(line, markup=False))
    except supervise.AlreadyRunning as err:
        console.print(str(err))
        return
    except supervise.LaunchError as err:
        err_console.print(f"[red]up failed:[/red] {err}", markup=True)
        raise typer.Exit(1) from None
    console.print(f"\nsite: {topo.site_url}   resolver: {topo.resolver[0]}:{topo.resolver[1]}")
    console.print(f"try:  foobar-ref get -v {topo.site_url}   stop: foobar-ref down")
    if detach:
        return
    console.print("running in the foreground; Ctrl-C stops every hop")
    _wait_for_signal()
    supervise.down(paths, say=lambda line: console.print(line, markup=False))


def _wait_for_signal() -> None:
    stop = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop:
        time.sleep(0.2)


@app.command()
def down(state: StateOpt = DEFAULT_STATE) -> None:
    """Stop every hop (SIGTERM, then SIGKILL after a bound)."""
    paths = StatePaths(state.resolve())
    count = supervise.down(paths, say=lambda line: console.print(line, markup=False))
    console.print(f"{count} hops were running; none is left" if count else "no stack was running")


@app.command()
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


@app.command()
def get(
    url: Annotated[str, typer.Argument(help="e.g. https://www.foobar.com/")],
    method: Annotated[str, typer.Option("-X", "--request", help="HTTP method")] = "GET",
    data: Annotated[str | None, typer.Option("-d", "--data", help="request body (JSON for the API)")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="print every step")] = False,
    cacert: Annotated[Path | None, typer.Option("--cacert", help="CA to trust (default: the project's)")] = None,
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
) -> None:
    """The browser: resolve through the project's DNS, connect from the client host, verify TLS, fetch."""
    from foobar_ref.client import browser

    paths = StatePaths(state.resolve())
    topo = _stack_topology(paths, topology)
    ca_file = cacert or paths.certs / "ca.crt"
    try:
        exchange = browser.fetch(
            url, method=method.upper(), data=data.encode() if data is not None else None, topology=topo, ca_file=ca_file
        )
    except browser.BrowserError as err:
        err_console.print(f"foobar-ref get: {err}", markup=False)
        raise typer.Exit(1) from None
    print(browser.render(exchange, verbose))
    if exchange.status >= 400:
        raise typer.Exit(22)  # like curl --fail


@app.command()
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


cli_dns.register(app)
cli_trace.register(app)
cli_fw.register(app)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
