"""The recursive resolver's front: a client's bytes in, either a reply at once or a resolution to run. Sans-IO.

Theory of operation
-------------------
`Front.begin(packet, transport)` applies the same reading rules as the
authoritative server (core.read_query: FORMERR for a malformed query whose
header can be read, NOTIMP for other opcodes, nothing for garbage or
responses; core.screen: BADVERS, REFUSED for other classes and zone transfers)
and then refuses names outside the toy hierarchy (whose top-level label is not
one the topology's zones serve).  What is left is a `Query` to resolve:
`Front.resolver.resolve(...)` is the generator (iterate.py) the shell drives.

`Front.finish(query, outcome, transport, packet, now)` packs the reply: RA
set, RD/CD and the question copied, the answer chain's first owner written as
the client wrote it, TC when it does not fit.  A NOERROR or NXDOMAIN reply that
fits is stored in the transport's wire cache (wirecache.py), which answers the
next identical question without coming here at all.  Every reply of a
resolver carries RA, the header-only error replies included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnslib import RR, DNSLabel

from foobar_ref.dns.core import NOERROR, NXDOMAIN, REFUSED, Query, Reply, Transport, build_reply, read_query, screen
from foobar_ref.dns.iterate import Outcome, Resolver, Walk
from foobar_ref.dns.wirecache import WireCache
from foobar_ref.dns.zone import key

_RA = 0x80


@dataclass
class Front:
    resolver: Resolver
    tlds: frozenset[bytes]  # lower-case top-level labels of the toy hierarchy
    wire: dict[Transport, WireCache] = field(default_factory=lambda: {t: WireCache() for t in Transport})

    def begin(self, packet: bytes, transport: Transport) -> Reply | Query:
        query = read_query(packet)
        if isinstance(query, Reply):
            return _with_ra(query)
        refusal = screen(query)
        if refusal is not None:
            return build_reply(query, refusal[0], transport, detail=refusal[1], recursion_available=True)
        name = key(query.qname)
        if name and name[-1] not in self.tlds:
            detail = f"{query.qname} is outside the toy hierarchy"
            return build_reply(query, REFUSED, transport, detail=detail, recursion_available=True)
        return query

    def resolve(self, query: Query, now: float) -> Walk:
        return self.resolver.resolve(query.qname, query.qtype, now)

    def finish(self, query: Query, outcome: Outcome, transport: Transport, packet: bytes, now: float) -> Reply:
        answers = _owned_as_asked(outcome.answers, query.qname)
        reply = build_reply(
            query, outcome.rcode, transport, answers, outcome.authority, detail=outcome.detail, recursion_available=True
        )
        if outcome.rcode in (NOERROR, NXDOMAIN) and reply.wire is not None and not reply.truncated:
            self.wire[transport].store(bytes(packet), reply.wire, now)
        return reply

    def flush(self) -> None:
        """Forget everything learned (both caches): the next queries walk from the root again."""
        self.resolver.cache.flush()
        for cache in self.wire.values():
            cache.flush()


def _owned_as_asked(answers: list[RR], qname: DNSLabel) -> list[RR]:
    """The records owned by the question's name carry its letter case (0x20); the rest of a chain is as cached."""
    asked = key(qname)
    return [RR(qname, rr.rtype, rr.rclass, rr.ttl, rr.rdata) if key(rr.rname) == asked else rr for rr in answers]


def _with_ra(reply: Reply) -> Reply:
    if reply.wire is None or len(reply.wire) < 4:
        return reply
    wire = reply.wire[:3] + bytes([reply.wire[3] | _RA]) + reply.wire[4:]
    return Reply(wire, reply.outcome, reply.query_id, reply.qname, reply.qtype, reply.detail, reply.truncated)
