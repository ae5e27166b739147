"""The resolver and the three authorities as real processes on 127.0.50.x (a moved copy of the seed's topology)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RR, DNSRecord

from foobar_ref.dns import dig, stub
from tests.dns.hierarchy import AUTHORITIES, CLIENT_IP, Hop, copy_topology, start, wait_for
from tests.dns.util import closed_by_server, framed, header, query, question, read_framed

RESOLVER = ("127.0.50.1", 53)
ROOT_IP, COM_IP, FOOBAR_IP = "127.0.50.10", "127.0.50.11", "127.0.50.12"
SILENT_IP = "127.0.50.30"  # delegated to, nothing listens
FAKE_IP, FORGER_IP = "127.0.50.40", "127.0.50.41"
BIG_TXT = " ".join(f'"{i:02d}{"x" * 200}"' for i in range(8))
EXTRA = {
    "com.zone": (
        "c2 IN CNAME c3.foobar.com.\n"
        f"silent IN NS ns.silent.com.\nns.silent IN A {SILENT_IP}\n"
        f"forge IN NS ns.forge.com.\nns.forge IN A {FAKE_IP}\n"
    ),
    "foobar.com.zone": f"c1 IN CNAME c2.com.\nc3 IN CNAME www\nshort 1 IN A 127.0.1.2\nbig IN TXT {BIG_TXT}\n",
}
EDITS = {"foobar.com.zone": ("60 )       ; minimum", "1 )       ; minimum")}  # negative answers live 1 s
UPSTREAM_TIMEOUT_S, RESOLUTION_TIMEOUT_S, TCP_READ_TIMEOUT_S = 0.25, 1.5, 2.0
FLAGS = (
    "--upstream-timeout-s", str(UPSTREAM_TIMEOUT_S), "--tries", "2",
    "--resolution-timeout-s", str(RESOLUTION_TIMEOUT_S), "--tcp-read-timeout-s", str(TCP_READ_TIMEOUT_S),
)  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Hop]]:
    topology = copy_topology(tmp_path_factory.mktemp("resolver"), extra=EXTRA, edits=EDITS)
    hops: dict[str, Hop] = {}
    try:
        for name in AUTHORITIES:
            hops[name] = start(topology, name)
        hops["dns"] = start(topology, "dns", *FLAGS)
        yield hops
    finally:
        codes = {name: hop.stop() for name, hop in hops.items()}
    assert set(codes.values()) == {0}, codes


def ask(name: str, qtype: str = "A", tcp: bool = False, timeout_s: float = 3.0) -> stub.StubAnswer:
    return stub.query(name, qtype, RESOLVER, CLIENT_IP, timeout_s=timeout_s, tcp=tcp)


def upstream_for(resolver: Hop, client_id: int) -> list[dict[str, object]]:
    return [r for r in resolver.events("upstream") if r["client_id"] == client_id]


def query_line(resolver: Hop, client_id: int) -> dict[str, object]:
    return wait_for(lambda: next((r for r in resolver.events("query") if r["id"] == client_id), None), what="log line")


def test_resolves_through_the_hierarchy_then_from_cache(stack: dict[str, Hop]) -> None:
    resolver = stack["dns"]
    hits_before = resolver.metric("foobar_dns_cache_total", result="hit")
    first = ask("www.foobar.com")
    assert first.addresses == ["127.0.1.1"] and first.rcode == "NOERROR"
    assert first.record is not None and first.record.header.ra == 1 and first.record.header.aa == 0
    steps = upstream_for(resolver, first.query_id)
    assert [(s["server"], s["zone"]) for s in steps] == [(ROOT_IP, "."), (COM_IP, "com."), (FOOBAR_IP, "foobar.com.")]
    assert all(s["rcode"] == "NOERROR" and s["from_cache"] is False for s in steps)
    assert query_line(resolver, first.query_id)["cache"] == "miss"
    second = ask("WWW.foobar.COM")
    assert second.addresses == ["127.0.1.1"] and second.answers[0][0] == "WWW.foobar.COM."
    assert query_line(resolver, second.query_id)["cache"] == "hit"
    assert upstream_for(resolver, second.query_id) == []
    third = ask("WWW.foobar.COM")  # the same bytes again: the wire cache
    assert query_line(resolver, third.query_id)["cache"] == "hit" and third.addresses == ["127.0.1.1"]
    fourth = ask("www.foobar.com")  # the stored question's own bytes: the exact lane, its own case
    line = query_line(resolver, fourth.query_id)
    assert line["cache"] == "hit" and str(line["client"]).startswith(f"{CLIENT_IP}:")
    assert line["transport"] == "udp" and line["name"] == "www.foobar.com." and line["rcode"] == "NOERROR"
    assert fourth.answers[0][0] == "www.foobar.com." and fourth.addresses == ["127.0.1.1"]
    assert resolver.metric("foobar_dns_cache_total", result="hit") >= hits_before + 3
    assert resolver.metric("foobar_requests_total", outcome="NOERROR") >= 3


def test_dig_trace_shows_root_com_foobar(stack: dict[str, Hop]) -> None:
    text, trace = dig.trace("www.foobar.com", "A", RESOLVER, CLIENT_IP, timeout_s=2.0)
    assert [step.server for step in trace.steps] == [ROOT_IP, COM_IP, FOOBAR_IP]
    assert trace.outcome is not None and [str(rr.rdata) for rr in trace.outcome.answers] == ["127.0.1.1"]
    positions = [text.index(f"from {ip}#53") for ip in (ROOT_IP, COM_IP, FOOBAR_IP)]
    assert positions == sorted(positions) and "www.foobar.com.         300     IN      A       127.0.1.1" in text


def test_short_ttl_expires_on_time(stack: dict[str, Hop]) -> None:
    resolver = stack["dns"]
    first = ask("short.foobar.com")
    assert first.addresses == ["127.0.1.2"] and upstream_for(resolver, first.query_id)
    cached = ask("short.foobar.com")
    assert upstream_for(resolver, cached.query_id) == [] and cached.answers[0][1] <= 1
    time.sleep(1.1)
    later = ask("short.foobar.com")
    assert [s["server"] for s in upstream_for(resolver, later.query_id)] == [FOOBAR_IP]


def test_negative_answer_cached_until_soa_minimum(stack: dict[str, Hop]) -> None:
    resolver = stack["dns"]
    first = ask("gone.foobar.com", "TXT")
    assert first.rcode == "NXDOMAIN" and upstream_for(resolver, first.query_id)
    assert first.record is not None and QTYPE[first.record.auth[0].rtype] == "SOA"
    again = ask("gone.foobar.com", "A")  # NXDOMAIN covers every type
    assert again.rcode == "NXDOMAIN" and upstream_for(resolver, again.query_id) == []
    time.sleep(1.1)
    later = ask("gone.foobar.com", "A")
    assert later.rcode == "NXDOMAIN" and upstream_for(resolver, later.query_id)
    nodata = ask("www.foobar.com", "AAAA")
    assert nodata.rcode == "NOERROR" and nodata.answers == []


def test_large_answer_truncated_over_udp_whole_over_tcp(stack: dict[str, Hop]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((CLIENT_IP, 0))
        sock.settimeout(3.0)
        sock.sendto(query("big.foobar.com", "TXT", qid=77), RESOLVER)
        reply = DNSRecord.parse(sock.recv(4096))
    assert (reply.header.id, reply.header.tc, reply.rr, str(reply.q.qname)) == (77, 1, [], "big.foobar.com.")
    whole = ask("big.foobar.com", "TXT", tcp=True)
    assert whole.transport == "tcp" and len(whole.answers) == 1
    assert whole.record is not None and len(whole.record.rr[0].rdata.data) == 8
    retried = ask("big.foobar.com", "TXT")
    assert retried.truncated_udp and retried.record is not None and len(retried.record.rr[0].rdata.data) == 8


def test_cname_chain_followed_across_zones(stack: dict[str, Hop]) -> None:
    answer = ask("c1.foobar.com")
    assert answer.rcode == "NOERROR" and answer.addresses == ["127.0.1.1"]
    assert [(name, kind) for name, _, kind, _ in answer.answers] == [
        ("c1.foobar.com.", "CNAME"),
        ("c2.com.", "CNAME"),
        ("c3.foobar.com.", "CNAME"),
        ("www.foobar.com.", "A"),
    ]


def test_silent_authority_servfail_within_bound_others_unaffected(stack: dict[str, Hop]) -> None:
    result: dict[str, object] = {}

    def slow() -> None:
        started = time.monotonic()
        result["answer"] = ask("www.silent.com", timeout_s=5.0)
        result["elapsed_s"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    meanwhile = ask("foobar.com", "MX", timeout_s=1.0)  # answered while the other resolution waits
    assert meanwhile.rcode == "NOERROR" and meanwhile.rtt_s < 0.5
    thread.join(6.0)
    answer = result["answer"]
    assert isinstance(answer, stub.StubAnswer) and answer.rcode == "SERVFAIL"
    assert 2 * UPSTREAM_TIMEOUT_S <= float(result["elapsed_s"]) <= RESOLUTION_TIMEOUT_S + 0.5  # type: ignore[arg-type]
    steps = upstream_for(stack["dns"], answer.query_id)
    assert [s["rcode"] for s in steps if s["server"] == SILENT_IP] == ["TIMEOUT", "TIMEOUT"]


def test_outside_the_hierarchy_is_refused(stack: dict[str, Hop]) -> None:
    refused = ask("www.example.org")
    assert refused.rcode == "REFUSED" and refused.record is not None and refused.record.header.ra == 1
    assert upstream_for(stack["dns"], refused.query_id) == []


def _labels(*lengths: int) -> bytes:
    return b"".join(bytes([n]) + b"a" * n for n in lengths) + b"\x00"


BAD = [
    # (matrix row, bytes, expected rcode or None for no reply)
    ("D-01 empty", b"", None),
    ("D-01 truncated header", header(qid=0x0101)[:11], None),
    ("D-02 question missing", header(qid=0x0202), 1),
    ("D-03 QDCOUNT=0", header(qid=0x0303, qd=0), 1),
    ("D-03 QDCOUNT=2", header(qid=0x0304, qd=2) + question("www.foobar.com") * 2, 1),
    ("D-04 pointer loop", header(qid=0x0404) + b"\xc0\x0c\x00\x01\x00\x01", 1),
    ("D-05 64-octet label", header(qid=0x0505) + _labels(64) + b"\x00\x01\x00\x01", 1),
    ("D-05 319-octet name", header(qid=0x0506) + _labels(63, 63, 63, 63, 62) + b"\x00\x01\x00\x01", 1),
    ("D-06 label type 0x40", header(qid=0x0606) + b"\x41\x00\x00\x01\x00\x01", 1),
    ("D-07 QR=1", header(qid=0x0707, flags=0x8180) + question("www.foobar.com"), None),
    ("D-08 opcode UPDATE", header(qid=0x0808, flags=5 << 11) + question("www.foobar.com"), 4),
    ("D-08 opcode 15", header(qid=0x0809, flags=15 << 11) + question("www.foobar.com"), 4),
    ("D-09 QCLASS CH", query("www.foobar.com", "A", qclass=3, qid=0x0909), 5),
    ("D-09 QTYPE 0", query("www.foobar.com", 0, qid=0x090A), 1),
    ("D-10 AXFR", query("foobar.com", "AXFR", qid=0x1010), 5),
    (
        "D-12 two OPT",
        header(qid=0x1212, ar=2) + question("www.foobar.com") + b"\x00\x00\x29\x04\xd0" + b"\x00" * 6 * 2,
        1,
    ),
    ("D-13 trailing junk", query("www.foobar.com", qid=0x1313) + b"junk", 1),
]


def test_bad_input_over_udp(stack: dict[str, Hop]) -> None:
    resolver = stack["dns"]
    malformed_before = resolver.metric("foobar_dns_malformed_total", kind="query")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((CLIENT_IP, 0))
        sock.connect(RESOLVER)
        for row, packet, rcode in BAD:
            sock.settimeout(0.3 if rcode is None else 2.0)
            sock.send(packet)
            if rcode is None:
                with pytest.raises(TimeoutError):
                    sock.recv(4096)
                continue
            reply = sock.recv(4096)
            qid, flags = struct.unpack("!HH", reply[:4])
            assert (qid, flags & 0xF, bool(flags & 0x8000)) == (struct.unpack("!H", packet[:2])[0], rcode, True), row
        for _ in range(200):
            sock.send(os.urandom(int.from_bytes(os.urandom(1), "big") % 100))
    assert resolver.metric("foobar_dns_malformed_total", kind="query") >= malformed_before + 10
    assert ask("www.foobar.com").addresses == ["127.0.1.1"]
    assert resolver.process.poll() is None


def test_tcp_stall_is_closed_and_others_served(stack: dict[str, Hop]) -> None:
    """D-14: a length prefix then silence; UDP and other TCP clients are served; the stall is closed."""
    with socket.create_connection(RESOLVER, timeout=2.0, source_address=(CLIENT_IP, 0)) as stalled:
        stalled.sendall(b"\x00\x40")
        opened = time.monotonic()
        assert ask("www.foobar.com", timeout_s=1.0).rtt_s < 0.5
        assert ask("foobar.com", "MX", tcp=True, timeout_s=1.0).rcode == "NOERROR"
        stalled.settimeout(TCP_READ_TIMEOUT_S + 3)
        assert stalled.recv(1) == b""
        assert TCP_READ_TIMEOUT_S - 0.5 < time.monotonic() - opened < TCP_READ_TIMEOUT_S + 3


def test_tcp_pipelined_and_garbage(stack: dict[str, Hop]) -> None:
    """D-15: two queries in one write, answered in order; then a FORMERR query on the same connection."""
    with socket.create_connection(RESOLVER, timeout=3.0, source_address=(CLIENT_IP, 0)) as sock:
        sock.sendall(framed(query("www.foobar.com", qid=1)) + framed(query("nope2.foobar.com", qid=2)))
        replies = [DNSRecord.parse(read_framed(sock)) for _ in range(2)]
        assert [(r.header.id, r.header.rcode) for r in replies] == [(1, 0), (2, 3)]
        sock.sendall(framed(header(qid=3, qd=0)))
        assert struct.unpack("!HH", read_framed(sock)[:4]) == (3, 0x8181 | 0x0080)  # FORMERR, RD and RA


class ForgingAuthority:
    """forge.com's server: for each query it first sends forgeries, then the real reply (with a poisoned extra)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((FAKE_IP, 53))
        self.sock.settimeout(0.2)
        self.forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.forger.bind((FORGER_IP, 0))
        self.stop = threading.Event()
        self.seen: list[tuple[str, int]] = []
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.seen.append(peer)
            request = DNSRecord.parse(data)
            for forged, via in self.forgeries(request):
                via.sendto(forged, peer)
            time.sleep(0.02)  # the forgeries are in the resolver's socket first
            real = request.reply()
            real.add_answer(*RR.fromZone(f"{request.q.qname} 300 IN A 127.0.9.9"))
            real.add_ar(*RR.fromZone("evil.foobar.com. 300 IN A 6.6.6.6"))  # out of bailiwick for forge.com
            self.sock.sendto(real.pack(), peer)

    def forgeries(self, request: DNSRecord) -> list[tuple[bytes, socket.socket]]:
        def reply(qid: int, name: str, address: str) -> bytes:
            forged = DNSRecord.question(name, "A").reply()
            forged.header.id = qid
            forged.add_answer(*RR.fromZone(f"{name}. 300 IN A {address}"))
            return bytes(forged.pack())

        name, qid = str(request.q.qname).rstrip("."), request.header.id
        return [
            (reply(qid, name, "6.6.6.1"), self.forger),  # right id and question, wrong source
            (reply((qid + 1) % 65536, name, "6.6.6.2"), self.sock),  # wrong id
            (reply(qid, "other.forge.com", "6.6.6.3"), self.sock),  # wrong question
            (b"\x00" * 5, self.sock),  # garbage
        ]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2.0)
        self.sock.close()
        self.forger.close()


