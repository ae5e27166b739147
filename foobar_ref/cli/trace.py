"""`foobar-ref trace URL`: one request through the running stack, shown hop by hop as a waterfall.

The browser sends the request with a `traceparent` header (so the balancer
keeps its trace id), then the hops' logs in the state folder are read until
every hop on the path has written its line (or `--wait` runs out), and
`trace.assemble` joins them.  Registered on the main CLI by `register(app)`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from foobar_ref.cli.common import stack_topology
from foobar_ref.trace.assemble import assemble
from foobar_ref.trace.logs import read_logs
from foobar_ref.trace.model import ClientFacts, Layout, Trace, facts_of, layout_of
from foobar_ref.trace.render import render

DEFAULT_WAIT_S = 3.0
POLL_S = 0.1


def hops_of(layout: Layout) -> list[str]:
    """Every hop whose log a trace may need."""
    names = [layout.resolver, *layout.dns_servers.values(), layout.entry_firewall, layout.balancer]
    names += [*layout.backend_firewalls.values(), *layout.backend_firewalls, *layout.stores, *layout.stores.values()]
    return sorted({name for name in names if name is not None})


def collect(facts: ClientFacts, layout: Layout, log_dir: Path, wait_s: float) -> Trace:
    """Assemble from the logs, reading them again until no hop is missing or `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    hops = hops_of(layout)
    while True:
        trace = assemble(facts, layout, read_logs(log_dir, hops))
        if not trace.missing or time.monotonic() >= deadline:
            return trace
        time.sleep(POLL_S)


def register(app: typer.Typer) -> None:
    """Add the trace command to the CLI."""

    @app.command(name="trace")
    def trace_command(
        url: Annotated[str, typer.Argument(help="e.g. https://www.foobar.com/")],
        method: Annotated[str, typer.Option("-X", "--request", help="HTTP method")] = "GET",
        data: Annotated[str | None, typer.Option("-d", "--data", help="request body (JSON for the API)")] = None,
        cacert: Annotated[Path | None, typer.Option("--cacert", help="CA to trust (default: the project's)")] = None,
        topology: Annotated[
            Path | None, typer.Option("--topology", "-t", help="topology TOML (default: the running stack's)")
        ] = None,
        state: Annotated[Path, typer.Option("--state", "-s", help="state folder")] = Path(".foobar-ref"),
        as_json: Annotated[bool, typer.Option("--json", help="the spans as JSON")] = False,
        wait: Annotated[float, typer.Option("--wait", help="seconds to wait for the hops' log lines")] = DEFAULT_WAIT_S,
    ) -> None:
        """Send one request and show what each hop saw, decided and cost, as a waterfall."""
        from foobar_ref.client import browser
        from foobar_ref.launcher.plan import StatePaths
        from foobar_ref.wire.http import new_trace_id, traceparent

        paths = StatePaths(state.resolve())
        topo = stack_topology(paths, topology)
        trace_id = new_trace_id()
        started = time.time()
        try:
            exchange = browser.fetch(
                url,
                method=method.upper(),
                data=data.encode() if data is not None else None,
                topology=topo,
                ca_file=cacert or paths.certs / "ca.crt",
                headers=[("traceparent", traceparent(trace_id).decode())],
            )
        except browser.BrowserError as err:
            typer.echo(f"foobar-ref trace: {err}", err=True)
            raise typer.Exit(1) from None
        facts = facts_of(exchange, started, topo.client_host().address)
        if facts.trace_id is None:  # a balancer that does not answer with X-Request-Id: the id we sent
            facts = replace(facts, trace_id=trace_id)
        trace = collect(facts, layout_of(topo), paths.logs, max(wait, 0.0))
        if as_json:
            typer.echo(json.dumps({"status": exchange.status, "served_by": exchange.served_by, **trace.as_json()}))
        else:
            typer.echo(render(trace))
