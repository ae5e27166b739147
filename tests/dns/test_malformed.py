"""Reliability matrix B3 (DNS bad input) at the core: rows D-01..D-10, D-12, D-13."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from dnslib import CLASS, QTYPE

from foobar_ref.dns import zone
from foobar_ref.dns.core import Authority, Transport
from tests.dns.util import QUERY_ID, header, opt, query, question, reply_id, transcript, wire_name

SHIPPED_ZONE = Path(__file__).resolve().parents[2] / "foobar_ref" / "topologies" / "foobar.com.zone"
FORMERR_BARE = ["FORMERR opcode=0 flags=qr rd"]  # header only: the question cannot be trusted


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority(zone.load(SHIPPED_ZONE))


def _labels(*lengths: int) -> bytes:
    return b"".join(bytes([n]) + b"a" * n for n in lengths) + b"\x00"


WWW_Q = question("www.foobar.com")
ROWS = [
    # (matrix id, bytes, expected transcript, outcome)
    ("D-01 empty", b"", ["no reply"], "DROPPED"),
    ("D-01 11 bytes", header()[:11], ["no reply"], "DROPPED"),
    ("D-02 question missing", header(qd=1), FORMERR_BARE, "FORMERR"),
    ("D-02 question without type/class", header() + wire_name("www.foobar.com"), FORMERR_BARE, "FORMERR"),
    ("D-02 name cut short", header() + b"\x03ww", FORMERR_BARE, "FORMERR"),
    ("D-03 QDCOUNT=0", header(qd=0), FORMERR_BARE, "FORMERR"),
    ("D-03 QDCOUNT=2", header(qd=2) + WWW_Q + WWW_Q, FORMERR_BARE, "FORMERR"),
    ("D-04 pointer loop at offset 12", header() + b"\xc0\x0c" + b"\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-04 pointer after a label", header() + b"\x01a\xc0\x0c\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-04 forward pointer", header() + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 20, FORMERR_BARE, "FORMERR"),
    ("D-04 pointer into the header", header() + b"\xc0\x02\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-05 64-octet label", header() + _labels(64) + b"\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-05 319-octet name", header() + _labels(63, 63, 63, 63, 62) + b"\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-05 256-octet name", header() + _labels(63, 63, 63, 62) + b"\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-06 label type 0x80", header() + b"\x81a\x00\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-06 label type 0x40", header() + b"\x41\x00\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("D-07 QR=1", header(flags=0x8180) + WWW_Q, ["no reply"], "DROPPED"),
    ("D-07 QR=1, bare header", header(flags=0x8000, qd=0), ["no reply"], "DROPPED"),
    ("D-08 OPCODE 5 (UPDATE)", header(flags=(5 << 11) | 0x0100) + WWW_Q, ["NOTIMP opcode=5 flags=qr rd"], "NOTIMP"),
    ("D-08 OPCODE 2 (STATUS)", header(flags=2 << 11) + WWW_Q, ["NOTIMP opcode=2 flags=qr"], "NOTIMP"),
    (
        "D-09 QTYPE 0",
        query("www.foobar.com", 0),
        ["FORMERR opcode=0 flags=qr rd", "question www.foobar.com. IN TYPE0"],
        "FORMERR",
    ),
    (
        "D-09 QCLASS 0",
        query("www.foobar.com", "A", qclass=0),
        ["FORMERR opcode=0 flags=qr rd", "question www.foobar.com. CLASS0 A"],
        "FORMERR",
    ),
    (
        "D-09 QCLASS CH",
        query("www.foobar.com", "A", qclass=CLASS.CH),
        ["REFUSED opcode=0 flags=qr rd", "question www.foobar.com. CH A"],
        "REFUSED",
    ),
    (
        "D-10 ANY: one RRset",
        query("foobar.com", "ANY"),
        ["NOERROR opcode=0 flags=qr aa rd", "question foobar.com. IN ANY", "answer foobar.com. 300 A 127.0.1.1"],
        "NOERROR",
    ),
    (
        "D-10 AXFR",
        query("foobar.com", "AXFR"),
        ["REFUSED opcode=0 flags=qr rd", "question foobar.com. IN AXFR"],
        "REFUSED",
    ),
    (
        "D-10 IXFR",
        query("foobar.com", "IXFR"),
        ["REFUSED opcode=0 flags=qr rd", "question foobar.com. IN IXFR"],
        "REFUSED",
    ),
    (
        "D-12 EDNS version 1: BADVERS",
        query("www.foobar.com", "A", edns=opt(1232, version=1)),
        ["NOERROR opcode=0 flags=qr rd", "question www.foobar.com. IN A", "opt udp=1232 version=0 ext_rcode=1"],
        "BADVERS",
    ),
    ("D-12 two OPT records", header(ar=2) + WWW_Q + opt() + opt(), FORMERR_BARE, "FORMERR"),
    ("D-12 OPT in the answer section", header(an=1) + WWW_Q + opt(), FORMERR_BARE, "FORMERR"),
    ("D-12 OPT not owned by the root", header(ar=1) + WWW_Q + b"\x01x" + opt()[1:], FORMERR_BARE, "FORMERR"),
    ("D-13 trailing junk", query("www.foobar.com") + b"junk", FORMERR_BARE, "FORMERR"),
    ("D-13 trailing junk after OPT", query("www.foobar.com", edns=opt()) + b"\x00", FORMERR_BARE, "FORMERR"),
    ("ARCOUNT says 1, nothing there", header(ar=1) + WWW_Q, FORMERR_BARE, "FORMERR"),
    ("label not UTF-8", header() + b"\x02\xff\xfe\x00\x00\x01\x00\x01", FORMERR_BARE, "FORMERR"),
    ("MAILA", query("foobar.com", 254), ["NOTIMP opcode=0 flags=qr rd", "question foobar.com. IN TYPE254"], "NOTIMP"),
]


@pytest.mark.parametrize(("row", "packet", "expected", "outcome"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(authority: Authority, row: str, packet: bytes, expected: list[str], outcome: str) -> None:
    for transport in Transport:  # the same answer over UDP and TCP, every time ("consistently")
        for _ in range(2):
            reply = authority.respond(packet, transport)
            assert transcript(reply.wire) == expected, row
            assert reply.outcome == outcome
            if reply.wire is not None:
                assert reply_id(reply.wire) == QUERY_ID


def test_pointer_loop_is_cheap(authority: Authority) -> None:
    """D-04: a loop is refused in well under 10 ms (no recursion, no retries)."""
    packet = header() + b"\x01a" * 100 + b"\xc0\x0c\x00\x01\x00\x01"
    started = time.perf_counter()
    reply = authority.respond(packet)
    assert time.perf_counter() - started < 0.010
    assert reply.outcome == "FORMERR"


def test_dropped_messages_say_why(authority: Authority) -> None:
    assert "shorter than a DNS header" in authority.respond(b"\x00" * 5).detail
    assert "QR=1" in authority.respond(header(flags=0x8000) + WWW_Q).detail
    assert "QDCOUNT 2" in authority.respond(header(qd=2) + WWW_Q + WWW_Q).detail
    assert "compression pointer" in authority.respond(header() + b"\xc0\x0c\x00\x01\x00\x01").detail


def test_largest_legal_name_is_answered(authority: Authority) -> None:
    """255 octets exactly (63+63+63+61 + 5 length bytes incl. root) is legal: NXDOMAIN/REFUSED, not FORMERR."""
    name = _labels(63, 63, 63, 61)
    assert len(name) == 255
    reply = authority.respond(header() + name + struct.pack("!HH", QTYPE.A, CLASS.IN))
    assert reply.outcome == "REFUSED"
