"""Rule sets in a running firewall: reload (SIGHUP and admin socket), broken files, rate limits, the fw CLI."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foobar_ref.cli import app
from tests.firewall.fwutil import (
    CLIENT,
    FRONT,
    HOP,
    STORE_PORT,
    WEB_PORT,
    EchoServer,
    Running,
    connect_from,
    firewall,
    refused_at_once,
    start_firewall,
    wait_for,
    write_rules,
    write_topology,
)

RULE_CONNS = "foobar_firewall_rule_connections_total"
RULE_BYTES = "foobar_firewall_rule_bytes_total"
FORBID_WEB = f"""policy drop
tcp dport {WEB_PORT} ip saddr @front log prefix "now forbidden: " reject
"""
BROKEN = "policy drop\ntcp dport 80 accept\nip saddr 10.0.0.0/33 accept\n"
FLOWS = 200  # W-10: established flows that must survive a reload


_ADDRESSES = itertools.count(40)


@pytest.fixture
def pair() -> tuple[str, str]:
    """A public/inner address pair per test (127.0.51.40+ / .60+), so tests never share a port."""
    index = next(_ADDRESSES)
    return f"127.0.51.{index}", f"127.0.51.{index + 20}"


def echo_once(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return sock.recv(len(payload))


def reload_via(fw: Running, how: str) -> tuple[int, str]:
    if how == "admin":
        return fw.admin("POST", "/reload")
    ok, failed = len(fw.events("reloaded")), len(fw.events("reload_failed"))
    os.kill(fw.process.pid, signal.SIGHUP)
    wait_for(lambda: len(fw.events("reloaded")) + len(fw.events("reload_failed")) > ok + failed, what="reload logged")
    if len(fw.events("reload_failed")) > failed:
        return 409, fw.events("reload_failed")[-1]["error"]
    return 200, ""


@pytest.mark.parametrize("how", ["admin", "sighup"])
def test_reload_keeps_established_flows_and_refuses_new_ones(tmp_path: Path, pair, how: str) -> None:
    public, inner = pair
    server = EchoServer((inner, WEB_PORT)).start()
    try:
        with firewall(write_topology(tmp_path, public, inner), tmp_path / "state") as fw:
            flows = [connect_from(FRONT, (public, WEB_PORT), timeout_s=5) for _ in range(FLOWS)]
            assert all(echo_once(s, b"before") == b"before" for s in flows)
            assert fw.counter(RULE_CONNS, handle="1") == FLOWS
            write_rules(tmp_path, FORBID_WEB)
            code, answer = reload_via(fw, how)
            assert code == 200, answer
            assert all(echo_once(s, b"after") == b"after" for s in flows)  # established: not decided again
            assert refused_at_once(FRONT, (public, WEB_PORT)) < 1.0  # new: the new rules
            assert fw.counter(RULE_CONNS, handle="1") == 1  # counters restart with the new rule set
            assert fw.counter(RULE_CONNS, rule='tcp dport 18080 ip saddr @front log prefix "now forbidden: " reject')
            assert any(e["line"].startswith("now forbidden: SRC=127.0.51.1") for e in fw.events("decision"))
            assert len(fw.tracked()) == FLOWS
            for sock in flows:
                sock.close()
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["admin", "sighup"])
def test_broken_reload_keeps_the_old_rules_and_says_where(tmp_path: Path, pair, how: str) -> None:
    public, inner = pair
    server = EchoServer((inner, WEB_PORT)).start()
    try:
        with firewall(write_topology(tmp_path, public, inner), tmp_path / "state") as fw:
            with connect_from(FRONT, (public, WEB_PORT)) as sock:
                assert echo_once(sock, b"x") == b"x"
            before = fw.admin("GET", "/ruleset")[1]
            write_rules(tmp_path, BROKEN)
            code, answer = reload_via(fw, how)
            assert code == 409
            assert f"{tmp_path / 'fw.rules'}:3:10: prefix length out of range" in answer
            assert "fw.rules:3:10" in fw.events("reload_failed")[-1]["error"]
            with connect_from(FRONT, (public, WEB_PORT)) as sock:
                assert echo_once(sock, b"y") == b"y"  # the old rules still decide
            after = fw.admin("GET", "/ruleset")[1]
            assert _without_counters(after) == _without_counters(before) and fw.counter(RULE_CONNS, handle="1") == 2
    finally:
        server.stop()


def _without_counters(listing: str) -> list[str]:
    return [re.sub(r"^\s*\S+\s+\S+\s+\d+\s+\d+\s+\d+  ", "", line) for line in listing.splitlines()[2:]]


def test_a_broken_rule_file_stops_the_start_with_exit_2(tmp_path: Path, pair) -> None:
    public, inner = pair
    topo = write_topology(tmp_path, public, inner, rules="policy drop\n\ntcp dport 80 permit\n")
    with pytest.raises(AssertionError, match="exited 2") as failed:
        start_firewall(topo, tmp_path / "state")
    assert f"rule set refused, not starting: {tmp_path / 'fw.rules'}:3:14: expected a match" in str(failed.value)
    assert "READY" not in str(failed.value)
    with socket.socket() as probe:  # nothing listens
        assert probe.connect_ex((public, WEB_PORT)) != 0


def test_a_flooding_source_is_refused_while_another_gets_through(tmp_path: Path, pair) -> None:
    public, inner = pair
    rules = f"""policy drop
