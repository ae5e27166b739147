"""The firewall's rule language: read a rule file into a `RuleSet`, or say exactly where it is wrong. Pure.

Grammar (one statement per line; `;` also ends one; inside `{ }` lines may break; `#` starts a comment)::

    file      := statement*
    statement := "policy" VERDICT                       exactly once
               | "set" NAME "{" [address ("," address)*] "}"
               | rule
    rule      := match* statement-part* [VERDICT] ["comment" STRING]
    match     := "ip" "protocol" ("tcp"|"udp"|"icmp")   | "meta" "l4proto" PROTO
               | "ip" ("saddr"|"daddr") ["!="] addresses
               | ("tcp"|"udp") ("dport"|"sport") ["!="] ports
               | "ct" "state" states                    new, established
               | "ct" "count" ["over"] N                connections tracked from this source
               | "limit" "rate" ["over"] N "/" UNIT ["burst" N ["packets"]]   per source; UNIT second..day
    statement-part := "log" ["prefix" STRING] | "counter"
    VERDICT   := "accept" | "drop" | "reject" ["with" "tcp" "reset"]
    addresses := IPV4 | IPV4/LEN | "@"NAME | "{" address ("," address)* "}"
    ports     := PORT | PORT-PORT | "{" (PORT | PORT-PORT) ("," ...)* "}"     PORT is 1..65535

Every host of the topology is a predefined set named after it (`@lb-01` holds
lb-01's public and inner addresses); `set NAME { ... }` defines more, before use.

Errors: the first problem raises `RuleError`, whose text is
`file:line:column: what was expected, and what was found`.  Nothing of a file is
used unless all of it was read, so a caller keeps its old rule set on error.
Warnings (a rule no connection can reach, a match that never holds on a TCP
proxy) do not refuse the file; they travel with the rule set.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from foobar_ref.firewall.ruleset import (
    ACTIONS,
    DEFAULT_BURST,
    PROTOCOLS,
    RATE_UNITS_S,
    STATES,
    AddressSet,
    AddrMatch,
    CountMatch,
    LimitMatch,
    Match,
    PortMatch,
    ProtoMatch,
    Rule,
    RuleSet,
    StateMatch,
    int_to_ip,
    ip_to_int,
)

if TYPE_CHECKING:
    from foobar_ref.topology import Topology

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_STRING_CHARS = 128
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}(/\d{1,3})?\Z")
_TOKENS = re.compile(
    r"[ \t]*(?:(?P<word>[A-Za-z0-9_.:/@!=\-]+)|(?P<end>[\n;])|(?P<punct>[{},])|(?P<string>\"[^\"\n]*\")"
    r"|(?P<comment>#[^\n]*)|(?P<eof>\Z))"
)
_MATCH_WORDS = ("ip", "meta", "tcp", "udp", "ct", "limit")
_STATEMENT_WORDS = ("log", "counter", *ACTIONS, "comment")


class RuleError(Exception):
    """A rule file that cannot be used: `file:line:column: message`."""

    def __init__(self, source: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.source, self.line, self.column, self.message = source, line, column, message


class Token:
    __slots__ = ("kind", "text", "line", "column")

    def __init__(self, kind: str, text: str, line: int, column: int) -> None:
        self.kind = kind  # word | string | punct | end | eof
        self.text, self.line, self.column = text, line, column

    @property
    def shown(self) -> str:
        return {"end": "end of line", "eof": "end of file"}.get(self.kind, repr(self.text))


def parse_bytes(data: bytes, source: str, host_sets: Mapping[str, tuple[str, ...]] | None = None) -> RuleSet:
    """Decode (UTF-8, an optional BOM) and parse; a decoding error is located like any other."""
    if len(data) > MAX_FILE_BYTES:
        raise RuleError(source, 1, 1, f"file too large ({len(data)} bytes, at most {MAX_FILE_BYTES})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        raise RuleError(source, line, err.start - (before.rfind(b"\n") + 1) + 1, "not UTF-8 text") from None
    return parse(text, source, host_sets)


def parse(text: str, source: str, host_sets: Mapping[str, tuple[str, ...]] | None = None) -> RuleSet:
    """Parse a whole rule file; raise RuleError at the first problem."""
    with _collector_paused():
        return _Parser(text, source, _host_sets(host_sets or {})).run()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A large file makes many small objects and no cycles: the cyclic collector would only halve the speed."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _host_sets(hosts: Mapping[str, tuple[str, ...]]) -> dict[str, AddressSet]:
    return {
        name: AddressSet(f"{{ {', '.join(ips)} }}", frozenset(ip_to_int(ip) for ip in ips))
        for name, ips in hosts.items()
    }


def tokens(text: str, source: str) -> Iterator[Token]:
    """Words, strings, punctuation and ends of statements, with 1-based line and column."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    line, line_start, pos, depth = 1, 0, 0, 0
    match = _TOKENS.match
    while True:
        found = match(text, pos)
        kind = found.lastgroup if found is not None else None
        if found is None or kind is None:
            pos = pos if found is None else found.end()
            while text[pos] in " \t":
                pos += 1
            char = text[pos]
            column = pos - line_start + 1
            if char == '"':
                raise RuleError(source, line, column, 'unterminated string (a string ends with " on the same line)')
            raise RuleError(source, line, column, f"unexpected character {char!r}")
        start, pos = found.start(kind), found.end()
        if kind == "word" or kind == "string":
            yield Token(kind, found.group(kind), line, start - line_start + 1)
        elif kind == "end":
            if depth == 0:
                yield Token("end", found.group(kind), line, start - line_start + 1)
            if text[start] == "\n":
                line, line_start = line + 1, pos
        elif kind == "punct":
            value = found.group(kind)
            depth = max(0, depth + {"{": 1, "}": -1}.get(value, 0))
            yield Token(kind, value, line, start - line_start + 1)
        elif kind == "eof":
            yield Token("eof", "", line, start - line_start + 1)
            return


