"""D-17 for the resolver: any bytes into its query handler (Front + resolution + wire cache) -> no exception.

Each packet goes through what the shell does with a datagram: the wire cache, then `Front.begin`, then (for a
query) the resolution, driven against in-process authorities, then `Front.finish`.  Either no reply (garbage,
responses) or a reply dnslib parses, with the query's id, QR and RA set, within the UDP size limit.
"""

from __future__ import annotations

import struct

from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from foobar_ref.dns import zone
from foobar_ref.dns.cache import Cache
from foobar_ref.dns.core import Query, Reply, Transport
from foobar_ref.dns.iterate import Config, Resolver
from foobar_ref.dns.resolver import Front
from tests.dns.test_iterate import TOPOLOGIES, _authorities, serve
from tests.dns.util import opt, query

AUTHORITIES = _authorities()
ANSWER = serve(AUTHORITIES)
FRONT = Front(
    Resolver(Cache(), zone.load_hints(TOPOLOGIES / "root.hints"), Config(upstream_timeout_s=0.1, tries=1)),
    frozenset({b"com", b"foobar-ref"}),
)
SEEDS = [
    query("www.foobar.com"),
    query("nope.foobar.com", "AAAA", edns=opt(4096, do=True)),
    query("example.org", "ANY"),
    query("foobar.com", "MX", edns=opt(512)),
    query("c1.foobar.com", "A", edns=opt(1232)),
]


def handle(packet: bytes, now: float = 0.0) -> bytes | None:
    hit = FRONT.wire[Transport.UDP].lookup(packet, now)
    if hit is not None:
        return hit[0]
    begun = FRONT.begin(packet, Transport.UDP)
    if isinstance(begun, Reply):
        return begun.wire
    assert isinstance(begun, Query)
    walk = FRONT.resolve(begun, now)
    event = None
    for _ in range(100):
        try:
            ask = walk.send(event)  # type: ignore[arg-type]
        except StopIteration as stop:
            return FRONT.finish(begun, stop.value, Transport.UDP, packet, now).wire
        event = ANSWER(ask)
        assert event is not None, f"asked {ask.server}, which the test zones do not have"
    raise AssertionError("resolution did not finish")


def check(packet: bytes) -> None:
    wire = handle(packet)
    if wire is None:
        assert len(packet) < 12 or packet[2] & 0x80, "only short messages and responses go unanswered"
        return
    parsed = DNSRecord.parse(wire)
    assert parsed.header.qr == 1 and parsed.header.ra == 1
    assert parsed.header.id == struct.unpack("!H", packet[:2])[0]
    assert len(wire) <= 1232
    assert handle(packet) == wire or parsed.header.rcode not in (0, 3)  # the same answer from the cache


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes(packet: bytes) -> None:
    check(packet)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4), st.data())
def test_mutated_valid_queries(seed: bytes, flips: list[tuple[int, int]], data: st.DataObject) -> None:
    packet = bytearray(seed)
    for position, value in flips:
        packet[position % len(packet)] = value
    cut = data.draw(st.integers(0, len(packet)))
    check(bytes(packet[: max(cut, 12)]) if data.draw(st.booleans()) else bytes(packet))
