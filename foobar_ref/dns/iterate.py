"""Iterative resolution as a generator: it yields "ask this server this question", it is sent what came back.

Theory of operation
-------------------
`Resolver.resolve(qname, qtype, now)` is a generator.  Each value it yields is
an `Ask`: the server's address, the zone that server was asked about (its
bailiwick), the question and the packed query with a fresh random id.  The
driver (the trio shell, or dig's blocking loop) carries it out and sends back
`Got(record, now, rtt_s)` for an accepted response or `NoAnswer(now, why)` for
a timeout or a network error; `Ask.check` is how the driver decides which
datagrams are accepted: from the server asked, QR=1, the same id and the same
question (RFC 5452), anything else is ignored and counted by the driver.  When
the generator returns, `StopIteration.value` is the `Outcome`.  Nothing here
reads a clock or touches a socket: time arrives inside the events.

The walk (RFC 1034 §5.3.3): look in the cache; else start at the closest zone
cut whose servers' addresses are cached (or the root hints), ask its servers
one after another (each `tries` times at most, within `upstream_timeout_s`,
and the whole resolution within `resolution_timeout_s` and `max_queries`),
and read the response:

* every record not at or below the asked zone is dropped first (out of
  bailiwick: a server for `com.` cannot tell us about `org.`);
* the asked RRset in the answer: cached, done;  a CNAME: cached, and the
  walk starts again for its target (at most `MAX_CNAME_HOPS`, loops caught);
* NXDOMAIN, or NOERROR without the data: a negative answer, cached by the SOA
  (RFC 2308);
* NS records for a zone strictly below the asked one and above the name: a
  referral.  Its glue (addresses of the NS names, within the asked zone) is
  cached and used; without glue the NS names are resolved first (nested, at
  most `MAX_NS_DEPTH` deep).  A referral that does not go down is lame;
* TC set: the same question again over TCP to the same server;
* SERVFAIL, REFUSED, anything else, or silence: the next server.

When every server has been tried, SERVFAIL.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from dnslib import EDNS0, QTYPE, RR, DNSLabel, DNSQuestion, DNSRecord

from foobar_ref.dns.cache import NOERROR, NXDOMAIN, Cache, Negative, Positive
from foobar_ref.dns.zone import Hint, Key, key

SERVFAIL = 2
MAX_CNAME_HOPS = 8
MAX_REFERRALS = 12
MAX_NS_DEPTH = 2
UPSTREAM_EDNS_PAYLOAD_BYTES = 1232


@dataclass(frozen=True)
class Config:
    upstream_timeout_s: float = 1.0  # one query to one server
    tries: int = 2  # rounds over a zone's servers
    resolution_timeout_s: float = 4.0  # the whole client query
    max_queries: int = 32  # upstream queries per client query


@dataclass(frozen=True)
class Ask:
    server: str  # ip
    server_name: str  # the NS name, for traces ("" for a hint without one)
    zone: DNSLabel  # what the server was asked about: its records must be at or below this
    qname: DNSLabel
    qtype: int
    query_id: int
    tcp: bool
    timeout_s: float
    wire: bytes

    def check(self, data: bytes, source: tuple[str, int], port: int) -> tuple[DNSRecord | None, str]:
        """(record, "") for the response to this query; (None, why) for anything else."""
        if source[0] != self.server or source[1] != port:
            return None, f"from {source[0]}:{source[1]}, asked {self.server}:{port}"
        if len(data) < 12:
            return None, "shorter than a header"
        qid, flags = struct.unpack("!HH", data[:4])
        if qid != self.query_id:
            return None, f"id {qid}, asked {self.query_id}"
        if not flags & 0x8000 or (flags >> 11) & 0xF:
            return None, "not a QUERY response"
        try:
            record = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds for bad bytes
            return None, "unreadable"
        if len(record.questions) != 1:
            return None, "not exactly one question"
        q = record.questions[0]
        if key(q.qname) != key(self.qname) or q.qtype != self.qtype or q.qclass != 1:
            return None, f"question {q.qname} {QTYPE.get(q.qtype)}, asked {self.qname} {QTYPE.get(self.qtype)}"
        return record, ""


@dataclass(frozen=True)
class Got:
    record: DNSRecord
    now: float
    rtt_s: float


@dataclass(frozen=True)
class NoAnswer:
    now: float
    why: str


Event = Got | NoAnswer


@dataclass(frozen=True)
class Outcome:
    rcode: int
    answers: list[RR]
    authority: list[RR]
    upstream_queries: int
    detail: str = ""


@dataclass
class _Budget:
    now: float
    deadline: float
    queries_left: int
    asked: int = 0


@dataclass(frozen=True)
class _Referral:
    zone: DNSLabel
    servers: list[tuple[str, str]]  # (ip, ns name)
    ns_names: list[DNSLabel]


@dataclass(frozen=True)
class _Alias:
    cname: RR


@dataclass(frozen=True)
class _Failed:
    why: str


_Step = Positive | Negative | _Alias | _Failed
Walk = Generator[Ask, Event, Outcome]


@dataclass
class Resolver:
    cache: Cache
    hints: tuple[Hint, ...]
    config: Config = field(default_factory=Config)
    new_id: Callable[[], int] = lambda: secrets.randbits(16)

    def resolve(self, qname: DNSLabel, qtype: int, now: float) -> Walk:
        budget = _Budget(now, now + self.config.resolution_timeout_s, self.config.max_queries)
        chain: list[RR] = []
        name, seen = qname, {key(qname)}
        for _ in range(MAX_CNAME_HOPS + 1):
            step = yield from self._one_name(name, qtype, budget, 0)
            if isinstance(step, Positive):
                return Outcome(NOERROR, chain + list(step.rrs), [], budget.asked)
            if isinstance(step, Negative):
                return Outcome(step.rcode, chain, [step.soa] if step.soa else [], budget.asked)
            if isinstance(step, _Failed):
                return Outcome(SERVFAIL, [], [], budget.asked, step.why)
            chain.append(step.cname)
            name = step.cname.rdata.label
            if key(name) in seen:
                return Outcome(SERVFAIL, [], [], budget.asked, f"CNAME loop at {name}")
            seen.add(key(name))
        return Outcome(SERVFAIL, [], [], budget.asked, f"CNAME chain longer than {MAX_CNAME_HOPS}")

    def _one_name(self, name: DNSLabel, qtype: int, budget: _Budget, depth: int) -> Generator[Ask, Event, _Step]:
        """The answer for one name (no CNAME following across names): from the cache or by walking down."""
        cached = self._cached(name, qtype, budget.now)
        if cached is not None:
            return cached
        zone, servers = self._closest(key(name), budget.now)
        for _ in range(MAX_REFERRALS):
            if not servers:
                return _Failed(f"no address for any server of {zone}")
            record, server = yield from self._ask_servers(servers, zone, name, qtype, budget)
            if record is None:
                return _Failed(f"no server of {zone} answered {name} {QTYPE.get(qtype)}")
            step = self._digest(record, zone, name, qtype, budget.now)
            if not isinstance(step, _Referral):
                return step
            zone, servers = step.zone, step.servers
            if not servers and depth < MAX_NS_DEPTH:
                servers = yield from self._resolve_ns(step.ns_names, budget, depth + 1)
        return _Failed(f"more than {MAX_REFERRALS} referrals for {name}")

    def _cached(self, name: DNSLabel, qtype: int, now: float) -> _Step | None:
        found = self.cache.get(key(name), qtype, now)
        if found is not None or qtype == QTYPE.CNAME:
            return found
        alias = self.cache.get(key(name), QTYPE.CNAME, now)
        if isinstance(alias, Positive):
            return _Alias(alias.rrs[0])
        return None

    def _closest(self, name: Key, now: float) -> tuple[DNSLabel, list[tuple[str, str]]]:
        """The deepest zone cut above `name` whose servers' addresses are cached; else the root hints."""
        for depth in range(len(name), 0, -1):
            found = self.cache.get(name[len(name) - depth :], QTYPE.NS, now)
            if not isinstance(found, Positive):
                continue
            servers = [(ip, str(rr.rdata.label)) for rr in found.rrs for ip in self._addresses(rr.rdata.label, now)]
            if servers:
                return found.rrs[0].rname, servers
        return DNSLabel("."), [(ip, str(h.name)) for h in self.hints for ip in h.addresses]

    def _addresses(self, name: DNSLabel, now: float) -> list[str]:
        found = self.cache.get(key(name), QTYPE.A, now)
        return [str(rr.rdata) for rr in found.rrs] if isinstance(found, Positive) else []

    def _ask_servers(
        self, servers: list[tuple[str, str]], zone: DNSLabel, name: DNSLabel, qtype: int, budget: _Budget
    ) -> Generator[Ask, Event, tuple[DNSRecord | None, str]]:
        for _ in range(self.config.tries):
            for server, server_name in servers:
                record = yield from self._ask(server, server_name, zone, name, qtype, budget, tcp=False)
                if record is not None and record.header.tc:
                    record = yield from self._ask(server, server_name, zone, name, qtype, budget, tcp=True)
                if record is not None and record.header.rcode in (NOERROR, NXDOMAIN):
                    return record, server
                if budget.queries_left <= 0 or budget.now >= budget.deadline:
                    return None, ""
        return None, ""

    def _ask(
        self, server: str, server_name: str, zone: DNSLabel, name: DNSLabel, qtype: int, budget: _Budget, tcp: bool
    ) -> Generator[Ask, Event, DNSRecord | None]:
        left_s = budget.deadline - budget.now
        if budget.queries_left <= 0 or left_s <= 0:
            return None
        query_id = self.new_id()
        ask = Ask(
            server,
            server_name,
            zone,
            name,
            qtype,
            query_id,
            tcp,
            min(self.config.upstream_timeout_s, left_s),
            _query_wire(name, qtype, query_id),
        )
        budget.queries_left -= 1
        budget.asked += 1
        event = yield ask
        budget.now = event.now
        return event.record if isinstance(event, Got) else None

    def _resolve_ns(
        self, ns_names: list[DNSLabel], budget: _Budget, depth: int
    ) -> Generator[Ask, Event, list[tuple[str, str]]]:
        servers: list[tuple[str, str]] = []
        for ns in ns_names:
            step = yield from self._one_name(ns, QTYPE.A, budget, depth)
            if isinstance(step, Positive):
                servers += [(str(rr.rdata), str(ns)) for rr in step.rrs if rr.rtype == QTYPE.A]
        return servers

    def _digest(self, record: DNSRecord, zone: DNSLabel, name: DNSLabel, qtype: int, now: float) -> _Step | _Referral:
        """Read one accepted response (records outside `zone` already dropped) and cache what it taught."""
        apex = key(zone)
        answers, authority, additional = (_inside(rrs, apex) for rrs in (record.rr, record.auth, record.ar))
        self._cache_answers(answers, now)
        wanted = key(name)
        found = [rr for rr in answers if key(rr.rname) == wanted and (rr.rtype == qtype or qtype == QTYPE.ANY)]
        if found:
            return Positive(tuple(found))
        alias = [rr for rr in answers if key(rr.rname) == wanted and rr.rtype == QTYPE.CNAME]
        if alias:
            return _Alias(alias[0])
        soa = next((rr for rr in authority if rr.rtype == QTYPE.SOA), None)
        if record.header.rcode == NXDOMAIN:
            self.cache.put_negative(wanted, qtype, NXDOMAIN, soa, now)
            return Negative(NXDOMAIN, _negative_soa(soa))
        referral = self._referral(authority, additional, apex, wanted, now)
        if referral is not None:
            return referral
        if record.header.aa or soa is not None:
            self.cache.put_negative(wanted, qtype, NOERROR, soa, now)
            return Negative(NOERROR, _negative_soa(soa))
        return _Failed(f"{zone} server gave neither data, nor a referral down, nor an SOA for {name}")

    def _cache_answers(self, answers: list[RR], now: float) -> None:
        rrsets: dict[tuple[Key, int], list[RR]] = {}
        for rr in answers:
            rrsets.setdefault((key(rr.rname), rr.rtype), []).append(rr)
        for (owner, rtype), rrs in rrsets.items():
            self.cache.put_rrset(owner, rtype, rrs, now)

    def _referral(
        self, authority: list[RR], additional: list[RR], apex: Key, wanted: Key, now: float
    ) -> _Referral | None:
        ns = [rr for rr in authority if rr.rtype == QTYPE.NS]
        if not ns:
            return None
        cut = key(ns[0].rname)
        if len(cut) <= len(apex) or wanted[len(wanted) - len(cut) :] != cut:
            return None  # not strictly below the asked zone and above the name: lame, ignored
        ns = [rr for rr in ns if key(rr.rname) == cut]
        self.cache.put_rrset(cut, QTYPE.NS, ns, now)
        targets = {key(rr.rdata.label): rr.rdata.label for rr in ns}
        servers: list[tuple[str, str]] = []
        for owner, label in targets.items():
            glue = [rr for rr in additional if rr.rtype == QTYPE.A and key(rr.rname) == owner]
            self.cache.put_rrset(owner, QTYPE.A, glue, now)
            servers += [(str(rr.rdata), str(label)) for rr in glue]
        return _Referral(ns[0].rname, servers, list(targets.values()))


def _inside(rrs: list[RR], apex: Key) -> list[RR]:
    """Records owned by names at or below the zone the server was asked about; the rest is out of bailiwick."""
    return [rr for rr in rrs if key(rr.rname)[len(key(rr.rname)) - len(apex) :] == apex and rr.rtype != QTYPE.OPT]


def _negative_soa(soa: RR | None) -> RR | None:
    if soa is None:
        return None
    return RR(soa.rname, soa.rtype, soa.rclass, min(soa.ttl, soa.rdata.times[-1]), soa.rdata)


def _query_wire(name: DNSLabel, qtype: int, query_id: int) -> bytes:
    """An iterative query: RD clear, EDNS0 with our payload size."""
    record = DNSRecord(q=DNSQuestion(name, qtype))
    record.header.id = query_id
    record.header.rd = 0
    record.add_ar(EDNS0(udp_len=UPSTREAM_EDNS_PAYLOAD_BYTES))
    return bytes(record.pack())
