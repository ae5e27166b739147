"""A parsed rule set: matches, rules, first-match evaluation, counters and the listing. Pure.

Theory of operation
-------------------
`rules.parse` turns a rule file into a `RuleSet`: an ordered tuple of `Rule`s and
a policy.  `RuleSet.evaluate(packet)` walks the rules in order; a rule matches when
every one of its matches holds (they are checked in the order written, so a rate
limit written last only spends a token when everything before it matched).  A
matching rule counts the connection, remembers its `log` statement if it has one,
and, if it has a verdict, ends the walk: first match wins.  A rule without a
verdict (only `log` or `counter`) lets the walk go on, as in nftables.  When no
verdict was reached, the policy decides and the policy's counter counts.

A "packet" here is the first packet of a new connection: the proxy decides once
per connection; established connections are relayed by connection tracking and
never come back here (as if every rule set began `ct state established accept`).

State that lives in a rule set: counters (connections, and bytes each way added
when a connection ends) and the token buckets of `limit rate` matches, one per
source address and bounded in number.  A reload builds a new `RuleSet`, so both
start from zero, like `nft -f`.  Time comes in as `Packet.now`; nothing here reads
a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ACTIONS = ("accept", "drop", "reject")
STATES = ("new", "established")
PROTOCOLS = ("tcp", "udp", "icmp")
RATE_UNITS_S = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
DEFAULT_BURST = 5  # nftables' default for `limit rate`
MAX_LIMIT_SOURCES = 65536  # token buckets kept per `limit` match; the oldest source is forgotten first
POLICY_LABEL = "policy"


def ip_to_int(text: str) -> int:
    """Dotted IPv4 text to an integer (the caller guarantees the text is a valid address)."""
    a, b, c, d = text.split(".")
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def int_to_ip(value: int) -> str:
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


class Packet:
    """What a decision looks at: the new connection's 4-tuple, state, time and the source's tracked count."""

    __slots__ = ("src", "src_ip", "sport", "dst", "dport", "proto", "state", "now", "from_source")

    def __init__(
        self,
        src_ip: str,
        sport: int,
        dst_ip: str,
        dport: int,
        now: float,
        from_source: int = 0,
        state: str = "new",
        proto: str = "tcp",
    ) -> None:
        self.src_ip = src_ip
        self.src, self.sport, self.dst, self.dport = ip_to_int(src_ip), sport, ip_to_int(dst_ip), dport
        self.now, self.from_source, self.state, self.proto = now, from_source, state, proto


@dataclass(frozen=True)
class AddressSet:
    """IPv4 hosts and networks; `text` is how it is written canonically (`@name`, one value, or `{ ... }`)."""

    text: str
    hosts: frozenset[int] = frozenset()
    networks: tuple[tuple[int, int], ...] = ()  # (network, mask)

    def __contains__(self, ip: int) -> bool:
        if ip in self.hosts:
            return True
        return any(ip & mask == net for net, mask in self.networks)

    @property
    def everything(self) -> bool:
        return (0, 0) in self.networks

    @staticmethod
    def union(text: str, parts: Iterable[AddressSet]) -> AddressSet:
        hosts: set[int] = set()
        networks: list[tuple[int, int]] = []
        for part in parts:
            hosts |= part.hosts
            networks += [n for n in part.networks if n not in networks]
        return AddressSet(text, frozenset(hosts), tuple(networks))


class Match:
    """One condition of a rule.  `always` is true when it holds for every TCP connection."""

    text = ""
    always = False

    def __call__(self, p: Packet) -> bool:  # pragma: no cover - every match overrides it
        raise NotImplementedError


class ProtoMatch(Match):
    def __init__(self, proto: str) -> None:
        self.proto, self.text, self.always = proto, f"ip protocol {proto}", proto == "tcp"

    def __call__(self, p: Packet) -> bool:
        return p.proto == self.proto


class AddrMatch(Match):
    def __init__(self, field_name: str, addresses: AddressSet, negate: bool = False) -> None:
        self.source = field_name == "saddr"
        self.addresses, self.negate = addresses, negate
        self.text = f"ip {field_name} {'!= ' if negate else ''}{addresses.text}"
        self.always = addresses.everything and not negate

    def __call__(self, p: Packet) -> bool:
        return ((p.src if self.source else p.dst) in self.addresses) != self.negate


class PortMatch(Match):
    def __init__(self, proto: str, field_name: str, ranges: tuple[tuple[int, int], ...], negate: bool = False) -> None:
        self.proto, self.destination, self.negate = proto, field_name == "dport", negate
        self.singles = frozenset(lo for lo, hi in ranges if lo == hi)
        self.ranges = tuple((lo, hi) for lo, hi in ranges if lo != hi)
        shown = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in sorted(ranges)]
        value = shown[0] if len(shown) == 1 else "{ " + ", ".join(shown) + " }"
        self.text = f"{proto} {field_name} {'!= ' if negate else ''}{value}"

    def __call__(self, p: Packet) -> bool:
        if p.proto != self.proto:
            return False
        port = p.dport if self.destination else p.sport
        inside = port in self.singles or any(lo <= port <= hi for lo, hi in self.ranges)
        return inside != self.negate


class StateMatch(Match):
    def __init__(self, states: frozenset[str]) -> None:
        self.states = states
        self.text = "ct state " + ",".join(s for s in STATES if s in states)

    def __call__(self, p: Packet) -> bool:
        return p.state in self.states


class CountMatch(Match):
    """`ct count [over] N`: connections this source already has tracked, plus this one."""

    def __init__(self, limit: int, over: bool) -> None:
        self.limit, self.over = limit, over
        self.text = f"ct count {'over ' if over else ''}{limit}"

    def __call__(self, p: Packet) -> bool:
        return (p.from_source + 1 > self.limit) == self.over


class LimitMatch(Match):
    """`limit rate [over] N/unit burst B packets`: a token bucket per source address."""

    def __init__(self, rate: int, unit: str, burst: int, over: bool) -> None:
        self.rate, self.unit, self.burst, self.over = rate, unit, burst, over
        self.per_s = rate / RATE_UNITS_S[unit]
        self.buckets: dict[int, tuple[float, float]] = {}  # source -> (tokens, when)
        self.text = f"limit rate {'over ' if over else ''}{rate}/{unit} burst {burst} packets"

    def __call__(self, p: Packet) -> bool:
        tokens, when = self.buckets.pop(p.src, (float(self.burst), p.now))
        tokens = min(float(self.burst), tokens + max(0.0, p.now - when) * self.per_s)
        within = tokens >= 1.0
        if within:
            tokens -= 1.0
        if len(self.buckets) >= MAX_LIMIT_SOURCES:
            del self.buckets[next(iter(self.buckets))]
        self.buckets[p.src] = (tokens, p.now)  # re-inserted last: the dict stays ordered by last use
        return within != self.over


@dataclass
class Counter:
    connections: int = 0
    bytes_in: int = 0  # client -> server, of connections that have ended
    bytes_out: int = 0


@dataclass
class Rule:
    matches: tuple[Match, ...]
    verdict: str | None  # None: a `log`/`counter` rule, the walk goes on
    log: bool = False
    log_prefix: str | None = None
    comment: str | None = None
    line: int = 0
    handle: int = 0
    counter: Counter = field(default_factory=Counter)

    @property
    def text(self) -> str:
        """The canonical form: matches as written, then log, verdict and comment."""
        parts = [m.text for m in self.matches]
        if self.log:
            parts.append("log" if self.log_prefix is None else f"log prefix {quote(self.log_prefix)}")
        if self.verdict is None and not self.log:
            parts.append("counter")
        if self.verdict is not None:
            parts.append(self.verdict)
        if self.comment is not None:
            parts.append(f"comment {quote(self.comment)}")
        return " ".join(parts)

    @property
    def label(self) -> str:
        """How metrics and logs name the rule: the canonical text without its comment."""
        if self.comment is None:
            return self.text
        return self.text.removesuffix(f" comment {quote(self.comment)}")

    @property
    def catch_all(self) -> bool:
        return self.verdict is not None and all(m.always for m in self.matches)


def quote(text: str) -> str:
    return '"' + text + '"'


@dataclass
class Decision:
    action: str
    rule: Rule | None  # None: the policy decided
    logged: list[Rule] | None = None  # rules with a `log` statement that matched on the way

    @property
    def label(self) -> str:
        return self.rule.label if self.rule is not None else POLICY_LABEL

    def kernel_line(self, p: Packet, prefix: str = "") -> str:
        return (
            f"{prefix}SRC={p.src_ip} DST={int_to_ip(p.dst)} PROTO={p.proto.upper()} SPT={p.sport} DPT={p.dport} "
            f"ACTION={self.action} RULE={self.label}"
        )


@dataclass
class RuleSet:
    source: str  # the file (or topology key) it was read from
    policy: str
    rules: tuple[Rule, ...]
    sets: dict[str, AddressSet] = field(default_factory=dict)  # user-defined, in order
    host_sets: dict[str, AddressSet] = field(default_factory=dict)  # predefined, one per topology host
    warnings: tuple[str, ...] = ()
    policy_counter: Counter = field(default_factory=Counter)

    def evaluate(self, p: Packet) -> Decision:
        """First match wins; rules without a verdict only log and count; then the policy."""
        logged: list[Rule] | None = None
        for rule in self.rules:
            for match in rule.matches:
                if not match(p):
                    break
            else:
                rule.counter.connections += 1
                if rule.log:
                    logged = [*logged, rule] if logged else [rule]
                if rule.verdict is not None:
                    return Decision(rule.verdict, rule, logged)
        self.policy_counter.connections += 1
        return Decision(self.policy, None, logged)

    def counter_of(self, rule: Rule | None) -> Counter:
        return rule.counter if rule is not None else self.policy_counter

    def canonical(self) -> str:
        """The rule set in canonical form (no counters): equal for equivalent files."""
        lines = [f"set {name} {s.text}" for name, s in self.sets.items()]
        lines.append(f"policy {self.policy}")
        lines += [rule.text for rule in self.rules]
        return "\n".join(lines) + "\n"
