"""`foobar-ref get URL`: the browser, one request through the project's DNS, firewalls and balancer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foobar_ref.cli.common import DEFAULT_STATE, StateOpt, TopologyOpt, err_console, stack_topology
from foobar_ref.launcher.plan import StatePaths


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
    topo = stack_topology(paths, topology)
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


def register(app: typer.Typer) -> None:
    """Add the browser's command to the CLI."""
    app.command()(get)
