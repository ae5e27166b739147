"""examples/: the three-server topology is valid and plannable; one_request.py runs against fake servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from foobar_ref import certs, topology
from foobar_ref.launcher.plan import StatePaths, plan
from tests.client.fakes import CLIENT_IP, WEB_IP, FakeDns, FakeWeb, write_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_TIMEOUT_S = 30


def test_three_servers_topology_loads_with_a_third_backend() -> None:
    topo = topology.load(EXAMPLES / "three-servers.toml")
    assert topo.service("lb-01").backends == ("web-01", "web-02", "web-03")
    assert topo.listen("web-03", "http") == ("127.0.12.3", 80) and topo.reach("web-03", "http") == ("127.0.2.3", 80)
    store = topo.service("store-03")
    assert (store.read_from, store.write_to) == ("db-03", "db-01")
    assert topo.service("db-03").replica_of == "db-01" and topo.host_of("db-03").name == "web-03"
    assert topo.firewall_of("web-03") == topo.firewall("firewall-4")


def test_three_servers_firewalls_let_web_03_reach_the_primary_and_nothing_more() -> None:
    from foobar_ref.firewall.rules import load_for
    from foobar_ref.firewall.ruleset import Packet

    topo = topology.load(EXAMPLES / "three-servers.toml")
    web_03, client, lb = (topo.host(n).address for n in ("web-03", "client", "lb-01"))

    def decide(firewall: str, source: str, port: int) -> str:
        return load_for(topo, firewall).evaluate(Packet(source, 40000, "127.0.2.1", port, now=0.0)).action

    assert decide("firewall-2", web_03, 3307) == "accept"
    assert decide("firewall-2", web_03, 8100) == "drop"
    assert decide("firewall-4", lb, 80) == "accept"
    assert decide("firewall-4", client, 80) == "reject"
    assert decide("firewall-4", topo.host("web-01").address, 3307) == "drop"


def test_three_servers_uses_the_seed_zones_and_plans_every_hop() -> None:
    topo = topology.load(EXAMPLES / "three-servers.toml")
    seed = topology.load()
    for name in ("dns-root", "dns-com", "dns-foobar"):
        zone = topo.service(name).zone_file
        assert zone is not None and zone.resolve() == seed.service(name).zone_file.resolve()  # type: ignore[union-attr]
    names = {spec.name for spec in plan(topo, StatePaths(Path("/s")), python="py")}
    assert {"web-03", "store-03", "db-03", "firewall-4"} <= names


def test_one_request_prints_each_step(tmp_path: Path) -> None:
    state = tmp_path / "state"
    site = certs.ensure(state)
    with FakeDns({"www.foobar.com": WEB_IP}) as dns, FakeWeb(site.site_cert, site.site_key) as web:
        topo = write_topology(tmp_path, dns.address[1], web.port)
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "one_request.py"), str(state), str(topo)],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert f"DNS   www.foobar.com -> {WEB_IP}" in done.stdout
    assert f"TCP   {CLIENT_IP}:" in done.stdout and "TLS   TLSv1." in done.stdout
    assert "HTTP  200 OK" in done.stdout and "served by fake-web, request id req-1" in done.stdout
    assert "> GET / HTTP/1.1" in done.stdout


def test_one_request_names_the_failed_step(tmp_path: Path) -> None:
    state = tmp_path / "state"
    certs.ensure(state)
    with FakeDns({}) as dns:  # every name is NXDOMAIN
        topo = write_topology(tmp_path, dns.address[1], 443)
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "one_request.py"), str(state), str(topo)],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("DnsError: www.foobar.com: NXDOMAIN")
