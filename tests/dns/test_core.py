"""core.Authority as transcripts: query bytes in, reply lines out."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import CLASS, DNSRecord

from foobar_ref.dns import zone
from foobar_ref.dns.core import Authority, Transport
from tests.dns.util import QUERY_ID, opt, query, reply_id, transcript

SHIPPED_ZONE = Path(__file__).resolve().parents[2] / "foobar_ref" / "topologies" / "foobar.com.zone"
SOA = "authority foobar.com. 60 SOA ns1.foobar.com. hostmaster.foobar.com. 2026112501 3600 600 604800 60"

TEST_ZONE = "\n".join(
    [
        "$ORIGIN example.test.",
        "$TTL 120",
        "@ IN SOA ns1 admin 1 3600 600 86400 30",
        "@ IN NS ns1",
        "ns1 IN A 192.0.2.1",
        "www IN A 192.0.2.10",
        "    IN A 192.0.2.11",
        "alias IN CNAME www",
        "out IN CNAME www.elsewhere.example.",
        "loop1 IN CNAME loop2",
        "loop2 IN CNAME loop1",
        "x.deep IN A 192.0.2.20",
        *[f'mid IN TXT "{i:02d}{"m" * 98}"' for i in range(6)],
        *[f'big IN TXT "{i:02d}{"b" * 98}"' for i in range(14)],
    ]
)
TEST_SOA = "authority example.test. 30 SOA ns1.example.test. admin.example.test. 1 3600 600 86400 30"


@pytest.fixture(scope="module")
def shipped() -> Authority:
    return Authority(zone.load(SHIPPED_ZONE))


@pytest.fixture(scope="module")
def test_zone() -> Authority:
    return Authority(zone.parse(TEST_ZONE, source="test.zone"))


SHIPPED_CASES = [
    (
        "www A: the balancer's public address, authoritative",
        query("www.foobar.com", "A"),
        ["NOERROR opcode=0 flags=qr aa rd", "question www.foobar.com. IN A", "answer www.foobar.com. 300 A 127.0.1.1"],
    ),
    (
        "apex A",
        query("foobar.com", "A"),
        ["NOERROR opcode=0 flags=qr aa rd", "question foobar.com. IN A", "answer foobar.com. 300 A 127.0.1.1"],
    ),
    (
        "letter case of the question is kept (0x20), matching is case-insensitive",
        query("wWw.FOOBAR.com", "A"),
        ["NOERROR opcode=0 flags=qr aa rd", "question wWw.FOOBAR.com. IN A", "answer wWw.FOOBAR.com. 300 A 127.0.1.1"],
    ),
    (
        "RD=0 is copied",
        query("ns1.foobar.com", "A", flags=0),
        ["NOERROR opcode=0 flags=qr aa", "question ns1.foobar.com. IN A", "answer ns1.foobar.com. 300 A 127.0.3.12"],
    ),
    (
        "MX at the apex",
        query("foobar.com", "MX"),
        [
            "NOERROR opcode=0 flags=qr aa rd",
            "question foobar.com. IN MX",
            "answer foobar.com. 300 MX 10 mail.foobar.com.",
        ],
    ),
    (
        "TXT at the apex",
        query("foobar.com", "TXT"),
        ["NOERROR opcode=0 flags=qr aa rd", "question foobar.com. IN TXT", 'answer foobar.com. 300 TXT "v=spf1 -all"'],
    ),
    (
        "a name that does not exist: NXDOMAIN, SOA with the negative TTL (min(300, 60))",
        query("nope.foobar.com", "A"),
        ["NXDOMAIN opcode=0 flags=qr aa rd", "question nope.foobar.com. IN A", SOA],
    ),
    (
        "below an existing name, still NXDOMAIN",
        query("a.www.foobar.com", "A"),
        ["NXDOMAIN opcode=0 flags=qr aa rd", "question a.www.foobar.com. IN A", SOA],
    ),
    (
        "an existing name without that type: NOERROR, no answer, SOA",
        query("www.foobar.com", "AAAA"),
        ["NOERROR opcode=0 flags=qr aa rd", "question www.foobar.com. IN AAAA", SOA],
    ),
    (
        "outside the zone: REFUSED, not authoritative",
        query("example.org", "A"),
        ["REFUSED opcode=0 flags=qr rd", "question example.org. IN A"],
    ),
    (
        "a name that only ends with the zone's text is outside it",
        query("notfoobar.com", "A"),
        ["REFUSED opcode=0 flags=qr rd", "question notfoobar.com. IN A"],
    ),
    (
        "the root is outside the zone",
        query(".", "NS"),
        ["REFUSED opcode=0 flags=qr rd", "question . IN NS"],
    ),
    (
        "EDNS is echoed: version 0, our 1232-byte payload, DO copied",
        query("www.foobar.com", "A", edns=opt(4096, do=True)),
        [
            "NOERROR opcode=0 flags=qr aa rd",
            "question www.foobar.com. IN A",
            "answer www.foobar.com. 300 A 127.0.1.1",
            "opt udp=1232 version=0 ext_rcode=0 do",
        ],
    ),
    (
        "ANY gets one RRset (RFC 8482), the lowest type",
        query("foobar.com", "ANY"),
        ["NOERROR opcode=0 flags=qr aa rd", "question foobar.com. IN ANY", "answer foobar.com. 300 A 127.0.1.1"],
    ),
    (
        "class CH: REFUSED",
        query("www.foobar.com", "A", qclass=CLASS.CH),
        ["REFUSED opcode=0 flags=qr rd", "question www.foobar.com. CH A"],
    ),
    (
        "zone transfer: REFUSED",
        query("foobar.com", "AXFR"),
        ["REFUSED opcode=0 flags=qr rd", "question foobar.com. IN AXFR"],
    ),
]


@pytest.mark.parametrize(("why", "packet", "expected"), SHIPPED_CASES, ids=[c[0] for c in SHIPPED_CASES])
def test_shipped_zone(shipped: Authority, why: str, packet: bytes, expected: list[str]) -> None:
    for transport in Transport:
        wire = shipped.answer(packet, transport)
        assert transcript(wire) == expected, why
        assert wire is not None and reply_id(wire) == QUERY_ID


TEST_ZONE_CASES = [
    (
        "two A records under one owner (continuation line)",
        query("www.example.test", "A"),
        [
            "NOERROR opcode=0 flags=qr aa rd",
            "question www.example.test. IN A",
            "answer www.example.test. 120 A 192.0.2.10",
            "answer www.example.test. 120 A 192.0.2.11",
        ],
    ),
    (
        "a CNAME is followed inside the zone",
        query("alias.example.test", "A"),
        [
            "NOERROR opcode=0 flags=qr aa rd",
            "question alias.example.test. IN A",
            "answer alias.example.test. 120 CNAME www.example.test.",
            "answer www.example.test. 120 A 192.0.2.10",
            "answer www.example.test. 120 A 192.0.2.11",
        ],
    ),
    (
        "asking for the CNAME itself",
        query("alias.example.test", "CNAME"),
        [
            "NOERROR opcode=0 flags=qr aa rd",
            "question alias.example.test. IN CNAME",
            "answer alias.example.test. 120 CNAME www.example.test.",
        ],
    ),
    (
        "a CNAME out of the zone is given as is",
        query("out.example.test", "A"),
        [
            "NOERROR opcode=0 flags=qr aa rd",
            "question out.example.test. IN A",
            "answer out.example.test. 120 CNAME www.elsewhere.example.",
        ],
    ),
    (
        "a CNAME loop ends in SERVFAIL, not a hang",
        query("loop1.example.test", "A"),
        [
            "SERVFAIL opcode=0 flags=qr aa rd",
            "question loop1.example.test. IN A",
            *[f"answer loop{n}.example.test. 120 CNAME loop{3 - n}.example.test." for n in (1, 2, 1, 2, 1, 2, 1, 2)],
        ],
    ),
    (
        "an empty non-terminal exists: NOERROR/no data, not NXDOMAIN",
        query("deep.example.test", "A"),
        ["NOERROR opcode=0 flags=qr aa rd", "question deep.example.test. IN A", TEST_SOA],
    ),
    (
        "ANY at an empty non-terminal: no data",
        query("deep.example.test", "ANY"),
        ["NOERROR opcode=0 flags=qr aa rd", "question deep.example.test. IN ANY", TEST_SOA],
    ),
]


@pytest.mark.parametrize(("why", "packet", "expected"), TEST_ZONE_CASES, ids=[c[0] for c in TEST_ZONE_CASES])
def test_test_zone(test_zone: Authority, why: str, packet: bytes, expected: list[str]) -> None:
    assert transcript(test_zone.answer(packet)) == expected, why


# --- D-11: truncation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "edns", "truncated_over_udp"),
    [
        ("mid", None, True),  # ~700 bytes > 512 without EDNS
        ("mid", opt(1232), False),  # fits the EDNS payload
        ("mid", opt(600), True),  # client's own smaller payload
        ("mid", opt(100), True),  # payload below 512 counts as 512
        ("big", opt(4096), True),  # ~1500 bytes > the 1232 cap, whatever the client offers
        ("www", None, False),
    ],
)
def test_udp_truncation(test_zone: Authority, name: str, edns: bytes | None, truncated_over_udp: bool) -> None:
    packet = query(f"{name}.example.test", "TXT" if name != "www" else "A", edns=edns)
    full = test_zone.respond(packet, Transport.TCP)
    udp = test_zone.respond(packet, Transport.UDP)
    assert full.wire is not None and udp.wire is not None
    assert not full.truncated and "tc" not in transcript(full.wire)[0]
    assert udp.truncated is truncated_over_udp
    limit = 512 if edns is None else min(max(int.from_bytes(edns[3:5], "big"), 512), 1232)
    assert len(udp.wire) <= limit
    parsed = DNSRecord.parse(udp.wire)
    assert str(parsed.q.qname) == f"{name}.example.test."  # the question is kept
    if truncated_over_udp:
        assert parsed.header.tc == 1 and parsed.rr == [] and parsed.auth == []
        assert (parsed.ar != []) == (edns is not None)  # OPT still echoed
        assert len(full.wire) > limit
    else:
        assert udp.wire == full.wire


def test_outcome_names_the_rcode(shipped: Authority) -> None:
    assert shipped.respond(query("www.foobar.com")).outcome == "NOERROR"
    assert shipped.respond(query("zzz.foobar.com")).outcome == "NXDOMAIN"
    assert shipped.respond(query("example.org")).outcome == "REFUSED"
    reply = shipped.respond(query("www.foobar.com", "AAAA"))
    assert (reply.outcome, reply.query_id, reply.qname, reply.qtype) == ("NOERROR", QUERY_ID, "www.foobar.com.", "AAAA")


def test_query_made_by_dnslib_is_answered(shipped: Authority) -> None:
    request = DNSRecord.question("www.foobar.com", "A")
    reply = DNSRecord.parse(shipped.answer(request.pack()) or b"")
    assert reply.header.id == request.header.id
    assert [str(rr.rdata) for rr in reply.rr] == ["127.0.1.1"]
