"""The authoritative answer for one DNS message: bytes in, bytes (or nothing) out.

Theory of operation
-------------------
`Authority(zone).respond(packet, transport)` decides in this order, and never
raises, whatever the bytes:

1. Fewer than 12 bytes: no header to answer to, so no reply (DROPPED).
   QR=1: a response, never answered (no reflection loops), so no reply.
2. OPCODE other than QUERY: NOTIMP.
3. The question is read here, not by dnslib, because dnslib accepts what
   RFC 1035 forbids: QDCOUNT must be 1 (RFC 9619), labels at most 63 octets
   (a length byte with 0x40/0x80 set is an unsupported label type), names at
   most 255 octets, compression pointers only strictly backwards (each jump
   must land before the previous one, so a loop cannot run), label text UTF-8
   (so every reply can be parsed back by dnslib).  The remaining sections are
   parsed by dnslib; bytes left after the last record are FORMERR too, the way
   BIND treats trailing garbage.  Any of these: FORMERR.
4. EDNS: at most one OPT, in the additional section, owned by the root
   (else FORMERR); version other than 0 gets BADVERS (RFC 6891 §6.1.3).
5. QTYPE 0, QCLASS 0 or QTYPE OPT: FORMERR.  A class other than IN, or a
   zone transfer (AXFR/IXFR): REFUSED.  MAILA/MAILB: NOTIMP.
6. A name outside the zone: REFUSED (this server is not a recursive resolver).
   Inside the zone: the data with AA set; NXDOMAIN with the SOA in authority
   for a name that does not exist; NOERROR with no answer and the SOA for a
   name without that type.  CNAMEs are followed inside the zone.  ANY gets one
   RRset (RFC 8482).

The reply copies the query's id, RD and CD bits and its question as written
(letter case included).  With EDNS, an OPT is echoed (version 0, our payload
size, DO copied).  Over UDP a reply larger than 512 bytes (no EDNS) or
min(client payload, 1232) bytes (EDNS) is cut to header + question (+ OPT)
with TC set, so the client asks again over TCP.

`Reply.outcome` is the rcode's name, or DROPPED, for counting; `detail` says
why a message was dropped or refused as malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from dnslib import CLASS, EDNS0, QTYPE, RR, DNSBuffer, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from foobar_ref.dns.zone import Key, Zone, key

HEADER_BYTES = 12
MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 255
UDP_PLAIN_LIMIT_BYTES = 512  # RFC 1035 §4.2.1
UDP_EDNS_CAP_BYTES = 1232  # the DNS flag day 2020 figure, unbound's default
TCP_LIMIT_BYTES = 65535  # the 2-byte length prefix
MAX_CNAME_HOPS = 8

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}
DROPPED = "DROPPED"

_QR, _AA, _TC, _RD, _CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0010
_ZONE_TRANSFERS = (QTYPE.AXFR, QTYPE.IXFR)
_MAIL_META = (253, 254)  # MAILB, MAILA (RFC 1035 §3.2.3)


class Transport(Enum):
    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True)
class Reply:
    """What to send (None: nothing) and what happened, for the log and the counters."""

    wire: bytes | None
    outcome: str
    query_id: int | None = None
    qname: str | None = None
    qtype: str | None = None
    detail: str = ""
    truncated: bool = False


class Malformed(Exception):
    """The message has a readable header but breaks the wire format: FORMERR."""


@dataclass(frozen=True)
class Edns:
    payload_bytes: int
    version: int
    do: bool


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    qname: DNSLabel
    qtype: int
    qclass: int
    edns: Edns | None


class Authority:
    """Answers queries for one zone; holds no other state, so one instance serves every transport."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def answer(self, packet: bytes, transport: Transport = Transport.UDP) -> bytes | None:
        return self.respond(packet, transport).wire

    def respond(self, packet: bytes, transport: Transport = Transport.UDP) -> Reply:
        query = read_query(packet)
        if isinstance(query, Reply):
            return query
        return self._decide(query, transport)

    def _decide(self, query: Query, transport: Transport) -> Reply:
        refusal = screen(query)
        if refusal is not None:
            return build_reply(query, refusal[0], transport, detail=refusal[1])
        name = key(query.qname)
        if not self.zone.contains(name):
            return build_reply(query, REFUSED, transport, detail=f"not in zone {self.zone.origin}")
        cut = self.zone.delegation(name)
        if cut is not None and not (cut == name and query.qtype == QTYPE.DS):
            return self._referral(query, cut, transport)
        rcode, answers, authority = self._lookup(query)
        additional = self._addresses_of(answers) if query.qtype == QTYPE.NS else []
        return build_reply(query, rcode, transport, answers, authority, additional, authoritative=True)

    def _referral(self, query: Query, cut: Key, transport: Transport) -> Reply:
        """Below a zone cut: NOERROR without AA, the cut's NS in authority, their in-zone addresses as glue."""
        ns = list(self.zone.rrset(cut, QTYPE.NS))
        glue = self._addresses_of(ns)
        return build_reply(query, NOERROR, transport, [], ns, glue, detail=f"referral to {ns[0].rname}")

    def _addresses_of(self, ns_records: list[RR]) -> list[RR]:
        glue: list[RR] = []
        for rr in ns_records:
            if rr.rtype not in (QTYPE.NS, QTYPE.MX):
                continue
            target = key(rr.rdata.label if rr.rtype == QTYPE.NS else rr.rdata.mx)
            if self.zone.contains(target):
                glue += self.zone.rrset(target, QTYPE.A) + self.zone.rrset(target, QTYPE.AAAA)
        return glue

    def _lookup(self, query: Query) -> tuple[int, list[RR], list[RR]]:
        """rcode, answer and authority sections for a name inside the zone, above any cut."""
        owner, name = query.qname, key(query.qname)
        answers: list[RR] = []
        for _ in range(MAX_CNAME_HOPS):
            if not self.zone.exists(name):
                return NXDOMAIN, answers, [self._negative_soa()]
            found = self._data(name, query.qtype)
            if found:
                return NOERROR, answers + _renamed(found, owner), []
            cname = self.zone.rrset(name, QTYPE.CNAME)
            if not cname:
                return NOERROR, answers, [self._negative_soa()]
            answers += _renamed(cname, owner)
            owner = cname[0].rdata.label
            name = key(owner)
            if not self.zone.contains(name) or self.zone.delegation(name) is not None:
                return NOERROR, answers, []  # the target's zone is someone else's to answer
        return SERVFAIL, answers, []  # a CNAME chain longer than MAX_CNAME_HOPS (or a loop)

    def _data(self, name: Key, qtype: int) -> tuple[RR, ...]:
        if qtype == QTYPE.ANY:
            return _one_rrset(self.zone.at(name))
        return self.zone.rrset(name, qtype)

    def _negative_soa(self) -> RR:
        soa = self.zone.soa
        return RR(soa.rname, soa.rtype, soa.rclass, self.zone.negative_ttl_s, soa.rdata)


