"""The one config model: a TOML file describes the whole infrastructure.

Theory of operation
-------------------
`load(path)` reads the file with tomllib, then walks it table by table with a
`_Reader` that knows which keys each table may hold.  Every problem found is
collected (not raised at the first one), so a learner who mistypes three keys
sees three lines, each naming the file, the key path and what was expected::

    seed.toml: hosts[2].adress: unknown key (expected one of: address, inner, ...)

Only when the list is empty is a frozen `Topology` returned; otherwise
`TopologyError` carries the whole list.  Nothing here opens a socket or starts a
process: the launcher and every hop read the same validated model.

Addressing (see ARCHITECTURE.md): every host has a public `address` on
127.0.0.0/8.  A host guarded by a firewall also has an `inner` address: the
firewall owns the public address and relays to the inner one, where the host's
services listen.  Clients bind their host's public address as source.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from foobar_ref.topology_balancer import BalancerSettings, read_balancer

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
HOST_ROLES = ("client", "dns", "balancer", "server", "monitor")
SERVICE_KINDS = ("authoritative", "resolver", "balancer", "web", "store", "mariadb", "monitor-client", "monitor")
# The port each kind must have, by name.
_NEEDED_PORT = {
    "authoritative": "dns",
    "resolver": "dns",
    "balancer": "https",
    "web": "http",
    "store": "http",
    "mariadb": "mysql",
    "monitor-client": "metrics",
    "monitor": "http",
}


class TopologyError(Exception):
    """A topology file that cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class MonitorSettings:
    """The monitoring service's settings (`[hosts.services.monitor]` in the topology)."""

    scrape_interval_s: float = 5.0
    scrape_timeout_s: float = 2.0
    evaluation_interval_s: float = 5.0
    retention_s: float = 3600.0  # samples older than this are dropped
    max_series_per_target: int = 5000  # a scrape exposing more is refused whole and counted
    webhook_url: str | None = None  # Alertmanager-style webhook for firing and resolved alerts
    repeat_interval_s: float = 300.0  # a still-firing group is notified again at most this often
    rule_file: Path | None = None  # Prometheus rule file; default: the one shipped in foobar_ref/monitor


@dataclass(frozen=True)
class Service:
    """One process on a host: its `name` is the hop's name everywhere."""

    name: str
    kind: str
    host: str
    ports: Mapping[str, int]
    backends: tuple[str, ...] = ()  # balancer: web services, in round-robin order
    store: str | None = None  # web: the store service it uses
    read_from: str | None = None  # store: database for reads
    write_to: str | None = None  # store: database for writes (the primary)
    replica_of: str | None = None  # mariadb: the primary it replicates
    zone_file: Path | None = None  # authoritative: the master-format zone it serves
    root_hints: Path | None = None  # resolver: where iteration starts (master-format NS + glue for ".")
    monitor: MonitorSettings | None = None  # monitor: scrape, rule and alert settings
    balancer: BalancerSettings | None = None  # balancer: algorithm, checks, limits, timeouts, TLS, workers


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    address: str
    inner: str | None = None
    services: tuple[Service, ...] = ()

    @property
    def listen_address(self) -> str:
        """Where this host's own services listen (behind its firewall if any)."""
        return self.inner or self.address


@dataclass(frozen=True)
class Firewall:
    name: str
    guards: str  # the host whose public address this firewall owns
    # Send a PROXY protocol v1 line before relaying, so the host behind can see the
    # client's real address (what HAProxy's `send-proxy` does): the balancer needs it
    # for X-Forwarded-For, since this firewall is a proxy, not a transparent filter.
    # `true` in the file means every port of the guarded host; a list names the ports
    # (the balancer's 80 and 443, not the monitoring client's 9100).  Empty: none.
    proxy_protocol_ports: frozenset[int] = frozenset()
    rules_file: Path | None = None  # the rule set in the firewall's own language (firewall/rules.py)
    rules: str | None = None  # or the rule set inline, in the same language

    def sends_proxy_line(self, port: int) -> bool:
        """Does a connection relayed to `port` start with a PROXY v1 line?"""
        return port in self.proxy_protocol_ports


