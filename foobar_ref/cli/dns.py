"""`foobar-ref dig NAME [TYPE] [@SERVER] [+trace] [+tcp]`: registered on the main CLI by `register(app)`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foobar_ref.cli.common import stack_topology

DEFAULT_TIMEOUT_S = 5.0


def parse_words(words: list[str], default_server: tuple[str, int]) -> tuple[str, str, tuple[str, int], set[str]]:
    """dig's free-form words: the name, a type, @server[#port], +options (in any order)."""
    positional = [w for w in words if not w.startswith(("@", "+"))]
    if not positional or len(positional) > 2:
        raise typer.BadParameter("expected NAME [TYPE] [@SERVER] [+trace] [+tcp]")
    server = default_server
    for word in words:
        if word.startswith("@"):
            host, _, port = word[1:].replace("#", ":").partition(":")
            server = (host, int(port) if port.isdigit() else 53)
    options = {w[1:].lower() for w in words if w.startswith("+")}
    unknown = options - {"trace", "tcp"}
    if unknown:
        raise typer.BadParameter(f"unknown option(s): {', '.join('+' + o for o in sorted(unknown))}")
    qtype = positional[1].upper() if len(positional) == 2 else "A"
    return positional[0], qtype, server, options


def register(app: typer.Typer) -> None:
    """Add the DNS commands to the CLI."""

    @app.command(name="dig")
    def dig_command(
        words: Annotated[list[str], typer.Argument(help="NAME [TYPE] [@SERVER] [+trace] [+tcp]")],
        topology: Annotated[
            Path | None, typer.Option("--topology", "-t", help="topology TOML (default: the seed)")
        ] = None,
        state: Annotated[Path, typer.Option("--state", "-s", help="state folder")] = Path(".foobar-ref"),
        timeout: Annotated[float, typer.Option("--timeout", help="seconds per query")] = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Ask the project's resolver, printed like dig; +trace walks root, com, foobar.com itself."""
        from foobar_ref.dns import dig
        from foobar_ref.launcher.plan import StatePaths

        topo = stack_topology(StatePaths(state.resolve()), topology)
        name, qtype, server, options = parse_words(words, topo.resolver)
        source_ip = topo.client_host().address
        try:
            if "trace" in options:
                text, _ = dig.trace(name, qtype, server, source_ip, timeout)
            else:
                text = dig.dig(name, qtype, server, source_ip, "tcp" in options, timeout)
        except dig.DigError as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(9) from None
        typer.echo(text)
