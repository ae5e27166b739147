"""The CLI as a package: every command listed by --help, no command module reaching into a sibling."""

from __future__ import annotations

import ast
from pathlib import Path

import typer
from typer.testing import CliRunner

from foobar_ref import cli

CLI_DIR = Path(cli.__file__).parent


def _registered(app: typer.Typer) -> set[str]:
    names = {
        command.name or (command.callback.__name__ if command.callback else "") for command in app.registered_commands
    }
    return names | {group.name for group in app.registered_groups if group.name}


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli.app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    commands = _registered(cli.app)
    assert {"up", "down", "status", "get", "certs", "dig", "trace", "fw"} <= commands
    for name in commands:
        assert f" {name} " in result.output, f"{name} missing from --help"


def test_no_command_module_imports_a_sibling() -> None:
    for path in CLI_DIR.glob("*.py"):
        if path.name in ("__init__.py", "common.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = node.module
                names = [alias.name for alias in node.names]
                assert not (imported == "foobar_ref.cli" or imported == "foobar_ref" and "cli" in names), path.name
                if imported.startswith("foobar_ref.cli."):
                    assert imported == "foobar_ref.cli.common", f"{path.name} imports {imported}"
