"""The firewall's decisions and its table of tracked connections, without sockets or clocks.

Theory of operation
-------------------
A firewall here is a TCP proxy that owns the public address of the host it
guards.  For every new connection the shell asks `ConnectionTable.open(src,
dst, now)`; the table evaluates its `RuleSet` (ruleset.py: first match wins,
then the policy), then its own limits, and returns a tracked `Connection`
whose `command` tells the shell what to do:

    action   limit reached?            command   what the client sees
    accept   no                        RELAY     bytes relayed both ways
    accept   a relay limit (below)     RESET     connection reset (rule "limit: ...")
    reject   -                         RESET     connection reset at once
    drop     no                        HOLD      silence until it gives up
    drop     holds >= max_held         CLOSE     the connection closed

Fair limits on relays, so one source cannot deny the firewall to the others:

- the table holds at most `max_relayed` relays;
- one source holds at most `per_source` of them (by default the table less
  its reserve, 7/8 of it; a rule set says less with `ct count over N`);
- the last `reserve` slots (1/8 of the table) go only to sources holding
  less than their fair share (`max_relayed` divided by the sources that hold
  relays, this one included).  So a source at its cap always leaves room,
  and when several heavy sources fill the rest, a light one still gets in;
- under pressure (the table in its reserve), a relay whose client has sent
  no byte for `silent_timeout_s` is closed (`silent`: the shell's sweeper
  asks each second), instead of after the idle timeout: a connection that
  never asked for anything is the cheapest to give back.

A netfilter `drop` never answers the SYN; a proxy has already completed the
handshake when it sees the connection (the kernel did it from the listen
backlog), so the nearest equivalent is to say nothing and hold the socket until
the client gives up or `drop_hold_s` passes.  Held sockets are bounded by
`max_held` so a flood of dropped sources cannot exhaust file descriptors.

This is connection tracking: a connection is decided once, when it is new;
from then on the shell relays it without asking the rules again, so replacing
the rule set (`replace`, on reload) changes what happens to new connections
only, while tracked ones keep flowing.  The table is bounded (`max_relayed`
tracked relays, `max_held` held drops) and knows how many connections each
source has, which `ct count` rules use, and how many relays, which the fair
limits use.

While the shell relays it reports bytes (`count`) and the upstream 4-tuple;
`close` ends the connection, adds its bytes to the counter of the rule that
accepted it (if that rule set is still the current one, the listing shows
it), and returns the finished record, which the shell logs, counts and, with
capture on, writes to the index.  Time is passed in as wall-clock seconds
(`now`): this module never reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from foobar_ref.firewall.ruleset import Counter, Packet, RuleSet

DROP_HOLD_S = 30.0
IDLE_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 4.0
MAX_HELD = 256
MAX_RELAYED = 1024
RESERVE_DIVISOR = 8  # 1/8 of the relay table is kept for sources under their fair share
SILENT_TIMEOUT_S = 10.0  # under pressure, a relay whose client sent nothing for this long is closed

Address = tuple[str, int]


class Command(enum.Enum):
    RELAY = "relay"
    RESET = "reset"
    HOLD = "hold"
    CLOSE = "close"


class Direction(enum.Enum):
    """`IN` is client -> server (capture suffix .c2s), `OUT` is server -> client (.s2c)."""

    IN = "in"
    OUT = "out"

    @property
    def suffix(self) -> str:
        return "c2s" if self is Direction.IN else "s2c"


@dataclass(frozen=True)
class Limits:
    drop_hold_s: float = DROP_HOLD_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    max_held: int = MAX_HELD
    max_relayed: int = MAX_RELAYED
    max_per_source: int = 0  # 0: the table less its reserve
    silent_timeout_s: float = SILENT_TIMEOUT_S

    @property
    def reserve(self) -> int:
        return self.max_relayed // RESERVE_DIVISOR

    @property
    def per_source(self) -> int:
        return max(1, min(self.max_per_source or self.max_relayed, self.max_relayed - self.reserve))


@dataclass
class Connection:
    """One tracked TCP connection, from decision to close."""

    id: int
    src: Address
    dst: Address
    action: str  # accept | reject | drop, as the rules said (or a limit)
    rule: str  # the rule's text, "policy", or "limit: ..."
    command: Command
    started: float
    upstream: tuple[Address, Address] | None = None  # (our source, the inner service)
    bytes_in: int = 0
    bytes_out: int = 0
    ended: float | None = None
    reason: str = ""
    counter: Counter | None = field(default=None, repr=False)  # the deciding rule's (bytes added at close)
    log_prefixes: tuple[str, ...] = ()  # one log line per matching `log` statement

    def kernel_line(self, prefix: str = "") -> str:
        """The decision in the style of the kernel's netfilter LOG target."""
        return (
            f"{prefix}SRC={self.src[0]} DST={self.dst[0]} PROTO=TCP SPT={self.src[1]} DPT={self.dst[1]} "
            f"ACTION={self.action} RULE={self.rule}"
        )

    def record(self) -> dict[str, object]:
        """A JSON-ready summary: the capture index line and the 'closed' log event."""
        return {
            "id": self.id,
            "src": f"{self.src[0]}:{self.src[1]}",
            "dst": f"{self.dst[0]}:{self.dst[1]}",
            "upstream": _tuple_text(self.upstream),
            "action": self.action,
            "rule": self.rule,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "start": self.started,
            "end": self.ended,
            "reason": self.reason,
        }


