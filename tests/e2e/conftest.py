"""One stack of real processes (real MariaDB) for the end-to-end tests of this folder.

The seed topology as shipped, but for its monitoring service scraping and evaluating every
second (the seed's 5 s would make the monitoring tests wait five times longer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref import topology
from tests.e2e.stackutil import UP_TIMEOUT_S, cli, status

FAST_MONITORING = {"scrape_interval_s": 1, "scrape_timeout_s": 1, "evaluation_interval_s": 1}


def seed_with_fast_monitoring(folder: Path) -> Path:
    """A copy of the seed (with its zone, hints and rule files) whose monitor works at a 1 s pace."""
    for source in topology.default_path().parent.iterdir():
        if source.is_file():
            (folder / source.name).write_bytes(source.read_bytes())
    seed = folder / topology.default_path().name
    text = seed.read_text()
    for key, value in FAST_MONITORING.items():
        text, count = re.subn(rf"(?m)^(\s*{key}\s*=\s*)[0-9.]+", rf"\g<1>{value}", text)
        assert count == 1, f"the seed has no {key} to change"
    seed.write_text(text)
    return seed


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("stack")
    state = root / "state"
    seed = seed_with_fast_monitoring(root)
    started = cli("up", "--detach", "--capture", "--topology", str(seed), "--state", str(state), timeout_s=UP_TIMEOUT_S)
    if started.returncode != 0:
        cli("down", "--state", str(state))
        pytest.fail(f"foobar-ref up failed:\n{started.stdout}\n{started.stderr}")
    info = status(state)
    info["state_dir"] = Path(state)
    info["topology_obj"] = topology.load(seed)
    try:
        yield info
    finally:
        cli("down", "--state", str(state))
