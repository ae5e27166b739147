"""The stack's life on real processes: up under a supervisor that heals it, one hop at a time, down; and the refusals.

One stack (the seed less its monitoring hops, moved to 127.60.x.y) is shared by the tests of this module, in
order: each leaves every hop running for the next.  The figures (restart times) are in the supervisor's log
(`hop_ready` lines: `down_s` from the exit to ready again).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from foobar_ref.launcher.plan import StatePaths, plan
from foobar_ref.mysql import setup
from foobar_ref.topology import load
from tests.e2e.stackutil import UP_TIMEOUT_S, cli, connect_from, shifted_topology
from tests.launcher.stacks import hops, stack_topology, status, wait_hop

pytestmark = pytest.mark.stack

WEB_01_INNER, WEB_01_PUBLIC = ("127.60.12.1", 80), "127.60.2.1"
RESTART_TIMEOUT_S = 15.0
WATCHDOG_TIMEOUT_S = 30.0
GIVE_UP_TIMEOUT_S = 60.0


@dataclass
class Stack:
    topology: Path
    state: Path

    def cli(self, *args: str, timeout_s: float = 150) -> tuple[int, str]:
        done = cli(*args, "--state", str(self.state), timeout_s=timeout_s)
        return done.returncode, done.stdout + done.stderr

    def pid(self, hop: str) -> int:
        return int(hops(self.state)[hop]["pid"])

    def supervisor_log(self) -> list[dict]:
        text = (self.state / "logs" / "supervisor.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _processes_using(state: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(state) in part for part in proc.info["cmdline"] or []):
                found.append(proc.info["pid"])
        except psutil.Error:
            continue
    return found


def web_01_answers() -> bool:
    """web-01 itself (from its firewall's address) answers a static file."""
    try:
        with connect_from(WEB_01_PUBLIC, WEB_01_INNER) as sock:
            sock.sendall(b"GET /robots.txt HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n")
            return sock.recv(100).startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("lifecycle")
    made = Stack(stack_topology(folder, 60), folder / "state")
    code, output = made.cli("up", "--detach", "--topology", str(made.topology), timeout_s=UP_TIMEOUT_S)
    try:
        assert code == 0, output
        yield made
    finally:
        made.cli("down")


def test_up_starts_every_hop_under_a_supervisor_and_up_again_changes_nothing(stack: Stack) -> None:
    info = status(stack.state)
    pids = {hop["name"]: hop["pid"] for hop in info["hops"]}
    assert len(pids) == len(plan(load(stack.topology), StatePaths(stack.state)))
    assert all(hop["up"] and hop["state"] == "running" and hop["restarts"] == 0 for hop in info["hops"])
    assert info["supervisor"]["up"] and info["resolver"] == "127.60.3.1:53"
    code, output = stack.cli("up", "--detach")
    assert code == 0 and "already running" in output and "every hop runs" in output, output
    assert {hop["name"]: hop["pid"] for hop in status(stack.state)["hops"]} == pids
    written = json.loads((stack.state / "stack.json").read_text())
    assert written["supervisor"]["pid"] == info["supervisor"]["pid"]
    assert {"restarts", "last_exit", "up_since", "phase"} <= set(written["hops"][0])  # for the monitoring


def test_a_killed_web_server_is_restarted_within_the_back_off_and_serves_again(stack: Stack) -> None:
    before = stack.pid("web-01")
    os.kill(before, signal.SIGKILL)
    hop = wait_hop(stack.state, "web-01", lambda h: h["up"] and h["pid"] != before, RESTART_TIMEOUT_S, "restarted")
    assert hop["restarts"] == 1 and hop["last_exit"] == "killed by SIGKILL"
    assert web_01_answers()
    code, output = stack.cli("get", "https://www.foobar.com/")
    assert code == 0, output
    ready = [e for e in stack.supervisor_log() if e["event"] == "hop_ready" and e["name"] == "web-01"]
    assert ready[-1]["down_s"] is not None and ready[-1]["down_s"] < RESTART_TIMEOUT_S


def test_a_hung_hop_is_killed_by_the_watchdog_and_restarted(stack: Stack) -> None:
    before = stack.pid("web-02")
    os.kill(before, signal.SIGSTOP)
    hop = wait_hop(stack.state, "web-02", lambda h: h["up"] and h["pid"] != before, WATCHDOG_TIMEOUT_S, "restarted")
    assert hop["last_exit"].startswith("watchdog: no answer to 3 probes in a row"), hop
    assert any(e["event"] == "watchdog_killed" and e["pid"] == before for e in stack.supervisor_log())


def test_a_paused_hop_hangs_on_purpose_and_the_watchdog_leaves_it(stack: Stack) -> None:
    before = stack.pid("web-01")
    code, output = stack.cli("pause", "web-01")
    assert code == 0 and "web-01 paused" in output, output
    assert psutil.Process(before).status() == psutil.STATUS_STOPPED
    time.sleep(9.0)  # past three missed probes (2 s each, 2 s timeout): a hang the watchdog would cure
    hop = hops(stack.state)["web-01"]
    assert (hop["state"], hop["pid"]) == ("paused", before), hop
    code, output = stack.cli("resume", "web-01")
    assert code == 0 and "web-01 running" in output, output
    assert stack.pid("web-01") == before and web_01_answers()
    assert not any(e["event"] == "watchdog_killed" and e["pid"] == before for e in stack.supervisor_log())


def test_a_stopped_hop_stays_stopped_until_started(stack: Stack) -> None:
    code, output = stack.cli("stop", "web-01")
    assert code == 0 and "web-01 stopped" in output, output
    time.sleep(2.0)  # longer than the first back-off: nothing restarts it
    hop = hops(stack.state)["web-01"]
    assert (hop["state"], hop["pid"], hop["up"]) == ("stopped", 0, False) and not web_01_answers()
    code, output = stack.cli("start", "web-01")
    assert code == 0 and "web-01 running" in output, output
    assert web_01_answers()


def test_a_hop_that_crashes_at_once_is_given_up_loudly_then_started_again(stack: Stack) -> None:
    assert stack.cli("stop", "web-01")[0] == 0
    with socket.socket() as squatter:
        squatter.bind(WEB_01_INNER)
        squatter.listen()
        code, output = stack.cli("start", "web-01", timeout_s=GIVE_UP_TIMEOUT_S)
        assert code == 1 and "web-01 failed" in output, output
        hop = hops(stack.state)["web-01"]
        assert hop["state"] == "failed" and "cannot listen on 127.60.12.1:80" in hop["last_exit"]
        assert "gave up: 5 starts within 60 s" in hop["last_exit"]
        assert any(e["event"] == "hop_failed" and e["name"] == "web-01" for e in stack.supervisor_log())
        table = stack.cli("status")[1]
        assert "failed" in table
    code, output = stack.cli("start", "web-01")
    assert code == 0 and "web-01 running" in output, output
    assert web_01_answers()


def test_a_restarted_primary_comes_back_as_primary_and_replication_is_set_up_again(stack: Stack) -> None:
    before = stack.pid("db-01")
    code, output = stack.cli("restart", "db-01")
    assert code == 0 and "db-01 running" in output, output
    hop = hops(stack.state)["db-01"]
    assert hop["pid"] != before and hop["restarts"] == 1
    assert any(e["event"] == "replication_reconfigured" and e["name"] == "db-02" for e in stack.supervisor_log())
    code, output = stack.cli(
        "get", "-X", "POST", "-d", '{"text": "after the restart"}', "https://www.foobar.com/api/messages"
    )
    assert code == 0, output
    replicated = setup.wait_replicated(stack.state, "db-02", "db-01", timeout_s=15.0)
    assert replicated["Slave_IO_Running"] == "Yes" and replicated["Slave_SQL_Running"] == "Yes"


def test_killing_the_supervisor_stops_no_hop_and_up_adopts_them_and_starts_the_missing_one(stack: Stack) -> None:
    info = status(stack.state)
    os.kill(info["supervisor"]["pid"], signal.SIGKILL)
    time.sleep(1.0)
    pids = {hop["name"]: hop["pid"] for hop in status(stack.state)["hops"] if hop["up"]}
    assert len(pids) == len(info["hops"])  # every hop outlived its supervisor
    os.kill(pids["web-02"], signal.SIGKILL)
    code, output = stack.cli("up", "--detach")
    assert code == 0 and "adopting 13 running hops; starting web-02" in output, output
    after = status(stack.state)
    assert after["supervisor"]["up"] and after["supervisor"]["pid"] != info["supervisor"]["pid"]
    now = {hop["name"]: hop["pid"] for hop in after["hops"] if hop["up"]}
    assert now["web-02"] != pids["web-02"] and {n: p for n, p in now.items() if n != "web-02"} == {
        n: p for n, p in pids.items() if n != "web-02"
    }


def test_down_stops_the_supervisor_then_every_hop_and_no_log_holds_a_traceback(stack: Stack) -> None:
    pids = [hop["pid"] for hop in status(stack.state)["hops"]]
    code, output = stack.cli("down")
    assert code == 0 and output.index("supervisor") < output.index("lb-01"), output
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _processes_using(stack.state) == []
    logs = [*(stack.state / "logs").iterdir(), *(stack.state / "mysql").glob("*/error.log")]
    assert len(logs) > 20
    assert [p.name for p in logs if "Traceback" in p.read_text(errors="replace")] == []


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


def test_a_hop_that_cannot_start_fails_up_naming_it_and_leaves_nothing_running(tmp_path: Path) -> None:
    topo = stack_topology(tmp_path, 64)
    rules = tmp_path / "firewall-3.rules"
    rules.write_text(rules.read_text() + "tcp dport 99999 accept\n")
    state = tmp_path / "state"
    done = cli("up", "--detach", "--topology", str(topo), "--state", str(state), timeout_s=UP_TIMEOUT_S)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "firewall-3: exited with code 2" in done.stderr and "firewall-3.rules:" in done.stderr
    assert _processes_using(state) == []  # MariaDB's installer, started by db-01's hop, included
    assert not (state / "stack.json").exists()
