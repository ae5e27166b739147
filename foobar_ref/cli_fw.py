"""`foobar-ref fw list|conntrack|reload NAME`: registered on the main CLI by `register(app)`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the firewall commands to the CLI (filled in with the rule engine)."""
