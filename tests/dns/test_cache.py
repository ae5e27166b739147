"""cache.py and wirecache.py with time given by hand: TTLs decrease, entries expire, negatives live by the SOA."""

from __future__ import annotations

import struct

from dnslib import QTYPE, RR, DNSLabel, DNSRecord

from foobar_ref.dns.cache import NOERROR, NXDOMAIN, Cache, Negative, Positive
from foobar_ref.dns.wirecache import WireCache
from foobar_ref.dns.zone import key
from tests.dns.util import opt, query

WWW = key(DNSLabel("www.example.test"))
SOA = RR.fromZone("example.test. 300 IN SOA ns1.example.test. admin.example.test. 1 3600 600 86400 5")[0]


def _a(ttl: int) -> RR:
    return RR.fromZone(f"www.example.test. {ttl} IN A 192.0.2.1")[0]


def test_positive_ttl_decreases_and_expires() -> None:
    cache = Cache()
    cache.put_rrset(WWW, QTYPE.A, [_a(10)], now=100.0)
    found = cache.get(WWW, QTYPE.A, now=103.5)
    assert isinstance(found, Positive) and found.rrs[0].ttl == 6
    assert cache.get(WWW, QTYPE.AAAA, now=103.5) is None
    assert cache.get(WWW, QTYPE.A, now=110.0) is None  # expired exactly at its TTL
    assert len(cache) == 0


def test_ttl_zero_is_not_stored_and_ttls_are_capped() -> None:
    cache = Cache(max_ttl_s=60)
    cache.put_rrset(WWW, QTYPE.A, [_a(0)], now=0.0)
    assert cache.get(WWW, QTYPE.A, now=0.0) is None
    cache.put_rrset(WWW, QTYPE.A, [_a(86400)], now=0.0)
    assert cache.get(WWW, QTYPE.A, now=59.9) is not None and cache.get(WWW, QTYPE.A, now=60.0) is None


def test_nxdomain_answers_every_type_until_the_soa_minimum() -> None:
    cache = Cache()
    cache.put_negative(WWW, QTYPE.A, NXDOMAIN, SOA, now=0.0)
    for qtype in (QTYPE.A, QTYPE.MX, QTYPE.TXT):
        found = cache.get(WWW, qtype, now=4.0)
        assert isinstance(found, Negative) and found.rcode == NXDOMAIN
        assert found.soa is not None and found.soa.ttl == 1  # min(300, 5) = 5, 4 s later
    assert cache.get(WWW, QTYPE.A, now=5.0) is None


def test_nodata_is_per_type_and_needs_an_soa() -> None:
    cache = Cache()
    cache.put_negative(WWW, QTYPE.AAAA, NOERROR, SOA, now=0.0)
    assert isinstance(cache.get(WWW, QTYPE.AAAA, now=1.0), Negative)
    assert cache.get(WWW, QTYPE.A, now=1.0) is None
    cache.put_negative(WWW, QTYPE.MX, NOERROR, None, now=0.0)  # RFC 2308 §5: no SOA, no caching
    assert cache.get(WWW, QTYPE.MX, now=0.0) is None


def test_cache_is_bounded() -> None:
    cache = Cache(max_entries=3)
    for i in range(5):
        cache.put_rrset((f"n{i}".encode(), b"test"), QTYPE.A, [_a(100)], now=0.0)
    assert len(cache) == 3
    assert cache.get((b"n0", b"test"), QTYPE.A, now=1.0) is None
    assert cache.get((b"n4", b"test"), QTYPE.A, now=1.0) is not None


def _reply_for(packet: bytes, ttl: int) -> bytes:
    request = DNSRecord.parse(packet)
    reply = request.reply(ra=1)
    reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=ttl, rdata=_a(ttl).rdata))
    return bytes(reply.pack())


def test_wire_cache_patches_id_case_and_ttl() -> None:
    wire = WireCache()
    asked = query("www.example.test", qid=1, edns=opt(1232))
    assert wire.store(asked, _reply_for(asked, 30), now=10.0) is not None
    again = query("WwW.ExAmple.test", qid=0xBEEF, edns=opt(1232))
    hit = wire.lookup(again, now=17.9)
    assert hit is not None
    reply = DNSRecord.parse(hit[0])
    assert reply.header.id == 0xBEEF and str(reply.q.qname) == "WwW.ExAmple.test."
    assert str(reply.rr[0].rname) == "WwW.ExAmple.test." and reply.rr[0].ttl == 23
    assert hit[1].rcode == "NOERROR" and '"cache": "hit"' in hit[1].log_tail
    assert wire.lookup(again, now=40.0) is None  # expired when the TTL ran out


