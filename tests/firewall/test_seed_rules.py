"""The seed's rule sets (foobar_ref/topologies/firewall-*.rules), evaluated against the seed topology's hosts."""

from __future__ import annotations

import pytest

from foobar_ref import topology
from foobar_ref.firewall import rules
from foobar_ref.firewall.ruleset import Packet, RuleSet

SEED = topology.load()


def decide(firewall: str, source_host: str, port: int, inner: bool = False) -> str:
    ruleset = rules.load_for(SEED, firewall)
    host = SEED.host(source_host)
    source = host.inner if inner and host.inner else host.address
    guarded = SEED.host(SEED.firewall(firewall).guards).address
    return ruleset.evaluate(Packet(source, 40000, guarded, port, now=0.0)).action


def test_every_seed_firewall_reads_its_rule_file_without_warnings() -> None:
    for fw in SEED.firewalls:
        assert fw.rules_file is not None and fw.rules_file.name == f"{fw.name}.rules"
        ruleset = rules.load_for(SEED, fw.name)
        assert isinstance(ruleset, RuleSet) and ruleset.policy == "drop" and ruleset.warnings == ()
    fw1 = SEED.firewall("firewall-1")
    assert fw1.sends_proxy_line(443) and fw1.sends_proxy_line(80) and not fw1.sends_proxy_line(9100)


@pytest.mark.parametrize(
    ("firewall", "source", "port", "expected"),
    [
        # firewall-1 (lb-01): the site from anywhere, monitoring from the monitor host only
        ("firewall-1", "client", 443, "accept"),
        ("firewall-1", "client", 80, "accept"),
        ("firewall-1", "monitor", 9100, "accept"),
        ("firewall-1", "client", 9100, "drop"),
        ("firewall-1", "client", 22, "drop"),
        # firewall-2 (web-01, store-01, db-01): the balancer's http, web-02's MariaDB, monitoring
        ("firewall-2", "lb-01", 80, "accept"),
        ("firewall-2", "web-02", 3307, "accept"),
        ("firewall-2", "monitor", 9100, "accept"),
        ("firewall-2", "client", 80, "reject"),  # a learner sees a reset
        ("firewall-2", "client", 8100, "reject"),
        ("firewall-2", "client", 3307, "reject"),
        ("firewall-2", "lb-01", 3307, "drop"),  # the balancer never reaches the database...
        ("firewall-2", "lb-01", 8100, "drop"),  # ...nor the store
        ("firewall-2", "web-02", 8100, "drop"),
        ("firewall-2", "monitor", 80, "drop"),
        # firewall-3 (web-02, store-02, db-02)
        ("firewall-3", "lb-01", 80, "accept"),
        ("firewall-3", "monitor", 9100, "accept"),
        ("firewall-3", "client", 80, "reject"),
        ("firewall-3", "client", 3307, "reject"),
        ("firewall-3", "lb-01", 3307, "drop"),
        ("firewall-3", "lb-01", 8100, "drop"),
        ("firewall-3", "web-01", 3307, "drop"),  # only web-02 reaches a database, and only the primary
    ],
)
def test_seed_rules(firewall: str, source: str, port: int, expected: str) -> None:
    assert decide(firewall, source, port) == expected


def test_a_host_set_holds_the_inner_address_too() -> None:
    assert decide("firewall-2", "lb-01", 80, inner=True) == "accept"


@pytest.mark.parametrize("firewall", ["firewall-2", "firewall-3"])
@pytest.mark.parametrize("port", [8100, 3307])
def test_store_and_database_unreachable_from_client_and_balancer(firewall: str, port: int) -> None:
    assert decide(firewall, "client", port) == "reject"
    assert decide(firewall, "lb-01", port) == "drop"


def test_firewall_1_refuses_one_flooding_source_but_not_another() -> None:
    ruleset = rules.load_for(SEED, "firewall-1")
    flood = [ruleset.evaluate(Packet("127.0.0.10", p, "127.0.1.1", 443, now=0.0)).action for p in range(2100)]
    assert flood[:2000] == ["accept"] * 2000 and set(flood[2000:]) == {"reject"}
    assert ruleset.evaluate(Packet("127.0.4.1", 1, "127.0.1.1", 443, now=0.0)).action == "accept"
