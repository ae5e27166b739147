"""The launch plan: start order, argv and addresses, from the seed topology."""

from __future__ import annotations

from pathlib import Path

from foobar_ref import topology
from foobar_ref.launcher.plan import StatePaths, plan


def test_start_order_puts_upstreams_first() -> None:
    specs = plan(topology.load(), StatePaths(Path("/s")), python="py")
    order = [s.name for s in specs]
    assert order.index("firewall-2") < order.index("db-02")  # the replica reaches its primary through firewall-2
    assert order.index("db-01") < order.index("db-02") < order.index("store-01")
    assert order.index("store-01") < order.index("web-01") < order.index("lb-01")
    assert order.index("dns-root") < order.index("dns")  # the resolver starts after the servers it asks
    assert order.index("lb-01") < order.index("mon-lb-01") < order.index("monitor")  # clients, then who scrapes them
    assert set(order) == {
        "firewall-1",
        "firewall-2",
        "firewall-3",
        "db-01",
        "db-02",
        "dns",
        "dns-root",
        "dns-com",
        "dns-foobar",
        "store-01",
        "store-02",
        "web-01",
        "web-02",
        "lb-01",
        "mon-lb-01",
        "mon-web-01",
        "mon-web-02",
        "monitor",
    }


def test_each_hop_gets_topology_hop_and_state() -> None:
    topo = topology.load()
    specs = {s.name: s for s in plan(topo, StatePaths(Path("/s")), capture=True, python="py")}
    web = specs["web-01"]
    assert web.argv == (
        *("py", "-m", "foobar_ref.web", "--topology", str(topo.path), "--hop", "web-01", "--state", "/s"),
        *("--log", "/s/logs/web-01.log"),
    )
    assert "--log" not in specs["db-01"].argv  # mariadbd writes its own error log; the wrapper's lines go to .out
    assert specs["firewall-2"].argv[-2:] == ("--capture", "/s/capture/firewall-2")
    assert "--cert" in specs["lb-01"].argv and "/s/certs/site.crt" in specs["lb-01"].argv
    assert specs["db-01"].role == "mariadb-primary" and specs["db-02"].role == "mariadb-replica"


def test_firewall_listens_on_every_port_of_the_host_it_guards() -> None:
    specs = {s.name: s for s in plan(topology.load(), StatePaths(Path("/s")))}
    assert specs["firewall-2"].listen == ("127.0.2.1:80", "127.0.2.1:3307", "127.0.2.1:8100", "127.0.2.1:9100")
    assert specs["firewall-1"].listen == ("127.0.1.1:80", "127.0.1.1:443", "127.0.1.1:9100")
    assert ("udp", "127.0.3.1", 53) in specs["dns"].binds


def test_monitoring_hops_run_their_modules_and_firewalls_open_9100() -> None:
    topo = topology.load()
    specs = {s.name: s for s in plan(topo, StatePaths(Path("/s")), python="py")}
    assert specs["mon-web-01"].argv[:3] == ("py", "-m", "foobar_ref.monitor.agent")
    assert specs["mon-web-01"].role == "monitor-client" and specs["mon-web-01"].listen == ("127.0.12.1:9100",)
    assert specs["monitor"].argv[:3] == ("py", "-m", "foobar_ref.monitor") and specs["monitor"].listen == (
        "127.0.4.1:9090",
    )
    assert "127.0.2.1:9100" in specs["firewall-2"].listen  # the only way in to the client


def test_a_hop_waits_for_what_it_connects_to_and_the_firewall_in_between() -> None:
    specs = {s.name: s for s in plan(topology.load(), StatePaths(Path("/s")))}
    assert specs["lb-01"].upstreams == ("web-01", "firewall-2", "web-02", "firewall-3")
    assert specs["web-01"].upstreams == ("store-01",)  # same host: no firewall between
    assert specs["store-02"].upstreams == ("db-02", "db-01", "firewall-2")  # writes cross firewall-2
    assert specs["db-02"].upstreams == ("db-01", "firewall-2")  # replication too
    assert specs["dns"].upstreams == ("dns-root", "dns-com", "dns-foobar")
    assert specs["firewall-1"].upstreams == () and specs["dns-root"].upstreams == ()
    assert set(specs["monitor"].upstreams) >= {"mon-lb-01", "mon-web-01", "mon-web-02", "firewall-1"}


def test_each_hop_has_open_file_and_memory_limits() -> None:
    specs = {s.name: s for s in plan(topology.load(), StatePaths(Path("/s")))}
    assert specs["firewall-1"].limits.open_files >= 2 * 1024 + 256  # two sockets per relay, the held drops
    assert specs["db-01"].limits.memory_bytes > specs["web-01"].limits.memory_bytes
    assert all(spec.limits.open_files > 0 and spec.limits.memory_bytes > 0 for spec in specs.values())
