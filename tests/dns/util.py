"""Helpers for the dns tests: raw query bytes and a transcript of a reply."""

from __future__ import annotations

import socket
import struct

from dnslib import CLASS, QTYPE, RCODE, DNSRecord

QUERY_ID = 0x1234
RD = 0x0100


def wire_name(name: str) -> bytes:
    """Uncompressed wire form of a dotted name ('' or '.' is the root)."""
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\x00"


def header(qid: int = QUERY_ID, flags: int = RD, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


def question(name: str, qtype: int = QTYPE.A, qclass: int = CLASS.IN) -> bytes:
    return wire_name(name) + struct.pack("!HH", qtype, qclass)


def opt(payload_bytes: int = 1232, version: int = 0, do: bool = False) -> bytes:
    """An OPT pseudo-record (RFC 6891): root owner, type 41, class = payload, ttl = ext-rcode/version/flags."""
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", QTYPE.OPT, payload_bytes, ttl, 0)


def query(
    name: str,
    qtype: int | str = "A",
    qclass: int = CLASS.IN,
    flags: int = RD,
    edns: bytes | None = None,
    qid: int = QUERY_ID,
) -> bytes:
    code = getattr(QTYPE, qtype) if isinstance(qtype, str) else qtype
    return header(qid, flags, ar=1 if edns else 0) + question(name, code, qclass) + (edns or b"")


def transcript(wire: bytes | None) -> list[str]:
    """A reply as lines a reader can compare at a glance (the id is checked separately)."""
    if wire is None:
        return ["no reply"]
    record = DNSRecord.parse(wire)
    h = record.header
    flags = " ".join(f for f in ("qr", "aa", "tc", "rd", "ra", "cd") if getattr(h, f))
    lines = [f"{RCODE[h.rcode]} opcode={h.opcode} flags={flags}"]
    lines += [f"question {q.qname} {_class(q.qclass)} {QTYPE[q.qtype]}" for q in record.questions]
    lines += [f"answer {rr.rname} {rr.ttl} {QTYPE[rr.rtype]} {rr.rdata}" for rr in record.rr]
    lines += [f"authority {rr.rname} {rr.ttl} {QTYPE[rr.rtype]} {rr.rdata}" for rr in record.auth]
    for rr in record.ar:
        if rr.rtype == QTYPE.OPT:
            ext_rcode, version, do = rr.ttl >> 24, (rr.ttl >> 16) & 0xFF, bool(rr.ttl & 0x8000)
            lines.append(f"opt udp={rr.rclass} version={version} ext_rcode={ext_rcode}" + (" do" if do else ""))
        else:
            lines.append(f"additional {rr.rname} {QTYPE[rr.rtype]} {rr.rdata}")
    return lines


def _class(value: int) -> str:
    try:
        return str(CLASS[value])
    except Exception:  # dnslib's Bimap raises DNSError for a class it has no name for
        return f"CLASS{value}"


def reply_id(wire: bytes) -> int:
    return int(struct.unpack("!H", wire[:2])[0])


def closed_by_server(sockets: list[socket.socket]) -> list[bool]:
    """For each connected socket: has the server closed it (EOF or reset) without our sending anything?"""
    closed = []
    for sock in sockets:
        sock.setblocking(False)
        try:
            closed.append(sock.recv(1) == b"")
        except BlockingIOError:
            closed.append(False)
        except ConnectionResetError:
            closed.append(True)
    return closed


def framed(packet: bytes) -> bytes:
    """A DNS message as sent over TCP: 2-byte length, then the message (RFC 1035 4.2.2)."""
    return struct.pack("!H", len(packet)) + packet


def read_framed(sock: socket.socket) -> bytes:
    """One length-prefixed DNS message from a TCP socket."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            assert chunk, "connection closed early"
            data += chunk
        return data

    return exactly(struct.unpack("!H", exactly(2))[0])
