"""One hop at a time, through the supervisor: `stop HOP`, `start HOP`, `restart HOP`, `pause HOP`, `resume HOP`.

A stopped hop stays stopped (the supervisor does not restart it) until
`start HOP` (or `up`); `restart HOP` stops it and starts it again, and counts
as a restart.  Each command waits until the supervisor has carried it out.
"""

from __future__ import annotations

from typing import Annotated

import typer

from foobar_ref.cli.common import DEFAULT_STATE, StateOpt, console, err_console
from foobar_ref.launcher import supervise
from foobar_ref.launcher.plan import StatePaths
from foobar_ref.launcher.policy import HopStatus, Phase

HopArg = Annotated[str, typer.Argument(help="the hop's name, as `foobar-ref status` lists it (e.g. web-01)")]


def _ask(action: str, hop: str, state: StateOpt, wanted: Phase) -> None:
    paths = StatePaths(state.resolve())
    try:
        status = supervise.ask(paths, action, hop)
    except supervise.LaunchError as err:
        err_console.print(f"[red]{action} failed:[/red] {err}", markup=True)
        raise typer.Exit(1) from None
    console.print(_describe(hop, status), markup=False)
    if status.phase is not wanted:
        raise typer.Exit(1)


def _describe(hop: str, status: HopStatus) -> str:
    if status.phase is Phase.RUNNING:
        return f"{hop} running, pid {status.pid} (restarts {status.restarts})"
    if status.phase is Phase.PAUSED:
        return f"{hop} paused (SIGSTOP), pid {status.pid}; `foobar-ref resume {hop}` lets it run"
    if status.phase is Phase.STOPPED:
        return f"{hop} stopped; the supervisor leaves it so until `foobar-ref start {hop}`"
    return f"{hop} {status.phase.value}: {status.last_exit or 'no exit recorded'}"


def stop(hop: HopArg, state: StateOpt = DEFAULT_STATE) -> None:
    """Stop one hop (SIGTERM, SIGKILL after a bound); it stays stopped until `start HOP`."""
    _ask("stop", hop, state, Phase.STOPPED)


def start(hop: HopArg, state: StateOpt = DEFAULT_STATE) -> None:
    """Start one stopped (or failed) hop again, with a fresh restart budget."""
    _ask("start", hop, state, Phase.RUNNING)


def restart(hop: HopArg, state: StateOpt = DEFAULT_STATE) -> None:
    """Stop one hop and start it again (MariaDB: its replication is set up again)."""
    _ask("restart", hop, state, Phase.RUNNING)


def pause(hop: HopArg, state: StateOpt = DEFAULT_STATE) -> None:
    """Freeze one hop (SIGSTOP, as `docker pause`): it hangs without exiting, and the watchdog leaves it be."""
    _ask("pause", hop, state, Phase.PAUSED)


def resume(hop: HopArg, state: StateOpt = DEFAULT_STATE) -> None:
    """Let a paused hop run again (SIGCONT); the watchdog watches it again."""
    _ask("resume", hop, state, Phase.RUNNING)


def register(app: typer.Typer) -> None:
    """Add the one-hop commands to the CLI."""
    for command in (stop, start, restart, pause, resume):
        app.command()(command)
