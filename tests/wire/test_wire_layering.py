"""The HTTP core's own layering: wire/ does no I/O and reads no clock; h11 lives in two wire modules only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_layering import IO_MODULES, PACKAGE, imports_of

WIRE = sorted((PACKAGE / "wire").glob("*.py"))
H11_HOMES = {"h11_lane.py", "http.py"}  # http.py: the reader the hops use until they move to the core
DRIVERS = sorted((PACKAGE / "runtime").glob("http_*.py")) + [PACKAGE / "runtime" / "deadlines.py"]


@pytest.mark.parametrize("path", WIRE, ids=lambda p: p.name)
def test_wire_does_no_io(path: Path) -> None:
    bad = {name for name in imports_of(path) if name.split(".")[0] in IO_MODULES}
    assert not bad, f"wire/{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", WIRE + DRIVERS, ids=lambda p: p.name)
def test_h11_is_imported_only_where_named(path: Path) -> None:
    uses_h11 = any(name.split(".")[0] == "h11" for name in imports_of(path))
    assert not uses_h11 or (path.parent.name == "wire" and path.name in H11_HOMES), path
