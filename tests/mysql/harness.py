"""A test topology on 127.0.52.0/24 and a real MariaDB primary + replica started from it.

The test hosts have no firewall (so `reach == listen`): t-web-01 127.0.52.1
holds db-01 (primary) and store-01, t-web-02 127.0.52.2 holds db-02 (replica
of db-01) and store-02 (reads db-02, writes db-01).  The other hosts exist only
because a topology needs them; nothing listens on them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from foobar_ref import topology
from foobar_ref.mysql import setup
from tests.topologies import host, resolver, service, topology_text, web_store_db

READY_TIMEOUT_S = 60.0


def write_topology(folder: Path, db_port: int, store_port: int) -> Path:
    path = folder / "topology.toml"
    lb = [service("lb", "balancer", {"https": db_port + 3}, backends=["web-01"])]
    t_web_01 = web_store_db("web-01", "store-01", "db-01", (db_port + 4, store_port, db_port))
    t_web_02 = [
        service("store-02", "store", {"http": store_port}, read_from="db-02", write_to="db-01"),
        service("db-02", "mariadb", {"mysql": db_port}, replica_of="db-01"),
    ]
    hosts = [
        host("client", "client", "127.0.52.10"),
        resolver("127.0.52.3", db_port + 2),
        host("lb", "balancer", "127.0.52.5", services=lb),
        host("t-web-01", "server", "127.0.52.1", services=t_web_01),
        host("t-web-02", "server", "127.0.52.2", services=t_web_02),
    ]
    path.write_text(topology_text({"domain": "foobar.com", "entry": "lb"}, hosts))
    topology.load(path)  # fail here, naming the problem, if the text is wrong
    return path


@dataclass
class Databases:
    topology_path: Path
    topo: topology.Topology
    state: Path
    pids: dict[str, int]
    configured: dict[str, dict]


def start_instance(topology_path: Path, hop: str, state: Path) -> subprocess.Popen[bytes]:
    log = open(state / f"{hop}.out", "ab")  # noqa: SIM115 (kept open by the child)
    argv = [sys.executable, "-m", "foobar_ref.mysql", "--topology", str(topology_path), "--hop", hop]
    with log:
        return subprocess.Popen([*argv, "--state", str(state)], stdout=log, stderr=subprocess.STDOUT)


@contextmanager
def databases(folder: Path, db_port: int, store_port: int) -> Iterator[Databases]:
    """Start db-01 and db-02, configure both, wait for replication; always stop them."""
    state = folder / "state"
    state.mkdir(parents=True)
    path = write_topology(folder, db_port, store_port)
    topo = topology.load(path)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for hop in ("db-01", "db-02"):
            procs[hop] = start_instance(path, hop, state)
        configured = {}
        for hop in ("db-01", "db-02"):
            setup.wait_ready(topo, hop, state, READY_TIMEOUT_S, process=procs[hop])
            configured[hop] = setup.configure(topo, hop, state)
        setup.wait_replicated(state, "db-02", "db-01", timeout_s=15.0)
        yield Databases(path, topo, state, {h: p.pid for h, p in procs.items()}, configured)
    finally:
        for proc in procs.values():
            setup.stop(proc.pid, timeout_s=20.0)
            proc.wait(timeout=5)
