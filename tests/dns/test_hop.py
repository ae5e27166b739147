"""The authoritative dns hop (dns-foobar) as a real process on 127.0.50.1:5353 (UDP and TCP), queried with stub.py."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnslib import DNSRecord

from foobar_ref.dns import stub
from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics
from tests.dns.hierarchy import copy_topology
from tests.dns.util import closed_by_server, framed, header, query, read_framed

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "foobar_ref" / "topologies" / "seed.toml"
ZONE = ROOT / "foobar_ref" / "topologies" / "foobar.com.zone"
DNS_IP, DNS_PORT = "127.0.50.1", 5353
CLIENT_IP = "127.0.50.10"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
TCP_READ_TIMEOUT_S = 10.0


HOP = "dns-foobar"


def write_topology(folder: Path, ip: str, zone_file: Path = ZONE) -> Path:
    """A copy of the seed with foobar.com's authoritative host moved to `ip`:5353, the zone named by absolute path."""
    copy_topology(folder)
    text = SEED.read_text()
    block = f'name = "{HOP}"\n  kind = "authoritative"\n  ports = {{ dns = 53 }}'
    replacements = [
        ('address = "127.0.3.12"', f'address = "{ip}"'),
        (block, block.replace("dns = 53", f"dns = {DNS_PORT}")),
        ('zone_file = "foobar.com.zone"', f'zone_file = "{zone_file}"'),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, f"the seed changed: {old!r} not found once"
        text = text.replace(old, new)
    path = folder / "seed.toml"
    path.write_text(text)
    return path


@dataclass
class Hop:
    process: subprocess.Popen[bytes]
    log: Path
    state: Path

    def log_records(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_exposition(read_metrics(admin_socket_path(self.state, HOP)))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            raise


def start_hop(folder: Path, ip: str, zone_file: Path = ZONE, wait_ready: bool = True) -> Hop:
    folder.mkdir(parents=True, exist_ok=True)
    topology = write_topology(folder, ip, zone_file)
    log = folder / "dns.log"
    state = folder / "state"
    with log.open("wb") as out, (folder / "dns.err").open("wb") as err:
        argv = [sys.executable, "-m", "foobar_ref.dns", "--topology", str(topology), "--hop", HOP]
        process = subprocess.Popen([*argv, "--state", str(state)], stdout=out, stderr=err, cwd=ROOT)
    hop = Hop(process, log, state)
    if wait_ready:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while f"READY hop={HOP}" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                hop.stop()
                pytest.fail(f"dns hop not ready: {(folder / 'dns.err').read_text()}")
            time.sleep(0.05)
    return hop


@pytest.fixture(scope="module")
def hop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hop]:
    running = start_hop(tmp_path_factory.mktemp("dns-hop"), DNS_IP)
    yield running
    assert running.stop() == 0


SERVER = (DNS_IP, DNS_PORT)


def test_ready_line_names_both_transports(hop: Hop) -> None:
    assert f"READY hop={HOP} listen={DNS_IP}:{DNS_PORT},{DNS_IP}:{DNS_PORT}/udp" in hop.log.read_text()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answers(hop: Hop, tcp: bool) -> None:
    answer = stub.query("www.foobar.com", "A", SERVER, CLIENT_IP, tcp=tcp)
    assert answer.addresses == ["127.0.1.1"] and answer.rcode == "NOERROR"
    assert answer.transport == ("tcp" if tcp else "udp")
    assert answer.record is not None and answer.record.header.aa == 1
    assert stub.query("nope.foobar.com", "A", SERVER, CLIENT_IP, tcp=tcp).rcode == "NXDOMAIN"
    refused = stub.query("www.example.org", "A", SERVER, CLIENT_IP, tcp=tcp)
    assert refused.rcode == "REFUSED" and refused.addresses == []


def test_each_query_is_logged_and_counted(hop: Hop) -> None:
    before = hop.metrics().get(("foobar_requests_total", (("hop", HOP), ("outcome", "NXDOMAIN"))), 0.0)
    answer = stub.query("missing.foobar.com", "TXT", SERVER, CLIENT_IP)
    after = hop.metrics()[("foobar_requests_total", (("hop", HOP), ("outcome", "NXDOMAIN")))]
    assert after == before + 1
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        mine = [r for r in hop.log_records() if r.get("event") == "query" and r.get("id") == answer.query_id]
        if mine:
            break
        time.sleep(0.05)
    assert mine, "no log line for the query"
    record = mine[-1]
    assert str(record["client"]).startswith(f"{CLIENT_IP}:")
    assert (record["name"], record["type"], record["rcode"], record["transport"]) == (
        "missing.foobar.com.",
        "TXT",
        "NXDOMAIN",
        "udp",
    )


def test_malformed_over_udp(hop: Hop) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((CLIENT_IP, 0))
        sock.connect(SERVER)
        sock.settimeout(0.5)
        sock.send(b"\x00" * 5)  # D-01: no reply
        sock.send(header(qid=0x4242, qd=2))  # D-03: FORMERR
        reply = DNSRecord.parse(sock.recv(4096))
        assert (reply.header.id, reply.header.rcode) == (0x4242, 1)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # nothing for the short datagram
    malformed = hop.metrics()[("foobar_dns_malformed_total", (("hop", HOP),))]
    assert malformed >= 2
    assert stub.query("www.foobar.com", "A", SERVER, CLIENT_IP).addresses == ["127.0.1.1"]


def test_tcp_pipelined_queries_answered_in_order(hop: Hop) -> None:
    """D-15: two queries in one write, two replies in the same order."""
    first, second = query("www.foobar.com", qid=1), query("nope.foobar.com", qid=2)
    with socket.create_connection(SERVER, timeout=2.0, source_address=(CLIENT_IP, 0)) as sock:
        sock.sendall(framed(first) + framed(second))
        replies = [DNSRecord.parse(read_framed(sock)) for _ in range(2)]
    assert [(r.header.id, r.header.rcode) for r in replies] == [(1, 0), (2, 3)]


def test_stalled_tcp_client_does_not_stop_udp(hop: Hop) -> None:
    """D-14: a length prefix then silence; UDP is served meanwhile; the stall is closed after the timeout."""
    with socket.create_connection(SERVER, timeout=2.0, source_address=(CLIENT_IP, 0)) as stalled:
        stalled.sendall(b"\x00\x40")  # promises 64 bytes, sends none
        opened = time.monotonic()
        answer = stub.query("www.foobar.com", "A", SERVER, CLIENT_IP, timeout_s=1.0)
        assert answer.addresses == ["127.0.1.1"] and answer.rtt_s < 0.5
        over_tcp = stub.query("foobar.com", "MX", SERVER, CLIENT_IP, tcp=True, timeout_s=1.0)
        assert over_tcp.rcode == "NOERROR"
        stalled.settimeout(TCP_READ_TIMEOUT_S + 3)
        assert stalled.recv(1) == b""  # closed by the server
        assert TCP_READ_TIMEOUT_S - 1 < time.monotonic() - opened < TCP_READ_TIMEOUT_S + 3


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    running = start_hop(tmp_path, "127.0.50.4")
    assert stub.query("www.foobar.com", "A", ("127.0.50.4", DNS_PORT), CLIENT_IP).rcode == "NOERROR"
    started = time.monotonic()
    assert running.stop() == 0
    assert time.monotonic() - started < STOP_TIMEOUT_S
    events = [r["event"] for r in running.log_records()]
    assert events[-2:] == ["stopping", "stopped"]
    assert not admin_socket_path(running.state, HOP).exists()


def test_broken_zone_is_refused_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zone"
    broken.write_text(ZONE.read_text() + "mail IN A 999.0.0.1\n")
    running = start_hop(tmp_path, "127.0.50.5", zone_file=broken, wait_ready=False)
    assert running.process.wait(READY_TIMEOUT_S) == 2
    line = len(ZONE.read_text().splitlines()) + 1
    assert f"{broken}:{line}: not an IPv4 address: '999.0.0.1'" in (tmp_path / "dns.err").read_text()
    assert "READY" not in running.log.read_text()


def test_tcp_connection_limit(hop: Hop) -> None:
    """D-16: past 32 open connections new ones are closed at once; held ones and UDP still work."""
    limit, extra = 32, 6
    refused_key = ("foobar_dns_tcp_refused_total", (("hop", HOP),))
    before = hop.metrics().get(refused_key, 0.0)
    sockets = [
        socket.create_connection(SERVER, timeout=2.0, source_address=(CLIENT_IP, 0)) for _ in range(limit + extra)
    ]
    try:
        time.sleep(0.5)
        closed = closed_by_server(sockets)
        assert closed.count(False) == limit and closed.count(True) == extra
        assert hop.metrics()[refused_key] == before + extra
        assert stub.query("www.foobar.com", "A", SERVER, CLIENT_IP).addresses == ["127.0.1.1"]
        held = sockets[closed.index(False)]
        held.settimeout(2.0)
        held.sendall(framed(query("www.foobar.com", qid=7)))
        assert DNSRecord.parse(read_framed(held)).header.id == 7
    finally:
        for sock in sockets:
            sock.close()


def test_address_in_use_is_named(hop: Hop, tmp_path: Path) -> None:
    """A second hop on the same address exits 2 naming it, and the first keeps serving."""
    second = start_hop(tmp_path, DNS_IP, wait_ready=False)
    assert second.process.wait(READY_TIMEOUT_S) == 2
    assert f"{DNS_IP}:{DNS_PORT}" in (tmp_path / "dns.err").read_text()
    assert "READY" not in second.log.read_text()
    assert stub.query("www.foobar.com", "A", SERVER, CLIENT_IP).addresses == ["127.0.1.1"]
