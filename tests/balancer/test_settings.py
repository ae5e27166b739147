"""The balancer's table in the topology: defaults, the seed, and every problem named by file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from foobar_ref import topology
from foobar_ref.topology_balancer import BalancerSettings, CheckSettings, TimeoutSettings
from tests.topologies import host, resolver, service, topology_text


def write(folder: Path, balancer: dict[str, object] | None, web_extra: dict[str, object] | None = None) -> Path:
    options: dict[str, object] = {"backends": ["web-01", "web-02"]}
    if balancer is not None:
        options["balancer"] = balancer
    hosts = [
        host("client", "client", "127.0.60.100"),
        resolver("127.0.60.53", 53),
        host("lb-01", "balancer", "127.0.60.1", services=[service("lb-01", "balancer", {"https": 443}, **options)]),
        host("data", "server", "127.0.60.9", services=[
            service("store-01", "store", {"http": 8100}, read_from="db-01", write_to="db-01"),
            service("db-01", "mariadb", {"mysql": 3307}),
        ]),
        host("web-01", "server", "127.0.60.2",
             services=[service("web-01", "web", {"http": 80}, store="store-01", **(web_extra or {}))]),
        host("web-02", "server", "127.0.60.3", services=[service("web-02", "web", {"http": 80}, store="store-01")]),
    ]  # fmt: skip
    path = folder / "lb.toml"
    path.write_text(topology_text({"domain": "foobar.com", "entry": "lb-01"}, hosts))
    return path


def problems(folder: Path, balancer: dict[str, object], web_extra: dict[str, object] | None = None) -> list[str]:
    with pytest.raises(topology.TopologyError) as caught:
        topology.load(write(folder, balancer, web_extra))
    return caught.value.problems


def test_without_a_balancer_table_every_value_is_the_default_and_all_timeouts_are_named_unset(tmp_path: Path) -> None:
    settings = topology.load(write(tmp_path, None)).service("lb-01").balancer
    assert settings == BalancerSettings(defaulted_timeouts=tuple(TimeoutSettings.__dataclass_fields__))
    assert (settings.check.inter_s, settings.check.fall, settings.check.rise) == (2.0, 3, 2)
    assert settings.queue.timeout_s == settings.timeouts.connect_s == 4.0  # HAProxy: timeout queue = timeout connect


def test_the_seed_spells_every_setting_out_and_keeps_round_robin() -> None:
    settings = topology.load().service("lb-01").balancer
    assert settings is not None
    assert settings.algorithm == "roundrobin" and settings.defaulted_timeouts == ()
    assert settings.weights == {"web-01": 1, "web-02": 1} and settings.workers == 1
    assert settings.timeouts == TimeoutSettings()  # the matrix's table
    assert topology.load().service("web-01").balancer is None


def test_settings_are_read(tmp_path: Path) -> None:
    table = {
        "algorithm": "leastconn",
        "weights": {"web-01": 3, "web-02": 0},
        "check": {"path": "/healthz", "inter_s": 3, "fastinter_s": 1, "fall": 2, "rise": 1, "timeout_s": 2},
        "slowstart_s": 30,
        "maxconn": 64,
        "backend_maxconn": 8,
        "queue": {"size": 10},
        "timeouts": {"connect_s": 2, "server_s": 7},
        "workers": 2,
        "tls": {"session_tickets": False, "session_cache": False},
    }
    settings = topology.load(write(tmp_path, table)).service("lb-01").balancer
    assert settings is not None
    assert settings.check == CheckSettings(True, "/healthz", 3.0, 1.0, None, 2.0, 2, 1)
    assert (settings.weight("web-01"), settings.weight("web-02")) == (3, 0)
    assert settings.queue.size == 10 and settings.queue.timeout_s == 2.0  # follows the connect timeout
    assert settings.timeouts.server_s == 7.0 and "server_s" not in settings.defaulted_timeouts
    assert settings.tls.session_tickets is False and settings.workers == 2 and settings.backend_maxconn == 8


def test_every_problem_is_listed_with_file_and_key(tmp_path: Path) -> None:
    table = {
        "algorithm": "random",
        "weights": {"web-01": 300, "web-09": 1},
        "check": {"fall": 0, "inter_s": 1, "timeout_s": 3, "path": "health", "enabled": "yes", "fastinterval": 1},
        "slowstart_s": -1,
        "maxconn": 0,
        "queue": {"timeout_s": 0},
        "timeouts": {"client_s": "30s"},
        "workers": 65,
        "tls": {"session_tickets": 1},
        "retries": 3,
    }
    found = problems(tmp_path, table)
    key = f"{tmp_path / 'lb.toml'}: hosts[2].services[0].balancer"
    expected = [
        f"{key}.retries: unknown key",
        f"{key}.algorithm: expected one of roundrobin, leastconn, found 'random'",
        f"{key}.timeouts.client_s: expected seconds",
        f"{key}.queue.timeout_s: expected seconds, a number in (0, 86400], found 0",
        f"{key}.weights.web-09: unknown key (expected one of: web-01, web-02)",
        f"{key}.weights.web-01: expected an integer in [0, 256], found 300",
        f"{key}.check.fastinterval: unknown key",
        f"{key}.check.enabled: expected true or false, found 'yes'",
        f"{key}.check.fall: expected an integer in [1, 100], found 0",
        f"{key}.check.path: expected a path starting with '/'",
        f"{key}.check.timeout_s: must not be longer than inter_s",
        f"{key}.slowstart_s: expected seconds, a number in [0, 86400], found -1",
        f"{key}.maxconn: expected an integer in [1, 1000000], found 0",
        f"{key}.workers: expected an integer in [1, 64], found 65",
        f"{key}.tls.session_tickets: expected true or false, found 1",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in found), (line, found)
    assert len(found) == len(expected)


def test_only_a_balancer_has_balancer_settings(tmp_path: Path) -> None:
    found = problems(tmp_path, {}, web_extra={"balancer": {"algorithm": "leastconn"}})
    assert found == [
        f"{tmp_path / 'lb.toml'}: hosts[4].services[0].balancer: only a balancer service has balancer settings "
        "(this one is a web)"
    ]
