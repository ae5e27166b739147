"""The option file and the account rules, read from a topology (no server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from foobar_ref import topology
from foobar_ref.mysql import config, setup
from tests.mysql.harness import write_topology


def _settings(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_cnf_binds_the_inner_address_and_keeps_every_file_in_the_instance_folder(tmp_path: Path) -> None:
    topo = topology.load()
    paths = config.instance_paths(tmp_path, "db-01")
    cnf = _settings(config.render_cnf(topo, "db-01", paths))
    assert (cnf["bind_address"], cnf["port"]) == ("127.0.12.1", "3307")
    for key in ("datadir", "socket", "pid_file", "log_error", "tmpdir"):
        assert Path(cnf[key]).is_relative_to(tmp_path / "mysql" / "db-01"), key
    assert cnf["read_only"] == "OFF"
    assert cnf["gtid_strict_mode"] == "ON" and cnf["binlog_format"] == "ROW" and cnf["log_slave_updates"] == "ON"
    assert cnf["innodb_flush_log_at_trx_commit"] == "1" and cnf["sync_binlog"] == "1"
    assert cnf["skip_name_resolve"] == "ON"


def test_replica_is_read_only_and_server_ids_differ(tmp_path: Path) -> None:
    topo = topology.load()
    one = _settings(config.render_cnf(topo, "db-01", config.instance_paths(tmp_path, "db-01")))
    two = _settings(config.render_cnf(topo, "db-02", config.instance_paths(tmp_path, "db-02")))
    assert two["read_only"] == "ON"
    assert one["server_id"] != two["server_id"]
    assert two["bind_address"] == "127.0.12.2"


def test_seed_grants_the_host_and_what_its_firewall_relays_from() -> None:
    topo = topology.load()
    # store-02 and the replica reach db-01 through firewall-2, which relays from web-01's public address
    assert setup.allowed_sources(topo, "db-01") == ["127.0.12.1", "127.0.2.1"]
    assert setup.allowed_sources(topo, "db-02") == ["127.0.12.2", "127.0.2.2"]


def test_without_a_firewall_the_connecting_hosts_are_granted(tmp_path: Path) -> None:
    topo = topology.load(write_topology(tmp_path, 3399, 8199))
    assert setup.allowed_sources(topo, "db-01") == ["127.0.52.1", "127.0.52.2"]
    assert setup.allowed_sources(topo, "db-02") == ["127.0.52.2"]


def test_credentials_are_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = setup.credentials(tmp_path)
    assert setup.credentials(tmp_path) == first
    assert first["store"] != first["repl"]
    assert config.credentials_path(tmp_path).stat().st_mode & 0o777 == 0o600


def test_a_hop_that_is_not_mariadb_exits_2(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "foobar_ref.mysql", "--hop", "store-01", "--state", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "not mariadb" in done.stderr
    assert not (tmp_path / "mysql").exists()


def test_stop_kills_what_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
        assert setup.stop(proc.pid, timeout_s=0.5) is False
        assert proc.wait(timeout=5) in (-9, 0)  # reaped by stop(): Popen then reports 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
