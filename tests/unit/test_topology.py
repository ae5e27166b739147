"""The topology model: the seed loads, and every kind of mistake is named with file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from foobar_ref import topology
from foobar_ref.topology import TopologyError, default_path


def seed_text() -> str:
    return default_path().read_text()


def load_text(tmp_path: Path, text: str) -> topology.Topology:
    (tmp_path / "foobar.com.zone").write_text((default_path().parent / "foobar.com.zone").read_text())
    for rules in default_path().parent.glob("firewall-*.rules"):
        (tmp_path / rules.name).write_text(rules.read_text())
    path = tmp_path / "t.toml"
    path.write_text(text)
    return topology.load(path)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(TopologyError) as refused:
        load_text(tmp_path, text)
    return refused.value.problems


def test_seed_describes_the_three_server_infrastructure() -> None:
    # The firewalls' rule files are read and tested by the firewall's own tests (tests/firewall/test_seed_rules.py).
    topo = topology.load()
    assert topo.site_url == "https://www.foobar.com/"
    assert topo.resolver == ("127.0.3.1", 53)
    assert topo.service("lb-01").backends == ("web-01", "web-02")
    assert topo.listen("web-01", "http") == ("127.0.12.1", 80)
    assert topo.reach("web-01", "http") == ("127.0.2.1", 80)
    assert topo.source_for("store-02") == "127.0.2.2"
    assert topo.service("db-02").replica_of == "db-01"
    assert topo.service("store-02").write_to == "db-01" and topo.service("store-02").read_from == "db-02"
    assert topo.firewall_of("lb-01").name == "firewall-1"
    assert topo.client_host().address == "127.0.0.10"


def test_mistyped_key_names_file_and_key(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, seed_text().replace('address = "127.0.2.1"', 'adress = "127.0.2.1"'))
    assert any(str(tmp_path / "t.toml") in p and "hosts[6].adress" in p and "unknown key" in p for p in problems)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('address = "127.0.2.2"', 'address = "10.0.0.1"', "hosts[7].address: expected an address in 127.0.0.0/8"),
        ('address = "127.0.2.2"', 'address = "127.0.0.300"', "hosts[7].address: expected an IPv4 address"),
        ('address = "127.0.2.2"', 'address = "127.0.2.1"', "hosts[7].address: duplicate address 127.0.2.1"),
        (
            'ports = { http = 8100 }\n  read_from = "db-02"',
            'ports = { http = 70000 }\n  read_from = "db-02"',
            "ports.http: port out of range",
        ),
        (
            'backends = ["web-01", "web-02"]',
            'backends = ["web-01", "web-99"]',
            "backends[1]: unknown web service 'web-99'",
        ),
        ('role = "server"', 'role = "sever"', "hosts[6].role: expected one of"),
        ('rules_file = "firewall-2.rules"', 'rules_file = "firewall-9.rules"', "firewalls[1].rules_file: no such file"),
        ('rules_file = "firewall-3.rules"', "rules = [1]", "firewalls[2].rules: expected the rule set as text"),
        ('rules_file = "firewall-3.rules"', 'policy = "drop"', "firewalls[2].policy: unknown key"),
    ],
)
def test_each_mistake_is_named(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in seed_text()
    problems = problems_of(tmp_path, seed_text().replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    text = seed_text().replace('role = "server"', 'role = "sever"').replace("zone_file", "zonefile")
    assert len(problems_of(tmp_path, text)) >= 3


def test_not_toml_is_refused_with_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "[site\n")
    assert "not valid TOML" in problems[0] and "line 1" in problems[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="no such file"):
        topology.load(tmp_path / "nope.toml")
