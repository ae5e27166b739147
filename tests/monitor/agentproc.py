"""A monitoring client as a real process on a topology of its own in 127.91.x.y (a range no other test uses).

`write_topology(folder, octet)` writes one server host behind a firewall, as the
seed's web-01: public 127.91.<octet>.1, inner 127.91.<octet+10>.1, with web-01,
store-01, db-01 (primary), db-02 (its replica, on the same host) and the client
`mon-web`, and around it a balancer host, the monitor host (no service: the
address the firewall lets through to port 9100) and the client host.  The
firewall lets the balancer reach the web server, the monitor the client, the host
itself its database (replication), and rejects the client host.

`Stack` starts it with the launcher (every hop, MariaDB included, stack.json
written), `HopProcess` starts one hop alone from the plan's argv.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from foobar_ref import topology
from foobar_ref.launcher import plan, supervise
from foobar_ref.observe.metrics import parse_exposition
from tests.topologies import firewall, host, resolver, service, topology_text

WEB_PORT, STORE_PORT, DB_PORT, REPLICA_PORT, METRICS_PORT = 9080, 9081, 9306, 9307, 9100
HTTPS_PORT, DNS_PORT = 9443, 9153
READY_TIMEOUT_S = 20.0
SCRAPE_TIMEOUT_S = 10.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

RULES = f"""policy drop
tcp dport {WEB_PORT} ip saddr @lb accept comment "the balancer's requests"
tcp dport {METRICS_PORT} ip saddr @monitor accept comment "monitoring"
tcp dport {DB_PORT} ip saddr @web accept comment "replication"
ip saddr @client log prefix "fw-web reject: " reject comment "the client never reaches a server"
"""


@dataclass(frozen=True)
class Addresses:
    public: str
    inner: str
    lb: str
    monitor: str
    client: str

    @property
    def metrics(self) -> tuple[str, int]:
        """Where the monitoring service connects: the firewall, on the host's public address."""
        return self.public, METRICS_PORT

    @property
    def metrics_inner(self) -> tuple[str, int]:
        return self.inner, METRICS_PORT


def addresses(octet: int) -> Addresses:
    return Addresses(f"127.91.{octet}.1", f"127.91.{octet + 10}.1", f"127.91.{octet}.5", f"127.91.{octet}.4",
                     f"127.91.{octet}.10")  # fmt: skip


def write_topology(folder: Path, octet: int) -> Path:
    at = addresses(octet)
    web = [
        service("web-01", "web", {"http": WEB_PORT}, store="store-01"),
        service("store-01", "store", {"http": STORE_PORT}, read_from="db-01", write_to="db-01"),
        service("db-01", "mariadb", {"mysql": DB_PORT}),
        service("db-02", "mariadb", {"mysql": REPLICA_PORT}, replica_of="db-01"),
        service("mon-web", "monitor-client", {"metrics": METRICS_PORT}),
    ]
    hosts = [
        host("client", "client", at.client),
        resolver(f"127.91.{octet}.3", DNS_PORT),
        host(
            "lb", "balancer", at.lb, services=[service("lb-01", "balancer", {"https": HTTPS_PORT}, backends=["web-01"])]
        ),
        host("web", "server", at.public, at.inner, services=web),
        host("monitor", "monitor", at.monitor),
    ]
    path = folder / "topology.toml"
    path.write_text(
        topology_text({"domain": "foobar.com", "entry": "lb-01"}, hosts, [firewall("fw-web", "web", RULES)])
    )
    topology.load(path)  # fail here, naming the problem, if the text is wrong
    return path


# --- scraping -------------------------------------------------------------------------------


@dataclass
class Page:
    status: int
    content_type: str
    body: bytes
    seconds: float

    @property
    def samples(self) -> Samples:
        return parse_exposition(self.body.decode())


def scrape(
    address: tuple[str, int], source: str, accept: str | None = None, path: str = "/metrics", timeout_s: float = 0
) -> Page:
    """GET `path`; `timeout_s` is sent as Prometheus sends its scrape timeout."""
    conn = http.client.HTTPConnection(*address, timeout=SCRAPE_TIMEOUT_S, source_address=(source, 0))
    started = time.monotonic()
    headers = {"Accept": accept} if accept else {}
    if timeout_s:
        headers["X-Prometheus-Scrape-Timeout-Seconds"] = f"{timeout_s:g}"
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        return Page(answer.status, answer.getheader("Content-Type", ""), body, time.monotonic() - started)
    finally:
        conn.close()


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


# --- processes --------------------------------------------------------------------------------


class Stack:
    """The whole topology started by the launcher, as `foobar-ref up` starts it."""

    def __init__(self, folder: Path, octet: int) -> None:
        self.topology_path = write_topology(folder, octet)
        self.topo = topology.load(self.topology_path)
        self.state = plan.StatePaths(folder / "state")
        self.at = addresses(octet)
        supervise.up(self.topo, self.state, capture=False, detach=True, say=lambda _: None)

    def pid(self, hop: str) -> int:
        """The hop's pid now (the supervisor may have restarted it since the start)."""
        return next(r.pid for r in supervise.read_stack(self.state) if r.name == hop)

    def down(self) -> None:
        supervise.down(self.state, say=lambda _: None)


class HopProcess:
    """One hop started alone, with the launcher's argv (plus `extra`), its output in `<state>/logs/<hop>.log`."""

    def __init__(self, topo: topology.Topology, state: Path, hop: str, extra: tuple[str, ...] = ()) -> None:
        spec = next(s for s in plan.plan(topo, plan.StatePaths(state)) if s.name == hop)
        self.log = plan.StatePaths(state).log(hop)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([*spec.argv, *extra], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while f"READY hop={hop}" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{hop} did not start: {self.log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode
