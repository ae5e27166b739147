"""D-17 as a property: any bytes -> no exception, and either no reply or a reply dnslib can parse."""

from __future__ import annotations

import struct
from pathlib import Path

from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from foobar_ref.dns import zone
from foobar_ref.dns.core import Authority, Transport
from tests.dns.util import opt, query

SHIPPED_ZONE = Path(__file__).resolve().parents[2] / "foobar_ref" / "topologies" / "foobar.com.zone"
AUTHORITY = Authority(zone.load(SHIPPED_ZONE))
ALLOWED = {"NOERROR", "NXDOMAIN", "FORMERR", "NOTIMP", "REFUSED", "BADVERS", "SERVFAIL", "DROPPED"}
SEEDS = [
    query("www.foobar.com"),
    query("nope.foobar.com", "AAAA", edns=opt(4096, do=True)),
    query("example.org", "ANY"),
    query("foobar.com", "MX", edns=opt(512)),
]


def check(packet: bytes) -> None:
    for transport in Transport:
        reply = AUTHORITY.respond(packet, transport)
        assert reply.outcome in ALLOWED
        if reply.wire is None:
            assert len(packet) < 12 or packet[2] & 0x80, "only short messages and responses go unanswered"
            continue
        parsed = DNSRecord.parse(reply.wire)
        assert parsed.header.qr == 1
        assert parsed.header.id == struct.unpack("!H", packet[:2])[0]
        assert parsed.header.rd == (packet[2] & 0x01)
        if transport is Transport.UDP:
            assert len(reply.wire) <= 1232


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes(packet: bytes) -> None:
    check(packet)


@settings(max_examples=1500, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.tuples(*[st.integers(0, 3)] * 4),
    st.binary(max_size=300),
)
def test_header_then_arbitrary_body(qid: int, flags: int, counts: tuple[int, int, int, int], body: bytes) -> None:
    check(struct.pack("!6H", qid, flags & ~0x8000, *counts) + body)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4), st.data())
def test_mutated_valid_queries(seed: bytes, flips: list[tuple[int, int]], data: st.DataObject) -> None:
    packet = bytearray(seed)
    for position, value in flips:
        packet[position % len(packet)] = value
    cut = data.draw(st.integers(0, len(packet)))
    check(bytes(packet[: max(cut, 12)]) if data.draw(st.booleans()) else bytes(packet))
