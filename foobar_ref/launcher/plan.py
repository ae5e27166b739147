"""From a topology to the processes to start: order, argv, addresses, readiness. Pure.

Start order follows who connects to whom, so every hop's upstream is listening
before anything sends it traffic:

1. firewalls: they only relay, and the replica's connection to the primary
   crosses firewall-2;
2. MariaDB primaries, then replicas (set up after their primary is ready);
3. the authoritative DNS servers, then the resolver that asks them;
4. the stores, the web servers and the balancers, so the site's entry
   point opens only when everything behind it answers;
5. the monitoring clients, then the monitoring service that scrapes them.

`down` stops them in the reverse order.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from foobar_ref.topology import Topology

_MODULE = {
    "firewall": "firewall",
    "authoritative": "dns",
    "resolver": "dns",
    "balancer": "balancer",
    "web": "web",
    "store": "store",
    "monitor-client": "monitor.agent",
    "monitor": "monitor",
}
_ORDER = {
    "firewall": 0,
    "mariadb-primary": 1,
    "mariadb-replica": 2,
    "authoritative": 3,
    "resolver": 4,
    "store": 5,
    "web": 6,
    "balancer": 7,
    "monitor-client": 8,  # after the hops they watch, so the first scrape finds them
    "monitor": 9,
}


@dataclass(frozen=True)
class HopSpec:
    name: str
    role: str  # firewall | dns | balancer | web | store | mariadb-primary | mariadb-replica | monitor-client | monitor
    argv: tuple[str, ...]
    listen: tuple[str, ...]  # "ip:port" (dns adds "/udp" for its datagram socket)
    binds: tuple[tuple[str, str, int], ...] = field(default=())  # (proto, ip, port) to check before starting

    @property
    def is_database(self) -> bool:
        return self.role.startswith("mariadb")


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def stack_file(self) -> Path:
        return self.root / "stack.json"

    def capture(self, hop: str) -> Path:
        return self.root / "capture" / hop

    def log(self, hop: str) -> Path:
        return self.logs / f"{hop}.log"


def plan(topo: Topology, state: StatePaths, capture: bool = False, python: str = sys.executable) -> list[HopSpec]:
    specs = [_firewall(topo, state, fw.name, capture, python) for fw in topo.firewalls]
    specs += [_service(topo, state, svc.name, python) for svc in topo.services]
    return sorted(specs, key=lambda s: _ORDER[s.role])


def _base(topo: Topology, state: StatePaths, module: str, hop: str, python: str) -> tuple[str, ...]:
    return (
        python,
        "-m",
        f"foobar_ref.{module}",
        "--topology",
        str(topo.path),
        "--hop",
        hop,
        "--state",
        str(state.root),
    )


def _firewall(topo: Topology, state: StatePaths, name: str, capture: bool, python: str) -> HopSpec:
    guarded = topo.host(topo.firewall(name).guards)
    ports = sorted({port for svc in guarded.services for port in svc.ports.values()})
    argv = _base(topo, state, "firewall", name, python)
    if capture:
        argv += ("--capture", str(state.capture(name)))
    return HopSpec(
        name,
        "firewall",
        argv,
        tuple(f"{guarded.address}:{p}" for p in ports),
        tuple(("tcp", guarded.address, p) for p in ports),
    )


def _service(topo: Topology, state: StatePaths, name: str, python: str) -> HopSpec:
    svc = topo.service(name)
    ip = topo.host_of(name).listen_address
    ports = sorted(svc.ports.values())
    binds = tuple(("tcp", ip, p) for p in ports)
    listen = tuple(f"{ip}:{p}" for p in ports)
    if svc.kind == "mariadb":
        role = "mariadb-replica" if svc.replica_of else "mariadb-primary"
        return HopSpec(name, role, _base(topo, state, "mysql", name, python), listen, binds)
    argv = _base(topo, state, _MODULE[svc.kind], name, python)
    if svc.kind == "balancer":
        argv += ("--cert", str(state.certs / "site.crt"), "--key", str(state.certs / "site.key"))
    if svc.kind in ("authoritative", "resolver"):
        binds += tuple(("udp", ip, p) for p in ports)
        listen += tuple(f"{ip}:{p}/udp" for p in ports)
    return HopSpec(name, svc.kind, argv, listen, binds)
