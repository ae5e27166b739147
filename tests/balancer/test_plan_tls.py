"""The launcher's plan gives the balancer, and only it, the OpenSSL configuration in its environment."""

from __future__ import annotations

from pathlib import Path

from foobar_ref import tls_profile, topology
from foobar_ref.launcher.plan import StatePaths, plan


def test_only_the_balancer_gets_openssl_conf_naming_the_state_folders_file(tmp_path: Path) -> None:
    state = StatePaths(tmp_path)
    specs = {spec.name: spec for spec in plan(topology.load(), state)}
    assert specs["lb-01"].env == (("OPENSSL_CONF", str(tmp_path / "tls" / "openssl.cnf")),)
    assert all(spec.env == () for name, spec in specs.items() if name != "lb-01")
    assert state.ticket_keys == tmp_path / "tls" / "ticket.keys"


def test_the_files_the_launcher_writes_there(tmp_path: Path) -> None:
    state = StatePaths(tmp_path)
    conf = tls_profile.write_openssl_conf(state.openssl_conf).read_text()
    assert "Groups = X25519:prime256v1:secp384r1" in conf and "system_default = foobar_ref_tls" in conf
    keys = tls_profile.ensure_ticket_keys(state.ticket_keys)
    first = keys.read_bytes()
    assert len(first) == 80 and keys.stat().st_mode & 0o777 == 0o600
    assert tls_profile.ensure_ticket_keys(state.ticket_keys).read_bytes() == first  # kept across restarts
    keys.write_bytes(b"short")
    assert len(tls_profile.ensure_ticket_keys(state.ticket_keys).read_bytes()) == 80  # a broken file is replaced
