"""up / status / down on a second stack moved to 127.60.x.y, and the refusals before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from foobar_ref.launcher.plan import StatePaths, plan
from foobar_ref.topology import load
from tests.e2e.stackutil import UP_TIMEOUT_S, cli, shifted_topology, status

pytestmark = pytest.mark.stack


def _processes_using(state: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(state) in part for part in proc.info["cmdline"] or []):
                found.append(proc.info["pid"])
        except psutil.Error:
            continue
    return found


def test_up_status_up_again_down_leaves_nothing(tmp_path: Path) -> None:
    topo = shifted_topology(tmp_path, 60)
    state = tmp_path / "state"
    started = cli("up", "--detach", "--topology", str(topo), "--state", str(state), timeout_s=UP_TIMEOUT_S)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        info = status(state)
        pids = {hop["name"]: hop["pid"] for hop in info["hops"]}
        assert all(hop["up"] for hop in info["hops"]) and len(pids) == len(plan(load(topo), StatePaths(state)))
        assert info["url"] == "https://www.foobar.com/" and info["resolver"] == "127.60.3.1:53"
        again = cli("up", "--detach", "--topology", str(topo), "--state", str(state))
        assert again.returncode == 0 and "already running" in again.stdout
        assert {hop["name"]: hop["pid"] for hop in status(state)["hops"]} == pids
    finally:
        stopped = cli("down", "--state", str(state))
    assert stopped.returncode == 0, stopped.stderr
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
    assert _processes_using(state) == []


def test_busy_port_fails_naming_hop_and_address(tmp_path: Path) -> None:
    topo = shifted_topology(tmp_path, 61)
    state = tmp_path / "state"
    with socket.socket() as squatter:
        squatter.bind(("127.61.11.1", 443))
        squatter.listen()
        done = cli("up", "--detach", "--topology", str(topo), "--state", str(state))
    assert done.returncode == 1
    assert "lb-01" in done.stderr and "127.61.11.1:443" in done.stderr
    assert _processes_using(state) == []


def test_mistyped_key_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    topo = shifted_topology(tmp_path, 62)
    topo.write_text(topo.read_text().replace('address = "127.62.2.1"', 'adress = "127.62.2.1"'))
    done = cli("up", "--detach", "--topology", str(topo), "--state", str(tmp_path / "state"))
    assert done.returncode == 2
    assert str(topo) in done.stderr and "adress" in done.stderr and "unknown key" in done.stderr
    assert _processes_using(tmp_path / "state") == []
