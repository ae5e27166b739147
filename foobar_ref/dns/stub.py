"""The browser's stub resolver: one blocking question to one server (stdlib sockets, no event loop).

Theory of operation
-------------------
`query()` asks over UDP from `source_ip` and a fresh ephemeral port, with a
random 16-bit id (RFC 5452).  The UDP socket is connected to the server, so
the kernel drops datagrams from any other address or port; of what remains, a
reply is taken only if it is a response (QR=1) with the same id and the same
question (name compared case-insensitively, type and class exact).  Anything
else is counted in `ignored` and the stub keeps waiting until the deadline:
this is the check dnslib's own client lacked before CVE-2022-22846.  A reply
with TC set is asked again over TCP (2-byte length framing, RFC 7766), with a
new id.  Every wait is bounded by `timeout_s`; failure raises StubError with a
message a learner can act on.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass, field, replace

from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSError, DNSQuestion, DNSRecord

MAX_UDP_REPLY_BYTES = 65535
LENGTH_PREFIX_BYTES = 2


class StubError(Exception):
    """No usable answer: timeout, connection failure or an unreadable reply."""


@dataclass(frozen=True)
class StubAnswer:
    addresses: list[str]  # the A records' addresses, in answer order
    rcode: str
    answers: list[tuple[str, int, str, str]]  # (name, ttl, type, value)
    rtt_s: float
    server: tuple[str, int]
    query_id: int
    raw_text: str  # dig-like text of the whole reply
    transport: str = "udp"
    truncated_udp: bool = False  # the UDP reply had TC set and the answer came over TCP
    ignored: int = 0  # replies dropped because id or question did not match
    record: DNSRecord | None = field(default=None, repr=False, compare=False)


def query(
    name: str,
    qtype: str | int = "A",
    server: tuple[str, int] = ("127.0.0.1", 53),
    source_ip: str | None = None,
    timeout_s: float = 2.0,
    tcp: bool = False,
    edns_payload_bytes: int | None = None,
) -> StubAnswer:
    """Ask `server` for `name`/`qtype`; retry over TCP when the UDP reply is truncated.

    `timeout_s` bounds the whole exchange, the TCP retry included.
    """
    qtype_name = QTYPE[qtype] if isinstance(qtype, int) else qtype.upper()
    if tcp:
        return _over_tcp(name, qtype_name, server, source_ip, timeout_s, edns_payload_bytes)
    deadline = time.monotonic() + timeout_s
    answer = _over_udp(name, qtype_name, server, source_ip, timeout_s, edns_payload_bytes)
    if answer.record is not None and answer.record.header.tc:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise StubError(f"truncated reply from {server[0]}:{server[1]} and no time left to ask over TCP")
        retried = _over_tcp(name, qtype_name, server, source_ip, left_s, edns_payload_bytes)
        return replace(retried, truncated_udp=True, ignored=answer.ignored)
    return answer


def make_query(name: str, qtype: str, edns_payload_bytes: int | None = None) -> DNSRecord:
    try:
        record = DNSRecord.question(name, qtype)
    except (DNSError, UnicodeError, ValueError) as err:  # dnslib: bad label, IDNA failure, unknown type
        raise StubError(f"cannot ask {name!r} {qtype}: {err}") from None
    record.header.id = secrets.randbits(16)
    if edns_payload_bytes is not None:
        record.add_ar(EDNS0(udp_len=edns_payload_bytes))
    return record


def matches(request: DNSRecord, reply: DNSRecord) -> bool:
    """Same id, a response, and exactly the question we asked (RFC 5452 §9.1)."""
    if reply.header.id != request.header.id or not reply.header.qr or len(reply.questions) != 1:
        return False
    asked, got = request.q, reply.questions[0]
    return _same_name(asked, got) and asked.qtype == got.qtype and asked.qclass == got.qclass


def _same_name(asked: DNSQuestion, got: DNSQuestion) -> bool:
    return [bytes(x).lower() for x in asked.qname.label] == [bytes(x).lower() for x in got.qname.label]


def _over_udp(
    name: str, qtype: str, server: tuple[str, int], source_ip: str | None, timeout_s: float, edns: int | None
) -> StubAnswer:
    request = make_query(name, qtype, edns)
    ignored = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _bind_and_connect(sock, server, source_ip, timeout_s, "udp")
        started = time.monotonic()
        deadline = started + timeout_s
        sock.send(request.pack())
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                break
            sock.settimeout(remaining_s)
            try:
                data = sock.recv(MAX_UDP_REPLY_BYTES)
            except TimeoutError:
                break
            except OSError as err:  # ICMP port unreachable arrives as ECONNREFUSED on a connected socket
                raise StubError(f"dns server {server[0]}:{server[1]} (udp): {err.strerror or err}") from None
            reply = _parse(data)
            if reply is None or not matches(request, reply):
                ignored += 1
                continue
            return _answer(reply, request, server, time.monotonic() - started, "udp", ignored)
    raise StubError(f"no answer from {server[0]}:{server[1]} (udp) within {timeout_s:g} s")


def _over_tcp(
    name: str, qtype: str, server: tuple[str, int], source_ip: str | None, timeout_s: float, edns: int | None
) -> StubAnswer:
    request = make_query(name, qtype, edns)
    wire = request.pack()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        started = time.monotonic()
        _bind_and_connect(sock, server, source_ip, timeout_s, "tcp")
        try:
            sock.sendall(len(wire).to_bytes(LENGTH_PREFIX_BYTES, "big") + wire)
            prefix = _recv_exactly(sock, LENGTH_PREFIX_BYTES, started + timeout_s)
            data = _recv_exactly(sock, int.from_bytes(prefix, "big"), started + timeout_s)
        except TimeoutError:
            raise StubError(f"no answer from {server[0]}:{server[1]} (tcp) within {timeout_s:g} s") from None
        except OSError as err:
            raise StubError(f"dns server {server[0]}:{server[1]} (tcp): {err.strerror or err}") from None
    reply = _parse(data)
    if reply is None:
        raise StubError(f"unreadable reply from {server[0]}:{server[1]} (tcp)")
    if not matches(request, reply):
        raise StubError(f"reply from {server[0]}:{server[1]} (tcp) does not match the query's id and question")
    return _answer(reply, request, server, time.monotonic() - started, "tcp", 0)


def _bind_and_connect(
    sock: socket.socket, server: tuple[str, int], source_ip: str | None, timeout_s: float, proto: str
) -> None:
    sock.settimeout(timeout_s)
    try:
        if source_ip:
            sock.bind((source_ip, 0))  # port 0: a fresh random ephemeral port per query
        sock.connect(server)
    except TimeoutError:
        raise StubError(f"cannot reach {server[0]}:{server[1]} ({proto}) within {timeout_s:g} s") from None
    except OSError as err:
        where = f" from {source_ip}" if source_ip else ""
        raise StubError(f"cannot reach {server[0]}:{server[1]} ({proto}){where}: {err.strerror or err}") from None


def _recv_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < count:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise TimeoutError
        sock.settimeout(remaining_s)
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed before the whole reply arrived")
        data += chunk
    return bytes(data)


def _parse(data: bytes) -> DNSRecord | None:
    try:
        return DNSRecord.parse(data)
    except Exception:  # dnslib raises DNSError and, on odd input, other kinds
        return None


def _answer(
    reply: DNSRecord, request: DNSRecord, server: tuple[str, int], rtt_s: float, transport: str, ignored: int
) -> StubAnswer:
    answers = [(str(rr.rname), int(rr.ttl), QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr]
    addresses = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A and rr.rclass == CLASS.IN]
    return StubAnswer(
        addresses=addresses,
        rcode=RCODE[reply.header.rcode],
        answers=answers,
        rtt_s=rtt_s,
        server=server,
        query_id=request.header.id,
        raw_text=str(reply),
        transport=transport,
        ignored=ignored,
        record=reply,
    )
