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

Each hop also gets what the supervisor needs to restart it alone:
`upstreams`, the hops it talks to (and the firewalls in between), which a
restart waits for; and `limits`, set at spawn: open files (RLIMIT_NOFILE)
and resident memory, checked by the supervisor (see supervisor.py for why
RSS rather than RLIMIT_AS).  Hops log to `<state>/logs/<hop>.log` (`--log`,
rotated by size); their stdout (READY, a fatal error) goes to `<hop>.out`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
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


MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-hop resource limits: open files (RLIMIT_NOFILE at spawn) and resident memory (checked by the supervisor)."""

    open_files: int
    memory_bytes: int


# A firewall holds two sockets per relay (1024 relays, 256 held drops): 8192 leaves room.  Memory: a fresh
# hop takes 30-40 MB, MariaDB (32 MB buffer pool) about 150 MB; the caps are for a hop that runs away.
_LIMITS = {
    "firewall": Limits(8192, 512 * MiB),
    "balancer": Limits(8192, 512 * MiB),
    "mariadb-primary": Limits(4096, 1024 * MiB),
    "mariadb-replica": Limits(4096, 1024 * MiB),
}
_DEFAULT_LIMITS = Limits(4096, 256 * MiB)


@dataclass(frozen=True)
class HopSpec:
    name: str
    role: str  # firewall | dns | balancer | web | store | mariadb-primary | mariadb-replica | monitor-client | monitor
    argv: tuple[str, ...]
    listen: tuple[str, ...]  # "ip:port" (dns adds "/udp" for its datagram socket)
    binds: tuple[tuple[str, str, int], ...] = field(default=())  # (proto, ip, port) to check before starting
    upstreams: tuple[str, ...] = ()  # hops it connects to: a (re)start waits while one of them is starting
    limits: Limits = _DEFAULT_LIMITS
    # Set in this hop's environment only, on top of the supervisor's (the balancer's OPENSSL_CONF: see
    # foobar_ref/tls_profile.py for why the TLS group list needs it at exec time).
    env: tuple[tuple[str, str], ...] = ()

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
    def tls(self) -> Path:
        """The balancer's TLS files beside the certificates: its OpenSSL configuration and ticket keys."""
        return self.root / "tls"

    @property
    def openssl_conf(self) -> Path:
        return self.tls / "openssl.cnf"

    @property
    def ticket_keys(self) -> Path:
        """80 bytes every balancer worker encrypts session tickets with (mode 0600)."""
        return self.tls / "ticket.keys"

    @property
    def stack_file(self) -> Path:
        return self.root / "stack.json"

    def capture(self, hop: str) -> Path:
        return self.root / "capture" / hop

    def log(self, hop: str) -> Path:
        """The hop's own log (JSON lines, rotated by size: <hop>.log.1, .2, ... are older)."""
        return self.logs / f"{hop}.log"

    def out(self, hop: str) -> Path:
        """The hop's stdout and stderr: READY, a fatal error (MariaDB's wrapper and relay lines too)."""
        return self.logs / f"{hop}.out"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def requests(self) -> Path:
        """Where `foobar-ref stop|start|restart` leave requests for the supervisor."""
        return self.run / "requests"

    @property
    def supervisor_lock(self) -> Path:
        """Held (flock) by the live supervisor for its whole life: free means none runs."""
        return self.run / "supervisor.lock"


def plan(topo: Topology, state: StatePaths, capture: bool = False, python: str = sys.executable) -> list[HopSpec]:
    specs = [_firewall(topo, state, fw.name, capture, python) for fw in topo.firewalls]
    specs += [_service(topo, state, svc.name, python) for svc in topo.services]
    specs = [replace(s, upstreams=upstreams(topo, s.name), limits=_LIMITS.get(s.role, _DEFAULT_LIMITS)) for s in specs]
    return sorted(specs, key=lambda s: _ORDER[s.role])


def upstreams(topo: Topology, hop: str) -> tuple[str, ...]:
    """The hops `hop` connects to, and the firewall in front of each one on another host.

    A monitoring client watches the hops of its host; the monitor scrapes the clients.  A firewall and an
    authoritative server connect to nothing that the supervisor starts.
    """
    if hop not in {s.name for s in topo.services}:
        return ()
    svc = topo.service(hop)
    targets = [*svc.backends, svc.store, svc.read_from, svc.write_to, svc.replica_of]
    if svc.kind == "resolver":
        targets += [s.name for s in topo.services_of_kind("authoritative")]
    elif svc.kind == "monitor-client":
        targets += [s.name for s in topo.host(svc.host).services if s.name != hop]
    elif svc.kind == "monitor":
        targets += [s.name for s in topo.services_of_kind("monitor-client")]
    found: list[str] = []
    for target in dict.fromkeys(t for t in targets if t):
        found.append(target)
        host = topo.service(target).host
        firewall = topo.firewall_of(host)
        if firewall is not None and host != svc.host:
            found.append(firewall.name)
    return tuple(dict.fromkeys(found))


def _base(topo: Topology, state: StatePaths, module: str, hop: str, python: str) -> tuple[str, ...]:
    argv = (
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
    return argv if module == "mysql" else (*argv, "--log", str(state.log(hop)))


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
    env: tuple[tuple[str, str], ...] = ()
    if svc.kind == "balancer":
        argv += ("--cert", str(state.certs / "site.crt"), "--key", str(state.certs / "site.key"))
        env = (("OPENSSL_CONF", str(state.openssl_conf)),)
    if svc.kind in ("authoritative", "resolver"):
        binds += tuple(("udp", ip, p) for p in ports)
        listen += tuple(f"{ip}:{p}/udp" for p in ports)
    return HopSpec(name, svc.kind, argv, listen, binds, env=env)
