"""The firewall's decisions and connection table, driven with plain data (no sockets, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foobar_ref import topology
from foobar_ref.firewall import rules
from foobar_ref.firewall.core import Command, ConnectionTable, Direction, Limits, proxy_v1_line
from foobar_ref.firewall.ruleset import RuleSet

WEB_01 = "127.0.2.1"  # firewall-2 of the seed guards web-01
LB_80 = 'tcp dport 80 ip saddr @lb-01 log prefix "firewall-2 accept: " accept'
WEB_02_3307 = 'tcp dport 3307 ip saddr @web-02 log prefix "firewall-2 accept: " accept'
CLIENT_REJECT = 'ip saddr @client log prefix "firewall-2 reject: " reject'


def seed_rules(name: str = "firewall-2") -> RuleSet:
    return rules.load_for(topology.load(None), name)


@pytest.fixture
def firewall_2() -> RuleSet:
    return seed_rules()


def table(ruleset: RuleSet, **limits: int) -> ConnectionTable:
    return ConnectionTable(ruleset, Limits(**limits))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("src", "port", "action", "rule", "command"),
    [
        ("127.0.1.1", 80, "accept", LB_80, Command.RELAY),
        ("127.0.11.1", 80, "accept", LB_80, Command.RELAY),  # the host's inner address too
        ("127.0.1.1", 3307, "drop", "policy", Command.HOLD),
        ("127.0.2.2", 3307, "accept", WEB_02_3307, Command.RELAY),
        ("127.0.0.10", 80, "reject", CLIENT_REJECT, Command.RESET),
        ("127.0.0.10", 3307, "reject", CLIENT_REJECT, Command.RESET),
        ("127.0.9.9", 80, "drop", "policy", Command.HOLD),
    ],
)
def test_rules_first_match_then_policy(firewall_2, src, port, action, rule, command) -> None:
    conn = table(firewall_2).open((src, 40000), (WEB_01, port), now=100.0)
    assert (conn.action, conn.rule, conn.command) == (action, rule, command)


def test_kernel_style_line_and_record(firewall_2) -> None:
    t = table(firewall_2)
    conn = t.open(("127.0.0.10", 40000), (WEB_01, 80), now=100.0)
    assert conn.log_prefixes == ("firewall-2 reject: ",)
    assert conn.kernel_line(conn.log_prefixes[0]) == (
        f"firewall-2 reject: SRC=127.0.0.10 DST=127.0.2.1 PROTO=TCP SPT=40000 DPT=80 ACTION=reject RULE={CLIENT_REJECT}"
    )
    t.close(conn, now=100.5, reason="reset")
    assert conn.record() == {
        "id": 1, "src": "127.0.0.10:40000", "dst": "127.0.2.1:80", "upstream": None, "action": "reject",
        "rule": CLIENT_REJECT, "bytes_in": 0, "bytes_out": 0, "start": 100.0, "end": 100.5,
        "reason": "reset",
    }  # fmt: skip


def test_relayed_connection_counts_bytes_and_keeps_its_upstream(firewall_2) -> None:
    t = ConnectionTable(firewall_2, next_id=41)
    conn = t.open(("127.0.1.1", 50000), (WEB_01, 80), now=1.0)
    t.connected(conn, (WEB_01, 60000), ("127.0.12.1", 80))
    t.count(conn, Direction.IN, 100)
    t.count(conn, Direction.OUT, 7)
    t.count(conn, Direction.IN, 1)
    assert t.relayed == 1
    closed = t.close(conn, now=3.0, reason="closed both ways")
    assert t.relayed == 0 and t.connections == {}
    record = closed.record()
    assert (record["id"], record["bytes_in"], record["bytes_out"]) == (41, 101, 7)
    assert record["upstream"] == "127.0.2.1:60000->127.0.12.1:80"
    assert t.open(("127.0.1.1", 50001), (WEB_01, 80), now=4.0).id == 42


def test_close_twice_keeps_the_first_reason_and_counts_once(firewall_2) -> None:
    t = table(firewall_2)
    conn = t.open(("127.0.9.9", 1), (WEB_01, 80), now=0.0)
    assert t.held == 1
    t.close(conn, now=1.0, reason="client closed")
    t.close(conn, now=2.0, reason="firewall stopping")
    assert (t.held, conn.ended, conn.reason) == (0, 1.0, "client closed")


def test_held_connections_are_capped_then_closed(firewall_2) -> None:
    t = table(firewall_2, max_held=2)
    first, second = (t.open(("127.0.9.9", p), (WEB_01, 80), now=0.0) for p in (1, 2))
    third = t.open(("127.0.9.9", 3), (WEB_01, 80), now=0.0)
    assert [c.command for c in (first, second, third)] == [Command.HOLD, Command.HOLD, Command.CLOSE]
    assert third.action == "drop" and "limit: 2 held" in third.rule
    t.close(third, now=0.0, reason="closed")
    t.close(first, now=1.0, reason="client closed")
    assert t.open(("127.0.9.9", 4), (WEB_01, 80), now=1.0).command is Command.HOLD


def test_relays_are_capped_with_a_reset(firewall_2) -> None:
    t = table(firewall_2, max_relayed=1)
    assert t.open(("127.0.1.1", 1), (WEB_01, 80), now=0.0).command is Command.RELAY
    over = t.open(("127.0.1.1", 2), (WEB_01, 80), now=0.0)
    assert (over.action, over.command, over.rule) == ("reject", Command.RESET, "limit: 1 relayed connections")


def test_proxy_v1_line() -> None:
    line = proxy_v1_line(("127.0.0.10", 40000), ("127.0.1.1", 443))
    assert line == b"PROXY TCP4 127.0.0.10 127.0.1.1 40000 443\r\n"


def test_direction_suffixes() -> None:
    assert (Direction.IN.suffix, Direction.OUT.suffix) == ("c2s", "s2c")


_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("open"), st.sampled_from(["127.0.1.1", "127.0.0.10", "127.0.9.9"]), st.sampled_from([80, 22])
        ),
        st.tuples(st.just("close"), st.integers(min_value=0, max_value=50), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(steps=_steps)
def test_limits_hold_for_any_sequence(steps) -> None:
    t = table(seed_rules(), max_held=3, max_relayed=2)
    opened = []
    for kind, a, b in steps:
        if kind == "open":
            opened.append(t.open((a, 1000 + len(opened)), (WEB_01, b), now=float(len(opened))))
        elif opened:
            t.close(opened[a % len(opened)], now=99.0, reason="test")
        assert 0 <= t.held <= 3 and 0 <= t.relayed <= 2
        assert t.held == sum(c.command is Command.HOLD for c in t.connections.values())
        assert t.relayed == sum(c.command is Command.RELAY for c in t.connections.values())
    assert [c.id for c in opened] == list(range(1, len(opened) + 1))
    assert sum(t.from_source(ip) for ip in ("127.0.1.1", "127.0.0.10", "127.0.9.9")) == len(t.connections)


def test_closed_connections_add_their_bytes_to_the_deciding_rule(firewall_2) -> None:
    t = table(firewall_2)
    conn = t.open(("127.0.1.1", 50000), (WEB_01, 80), now=1.0)
    t.count(conn, Direction.IN, 10)
    t.count(conn, Direction.OUT, 20)
    rule = firewall_2.rules[0]
    assert (rule.counter.connections, rule.counter.bytes_in) == (1, 0)  # bytes are added when it ends
    t.close(conn, now=2.0, reason="closed both ways")
    assert (rule.counter.connections, rule.counter.bytes_in, rule.counter.bytes_out) == (1, 10, 20)
    t.open(("127.0.9.9", 1), (WEB_01, 80), now=3.0)
    assert firewall_2.policy_counter.connections == 1


def test_replaced_rule_set_decides_new_connections_only(firewall_2) -> None:
    t = table(firewall_2)
    kept = t.open(("127.0.1.1", 50000), (WEB_01, 80), now=1.0)
    t.replace(rules.parse("policy reject\n", "new.rules"))
    assert t.open(("127.0.1.1", 50001), (WEB_01, 80), now=2.0).command is Command.RESET
    assert t.connections[kept.id].command is Command.RELAY  # tracked: not decided again
    t.count(kept, Direction.IN, 5)
    t.close(kept, now=3.0, reason="closed both ways")
    assert firewall_2.rules[0].counter.bytes_in == 5  # counted where it was decided, not in the new set
