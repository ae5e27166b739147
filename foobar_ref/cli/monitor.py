"""`foobar-ref top`, `alerts` and `monitor ...`: the monitoring service, read from the terminal."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the CLI."""
