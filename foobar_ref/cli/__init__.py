"""foobar-ref: start, inspect and use the whole infrastructure from one command.

One module per command group; each registers its commands on the one Typer app
here and takes what it shares with the others from `cli.common`.
"""

from __future__ import annotations

import sys

import typer

from foobar_ref.cli import browse, dns, fw, hops, lb, monitor, stack, trace

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="foobar-ref: the whole secured and monitored infrastructure for www.foobar.com, as real processes. "
    "`foobar-ref up`, then `get`, `trace`, `top`; `foobar-ref COMMAND --help` for each.",
)
for group in (stack, hops, browse, dns, trace, fw, lb, monitor):
    group.register(app)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(1)


__all__ = ["app", "main"]