@dataclass(frozen=True)
class Topology:
    path: Path
    domain: str
    site_names: tuple[str, ...]
    entry: str  # the balancer service the site's names point to
    hosts: tuple[Host, ...]
    firewalls: tuple[Firewall, ...]
    _services: Mapping[str, Service] = field(repr=False, default_factory=dict)

    # --- look-ups -------------------------------------------------------
    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def service(self, name: str) -> Service:
        return self._services[name]

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(self._services.values())

    def host_of(self, service: str) -> Host:
        return self.host(self.service(service).host)

    def firewall(self, name: str) -> Firewall:
        return next(f for f in self.firewalls if f.name == name)

    def firewall_of(self, host: str) -> Firewall | None:
        return next((f for f in self.firewalls if f.guards == host), None)

    def client_host(self) -> Host:
        return next(h for h in self.hosts if h.role == "client")

    def services_of_kind(self, kind: str) -> tuple[Service, ...]:
        return tuple(s for s in self.services if s.kind == kind)

    def hops_on_host(self, host: str) -> tuple[str, ...]:
        """Every hop that runs for one host: its services and the firewall that owns its public address."""
        firewall = self.firewall_of(host)
        return tuple(s.name for s in self.host(host).services) + ((firewall.name,) if firewall else ())

    def listen(self, service: str, port_name: str) -> tuple[str, int]:
        """(ip, port) where the service itself listens."""
        svc = self.service(service)
        return self.host(svc.host).listen_address, svc.ports[port_name]

    def reach(self, service: str, port_name: str) -> tuple[str, int]:
        """(ip, port) other hosts connect to: the public address."""
        svc = self.service(service)
        return self.host(svc.host).address, svc.ports[port_name]

    def source_for(self, service: str) -> str:
        """Source address a service's outgoing connections bind."""
        return self.host_of(service).address

    @property
    def site_url(self) -> str:
        _, port = self.reach(self.entry, "https")
        suffix = "" if port == 443 else f":{port}"
        return f"https://{self.site_names[0]}{suffix}/"

    @property
    def monitor_url(self) -> str | None:
        """The monitoring service's dashboard and API, when the topology has one."""
        found = self.services_of_kind("monitor")
        if not found:
            return None
        ip, port = self.reach(found[0].name, "http")
        return f"http://{ip}:{port}/"

    @property
    def resolver(self) -> tuple[str, int]:
        """The recursive resolver the client asks."""
        return self.reach(self.services_of_kind("resolver")[0].name, "dns")


def default_path() -> Path:
    return Path(str(resources.files("foobar_ref") / "topologies" / "seed.toml"))


def load(path: str | Path | None = None) -> Topology:
    """Read and validate a topology file; raise TopologyError listing every problem."""
    file = Path(path) if path is not None else default_path()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TopologyError([f"{file}: no such file"]) from None
    except tomllib.TOMLDecodeError as err:
        raise TopologyError([f"{file}: not valid TOML: {err}"]) from None
    except UnicodeDecodeError as err:
        raise TopologyError([f"{file}: not UTF-8 text: {err}"]) from None
    return _build(file.resolve(), raw)


