"""Whole stacks for the supervisor's tests: the seed moved to 127.<octet>.x.y, without the monitoring hops.

The monitoring hops (`mon-*`, `monitor`) are built elsewhere; until they exist, a stack that names them
cannot start, so these tests run the seed less its four monitoring services (the hosts stay, so the rule
sets' @monitor still means something).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from foobar_ref import topology
from tests.e2e.stackutil import cli, shifted_topology

MONITORING_KINDS = ('kind = "monitor-client"', 'kind = "monitor"')
_BLOCK_START = re.compile(r"^\s*\[", re.MULTILINE)


def without_monitoring(text: str) -> str:
    """The topology text less every monitoring service block and the monitor's settings table."""
    starts = [m.start() for m in _BLOCK_START.finditer(text)]
    head, blocks = text[: starts[0]], [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    kept = []
    for block in blocks:
        header = block.strip().splitlines()[0].strip()
        if header == "[hosts.services.monitor]":
            continue
        if header == "[[hosts.services]]" and any(kind in block for kind in MONITORING_KINDS):
            continue
        kept.append(block)
    return head + "".join(kept)


def stack_topology(tmp: Path, second_octet: int) -> Path:
    path = shifted_topology(tmp, second_octet)
    path.write_text(without_monitoring(path.read_text()))
    topology.load(path)  # fail here, naming the problem, if the text is wrong
    return path


def status(state: Path) -> dict[str, Any]:
    done = cli("status", "--json", "--state", str(state))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def hops(state: Path) -> dict[str, dict[str, Any]]:
    return {hop["name"]: hop for hop in status(state)["hops"]}


def wait_hop(state: Path, name: str, predicate, timeout_s: float, what: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        hop = hops(state)[name]
        if predicate(hop):
            return hop
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: not {what} within {timeout_s} s: {hop}")
        time.sleep(0.2)
