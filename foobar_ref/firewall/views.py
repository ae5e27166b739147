"""What `foobar-ref fw list` and `fw conntrack` print: the rule set with counters, the tracked connections. Pure.

The listing reads like `iptables -L -v -n`: one line per rule with its handle,
the line it came from, connections and bytes each way (bytes of connections
still open included), then the rule in canonical form; the policy's counter
last.  The conntrack view reads like `conntrack -L`: one line per tracked
connection with its state, 4-tuples, bytes, age and idle time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from foobar_ref.firewall.core import Command, Connection, Limits
from foobar_ref.firewall.ruleset import Counter, RuleSet

_STATE = {Command.RELAY: "ESTABLISHED", Command.HOLD: "HELD", Command.RESET: "CLOSING", Command.CLOSE: "CLOSING"}


def ruleset_listing(hop: str, ruleset: RuleSet, live: Iterable[Connection], header: str = "") -> str:
    """The rule set with counters; `header` says where it came from and when."""
    open_bytes: dict[int, list[int]] = {}
    for conn in live:
        if conn.counter is not None:
            sums = open_bytes.setdefault(id(conn.counter), [0, 0])
            sums[0] += conn.bytes_in
            sums[1] += conn.bytes_out

    def row(handle: str, line: str, counter: Counter, text: str) -> str:
        extra_in, extra_out = open_bytes.get(id(counter), (0, 0))
        return (
            f"{handle:>6} {line:>5} {counter.connections:>9} {counter.bytes_in + extra_in:>12} "
            f"{counter.bytes_out + extra_out:>12}  {text}"
        )

    out = [f"firewall {hop}: {len(ruleset.rules)} rules from {ruleset.source}" + (f" ({header})" if header else "")]
    out.append(f"{'handle':>6} {'line':>5} {'conns':>9} {'bytes-in':>12} {'bytes-out':>12}  rule")
    out += [row(str(r.handle), str(r.line), r.counter, r.text) for r in ruleset.rules]
    out.append(row("policy", "-", ruleset.policy_counter, f"policy {ruleset.policy}"))
    used = {name for name in ruleset.host_sets if any(f"@{name}" in r.text for r in ruleset.rules)}
    sets = [f"  @{n} {s.text}" for n, s in ruleset.sets.items()]
    sets += [f"  @{n} {ruleset.host_sets[n].text}  (host)" for n in sorted(used)]
    if sets:
        out += ["sets:", *sets]
    if ruleset.warnings:
        out += ["warnings:", *(f"  {w}" for w in ruleset.warnings)]
    return "\n".join(out) + "\n"


def conntrack_listing(connections: Iterable[Connection], now: float, idle: Mapping[int, float], limits: Limits) -> str:
    """Tracked connections, oldest first, then the totals against the limits."""
    lines, relayed, held = [], 0, 0
    for conn in sorted(connections, key=lambda c: c.id):
        relayed += conn.command is Command.RELAY
        held += conn.command is Command.HOLD
        (sip, sport), (dip, dport) = conn.src, conn.dst
        fields = [f"tcp {_STATE[conn.command]:<11} id={conn.id} src={sip} dst={dip} sport={sport} dport={dport}"]
        if conn.upstream is not None:
            (uip, uport), (tip, tport) = conn.upstream
            fields.append(f"upstream src={uip} dst={tip} sport={uport} dport={tport}")
        fields.append(f"bytes_in={conn.bytes_in} bytes_out={conn.bytes_out} age={now - conn.started:.1f}s")
        if conn.id in idle:
            fields.append(f"idle={idle[conn.id]:.1f}s/{limits.idle_timeout_s:g}s")
        fields.append(f"action={conn.action} rule={conn.rule}")
        lines.append(" ".join(fields))
    lines.append(
        f"# {len(lines)} tracked: {relayed} relayed (max {limits.max_relayed}, {limits.per_source} per source, "
        f"the last {limits.reserve} for sources under their fair share), {held} held (max {limits.max_held})"
    )
    return "\n".join(lines) + "\n"