def read_query(packet: bytes) -> Query | Reply:
    """The query in `packet`, or the Reply (maybe no reply at all) for a message that is not a usable query."""
    packet = bytes(packet)
    if len(packet) < HEADER_BYTES:
        return Reply(None, DROPPED, detail=f"{len(packet)} bytes: shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = struct.unpack("!6H", packet[:HEADER_BYTES])
    if flags & _QR:
        return Reply(None, DROPPED, qid, detail="QR=1: a response, not a query")
    opcode = (flags >> 11) & 0xF
    if opcode != 0:
        return _bare(qid, flags, NOTIMP, f"opcode {opcode} is not QUERY")
    try:
        return parse_query(packet, qid, flags, (qdcount, ancount, nscount, arcount))
    except Malformed as err:
        return _bare(qid, flags, FORMERR, str(err))


def screen(query: Query) -> tuple[int, str] | None:
    """(rcode, why) for a well-formed query no server here answers with data; None when it may be answered."""
    if query.edns is not None and query.edns.version != 0:
        return BADVERS, f"EDNS version {query.edns.version}"
    if query.qtype == 0 or query.qclass == 0 or query.qtype == QTYPE.OPT:
        return FORMERR, "QTYPE/QCLASS 0 or OPT is not a question"
    if query.qclass != CLASS.IN:
        return REFUSED, f"class {_class_name(query.qclass)} is not served"
    if query.qtype in _ZONE_TRANSFERS:
        return REFUSED, "zone transfers are not offered"
    if query.qtype in _MAIL_META:
        return NOTIMP, "MAILA/MAILB are obsolete"
    return None


def build_reply(
    query: Query,
    rcode: int,
    transport: Transport,
    answers: list[RR] | None = None,
    authority: list[RR] | None = None,
    additional: list[RR] | None = None,
    authoritative: bool = False,
    detail: str = "",
    recursion_available: bool = False,
) -> Reply:
    """The reply to `query`, cut to header + question (+ OPT) with TC when it does not fit the transport."""
    sections = (answers or [], authority or [], additional or [])
    record = _record(query, rcode, authoritative, *sections)
    record.header.ra = int(recursion_available)
    wire = bytes(record.pack())
    truncated = len(wire) > _size_limit(query, transport)
    if truncated:
        record = _record(query, rcode, authoritative, [], [], [])
        record.header.ra = int(recursion_available)
        record.header.tc = 1
        wire = bytes(record.pack())
    qtype = QTYPE[query.qtype]
    return Reply(wire, RCODE_NAMES[rcode], query.id, str(query.qname), qtype, detail, truncated)


def parse_query(packet: bytes, qid: int, flags: int, counts: tuple[int, int, int, int]) -> Query:
    """Read the question and the other sections; raise Malformed with the reason."""
    qdcount, ancount, nscount, arcount = counts
    if qdcount != 1:
        raise Malformed(f"QDCOUNT {qdcount} (a query asks exactly one question)")
    labels, offset = read_name(packet, HEADER_BYTES)
    if offset + 4 > len(packet):
        raise Malformed("question ends before its type and class")
    qtype, qclass = struct.unpack("!HH", packet[offset : offset + 4])
    buffer = DNSBuffer(packet)
    buffer.offset = offset + 4
    try:
        records = [RR.parse(buffer) for _ in range(ancount + nscount + arcount)]
    except Exception as err:  # dnslib raises DNSError, BufferError, struct.error, ...
        raise Malformed(f"bad record after the question: {err}") from None
    if buffer.remaining():
        raise Malformed(f"{buffer.remaining()} bytes after the last record")
    edns = _edns(records, ancount + nscount)
    return Query(qid, flags, DNSLabel(list(labels)), qtype, qclass, edns)


def read_name(packet: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """Walk a wire-format name: (labels, offset after it).  Pointers must jump strictly backwards."""
    labels: list[bytes] = []
    octets = 1  # the root label's length byte
    position, end, floor = offset, None, offset
    while True:
        if position >= len(packet):
            raise Malformed("name runs past the end of the message")
        length = packet[position]
        if length & 0xC0 == 0xC0:
            if position + 1 >= len(packet):
                raise Malformed("compression pointer cut short")
            target = ((length & 0x3F) << 8) | packet[position + 1]
            end = position + 2 if end is None else end
            if target >= floor or target < HEADER_BYTES:
                raise Malformed(f"compression pointer to offset {target} loops, points forward or into the header")
            position = floor = target
            continue
        if length > MAX_LABEL_OCTETS:
            raise Malformed(f"label length byte 0x{length:02x}: over 63 octets (unsupported label type)")
        if length == 0:
            return tuple(labels), (position + 1 if end is None else end)
        label = packet[position + 1 : position + 1 + length]
        if len(label) < length:
            raise Malformed("label runs past the end of the message")
        octets += length + 1
        if octets > MAX_NAME_OCTETS:
            raise Malformed("name longer than 255 octets")
        try:
            label.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("label is not UTF-8 text") from None
        labels.append(label)
        position += 1 + length


def _edns(records: list[RR], additional_from: int) -> Edns | None:
    opts = [(i, rr) for i, rr in enumerate(records) if rr.rtype == QTYPE.OPT]
    if not opts:
        return None
    if len(opts) > 1:
        raise Malformed("more than one OPT record (RFC 6891 §6.1.1)")
    index, opt = opts[0]
    if index < additional_from or opt.rname.label:
        raise Malformed("OPT record outside the additional section or not owned by the root")
    return Edns(max(opt.rclass, UDP_PLAIN_LIMIT_BYTES), (opt.ttl >> 16) & 0xFF, bool(opt.ttl & 0x8000))


def _size_limit(query: Query, transport: Transport) -> int:
    if transport is Transport.TCP:
        return TCP_LIMIT_BYTES
    if query.edns is None:
        return UDP_PLAIN_LIMIT_BYTES
    return min(query.edns.payload_bytes, UDP_EDNS_CAP_BYTES)


def _record(
    query: Query, rcode: int, authoritative: bool, answers: list[RR], authority: list[RR], additional: list[RR]
) -> DNSRecord:
    header = DNSHeader(id=query.id, qr=1, opcode=0, aa=int(authoritative), rcode=rcode & 0xF)
    header.rd = int(bool(query.flags & _RD))
    header.cd = int(bool(query.flags & _CD))
    question = DNSQuestion(query.qname, query.qtype, query.qclass)
    record = DNSRecord(header, q=question, rr=answers, auth=authority, ar=list(additional))
    if query.edns is not None:
        flags = "do" if query.edns.do else ""
        record.add_ar(EDNS0(ext_rcode=rcode >> 4, version=0, flags=flags, udp_len=UDP_EDNS_CAP_BYTES))
    return record


def server_failure(packet: bytes, detail: str) -> Reply:
    """SERVFAIL for a query the server failed on (a bug, not the client's fault); nothing for a response."""
    if len(packet) < HEADER_BYTES or packet[2] & 0x80:
        return Reply(None, DROPPED, detail=detail)
    qid, flags = struct.unpack("!HH", packet[:4])
    return _bare(qid, flags, SERVFAIL, detail)


def _bare(qid: int, flags: int, rcode: int, detail: str) -> Reply:
    """Header-only reply (no question): for messages whose question cannot be trusted."""
    reply_flags = _QR | (flags & (0x7800 | _RD | _CD)) | rcode
    return Reply(struct.pack("!6H", qid, reply_flags, 0, 0, 0, 0), RCODE_NAMES[rcode], qid, detail=detail)


def _class_name(value: int) -> str:
    try:
        return str(CLASS[value])
    except Exception:  # dnslib's Bimap raises DNSError for a class it has no name for
        return f"CLASS{value}"


def _renamed(rrs: tuple[RR, ...], owner: DNSLabel) -> list[RR]:
    """Copies owned by the name as the client wrote it (0x20 letter case kept)."""
    return [RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in rrs]


def _one_rrset(rrs: tuple[RR, ...]) -> tuple[RR, ...]:
    """RFC 8482: answer ANY with one RRset, here the one with the lowest type number."""
    if not rrs:
        return ()
    lowest = min(rr.rtype for rr in rrs)
    return tuple(rr for rr in rrs if rr.rtype == lowest)