tcp dport {WEB_PORT} limit rate over 1/minute burst 5 packets log prefix "flood: " reject
tcp dport {WEB_PORT} accept
"""
    server = EchoServer((inner, WEB_PORT)).start()
    try:
        with firewall(write_topology(tmp_path, public, inner, rules=rules), tmp_path / "state") as fw:
            outcomes = []
            for _ in range(12):
                try:
                    with connect_from(CLIENT, (public, WEB_PORT)) as sock:
                        outcomes.append(echo_once(sock, b"hi") == b"hi")
                except ConnectionResetError:
                    outcomes.append(False)
            assert outcomes == [True] * 5 + [False] * 7
            with connect_from(FRONT, (public, WEB_PORT)) as sock:
                assert echo_once(sock, b"other") == b"other"
            assert fw.counter(RULE_CONNS, handle="1") == 7 and fw.counter(RULE_CONNS, handle="2") == 6
            assert fw.counter("foobar_firewall_connections_total", action="reject") == 7
            assert len([e for e in fw.events("decision") if e["line"].startswith(f"flood: SRC={CLIENT}")]) == 7
    finally:
        server.stop()


def test_fw_cli_lists_counters_shows_conntrack_and_reports_a_broken_reload(tmp_path: Path, pair) -> None:
    public, inner = pair
    server = EchoServer((inner, WEB_PORT)).start()
    runner = CliRunner()
    state = tmp_path / "state"
    try:
        with firewall(write_topology(tmp_path, public, inner), state) as fw, \
                connect_from(FRONT, (public, WEB_PORT)) as sock:  # fmt: skip
            assert echo_once(sock, b"12345") == b"12345"
            wait_for(lambda: fw.counter(RULE_BYTES, handle="1", direction="in") == 5, what="live bytes counted")
            listed = runner.invoke(app, ["fw", "list", HOP, "--state", str(state)])
            assert listed.exit_code == 0, listed.output
            row = next(line for line in listed.output.splitlines() if line.strip().startswith("1 "))
            assert row.split()[:5] == ["1", "3", "1", "5", "5"]  # handle, line, connections, bytes in, out
            assert row.endswith(f'tcp dport {WEB_PORT} ip saddr @front accept comment "web"')
            assert "policy drop" in listed.output and "@front { 127.0.51.1 }  (host)" in listed.output
            tracked = runner.invoke(app, ["fw", "conntrack", HOP, "--state", str(state)])
            assert tracked.exit_code == 0
            assert "tcp ESTABLISHED" in tracked.output and f"src={FRONT} dst={public}" in tracked.output
            assert f"upstream src={public} dst={inner}" in tracked.output and "bytes_in=5 bytes_out=5" in tracked.output
            write_rules(tmp_path, "tcp dport 80 accept\n")
            refused = runner.invoke(app, ["fw", "reload", HOP, "--state", str(state)])
            assert refused.exit_code == 1 and "fw.rules:2:1: missing 'policy" in refused.output
            write_rules(tmp_path, f"policy drop\ntcp dport {STORE_PORT} accept\n")
            done = runner.invoke(app, ["fw", "reload", HOP, "--state", str(state)])
            assert done.exit_code == 0 and "reloaded: 1 rules" in done.output
            assert echo_once(sock, b"still") == b"still"
    finally:
        server.stop()
    gone = runner.invoke(app, ["fw", "list", HOP, "--state", str(state)])
    assert gone.exit_code == 1 and "not running" in gone.output