class _Reader:
    """Reads typed values out of one TOML table, noting problems by key path."""

    def __init__(self, file: Path, problems: list[str]) -> None:
        self.file = file
        self.problems = problems

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.file}: {key}: {message}")

    def table(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, found {type(value).__name__}")
            return {}
        for unknown in sorted(set(value) - set(allowed)):
            self.problem(f"{key}.{unknown}", f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def tables(self, value: Any, key: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, "expected an array of tables")
            return []
        return value

    def text(self, table: dict[str, Any], name: str, key: str, required: bool = True) -> str | None:
        value = table.get(name)
        if value is None:
            if required:
                self.problem(f"{key}.{name}", "missing (expected a string)")
            return None
        if not isinstance(value, str) or not value:
            self.problem(f"{key}.{name}", f"expected a non-empty string, found {value!r}")
            return None
        return value

    def choice(self, table: dict[str, Any], name: str, key: str, options: tuple[str, ...]) -> str:
        value = self.text(table, name, key)
        if value is not None and value not in options:
            self.problem(f"{key}.{name}", f"expected one of {', '.join(options)}, found {value!r}")
        return value or ""

    def address(self, table: dict[str, Any], name: str, key: str, required: bool = True) -> str | None:
        value = self.text(table, name, key, required)
        if value is None:
            return None
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            self.problem(f"{key}.{name}", f"expected an IPv4 address in 127.0.0.0/8, found {value!r}")
            return None
        if ip not in LOOPBACK:
            self.problem(f"{key}.{name}", f"expected an address in 127.0.0.0/8, found {value}")
            return None
        return value

    def port(self, value: Any, key: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.problem(key, f"port out of range (expected an integer 1-65535, found {value!r})")
            return None
        return value

    def names(self, table: dict[str, Any], name: str, key: str) -> tuple[str, ...]:
        value = table.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(f"{key}.{name}", "expected an array of names")
            return ()
        return tuple(value)


_SERVICE_KEYS = (
    "name",
    "kind",
    "ports",
    "backends",
    "store",
    "read_from",
    "write_to",
    "replica_of",
    "zone_file",
    "root_hints",
    "monitor",
    "balancer",
)
_MONITOR_KEYS = (
    "scrape_interval_s",
    "scrape_timeout_s",
    "evaluation_interval_s",
    "retention_s",
    "max_series_per_target",
    "webhook_url",
    "repeat_interval_s",
    "rule_file",
)
_HOST_KEYS = ("name", "role", "address", "inner", "services")
_FIREWALL_KEYS = ("name", "guards", "rules_file", "rules", "proxy_protocol")


def _build(file: Path, raw: dict[str, Any]) -> Topology:
    problems: list[str] = []
    r = _Reader(file, problems)
    top = r.table(raw, "(top level)", ("site", "hosts", "firewalls"))
    site = r.table(top.get("site", {}), "site", ("domain", "names", "entry"))
    domain = r.text(site, "domain", "site") or ""
    site_names = r.names(site, "names", "site") or (f"www.{domain}", domain)
    entry = r.text(site, "entry", "site") or ""

    hosts = [_build_host(r, file, h, f"hosts[{i}]") for i, h in enumerate(r.tables(top.get("hosts"), "hosts"))]
    services = {s.name: s for h in hosts for s in h.services}
    firewalls = [
        _build_firewall(r, f, f"firewalls[{i}]") for i, f in enumerate(r.tables(top.get("firewalls"), "firewalls"))
    ]
    _check_unique(r, hosts, firewalls)
    _check_references(r, services, hosts, firewalls, entry)
    if problems:
        raise TopologyError(problems)
    return Topology(file, domain, site_names, entry, tuple(hosts), tuple(firewalls), services)


def _build_host(r: _Reader, file: Path, raw: Any, key: str) -> Host:
    t = r.table(raw, key, _HOST_KEYS)
    name = r.text(t, "name", key) or key
    role = r.choice(t, "role", key, HOST_ROLES)
    address = r.address(t, "address", key) or ""
    inner = r.address(t, "inner", key, required=False)
    services = tuple(
        _build_service(r, file, s, f"{key}.services[{i}]", name)
        for i, s in enumerate(r.tables(t.get("services"), f"{key}.services"))
    )
    return Host(name, role, address, inner, services)


def _build_service(r: _Reader, file: Path, raw: Any, key: str, host: str) -> Service:
    t = r.table(raw, key, _SERVICE_KEYS)
    name = r.text(t, "name", key) or key
    kind = r.choice(t, "kind", key, SERVICE_KINDS)
    ports_raw = r.table(t.get("ports", {}), f"{key}.ports", tuple(t.get("ports", {}) or ()))
    ports = {n: p for n, v in ports_raw.items() if (p := r.port(v, f"{key}.ports.{n}")) is not None}
    needed = _NEEDED_PORT.get(kind)
    if needed and needed not in ports_raw:
        r.problem(f"{key}.ports.{needed}", f"missing (a {kind} service needs a '{needed}' port)")
    backends = r.names(t, "backends", key)
    if kind != "balancer" and "balancer" in t:
        r.problem(f"{key}.balancer", f"only a balancer service has balancer settings (this one is a {kind})")
    zone = r.text(t, "zone_file", key, required=kind == "authoritative")
    hints = r.text(t, "root_hints", key, required=kind == "resolver")
    return Service(
        name=name,
        kind=kind,
        host=host,
        ports=ports,
        backends=backends,
        store=r.text(t, "store", key, required=kind == "web"),
        read_from=r.text(t, "read_from", key, required=kind == "store"),
        write_to=r.text(t, "write_to", key, required=kind == "store"),
        replica_of=r.text(t, "replica_of", key, required=False),
        zone_file=(file.parent / zone) if zone else None,
        root_hints=(file.parent / hints) if hints else None,
        monitor=_build_monitor(r, file, t.get("monitor", {}), f"{key}.monitor") if kind == "monitor" else None,
        balancer=read_balancer(r, t.get("balancer", {}), f"{key}.balancer", backends) if kind == "balancer" else None,
    )


def _build_monitor(r: _Reader, file: Path, raw: Any, key: str) -> MonitorSettings:
    t = r.table(raw, key, _MONITOR_KEYS)
    defaults = MonitorSettings()
    values: dict[str, Any] = {}
    for name in ("scrape_interval_s", "scrape_timeout_s", "evaluation_interval_s", "retention_s", "repeat_interval_s"):
        if name in t:
            value = t[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400 * 30:
                r.problem(f"{key}.{name}", f"expected seconds, a number in (0, 2592000], found {value!r}")
            else:
                values[name] = float(value)
    if "max_series_per_target" in t:
        value = t["max_series_per_target"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            r.problem(f"{key}.max_series_per_target", f"expected a positive integer, found {value!r}")
        else:
            values["max_series_per_target"] = value
    url = r.text(t, "webhook_url", key, required=False)
    if url is not None and not url.startswith(("http://", "https://")):
        r.problem(f"{key}.webhook_url", f"expected an http:// or https:// URL, found {url!r}")
    elif url is not None:
        values["webhook_url"] = url
    rule_file = r.text(t, "rule_file", key, required=False)
    if rule_file is not None:
        path = file.parent / rule_file
        if not path.is_file():
            r.problem(f"{key}.rule_file", f"no such file {path}")
        values["rule_file"] = path
    settings = MonitorSettings(**{**defaults.__dict__, **values})
    if settings.scrape_timeout_s > settings.scrape_interval_s:
        r.problem(f"{key}.scrape_timeout_s", "must not be longer than scrape_interval_s (as in Prometheus)")
    return settings


def _build_firewall(r: _Reader, raw: Any, key: str) -> Firewall:
    """Where the rule set is (a file, or inline text); the firewall hop reads and checks the rules."""
    t = r.table(raw, key, _FIREWALL_KEYS)
    name = r.text(t, "name", key) or key
    guards = r.text(t, "guards", key) or ""
    proxy_ports = _proxy_ports(r, t.get("proxy_protocol", False), f"{key}.proxy_protocol")
    rules_file = r.text(t, "rules_file", key, required=False)
    path = (r.file.parent / rules_file) if rules_file else None
    if path is not None and not path.is_file():
        r.problem(f"{key}.rules_file", f"no such file {path}")
    inline = t.get("rules")
    if inline is not None and not isinstance(inline, str):
        r.problem(f"{key}.rules", f"expected the rule set as text in the firewall rule language, found {inline!r}")
        inline = None
    if path is not None and inline is not None:
        r.problem(f"{key}.rules", "give either rules_file or rules, not both")
    return Firewall(name, guards, proxy_ports, path, inline)


_ALL_PORTS = frozenset(range(1, 65536))


def _proxy_ports(r: _Reader, value: Any, key: str) -> frozenset[int]:
    """`true`: every port (narrowed to the guarded host's ports when used); a list: those ports."""
    if isinstance(value, bool):
        return _ALL_PORTS if value else frozenset()
    if isinstance(value, list):
        ports = [r.port(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return frozenset(p for p in ports if p is not None)
    r.problem(key, f"expected true, false or a list of ports, found {value!r}")
    return frozenset()


def _check_unique(r: _Reader, hosts: list[Host], firewalls: list[Firewall]) -> None:
    seen_names: dict[str, str] = {}
    seen_addresses: dict[str, str] = {}
    for i, host in enumerate(hosts):
        for kind_key, name in [("name", host.name)] + [
            (f"services[{j}].name", s.name) for j, s in enumerate(host.services) if s.name != host.name
        ]:
            if name in seen_names:
                r.problem(f"hosts[{i}].{kind_key}", f"duplicate name {name!r} (also {seen_names[name]})")
            seen_names[name] = f"hosts[{i}]"
        for addr_key, addr in (("address", host.address), ("inner", host.inner)):
            if not addr:
                continue
            if addr in seen_addresses:
                r.problem(f"hosts[{i}].{addr_key}", f"duplicate address {addr} (also {seen_addresses[addr]})")
            seen_addresses[addr] = f"hosts[{i}].{addr_key}"
    for i, fw in enumerate(firewalls):
        if fw.name in seen_names:
            r.problem(f"firewalls[{i}].name", f"duplicate name {fw.name!r}")
        seen_names[fw.name] = f"firewalls[{i}]"


def _check_references(
    r: _Reader, services: dict[str, Service], hosts: list[Host], firewalls: list[Firewall], entry: str
) -> None:
    def expect(key: str, name: str | None, kind: str) -> None:
        if name is not None and (name not in services or services[name].kind != kind):
            known = ", ".join(s.name for s in services.values() if s.kind == kind) or "none"
            r.problem(key, f"unknown {kind} service {name!r} (known: {known})")

    expect("site.entry", entry, "balancer")
    for hi, host in enumerate(hosts):
        for si, s in enumerate(host.services):
            key = f"hosts[{hi}].services[{si}]"
            for bi, backend in enumerate(s.backends):
                expect(f"{key}.backends[{bi}]", backend, "web")
            if s.kind == "balancer" and not s.backends:
                r.problem(f"{key}.backends", "a balancer needs at least one backend")
            expect(f"{key}.store", s.store, "store")
            expect(f"{key}.read_from", s.read_from, "mariadb")
            expect(f"{key}.write_to", s.write_to, "mariadb")
            expect(f"{key}.replica_of", s.replica_of, "mariadb")
            for name, path in (("zone_file", s.zone_file), ("root_hints", s.root_hints)):
                if path is not None and not path.is_file():
                    r.problem(f"{key}.{name}", f"no such file {path}")
    host_names = {h.name: h for h in hosts}
    for fi, fw in enumerate(firewalls):
        guarded = host_names.get(fw.guards)
        if guarded is None:
            r.problem(f"firewalls[{fi}].guards", f"unknown host {fw.guards!r}")
        elif guarded.inner is None:
            r.problem(f"firewalls[{fi}].guards", f"host {fw.guards!r} needs an 'inner' address to be guarded")
    for hi, host in enumerate(hosts):
        if host.inner and not any(fw.guards == host.name for fw in firewalls):
            r.problem(f"hosts[{hi}].inner", f"host {host.name!r} has an inner address but no firewall guards it")
    if sum(1 for h in hosts if h.role == "client") != 1:
        r.problem("hosts", "expected exactly one host with role 'client'")
    if sum(1 for s in services.values() if s.kind == "monitor") > 1:
        r.problem("hosts", "expected at most one service of kind 'monitor' (the monitoring service)")
    if sum(1 for s in services.values() if s.kind == "resolver") != 1:
        r.problem("hosts", "expected exactly one service of kind 'resolver' (the one the client asks)")
