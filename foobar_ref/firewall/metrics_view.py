"""The firewall's counters as Prometheus series, read when scraped (nothing is counted twice on the fast path).

* `foobar_firewall_rule_connections_total{hop,handle,rule}` and
  `foobar_firewall_rule_bytes_total{hop,handle,rule,direction}`: the current rule
  set's counters (handle "policy" for the policy); they restart from zero on a
  reload, as `nft list ruleset` counters do.  Large rule sets export only the
  rules that counted something.
* `foobar_firewall_bytes_total{hop,direction}`: every byte relayed since start,
  open connections included.
* `foobar_firewall_conntrack_entries{hop,state}`: tracked connections now.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from foobar_ref.firewall.core import Direction

if TYPE_CHECKING:
    from foobar_ref.firewall.shell import FirewallHop

MAX_RULES_EXPORTED_IN_FULL = 1000


class FirewallCollector:
    def __init__(self, hop: FirewallHop) -> None:
        self.hop = hop

    def describe(self) -> list[Metric]:
        return []  # unchecked: the series change with the rule set

    def collect(self) -> Iterator[Metric]:
        hop = self.hop
        name = hop.hop
        live = list(hop.table.connections.values())
        conns = CounterMetricFamily(
            "foobar_firewall_rule_connections", "New connections matched, per rule", labels=["hop", "handle", "rule"]
        )
        rule_bytes = CounterMetricFamily(
            "foobar_firewall_rule_bytes",
            "Bytes of connections decided by each rule",
            labels=["hop", "handle", "rule", "direction"],
        )
        open_bytes: dict[int, list[int]] = {}
        for conn in live:
            if conn.counter is not None:
                sums = open_bytes.setdefault(id(conn.counter), [0, 0])
                sums[0] += conn.bytes_in
                sums[1] += conn.bytes_out
        ruleset = hop.table.ruleset
        rows = [(str(r.handle), r.label, r.counter) for r in ruleset.rules]
        rows.append(("policy", f"policy {ruleset.policy}", ruleset.policy_counter))
        full = len(rows) <= MAX_RULES_EXPORTED_IN_FULL
        for handle, label, counter in rows:
            extra_in, extra_out = open_bytes.get(id(counter), (0, 0))
            if not full and not counter.connections:
                continue
            conns.add_metric([name, handle, label], counter.connections)
            rule_bytes.add_metric([name, handle, label, "in"], counter.bytes_in + extra_in)
            rule_bytes.add_metric([name, handle, label, "out"], counter.bytes_out + extra_out)
        yield conns
        yield rule_bytes
        relayed = CounterMetricFamily(
            "foobar_firewall_bytes", "Bytes relayed, in = client to server", labels=["hop", "direction"]
        )
        relayed.add_metric([name, "in"], hop.closed_bytes[Direction.IN] + sum(c.bytes_in for c in live))
        relayed.add_metric([name, "out"], hop.closed_bytes[Direction.OUT] + sum(c.bytes_out for c in live))
        yield relayed
        entries = GaugeMetricFamily("foobar_firewall_conntrack_entries", "Tracked connections", labels=["hop", "state"])
        entries.add_metric([name, "established"], hop.table.relayed)
        entries.add_metric([name, "held"], hop.table.held)
        yield entries
