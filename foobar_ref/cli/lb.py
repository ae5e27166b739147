"""`foobar-ref lb stats` and `foobar-ref lb set BACKEND weight N | state ready|drain|maint`.

Both ask the running balancer through its admin Unix socket in the state folder
(`run/lb-01.admin.sock`), as HAProxy's `show stat` and `set server` go through
its stats socket: `GET /stats.json`, `POST /backend/<name>?weight=N` or
`?state=S`.  `lb stats` prints a table per backend (`--json`: the answer as
it came; the HTML page is `GET /stats` on the same socket).  Exit 1 when the
balancer is not running or refuses (an unknown backend, a weight out of range).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from foobar_ref.cli.common import DEFAULT_STATE, StateOpt, console, err_console
from foobar_ref.runtime.admin import admin_socket_path, request

TIMEOUT_S = 10.0

lb_app = typer.Typer(no_args_is_help=True, help="The running balancer: stats per backend, weights and states.")
NameOpt = Annotated[str, typer.Option("--name", "-n", help="the balancer's hop name")]
BackendArg = Annotated[str, typer.Argument(help="a backend as the topology names it, e.g. web-01")]


class Setting(StrEnum):
    weight = "weight"
    state = "state"


def _ask(state: Path, name: str, method: str, target: str) -> bytes:
    path = admin_socket_path(state.resolve(), name)
    try:
        code, body = request(path, method, target, timeout_s=TIMEOUT_S)
    except FileNotFoundError:
        err_console.print(f"{name}: not running (no admin socket at {path})", markup=False)
        raise typer.Exit(1) from None
    except OSError as err:
        err_console.print(f"{name}: cannot ask it at {path}: {err.strerror or err}", markup=False)
        raise typer.Exit(1) from None
    if code != 200:
        err_console.print(body.decode("utf-8", "replace").rstrip(), markup=False)
        raise typer.Exit(1)
    return body


@lb_app.command()
def stats(
    state: StateOpt = DEFAULT_STATE,
    name: NameOpt = "lb-01",
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON as the balancer sent it")] = False,
) -> None:
    """Sessions, rates, errors, check state and weights per backend (HAProxy's `show stat`)."""
    body = _ask(state, name, "GET", "/stats.json")
    if as_json:
        typer.echo(body.decode().rstrip())
        return
    try:
        snapshot = json.loads(body)
    except ValueError:
        err_console.print(f"{name}: /stats.json is not JSON", markup=False)
        raise typer.Exit(1) from None
    console.print(render(snapshot))


def render(snapshot: dict[str, Any]) -> Table:
    front, back = snapshot["frontend"], snapshot["backend"]
    table = Table(
        "backend", "status", "weight", "cur", "max", "total", "rate", "2xx", "5xx", "conn err", "resp err",
        "check", "last check", "downs",
        title=f"{snapshot['hop']} ({back['algorithm']}): {front['scur']} connections, {front['req_rate']} req/s, "
        f"queue {back['qcur']}/{back['qlimit']}",
    )  # fmt: skip
    for s in snapshot["servers"]:
        weight = str(s["weight"]) if s["weight"] == s["uweight"] else f"{s['weight']}/{s['uweight']}"
        check = f"{s['check_status'] or '-'} {s['check_code'] or ''}".strip()
        last = "-" if s["last_chk_s"] is None else f"{s['last_chk_s']:.1f} s ago, {s['check_duration_ms']} ms"
        table.add_row(
            s["name"], s["status"], weight, str(s["scur"]), str(s["smax"]), str(s["lbtot"]), str(s["req_rate"]),
            str(s["hrsp_2xx"]), str(s["hrsp_5xx"]), str(s["econ"]), str(s["eresp"]), check, last, str(s["chkdown"]),
        )  # fmt: skip
    return table


@lb_app.command("set")
def set_backend(
    backend: BackendArg,
    setting: Annotated[Setting, typer.Argument(help="weight or state")],
    value: Annotated[str, typer.Argument(help="weight: 0..256; state: ready, drain or maint")],
    state: StateOpt = DEFAULT_STATE,
    name: NameOpt = "lb-01",
) -> None:
    """Change a backend at run time: `lb set web-01 weight 3`, `lb set web-02 state drain`."""
    target = f"/backend/{quote(backend, safe='')}?{setting.value}={quote(value, safe='')}"
    typer.echo(_ask(state, name, "POST", target).decode("utf-8", "replace").rstrip())


def register(app: typer.Typer) -> None:
    """Add the balancer commands to the CLI."""
    app.add_typer(lb_app, name="lb")
