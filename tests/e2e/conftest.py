"""One stack of real processes (real MariaDB) for the end-to-end tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref import topology
from tests.e2e.stackutil import UP_TIMEOUT_S, cli, status


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    state = tmp_path_factory.mktemp("stack") / "state"
    started = cli("up", "--detach", "--capture", "--state", str(state), timeout_s=UP_TIMEOUT_S)
    if started.returncode != 0:
        cli("down", "--state", str(state))
        pytest.fail(f"foobar-ref up failed:\n{started.stdout}\n{started.stderr}")
    info = status(state)
    info["state_dir"] = Path(state)
    info["topology_obj"] = topology.load()
    try:
        yield info
    finally:
        cli("down", "--state", str(state))
