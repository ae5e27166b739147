"""`foobar-ref fw list|conntrack|reload NAME`: registered on the main CLI by `register(app)`.

Each command asks the running firewall through its admin Unix socket in the
state folder (`run/NAME.admin.sock`): `GET /ruleset`, `GET /conntrack`,
`POST /reload`, and prints the answer.  Exit 1 when the firewall is not running
or refuses (a reload of a broken rule file: the old rule set stays and the
answer says where the file is wrong).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foobar_ref.runtime.admin import admin_socket_path, request

DEFAULT_STATE = Path(".foobar-ref")
TIMEOUT_S = 30.0  # a reload of a very large rule file may take seconds

fw_app = typer.Typer(
    no_args_is_help=True, help="Inspect and reload a running firewall: rules with counters, tracked connections."
)
NameArg = Annotated[str, typer.Argument(help="the firewall's name in the topology, e.g. firewall-2")]
StateOpt = Annotated[Path, typer.Option("--state", "-s", help="state folder of the running stack")]


def _ask(state: Path, name: str, method: str, target: str) -> None:
    path = admin_socket_path(state.resolve(), name)
    try:
        code, body = request(path, method, target, timeout_s=TIMEOUT_S)
    except FileNotFoundError:
        typer.echo(f"{name}: not running (no admin socket at {path})", err=True)
        raise typer.Exit(1) from None
    except OSError as err:
        typer.echo(f"{name}: cannot ask it at {path}: {err.strerror or err}", err=True)
        raise typer.Exit(1) from None
    text = body.decode("utf-8", "replace")
    if code != 200:
        typer.echo(text, err=True, nl=not text.endswith("\n"))
        raise typer.Exit(1)
    typer.echo(text, nl=not text.endswith("\n"))


@fw_app.command("list")
def list_rules(name: NameArg, state: StateOpt = DEFAULT_STATE) -> None:
    """The rule set in use with per-rule counters (connections, bytes each way), like `nft list ruleset`."""
    _ask(state, name, "GET", "/ruleset")


@fw_app.command()
def conntrack(name: NameArg, state: StateOpt = DEFAULT_STATE) -> None:
    """The tracked connections, like `conntrack -L`."""
    _ask(state, name, "GET", "/conntrack")


@fw_app.command()
def reload(name: NameArg, state: StateOpt = DEFAULT_STATE) -> None:
    """Read the rule file again (as SIGHUP does); a broken file keeps the running rules and says why."""
    _ask(state, name, "POST", "/reload")


def register(app: typer.Typer) -> None:
    """Add the firewall commands to the CLI."""
    app.add_typer(fw_app, name="fw")