class _Parser:
    def __init__(self, text: str, source: str, host_sets: dict[str, AddressSet]) -> None:
        self.source = source
        self.tokens = tokens(text, source)
        self.token = next(self.tokens)
        self.host_sets = host_sets
        self.sets: dict[str, AddressSet] = {}
        self.policy: str | None = None
        self.saw_counter = False
        self.rules: list[Rule] = []

    # --- cursor -------------------------------------------------------------
    def fail(self, message: str, token: Token | None = None) -> RuleError:
        token = token or self.token
        return RuleError(self.source, token.line, token.column, message)

    def advance(self) -> Token:
        token, self.token = self.token, next(self.tokens)
        return token

    def at_end(self) -> bool:
        return self.token.kind in ("end", "eof")

    def word(self, expected: str, choices: tuple[str, ...] | None = None) -> Token:
        if self.token.kind != "word" or (choices is not None and self.token.text not in choices):
            raise self.fail(f"expected {expected}, found {self.token.shown}")
        return self.advance()

    def punct(self, char: str) -> Token:
        if self.token.text != char or self.token.kind != "punct":
            raise self.fail(f"expected {char!r}, found {self.token.shown}")
        return self.advance()

    def string(self, what: str) -> str:
        if self.token.kind != "string":
            raise self.fail(f"expected {what} in double quotes, found {self.token.shown}")
        value = self.token.text[1:-1]
        if len(value) > MAX_STRING_CHARS or not value.isprintable():
            raise self.fail(f"expected {what} of at most {MAX_STRING_CHARS} printable characters")
        self.advance()
        return value

    def number(self, what: str, low: int, high: int, token: Token | None = None, text: str | None = None) -> int:
        if token is None:
            token = self.token
            if token.kind == "word":
                self.advance()
        text = token.text if text is None else text
        if token.kind != "word" or not text.isdigit() or not text.isascii():
            raise self.fail(f"expected {what} (a number {low}-{high}), found {token.shown}", token)
        value = int(text)
        if not low <= value <= high:
            raise self.fail(f"{what.removeprefix('a ')} out of range (expected {low}-{high}, found {value})", token)
        return value

    # --- statements ---------------------------------------------------------
    def run(self) -> RuleSet:
        while self.token.kind != "eof":
            if self.token.kind == "end":
                self.advance()
                continue
            if self.token.text == "policy" and self.token.kind == "word":
                self.policy_line()
            elif self.token.text == "set" and self.token.kind == "word":
                self.set_line()
            else:
                self.rule_line()
            if not self.at_end():
                raise self.fail(f"expected end of line, found {self.token.shown}")
        if self.policy is None:
            raise self.fail("missing 'policy accept|drop|reject' (what happens when no rule decides)")
        warnings = _warnings(self.rules)
        return RuleSet(self.source, self.policy, tuple(self.rules), self.sets, self.host_sets, warnings)

    def policy_line(self) -> None:
        first = self.advance()
        if self.policy is not None:
            raise self.fail("a second 'policy' line (a rule set has exactly one)", first)
        self.policy = self.word("a policy (accept, drop or reject)", ACTIONS).text

    def set_line(self) -> None:
        self.advance()
        name = self.word("a set name")
        if not _NAME.match(name.text):
            raise self.fail(f"expected a set name (letters, digits, '_', '-', '.'), found {name.text!r}", name)
        if name.text in self.sets or name.text in self.host_sets:
            raise self.fail(f"set {name.text!r} is already defined", name)
        self.punct("{")
        parts = []
        while self.token.text != "}":
            parts.append(self.address_value())
            if self.token.text != ",":
                break
            self.advance()
        self.punct("}")
        texts = [p.text for p in parts]
        self.sets[name.text] = AddressSet.union("{ " + ", ".join(texts) + " }" if texts else "{ }", parts)

    def rule_line(self) -> None:
        first = self.token
        matches: list[Match] = []
        while self.token.kind == "word" and self.token.text in _MATCH_WORDS:
            matches.append(self.match())
        rule = Rule(tuple(matches), None, line=first.line, handle=len(self.rules) + 1)
        self.statements(rule)
        if rule.verdict is None and not rule.log and not self.saw_counter:
            raise self.fail(f"expected a verdict (accept, drop, reject), log or counter, found {self.token.shown}")
        self.rules.append(rule)

    def statements(self, rule: Rule) -> None:
        self.saw_counter = False
        while not self.at_end():
            token = self.token
            if rule.verdict is not None and token.text != "comment":
                raise self.fail(f"expected end of line or comment after the verdict, found {token.shown}")
            if token.kind != "word" or token.text not in _STATEMENT_WORDS:
                order = "" if token.text not in _MATCH_WORDS else " (matches come before log, counter and the verdict)"
                expected = "a match, log, counter, a verdict (accept, drop, reject) or comment"
                raise self.fail(f"expected {expected}{order}, found {token.shown}")
            self.advance()
            if token.text == "log":
                rule.log = True
                if self.token.text == "prefix":
                    self.advance()
                    rule.log_prefix = self.string("a log prefix")
            elif token.text == "counter":
                self.saw_counter = True
            elif token.text == "comment":
                rule.comment = self.string("a comment")
                return
            else:
                rule.verdict = token.text
                if token.text == "reject" and self.token.text == "with":
                    self.advance()
                    self.word("'tcp'", ("tcp",))
                    self.word("'reset'", ("reset",))

    # --- matches ------------------------------------------------------------
    def match(self) -> Match:
        head = self.advance().text
        if head == "ip":
            what = self.word("'saddr', 'daddr' or 'protocol' after 'ip'", ("saddr", "daddr", "protocol")).text
            if what == "protocol":
                return ProtoMatch(self.word("a protocol (tcp, udp or icmp)", PROTOCOLS).text)
            negate = self.negation()
            return AddrMatch(what, self.address_value(), negate)
        if head == "meta":
            self.word("'l4proto' after 'meta'", ("l4proto",))
            return ProtoMatch(self.word("a protocol (tcp, udp or icmp)", PROTOCOLS).text)
        if head in ("tcp", "udp"):
            what = self.word(f"'dport' or 'sport' after '{head}'", ("dport", "sport")).text
            negate = self.negation()
            return PortMatch(head, what, self.ports(), negate)
        if head == "ct":
            what = self.word("'state' or 'count' after 'ct'", ("state", "count")).text
            if what == "state":
                return StateMatch(self.states())
            over = self.optional("over")
            return CountMatch(self.number("a connection count", 1, 1_000_000), over)
        return self.limit()

    def negation(self) -> bool:
        return self.optional("!=")

    def optional(self, word: str) -> bool:
        if self.token.kind == "word" and self.token.text == word:
            self.advance()
            return True
        return False

    def limit(self) -> Match:
        self.word("'rate' after 'limit'", ("rate",))
        over = self.optional("over")
        token = self.word("a rate like 10/second")
        count, _, unit = token.text.partition("/")
        if unit not in RATE_UNITS_S:
            raise self.fail(
                f"expected a rate like 10/second (units: {', '.join(RATE_UNITS_S)}), found {token.shown}", token
            )
        rate = self.number("a rate", 1, 1_000_000_000, token, count)
        burst = DEFAULT_BURST
        if self.optional("burst"):
            burst = self.number("a burst", 1, 1_000_000_000, self.word("a burst (a number of packets)"))
            self.optional("packets")
        return LimitMatch(rate, unit, burst, over)

    def states(self) -> frozenset[str]:
        names = self.braced(lambda: self.word("a connection state (new or established)", STATES).text)
        return frozenset(names)

    def ports(self) -> tuple[tuple[int, int], ...]:
        return tuple(self.braced(self.port_range))

    def braced(self, item):  # type: ignore[no-untyped-def]
        """One item, a comma list, or a braced comma list."""
        braced = self.token.kind == "punct" and self.token.text == "{"
        if braced:
            self.advance()
        items = [item()]
        while self.token.kind == "punct" and self.token.text == ",":
            self.advance()
            items.append(item())
        if braced:
            self.punct("}")
        return items

    def port_range(self) -> tuple[int, int]:
        token = self.word("a port (1-65535) or a range like 8000-8100")
        low_text, dash, high_text = token.text.partition("-")
        low = self.number("a port", 1, 65535, token, low_text)
        high = self.number("a port", 1, 65535, token, high_text) if dash else low
        if high < low:
            raise self.fail(f"port range {token.text} runs backwards (expected low-high)", token)
        return low, high

    def address_value(self) -> AddressSet:
        if self.token.kind == "punct" and self.token.text == "{":
            parts = self.braced(self.address_value)
            return AddressSet.union("{ " + ", ".join(p.text for p in parts) + " }", parts)
        token = self.word("an IPv4 address, a network like 10.0.0.0/8, or @set")
        if token.text.startswith("@"):
            return self.named_set(token)
        return self.network(token)

    def named_set(self, token: Token) -> AddressSet:
        name = token.text[1:]
        found = self.sets.get(name) or self.host_sets.get(name)
        if found is None:
            known = sorted(self.sets) + sorted(self.host_sets)
            shown = ", ".join("@" + k for k in known[:12]) + (", ..." if len(known) > 12 else "")
            raise self.fail(f"unknown set {token.text!r} (known: {shown or 'none'})", token)
        return replace(found, text=token.text)

    def network(self, token: Token) -> AddressSet:
        if not _IPV4.match(token.text):
            raise self.fail(f"expected an IPv4 address, a network like 10.0.0.0/8, or @set, found {token.shown}", token)
        address, _, length = token.text.partition("/")
        octets = address.split(".")
        if any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in octets):
            raise self.fail(f"not an IPv4 address: {address!r} (four numbers 0-255, no leading zeros)", token)
        ip = ip_to_int(address)
        if not length:
            return AddressSet(address, hosts=frozenset({ip}))
        bits = self.number("a prefix length", 0, 32, token, length)
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        if ip & mask != ip:
            raise self.fail(f"host bits set in {token.text} (did you mean {int_to_ip(ip & mask)}/{bits}?)", token)
        if bits == 32:
            return AddressSet(address, hosts=frozenset({ip}))
        return AddressSet(token.text, networks=((ip, mask),))


