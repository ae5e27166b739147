"""The rule language: parse/canonical triples, table-driven evaluation, located errors, the reliability rows.

Rows W-01..W-11 of the reliability matrix are marked where they are tested (W-10, a reload while
connections flow, is in test_reload.py since it needs real sockets).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foobar_ref.firewall import rules
from foobar_ref.firewall.core import Command, ConnectionTable, Limits
from foobar_ref.firewall.rules import RuleError
from foobar_ref.firewall.ruleset import MAX_LIMIT_SOURCES, Packet, RuleSet

HOSTS = {"lb-01": ("127.0.1.1", "127.0.11.1"), "client": ("127.0.0.10",)}
DST = "127.0.2.1"

# input;ok|fail[;canonical listing]  -- as nftables tests/py does (no canonical: the input is canonical)
TRIPLES = """
tcp dport 80 accept;ok
tcp dport 80 drop;ok
tcp dport {443, 80} accept;ok;tcp dport { 80, 443 } accept
tcp dport 80,443 accept;ok;tcp dport { 80, 443 } accept
tcp dport 8000-8100 accept;ok
tcp dport != 22 accept;ok
tcp sport 1-1023 drop;ok
udp dport 53 accept;ok
tcp dport 0 accept;fail
tcp dport 65536 accept;fail
tcp dport 80-70 accept;fail
tcp dport http accept;fail
tcp dport accept;fail
ip saddr 10.0.0.0/8 accept;ok
ip saddr 10.0.0.1/32 accept;ok;ip saddr 10.0.0.1 accept
ip saddr 0.0.0.0/0 accept;ok
ip saddr 10.0.0.1/24 accept;fail
ip saddr 10.0.0.0/33 accept;fail
ip saddr 300.1.1.1 accept;fail
ip saddr 10.0.0 accept;fail
ip saddr != 10.0.0.0/8 drop;ok
ip saddr {10.0.0.1,192.168.0.0/16} accept;ok;ip saddr { 10.0.0.1, 192.168.0.0/16 } accept
ip saddr @lb-01 accept;ok
ip daddr 127.0.2.1 accept;ok
ip saddr @nope accept;fail
ip protocol tcp accept;ok
meta l4proto tcp accept;ok;ip protocol tcp accept
ip protocol tcpp accept;fail
ct state new accept;ok
ct state established,new accept;ok;ct state new,established accept
ct state { new } accept;ok;ct state new accept
ct state related accept;fail
ct count over 3 reject;ok
ct count 2 accept;ok
ct count 0 accept;fail
limit rate 20/second accept;ok;limit rate 20/second burst 5 packets accept
limit rate over 10/minute burst 3 packets drop;ok
limit rate 10/hour burst 7 accept;ok;limit rate 10/hour burst 7 packets accept
limit rate 0/second accept;fail
limit rate 10/second burst 0 packets accept;fail
limit rate 10/fortnight accept;fail
limit 10/second accept;fail
log prefix "x: " accept;ok
log;ok
counter;ok
counter accept;ok;accept
tcp dport 22 log prefix "ssh: " drop comment "no ssh";ok
reject with tcp reset;ok;reject
reject with icmp;fail
permit;fail
tcp dport 80 permit;fail
tcpp dport 80 accept;fail
accept tcp dport 80;fail
log tcp dport 80 accept;fail
tcp dport 80;fail
accept comment;fail
accept comment "unterminated;fail
accept drop;fail
"""


def _triples() -> list[tuple[str, str, str]]:
    rows = []
    for line in TRIPLES.strip().splitlines():
        text, outcome, *canonical = line.split(";")
        rows.append((text, outcome, canonical[0] if canonical else text))
    return rows


def ruleset(text: str) -> RuleSet:
    return rules.parse(text, "test.rules", HOSTS)


def decide(rs: RuleSet, src: str, port: int, now: float = 0.0, state: str = "new", from_source: int = 0):  # type: ignore[no-untyped-def]
    decision = rs.evaluate(Packet(src, 40000, DST, port, now, from_source, state))
    return decision.action, (decision.rule.handle if decision.rule else "policy")


@pytest.mark.parametrize(("text", "outcome", "canonical"), _triples())
def test_rule_parses_to_its_canonical_form_or_fails_located(text: str, outcome: str, canonical: str) -> None:
    if outcome == "fail":
        with pytest.raises(RuleError) as refused:
            ruleset(f"policy drop\n{text}\n")
        assert (refused.value.source, refused.value.line) == ("test.rules", 2) and refused.value.column >= 1
        assert str(refused.value).startswith(f"test.rules:2:{refused.value.column}: ")
        return
    listed = ruleset(f"policy drop\n{text}\n").rules[0].text
    assert listed == canonical
    assert ruleset(f"policy drop\n{listed}\n").rules[0].text == listed  # the listing reads back the same


FIRST_MATCH = """
set admins { 10.1.0.0/16, 10.2.3.4 }
policy drop
tcp dport 22 ip saddr @admins accept
tcp dport 22 reject
tcp dport { 80, 443 } accept
tcp dport 8000-8100 ip saddr != 10.0.0.0/8 reject
tcp dport 8000-8100 accept
ip saddr @lb-01 tcp dport 9000 accept
ct state established accept
log prefix "dropped: "
"""


@pytest.mark.parametrize(
    ("src", "port", "state", "action", "handle"),
    [
        ("10.1.200.3", 22, "new", "accept", 1),  # in the set's network
        ("10.2.3.4", 22, "new", "accept", 1),  # the set's single address
        ("10.2.3.5", 22, "new", "reject", 2),  # first match: the later reject
        ("192.0.2.1", 443, "new", "accept", 3),
        ("192.0.2.1", 80, "new", "accept", 3),
        ("192.0.2.1", 81, "new", "drop", "policy"),
        ("192.0.2.1", 8000, "new", "reject", 4),  # range start, negated network
        ("10.9.9.9", 8100, "new", "accept", 5),  # range end, inside 10/8
        ("10.9.9.9", 8101, "new", "drop", "policy"),
        ("127.0.11.1", 9000, "new", "accept", 6),  # a host set holds the inner address too
        ("127.0.1.2", 9000, "new", "drop", "policy"),
        ("192.0.2.1", 81, "established", "accept", 7),
    ],
)
def test_first_match_wins_then_the_policy(src: str, port: int, state: str, action: str, handle: object) -> None:
    assert decide(ruleset(FIRST_MATCH), src, port, state=state) == (action, handle)


def test_log_rules_count_and_log_but_do_not_decide() -> None:
    rs = ruleset(FIRST_MATCH)
    decision = rs.evaluate(Packet("192.0.2.1", 5, DST, 81, 0.0))
    assert decision.action == "drop" and decision.rule is None
    assert [r.log_prefix for r in decision.logged or []] == ["dropped: "]
    assert rs.rules[-1].counter.connections == 1 and rs.policy_counter.connections == 1
    line = decision.kernel_line(Packet("192.0.2.1", 5, DST, 81, 0.0), "dropped: ")
    assert line == "dropped: SRC=192.0.2.1 DST=127.0.2.1 PROTO=TCP SPT=5 DPT=81 ACTION=drop RULE=policy"


def test_rate_limit_with_burst_per_source_and_injected_clock() -> None:
    rs = ruleset("policy drop\ntcp dport 80 limit rate over 2/second burst 3 packets reject\ntcp dport 80 accept\n")
    a, b = "192.0.2.1", "192.0.2.2"
    assert [decide(rs, a, 80, now=0.0)[0] for _ in range(4)] == ["accept"] * 3 + ["reject"]  # the burst, then over
    assert decide(rs, b, 80, now=0.0)[0] == "accept"  # another source has its own bucket
    assert [decide(rs, a, 80, now=0.5)[0] for _ in range(2)] == ["accept", "reject"]  # 0.5 s at 2/s = 1 token
    assert [decide(rs, a, 80, now=10.0)[0] for _ in range(4)] == ["accept"] * 3 + ["reject"]  # refilled to the burst


def test_rate_limit_without_over_matches_while_within() -> None:
    rs = ruleset("policy reject\ntcp dport 80 limit rate 1/minute burst 1 packets accept\n")
    assert [decide(rs, "192.0.2.1", 80, now=t)[0] for t in (0.0, 1.0, 61.0)] == ["accept", "reject", "accept"]


def test_rate_limit_buckets_are_bounded() -> None:
    rs = ruleset("policy drop\nlimit rate over 1/second reject\naccept\n")
    for i in range(MAX_LIMIT_SOURCES + 10):
        decide(rs, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 80)
    assert len(rs.rules[0].matches[0].buckets) == MAX_LIMIT_SOURCES  # type: ignore[attr-defined]


def test_connection_limit_per_source_through_the_table() -> None:
    t = ConnectionTable(ruleset("policy drop\nct count over 2 reject\naccept\n"), Limits())
    first, second = (t.open(("192.0.2.1", p), (DST, 80), now=0.0) for p in (1, 2))
    third = t.open(("192.0.2.1", 3), (DST, 80), now=0.0)
    assert [c.command for c in (first, second, third)] == [Command.RELAY, Command.RELAY, Command.RESET]
    assert t.open(("192.0.2.2", 1), (DST, 80), now=0.0).command is Command.RELAY  # another source
    t.close(third, now=0.0, reason="reset")
    t.close(first, now=1.0, reason="closed both ways")
    assert t.open(("192.0.2.1", 4), (DST, 80), now=1.0).command is Command.RELAY


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("policy drop\n\ntcp dport 80 permit\n", 3, 14, "expected a match, log, counter, a verdict"),
        ("policy drop\nip saddr 10.0.0.0/33 accept\n", 2, 10, "prefix length out of range (expected 0-32, found 33)"),
        ("policy drop\ntcp dport 70000 accept\n", 2, 11, "port out of range (expected 1-65535, found 70000)"),
        ("policy drop\nip saddr @lb-02 accept\n", 2, 10, "unknown set '@lb-02' (known: @client, @lb-01)"),
        ("tcp dport 80 accept\n", 2, 1, "missing 'policy accept|drop|reject'"),
        ("policy drop\npolicy accept\n", 2, 1, "a second 'policy' line"),
        ("policy permit\n", 1, 8, "expected a policy (accept, drop or reject), found 'permit'"),
        ("policy drop\nset lb-01 { 10.0.0.1 }\n", 2, 5, "set 'lb-01' is already defined"),
        ("policy drop\nset x { 10.0.0.1\naccept\n", 3, 1, "expected '}', found 'accept'"),
        (
            "policy drop\n\tip saddr 1.2.3.4 accept }\n",
            2,
            26,
            "expected end of line or comment after the verdict, found '}'",
        ),
        ("policy drop\naccept $\n", 2, 8, "unexpected character '$'"),
        ('policy drop\naccept comment "x\ny"\n', 2, 16, "unterminated string"),
    ],
)
def test_broken_files_name_line_column_and_what_was_expected(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(RuleError) as refused:
        ruleset(text)
    assert (refused.value.line, refused.value.column) == (line, column), str(refused.value)
    assert message in refused.value.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "   \t\n# a\n\n"])
def test_w01_empty_or_comment_only_file_is_refused_never_allow_all(text: str) -> None:
    with pytest.raises(RuleError, match="missing 'policy"):
        ruleset(text)


def test_w06_an_error_on_line_1000_applies_nothing() -> None:
    old = ruleset("policy drop\ntcp dport 80 accept\n")
    t = ConnectionTable(old, Limits())
    t.open(("192.0.2.1", 1), (DST, 80), now=0.0)
    text = "policy accept\n" + "tcp dport 80 drop\n" * 998 + "tcp dport 80 permit\n"
    with pytest.raises(RuleError) as refused:
        t.replace(ruleset(text))
    assert refused.value.line == 1000
    assert t.ruleset is old and old.rules[0].counter.connections == 1  # old rules and counters untouched
    assert t.open(("192.0.2.1", 2), (DST, 80), now=0.0).action == "accept"


def test_w07_crlf_bom_tabs_and_trailing_spaces_read_the_same() -> None:
    plain = "set a { 10.0.0.1, 10.0.0.2 }\npolicy drop\ntcp dport 80 ip saddr @a accept # web\nlog\n"
    messy = "\ufeff" + plain.replace("\n", "  \t\r\n").replace(" ip saddr", "\tip\tsaddr")
    split_set = plain.replace("{ 10.0.0.1, 10.0.0.2 }", "{\r\n  10.0.0.1,\r\n  10.0.0.2\r\n}")
    assert ruleset(messy).canonical() == ruleset(plain).canonical() == ruleset(split_set).canonical()
    assert rules.parse_bytes(messy.encode(), "x.rules").canonical() == ruleset(plain).canonical()


def test_w08_rules_after_a_catch_all_load_with_a_warning() -> None:
    rs = ruleset("policy accept\ntcp dport 22 accept\ndrop\ntcp dport 80 accept\n")
    assert rs.warnings == ("line 4: unreachable rule (line 3 matches every connection first)",)
    assert decide(rs, "192.0.2.1", 80) == ("drop", 2)  # first match still wins
    assert decide(rs, "192.0.2.1", 22) == ("accept", 1)


def test_warnings_for_matches_a_tcp_proxy_never_sees() -> None:
    rs = ruleset("policy drop\nudp dport 53 accept\nct state established accept\n")
    assert [w.split(":")[0] for w in rs.warnings] == ["line 2", "line 3"]


def test_w09_one_hundred_thousand_rules_load_fast_and_decisions_are_timed() -> None:
    count = 100_000
    lines = [
        f"tcp dport {1 + i % 60000} ip saddr 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} accept" for i in range(count)
    ]
    text = "policy drop\n" + "\n".join(lines) + "\n"
    started = time.perf_counter()
    rs = ruleset(text)
    load_s = time.perf_counter() - started
    assert len(rs.rules) == count and load_s < 5.0
    started = time.perf_counter()
    worst = decide(rs, "192.0.2.1", 80)  # no rule matches: every rule is looked at
    decision_s = time.perf_counter() - started
    first = decide(rs, "10.0.0.0", 1)
    print(f"\nW-09: {count} rules loaded in {load_s:.2f} s; worst-case decision {decision_s * 1000:.1f} ms")
    assert worst == ("drop", "policy") and first == ("accept", 1)
    assert decision_s < 1.0


def test_non_utf8_bytes_are_located() -> None:
    with pytest.raises(RuleError) as refused:
        rules.parse_bytes(b'policy drop\naccept comment "caf\xe9"\n', "x.rules")
    assert (refused.value.line, refused.value.column, refused.value.message) == (2, 20, "not UTF-8 text")


_WORDS = ["policy", "drop", "accept", "reject", "tcp", "dport", "ip", "saddr", "ct", "state", "new", "count", "over",
          "limit", "rate", "10/second", "burst", "5", "log", "prefix", '"p"', "set", "s", "{", "}", ",", "@s",
          "@lb-01", "10.0.0.0/8", "80", "1-2", "comment", "\n", ";", "#", "!=", "counter"]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_w11_random_bytes_give_a_located_error_or_a_rule_set(data: bytes) -> None:
    _parse_or_locate(data)


@settings(max_examples=600, deadline=None)
@given(words=st.lists(st.sampled_from(_WORDS), max_size=40))
def test_w11_random_grammar_words_give_a_located_error_or_a_rule_set(words: list[str]) -> None:
    _parse_or_locate(" ".join(words).encode())


def _parse_or_locate(data: bytes) -> None:
    try:
        rs = rules.parse_bytes(data, "fuzz.rules", HOSTS)
    except RuleError as err:
        lines = data.count(b"\n") + 1
        assert 1 <= err.line <= lines and err.column >= 1 and str(err).startswith("fuzz.rules:")
        return
    assert rs.policy in ("accept", "drop", "reject")
    assert rules.parse(rs.canonical(), "again.rules", HOSTS).canonical() == rs.canonical()
    rs.evaluate(Packet("10.0.0.1", 1, DST, 80, 0.0))
