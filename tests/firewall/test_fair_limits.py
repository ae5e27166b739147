"""Fair limits: one source at its cap (idle connections included) never starves another; silent relays go first.

Pure tests of core.ConnectionTable, then one firewall process on 127.0.51.200/.210 holding both kinds of
cap: a rule set's `ct count over N` for one source, and the firewall's own per-source default.
"""

from __future__ import annotations

import select
import socket
from pathlib import Path

import pytest

from foobar_ref import topology
from foobar_ref.firewall import rules
from foobar_ref.firewall.core import Command, ConnectionTable, Limits
from tests.firewall.fwutil import WEB_PORT, EchoServer, connect_from, firewall, wait_for, write_topology

PUBLIC, INNER = "127.0.51.200", "127.0.51.210"  # no other firewall test uses these
HOG, OTHER, ROOM_HOG = "127.0.51.220", "127.0.51.221", "127.0.51.222"
RULE_CAP, TABLE = 40, 64
SILENT_S = 4.0
CONNS = "foobar_firewall_connections_total"
RULES = f"""policy drop
tcp dport {WEB_PORT} ip saddr {HOG} ct count over {RULE_CAP} log prefix "test conn limit: " reject
tcp dport {WEB_PORT} accept
"""


def open_table(max_relayed: int = TABLE, **limits: float) -> ConnectionTable:
    ruleset = rules.parse("policy accept\n", "inline")
    return ConnectionTable(ruleset, Limits(max_relayed=max_relayed, **limits))  # type: ignore[arg-type]


def fill(table: ConnectionTable, source: str, count: int, now: float = 0.0) -> list:
    return [table.open((source, 10_000 + n), (PUBLIC, WEB_PORT), now) for n in range(count)]


def test_one_source_holds_at_most_the_table_less_its_reserve() -> None:
    table = open_table()
    assert (table.limits.reserve, table.limits.per_source) == (8, 56)
    opened = fill(table, HOG, 60)
    assert [c.command for c in opened].count(Command.RELAY) == 56
    assert {c.rule for c in opened[56:]} == {"limit: 56 relayed connections per source"}
    assert table.under_pressure
    assert table.open((OTHER, 1), (PUBLIC, WEB_PORT), 0.0).command is Command.RELAY


def test_in_the_reserve_only_sources_under_their_fair_share_get_in() -> None:
    table = open_table(max_per_source=40)
    fill(table, "127.0.0.1", 33)
    fill(table, "127.0.0.2", 23)  # 56 relayed: the last 8 are the reserve
    assert table.open(("127.0.0.2", 1), (PUBLIC, WEB_PORT), 0.0).command is Command.RELAY  # 23 < 64 // 2
    heavy = table.open(("127.0.0.1", 1), (PUBLIC, WEB_PORT), 0.0)
    assert heavy.command is Command.RESET and heavy.rule == "limit: fair share (the last 8 of 64 relays)"
    light = fill(table, "127.0.0.3", 7)  # its share with three sources is 64 // 3 = 21
    assert all(c.command is Command.RELAY for c in light)
    full = table.open(("127.0.0.4", 1), (PUBLIC, WEB_PORT), 0.0)
    assert full.rule == "limit: 64 relayed connections"
    for conn in light:
        table.close(conn, 1.0, "closed both ways")
    assert table.relayed_from("127.0.0.3") == 0 and table.relayed == 57


def test_silent_relays_are_named_only_under_pressure_and_only_if_they_never_sent_a_byte() -> None:
    table = open_table(silent_timeout_s=SILENT_S)
    talking = fill(table, OTHER, 10)
    for conn in talking:
        conn.bytes_in = 100
    quiet = fill(table, HOG, 40)
    assert not table.under_pressure and table.silent(now=100.0) == []
    more = fill(table, HOG, 6, now=50.0)  # 56 relayed: under pressure
    assert table.under_pressure
    assert table.silent(now=SILENT_S - 0.1) == []
    assert {c.id for c in table.silent(now=SILENT_S)} == {c.id for c in quiet}
    assert {c.id for c in table.silent(now=50.0 + SILENT_S)} == {c.id for c in quiet + more}


@pytest.fixture(scope="module")
def fair_firewall(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("fair")
    topo = write_topology(folder, PUBLIC, INNER, rules=RULES)
    topology.load(topo)
    echo = EchoServer((INNER, WEB_PORT)).start()
    extra = ("--max-tracked", str(TABLE), "--silent-timeout-s", str(SILENT_S))
    try:
        with firewall(topo, folder / "state", *extra) as running:
            yield running
    finally:
        echo.stop()


def hold_idle(fw, source: str, count: int) -> tuple[list[socket.socket], list[socket.socket]]:  # type: ignore[no-untyped-def]
    """Open `count` connections that send nothing: (kept, reset at once)."""
    decided = fw.counter(CONNS)
    socks = [connect_from(source, (PUBLIC, WEB_PORT)) for _ in range(count)]
    wait_for(lambda: fw.counter(CONNS) >= decided + count, what="every connection decided")
    readable, _, _ = select.select(socks, [], [], 0.5)  # a reset arrives at once; a relayed idle one says nothing
    for sock in readable:
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    return [s for s in socks if s not in readable], readable


def served(source: str, count: int) -> int:
    answered = 0
    for n in range(count):
        try:
            with connect_from(source, (PUBLIC, WEB_PORT)) as sock:
                sock.sendall(b"ping %d" % n)
                answered += sock.recv(100) == b"ping %d" % n
        except OSError:
            pass
    return answered


def test_a_source_at_its_rule_cap_leaves_room_and_its_rejects_are_logged_and_counted(fair_firewall) -> None:
    kept, reset = hold_idle(fair_firewall, HOG, RULE_CAP + 5)
    try:
        assert (len(kept), len(reset)) == (RULE_CAP, 5)
        assert served(OTHER, 20) == 20
        rule = f'tcp dport {WEB_PORT} ip saddr {HOG} ct count over {RULE_CAP} log prefix "test conn limit: " reject'
        assert fair_firewall.counter(CONNS, action="reject", rule=rule) == 5
        logged = [e for e in fair_firewall.events("decision") if "test conn limit: " in e["line"]]
        assert len(logged) == 5 and all("ACTION=reject" in e["line"] and f"SRC={HOG}" in e["line"] for e in logged)
    finally:
        for sock in kept + reset:
            sock.close()
    wait_for(
        lambda: fair_firewall.counter("foobar_firewall_conntrack_entries", state="established") == 0,
        what="hog's relays closed",
    )


def test_the_default_per_source_cap_leaves_room_and_silent_relays_are_closed_under_pressure(fair_firewall) -> None:
    kept, reset = hold_idle(fair_firewall, ROOM_HOG, TABLE)
    try:
        cap = TABLE - TABLE // 8
        assert (len(kept), len(reset)) == (cap, TABLE - cap)
        assert served(OTHER, 20) == 20
        assert fair_firewall.counter(CONNS, action="reject", rule=f"limit: {cap} relayed connections per source") == 8
        closed = wait_for(
            lambda: [e for e in fair_firewall.events("closed") if e["reason"] == "silent under pressure"],
            timeout_s=SILENT_S + 5,
            what="silent relays closed",
        )
        assert {e["src"].split(":")[0] for e in closed} == {ROOM_HOG}
        readable, _, _ = select.select(kept, [], [], 5.0)
        assert readable and all(sock.recv(1) == b"" for sock in readable)  # closed with a FIN, not reset
    finally:
        for sock in kept + reset:
            sock.close()