def _warnings(rules: list[Rule]) -> tuple[str, ...]:
    found: list[str] = []
    catch_all = next((r for r in rules if r.catch_all), None)
    for rule in rules:
        if catch_all is not None and rule.handle > catch_all.handle:
            found.append(f"line {rule.line}: unreachable rule (line {catch_all.line} matches every connection first)")
        for match in rule.matches:
            if isinstance(match, StateMatch) and "new" not in match.states:
                found.append(
                    f"line {rule.line}: never matches: established connections are relayed by connection "
                    "tracking and do not reach the rules"
                )
            if isinstance(match, ProtoMatch | PortMatch) and match.proto != "tcp":
                found.append(f"line {rule.line}: never matches: this firewall relays TCP connections only")
    return tuple(found)


def host_sets(topo: Topology) -> dict[str, tuple[str, ...]]:
    """The predefined sets: every host by name, holding its public and (if any) inner address."""
    return {h.name: tuple(a for a in (h.address, h.inner) if a) for h in topo.hosts}


def load_for(topo: Topology, name: str) -> RuleSet:
    """Read firewall `name`'s rule set from its file or the topology's inline text; RuleError if unusable."""
    fw = topo.firewall(name)
    if fw.rules_file is not None:
        try:
            data = fw.rules_file.read_bytes()
        except OSError as err:
            raise RuleError(str(fw.rules_file), 1, 1, f"cannot read: {err.strerror or err}") from None
        return parse_bytes(data, str(fw.rules_file), host_sets(topo))
    if fw.rules is not None:
        return parse(fw.rules, f"{topo.path}[{name}.rules]", host_sets(topo))
    raise RuleError(str(topo.path), 1, 1, f"firewall {name!r} has no rule set (give rules_file or rules)")