def test_forged_responses_are_ignored(stack: dict[str, Hop]) -> None:
    """D-18: forgeries reach the resolver's upstream socket first; only the real reply is taken."""
    resolver = stack["dns"]
    unwanted_before = sum(v for (n, _), v in resolver.metrics().items() if n == "foobar_dns_unwanted_total")
    fake = ForgingAuthority()
    try:
        answer = ask("www.forge.com")
    finally:
        fake.close()
    assert answer.addresses == ["127.0.9.9"]
    assert fake.seen and fake.seen[0][0] == "127.0.50.1"  # asked from the resolver host's own address
    unwanted = sum(v for (n, _), v in resolver.metrics().items() if n == "foobar_dns_unwanted_total")
    assert unwanted >= unwanted_before + 4
    reasons = [str(r["why"]) for r in resolver.events("upstream_ignored")]
    assert any(r.startswith("from 127.0.50.41") for r in reasons) and any(r.startswith("id ") for r in reasons)
    assert any(r.startswith("question ") for r in reasons)
    assert ask("evil.foobar.com").rcode == "NXDOMAIN"  # the poisoned extra was not cached


def test_source_ports_vary(stack: dict[str, Hop]) -> None:
    fake = ForgingAuthority()
    try:
        for i in range(4):
            assert ask(f"n{i}.forge.com").addresses == ["127.0.9.9"]
    finally:
        fake.close()
    ports = {port for _, port in fake.seen}
    assert len(ports) == len(fake.seen) >= 4


def test_tcp_connection_limit_keeps_udp_served(stack: dict[str, Hop]) -> None:
    """D-16 on the resolver: past its TCP limit new connections are closed at once; UDP is unaffected."""
    limit, extra = 32, 4
    sockets = [
        socket.create_connection(RESOLVER, timeout=2.0, source_address=(CLIENT_IP, 0)) for _ in range(limit + extra)
    ]
    try:
        time.sleep(0.5)
        closed = closed_by_server(sockets)
        assert closed.count(False) == limit and closed.count(True) == extra
        assert ask("www.foobar.com", timeout_s=1.0).addresses == ["127.0.1.1"]
    finally:
        for sock in sockets:
            sock.close()
