"""Real MariaDB (primary + replica) and both real store processes, on 127.0.52.0/24."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from foobar_ref.mysql import setup
from tests.mysql.harness import Databases, databases

DB_PORT = 3318
STORE_PORT = 8118
REQUEST_TIMEOUT_S = 1.0
READY_TIMEOUT_S = 15.0


@dataclass
class Stores:
    dbs: Databases
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]

    def address(self, hop: str) -> tuple[str, int]:
        return self.dbs.topo.listen(hop, "http")

    def source(self, hop: str) -> str:
        return self.dbs.topo.source_for(hop)


def start_store(topology_path: Path, state: Path, hop: str, log_name: str = "") -> tuple[subprocess.Popen[bytes], Path]:
    log = state / f"{log_name or hop}.log"
    argv = [sys.executable, "-m", "foobar_ref.store", "--topology", str(topology_path), "--hop", hop]
    argv += ["--state", str(state), "--request-timeout-s", str(REQUEST_TIMEOUT_S)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def wait_line(proc: subprocess.Popen[bytes], log: Path, text: str, timeout_s: float = READY_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {content}")
        time.sleep(0.02)
    raise AssertionError(f"no {text!r} within {timeout_s} s: {log.read_text(errors='replace')}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        setup.stop(proc.pid, timeout_s=5.0)
    proc.wait(timeout=5)


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    with databases(tmp_path_factory.mktemp("store"), DB_PORT, STORE_PORT) as dbs:
        procs: dict[str, subprocess.Popen[bytes]] = {}
        logs: dict[str, Path] = {}
        try:
            for hop in ("store-01", "store-02"):
                procs[hop], logs[hop] = start_store(dbs.topology_path, dbs.state, hop)
            for hop in procs:
                wait_line(procs[hop], logs[hop], f"READY hop={hop}")
            yield Stores(dbs, procs, logs)
        finally:
            for proc in procs.values():
                stop_process(proc)
