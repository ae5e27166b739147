"""The dependency rules of ARCHITECTURE.md, checked on the source (what import-linter would hold).

- cores never import an event loop, sockets, TLS or the clock: time and bytes come in as data;
- hops never import one another: they talk over sockets; the launcher starts them as processes.
  The one shared piece is mysql/, MariaDB's management: the supervisor runs its set-up (users,
  replication) and the store reads where its credentials file lives;
- aiomysql only in store/repo.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "foobar_ref"
HOPS = ("dns", "firewall", "balancer", "web", "store", "mysql")
ALLOWED = {
    ("launcher", "foobar_ref.mysql"),
    ("launcher", "foobar_ref.mysql.setup"),
    ("store", "foobar_ref.mysql.config"),
}
IO_MODULES = {"trio", "asyncio", "socket", "ssl", "time", "selectors", "subprocess"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*/core.py")), ids=lambda p: p.parent.name)
def test_cores_do_no_io(path: Path) -> None:
    bad = {name for name in imports_of(path) if name.split(".")[0] in IO_MODULES}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_hops_do_not_import_one_another() -> None:
    problems = []
    for path in sources():
        owner = path.relative_to(PACKAGE).parts[0]
        for name in imports_of(path):
            parts = name.split(".")
            other_hop = parts[0] == "foobar_ref" and len(parts) > 1 and parts[1] in HOPS and parts[1] != owner
            if other_hop and (owner in HOPS or owner == "launcher") and (owner, name) not in ALLOWED:
                problems.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not problems


def test_aiomysql_only_in_the_store_repository() -> None:
    users = [p.relative_to(PACKAGE) for p in sources() if any(n.split(".")[0] == "aiomysql" for n in imports_of(p))]
    assert users == [Path("store/repo.py")]
