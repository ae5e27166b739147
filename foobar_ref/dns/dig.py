"""`foobar-ref dig`: one question to the resolver, or the whole walk from the root (+trace), printed like dig.

Theory of operation
-------------------
A plain query is `stub.query` (UDP, TCP when truncated or with +tcp) from the
client host's address; the reply is printed in dig's layout: header, flags,
sections with TTLs, query time, server, size.

`+trace` does what dig does: it asks the server for the root's NS records and
their addresses, then walks down itself with iterative queries (RD clear), from
the client's address, printing every server's reply as it comes.  The walk is
the resolver's own generator (iterate.py) with an empty private cache, driven
here by a blocking loop, so the trace shows exactly the steps the resolver
takes: root, com, foobar.com.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE, DNSLabel, DNSRecord

from foobar_ref.dns import stub
from foobar_ref.dns.cache import Cache
from foobar_ref.dns.iterate import Ask, Config, Event, Got, NoAnswer, Outcome, Resolver
from foobar_ref.dns.zone import Hint

MAX_REPLY_BYTES = 65535


class DigError(Exception):
    """No answer at all (dig's exit status 9)."""


@dataclass
class Step:
    server: str
    server_name: str
    size_bytes: int
    rtt_s: float
    record: DNSRecord | None
    why: str = ""


@dataclass
class Trace:
    steps: list[Step] = field(default_factory=list)
    outcome: Outcome | None = None


def dig(name: str, qtype: str, server: tuple[str, int], source_ip: str | None, tcp: bool, timeout_s: float) -> str:
    try:
        answer = stub.query(name, qtype, server, source_ip, timeout_s=timeout_s, tcp=tcp, edns_payload_bytes=1232)
    except stub.StubError as err:
        raise DigError(f";; communications error: {err}") from None
    assert answer.record is not None
    lines = [f"; <<>> foobar-ref dig <<>> {name} {qtype.upper()} @{server[0]}" + (" +tcp" if tcp else "")]
    if answer.truncated_udp:
        lines.append(";; Truncated, retrying in TCP mode.")
    lines += [";; Got answer:", *render(answer.record), ""]
    lines += [
        f";; Query time: {answer.rtt_s * 1000:.1f} msec",
        f";; SERVER: {server[0]}#{server[1]}({server[0]}) ({answer.transport.upper()})",
        f";; WHEN: {time.strftime('%a %b %d %H:%M:%S %Z %Y')}",
        f";; MSG SIZE  rcvd: {len(answer.record.pack())}",
    ]
    return "\n".join(lines)


def render(record: DNSRecord) -> list[str]:
    h = record.header
    flags = " ".join(f for f in ("qr", "aa", "tc", "rd", "ra", "ad", "cd") if getattr(h, f, 0))
    opt = [rr for rr in record.ar if rr.rtype == QTYPE.OPT]
    additional = [rr for rr in record.ar if rr.rtype != QTYPE.OPT]
    lines = [
        f";; ->>HEADER<<- opcode: QUERY, status: {RCODE[h.rcode]}, id: {h.id}",
        f";; flags: {flags}; QUERY: {len(record.questions)}, ANSWER: {len(record.rr)}, "
        f"AUTHORITY: {len(record.auth)}, ADDITIONAL: {len(record.ar)}",
    ]
    if opt:
        do = " do" if opt[0].ttl & 0x8000 else ""
        lines += [
            "",
            ";; OPT PSEUDOSECTION:",
            f"; EDNS: version: {(opt[0].ttl >> 16) & 0xFF}, flags:{do}; udp: {opt[0].rclass}",
        ]
    lines += ["", ";; QUESTION SECTION:"] + [f";{q.qname}\t\tIN\t{QTYPE[q.qtype]}" for q in record.questions]
    for title, rrs in (("ANSWER", record.rr), ("AUTHORITY", record.auth), ("ADDITIONAL", additional)):
        if rrs:
            lines += ["", f";; {title} SECTION:"] + [rr.toZone() for rr in rrs]
    return lines


def trace(
    name: str, qtype: str, server: tuple[str, int], source_ip: str | None, timeout_s: float, upstream_port: int = 53
) -> tuple[str, Trace]:
    """The walk from the root as dig +trace prints it, and its steps (for tests)."""
    lines = [f"; <<>> foobar-ref dig <<>> {name} {qtype.upper()} +trace", ""]
    hints = _root_hints(server, source_ip, timeout_s, lines)
    resolver = Resolver(Cache(), hints, Config(upstream_timeout_s=timeout_s, tries=1))
    result = Trace()
    walk = resolver.resolve(DNSLabel(name), getattr(QTYPE, qtype.upper()), time.monotonic())
    event: Event | None = None
    while True:
        try:
            ask = walk.send(event)  # type: ignore[arg-type]
        except StopIteration as stop:
            result.outcome = stop.value
            break
        step = _perform(ask, source_ip, upstream_port)
        result.steps.append(step)
        lines += _step_lines(step, ask, upstream_port)
        event = Got(step.record, time.monotonic(), step.rtt_s) if step.record else NoAnswer(time.monotonic(), step.why)
    if result.outcome is not None and result.outcome.rcode not in (0, 3):
        lines.append(f";; resolution failed: {RCODE[result.outcome.rcode]} {result.outcome.detail}")
    return "\n".join(lines), result


def _root_hints(server: tuple[str, int], source_ip: str | None, timeout_s: float, lines: list[str]) -> tuple[Hint, ...]:
    try:
        roots = stub.query(".", "NS", server, source_ip, timeout_s=timeout_s)
    except stub.StubError as err:
        raise DigError(f";; communications error: {err}") from None
    assert roots.record is not None
    lines += [rr.toZone() for rr in roots.record.rr]
    lines += [
        f";; Received {len(roots.record.pack())} bytes from {server[0]}#{server[1]}({server[0]}) "
        f"in {roots.rtt_s * 1000:.0f} ms",
        "",
    ]
    hints = []
    for rr in roots.record.rr:
        if rr.rtype == QTYPE.NS:
            try:
                addresses = stub.query(str(rr.rdata.label), "A", server, source_ip, timeout_s=timeout_s).addresses
            except stub.StubError:
                addresses = []
            hints.append(Hint(rr.rdata.label, tuple(addresses)))
    if not any(h.addresses for h in hints):
        raise DigError(f";; no root server address from {server[0]}#{server[1]}")
    return tuple(hints)


def _perform(ask: Ask, source_ip: str | None, port: int) -> Step:
    started = time.monotonic()
    family = socket.SOCK_STREAM if ask.tcp else socket.SOCK_DGRAM
    try:
        with socket.socket(socket.AF_INET, family) as sock:
            sock.settimeout(ask.timeout_s)
            sock.bind((source_ip or "0.0.0.0", 0))
            data = _exchange_tcp(sock, ask, port) if ask.tcp else _exchange_udp(sock, ask, port, started)
    except OSError as err:
        return Step(ask.server, ask.server_name, 0, time.monotonic() - started, None, str(err))
    if data is None:
        return Step(ask.server, ask.server_name, 0, time.monotonic() - started, None, "timed out")
    record, why = ask.check(data, (ask.server, port), port)
    return Step(ask.server, ask.server_name, len(data), time.monotonic() - started, record, why)


def _exchange_udp(sock: socket.socket, ask: Ask, port: int, started: float) -> bytes | None:
    sock.sendto(ask.wire, (ask.server, port))
    while (left_s := started + ask.timeout_s - time.monotonic()) > 0:
        sock.settimeout(left_s)
        try:
            data, source = sock.recvfrom(MAX_REPLY_BYTES)
        except TimeoutError:
            return None
        if ask.check(data, (source[0], source[1]), port)[0] is not None:
            return data
    return None


def _exchange_tcp(sock: socket.socket, ask: Ask, port: int) -> bytes | None:
    sock.connect((ask.server, port))
    sock.sendall(len(ask.wire).to_bytes(2, "big") + ask.wire)
    try:
        length = int.from_bytes(_exactly(sock, 2), "big")
        return _exactly(sock, length)
    except (TimeoutError, ConnectionError):
        return None


def _exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _step_lines(step: Step, ask: Ask, port: int) -> list[str]:
    where = f"{step.server}#{port}({step.server_name.rstrip('.') or step.server})"
    if step.record is None:
        return [f";; no usable reply from {where} for {ask.qname} {QTYPE[ask.qtype]}: {step.why}", ""]
    body = [rr.toZone() for rr in step.record.rr + step.record.auth]
    if step.record.header.tc:
        body.append(";; Truncated, retrying in TCP mode.")
    status = RCODE[step.record.header.rcode]
    tail = f";; Received {step.size_bytes} bytes from {where} in {step.rtt_s * 1000:.0f} ms ({status})"
    return [*body, tail, ""]