def test_wire_cache_misses_on_any_other_difference() -> None:
    wire = WireCache()
    asked = query("www.example.test", qid=1, edns=opt(1232))
    wire.store(asked, _reply_for(asked, 30), now=0.0)
    assert wire.lookup(query("www.example.test", qid=2, edns=opt(1232)), now=1.0) is not None
    assert wire.lookup(query("www.example.test", qid=2), now=1.0) is None  # no OPT
    assert wire.lookup(query("www.example.test", qid=2, edns=opt(4096)), now=1.0) is None  # other payload size
    assert wire.lookup(query("www.example.test", "AAAA", qid=2, edns=opt(1232)), now=1.0) is None
    assert wire.lookup(query("www.example.test", qid=2, flags=0, edns=opt(1232)), now=1.0) is None  # RD differs
    # type 65 (HTTPS) is 0x41 'A' and type 97 is 'a': lower-casing the key must not mix them up
    https = query("www.example.test", 65, qid=3)
    wire.store(https, _reply_for(https, 30), now=0.0)
    assert wire.lookup(query("www.example.test", 97, qid=4), now=1.0) is None
    assert struct.unpack("!H", wire.lookup(https, now=1.0)[0][:2])[0] == 3  # type: ignore[index]


def test_wire_cache_does_not_keep_uncacheable_replies() -> None:
    wire = WireCache()
    asked = query("www.example.test", qid=1)
    assert wire.store(asked, _reply_for(asked, 0), now=0.0) is None
    empty = DNSRecord.parse(asked).reply()
    assert wire.store(asked, bytes(empty.pack()), now=0.0) is None  # nothing bounds its lifetime


def _answer(hit: tuple[bytes, object] | None) -> tuple[int, str, int]:
    assert hit is not None
    reply = DNSRecord.parse(hit[0])
    return reply.header.id, str(reply.rr[0].rname), reply.rr[0].ttl


def test_wire_cache_exact_twin_keeps_its_case_and_ages_by_the_second() -> None:
    wire = WireCache()
    asked = query("www.example.test", qid=1, edns=opt(1232))
    wire.store(asked, _reply_for(asked, 30), now=10.0)
    twin = query("www.example.test", qid=7, edns=opt(1232))
    assert _answer(wire.lookup(twin, now=10.2)) == (7, "www.example.test.", 30)
    assert _answer(wire.lookup(twin, now=10.99)) == (7, "www.example.test.", 30)
    assert _answer(wire.lookup(query("WWW.example.test", qid=8, edns=opt(1232)), now=11.5)) == (
        8,
        "WWW.example.test.",
        29,
    )
    assert _answer(wire.lookup(twin, now=11.6)) == (7, "www.example.test.", 29)  # its own case again
    assert _answer(wire.lookup(twin, now=39.99)) == (7, "www.example.test.", 1)
    assert wire.lookup(twin, now=40.0) is None  # expired, through the exact lane too
    assert len(wire) == 0 and not wire.exact


def test_wire_cache_replacing_and_evicting_forget_both_keys() -> None:
    wire = WireCache(max_entries=2)
    first = query("www.example.test", qid=1)
    wire.store(first, _reply_for(first, 30), now=0.0)
    wire.store(query("WWW.example.test", qid=2), _reply_for(first, 60), now=1.0)  # same question, new case
    assert len(wire) == 1 and len(wire.exact) == 1
    assert _answer(wire.lookup(query("www.example.test", qid=3), now=2.0))[2] == 59  # the newer reply
    for n, name in enumerate(("a.example.test", "b.example.test")):
        other = query(name, qid=10 + n)
        wire.store(other, _reply_for(other, 30), now=2.0)
    assert len(wire) == 2 and len(wire.exact) == 2
    assert wire.lookup(query("www.example.test", qid=4), now=3.0) is None  # the oldest went first
    wire.flush()
    assert len(wire) == 0 and not wire.exact