def _tuple_text(pair: tuple[Address, Address] | None) -> str | None:
    if pair is None:
        return None
    (sip, sport), (dip, dport) = pair
    return f"{sip}:{sport}->{dip}:{dport}"


@dataclass
class ConnectionTable:
    """The firewall's state: the rule set, tracked connections, and the limits on them."""

    ruleset: RuleSet
    limits: Limits = field(default_factory=Limits)
    next_id: int = 1
    connections: dict[int, Connection] = field(default_factory=dict)
    _active: dict[Command, int] = field(default_factory=lambda: dict.fromkeys(Command, 0))
    _per_source: dict[str, int] = field(default_factory=dict)
    _relayed_from: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> int:
        return self._active[Command.HOLD]

    @property
    def relayed(self) -> int:
        return self._active[Command.RELAY]

    def from_source(self, ip: str) -> int:
        return self._per_source.get(ip, 0)

    def replace(self, ruleset: RuleSet) -> None:
        """A new rule set for new connections; tracked ones are not decided again."""
        self.ruleset = ruleset

    def open(self, src: Address, dst: Address, now: float) -> Connection:
        """Decide a new connection and start tracking it."""
        packet = Packet(src[0], src[1], dst[0], dst[1], now, self._per_source.get(src[0], 0))
        decision = self.ruleset.evaluate(packet)
        action, rule = decision.action, decision.label
        command = _COMMANDS[action]
        refused = self._relay_refused(src[0]) if command is Command.RELAY else None
        if refused is not None:
            action, rule, command = "reject", refused, Command.RESET
        elif command is Command.HOLD and self.held >= self.limits.max_held:
            rule, command = f"{rule} (limit: {self.limits.max_held} held, closed)", Command.CLOSE
        conn = Connection(self.next_id, src, dst, action, rule, command, started=now)
        conn.counter = self.ruleset.counter_of(decision.rule)
        if decision.logged:
            conn.log_prefixes = tuple(r.log_prefix or "" for r in decision.logged)
        self.next_id += 1
        self.connections[conn.id] = conn
        self._active[command] += 1
        self._per_source[src[0]] = self._per_source.get(src[0], 0) + 1
        if command is Command.RELAY:
            self._relayed_from[src[0]] = self._relayed_from.get(src[0], 0) + 1
        return conn

    def _relay_refused(self, ip: str) -> str | None:
        """Which relay limit refuses a new relay from `ip` (its text is the rule the logs and metrics show)."""
        limits, held = self.limits, self._relayed_from.get(ip, 0)
        if self.relayed >= limits.max_relayed:
            return f"limit: {limits.max_relayed} relayed connections"
        if held >= limits.per_source:
            return f"limit: {limits.per_source} relayed connections per source"
        if self.under_pressure:
            share = limits.max_relayed // (len(self._relayed_from) + (0 if held else 1))
            if held >= share:
                return f"limit: fair share (the last {limits.reserve} of {limits.max_relayed} relays)"
        return None

    @property
    def under_pressure(self) -> bool:
        """The relay table is in its reserve: only sources under their fair share get in."""
        return self.relayed >= self.limits.max_relayed - self.limits.reserve

    def relayed_from(self, ip: str) -> int:
        return self._relayed_from.get(ip, 0)

    def silent(self, now: float) -> list[Connection]:
        """Under pressure: relays whose client has sent no byte for silent_timeout_s (to be closed first)."""
        if not self.under_pressure:
            return []
        oldest = now - self.limits.silent_timeout_s
        return [
            c
            for c in self.connections.values()
            if c.command is Command.RELAY and c.bytes_in == 0 and c.started <= oldest
        ]

    def connected(self, conn: Connection, source: Address, target: Address) -> None:
        """The upstream connection is open: record its 4-tuple."""
        conn.upstream = (source, target)

    def count(self, conn: Connection, direction: Direction, nbytes: int) -> None:
        if direction is Direction.IN:
            conn.bytes_in += nbytes
        else:
            conn.bytes_out += nbytes

    def close(self, conn: Connection, now: float, reason: str) -> Connection:
        """Stop tracking; the first reason given is kept."""
        if self.connections.pop(conn.id, None) is not None:
            self._active[conn.command] -= 1
            _decrement(self._per_source, conn.src[0])
            if conn.command is Command.RELAY:
                _decrement(self._relayed_from, conn.src[0])
            conn.ended = now
            conn.reason = conn.reason or reason
            if conn.counter is not None:
                conn.counter.bytes_in += conn.bytes_in
                conn.counter.bytes_out += conn.bytes_out
        return conn


_COMMANDS = {"accept": Command.RELAY, "reject": Command.RESET, "drop": Command.HOLD}


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.pop(key, 1) - 1
    if left:
        counts[key] = left


def proxy_v1_line(client: Address, local: Address) -> bytes:
    """PROXY protocol v1 header: the client's address and the address it connected to."""
    return f"PROXY TCP4 {client[0]} {local[0]} {client[1]} {local[1]}\r\n".encode("ascii")
