"""stub.py against fake servers that send exactly the bytes chosen here (127.0.50.0/24 only)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from foobar_ref.dns import stub

SERVER_IP = "127.0.50.20"
CLIENT_IP = "127.0.50.21"
SERVE_TIMEOUT_S = 5.0

Script = Callable[[DNSRecord], list[bytes]]  # query -> datagrams to send back


def _answer(request: DNSRecord, address: str = "192.0.2.7") -> DNSRecord:
    reply = request.reply()
    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=60))
    return reply


class FakeServer:
    """One UDP and one TCP socket on the same port; each answers per its script, then stops."""

    def __init__(self, udp_script: Script | None, tcp_script: Script | None = None) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((SERVER_IP, 0))
        self.tcp.listen(4)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((SERVER_IP, self.port))
        for sock in (self.tcp, self.udp):
            sock.settimeout(SERVE_TIMEOUT_S)
        self.seen: list[tuple[str, DNSRecord]] = []
        self.threads: list[threading.Thread] = []
        if udp_script is not None:
            self.threads.append(threading.Thread(target=self._serve_udp, args=(udp_script,), daemon=True))
        if tcp_script is not None:
            self.threads.append(threading.Thread(target=self._serve_tcp, args=(tcp_script,), daemon=True))
        for thread in self.threads:
            thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return SERVER_IP, self.port

    def _serve_udp(self, script: Script) -> None:
        try:
            data, client = self.udp.recvfrom(4096)
        except OSError:
            return
        request = DNSRecord.parse(data)
        self.seen.append(("udp", request))
        for datagram in script(request):
            self.udp.sendto(datagram, client)

    def _serve_tcp(self, script: Script) -> None:
        try:
            conn, _ = self.tcp.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(SERVE_TIMEOUT_S)
            length = int.from_bytes(conn.recv(2), "big")
            data = b""
            while len(data) < length:
                data += conn.recv(length - len(data))
            request = DNSRecord.parse(data)
            self.seen.append(("tcp", request))
            for message in script(request):
                conn.sendall(len(message).to_bytes(2, "big") + message)

    def close(self) -> None:
        for thread in self.threads:
            thread.join(SERVE_TIMEOUT_S + 1)
        self.tcp.close()
        self.udp.close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeServer]]:
    made: list[FakeServer] = []

    def make(udp_script: Script | None, tcp_script: Script | None = None) -> FakeServer:
        made.append(FakeServer(udp_script, tcp_script))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_answer_fields(fake: Callable[..., FakeServer]) -> None:
    server = fake(lambda q: [_answer(q).pack()])
    answer = stub.query("www.foobar.com", "A", server.address, CLIENT_IP)
    assert answer.addresses == ["192.0.2.7"]
    assert answer.rcode == "NOERROR"
    assert answer.answers == [("www.foobar.com.", 60, "A", "192.0.2.7")]
    assert answer.server == server.address and answer.transport == "udp"
    assert 0 < answer.rtt_s < 2.0
    assert answer.query_id == server.seen[0][1].header.id
    assert "ANSWER SECTION" in answer.raw_text and "192.0.2.7" in answer.raw_text


def test_query_ids_are_random(fake: Callable[..., FakeServer]) -> None:
    ids = {stub.make_query("www.foobar.com", "A").header.id for _ in range(64)}
    assert len(ids) > 56  # 64 draws from 65536 values rarely collide


def test_wrong_id_and_wrong_question_are_ignored(fake: Callable[..., FakeServer]) -> None:
    """CVE-2022-22846: a reply is taken only if its id and question match the query."""

    def script(q: DNSRecord) -> list[bytes]:
        wrong_id = _answer(q, "203.0.113.66")
        wrong_id.header.id = (q.header.id + 1) % 65536
        wrong_question = _answer(DNSRecord.question("evil.example", "A"), "203.0.113.66")
        wrong_question.header.id = q.header.id
        wrong_type = _answer(DNSRecord.question(str(q.q.qname), "AAAA"), "203.0.113.66")
        wrong_type.header.id = q.header.id
        not_a_response = DNSRecord.question(str(q.q.qname), "A")
        not_a_response.header.id = q.header.id
        junk = b"\x00\x01garbage"
        return [
            wrong_id.pack(),
            wrong_question.pack(),
            wrong_type.pack(),
            not_a_response.pack(),
            junk,
            _answer(q).pack(),
        ]

    server = fake(script)
    answer = stub.query("www.foobar.com", "A", server.address, CLIENT_IP)
    assert answer.addresses == ["192.0.2.7"]
    assert answer.ignored == 5


def test_name_matched_case_insensitively(fake: Callable[..., FakeServer]) -> None:
    def script(q: DNSRecord) -> list[bytes]:
        upper = DNSRecord.question(str(q.q.qname).upper(), "A")
        upper.header.id = q.header.id
        return [_answer(upper).pack()]

    answer = stub.query("www.foobar.com", "A", fake(script).address, CLIENT_IP)
    assert answer.addresses == ["192.0.2.7"] and answer.ignored == 0


def test_only_spoofed_replies_time_out(fake: Callable[..., FakeServer]) -> None:
    def script(q: DNSRecord) -> list[bytes]:
        spoof = _answer(q, "203.0.113.66")
        spoof.header.id ^= 0x5555
        return [spoof.pack()]

    started = time.monotonic()
    with pytest.raises(stub.StubError, match=r"no answer from 127\.0\.50\.20:\d+ \(udp\) within 0\.5 s"):
        stub.query("www.foobar.com", "A", fake(script).address, CLIENT_IP, timeout_s=0.5)
    assert 0.4 < time.monotonic() - started < 1.5


def test_truncated_reply_is_asked_again_over_tcp(fake: Callable[..., FakeServer]) -> None:
    def truncated(q: DNSRecord) -> list[bytes]:
        reply = q.reply()
        reply.header.tc = 1
        return [reply.pack()]

    server = fake(truncated, lambda q: [_answer(q, "192.0.2.8").pack()])
    answer = stub.query("www.foobar.com", "A", server.address, CLIENT_IP)
    assert answer.addresses == ["192.0.2.8"]
    assert answer.transport == "tcp" and answer.truncated_udp
    assert [proto for proto, _ in server.seen] == ["udp", "tcp"]
    assert answer.query_id == server.seen[1][1].header.id


def test_tcp_reply_with_wrong_id_is_an_error(fake: Callable[..., FakeServer]) -> None:
    def wrong(q: DNSRecord) -> list[bytes]:
        reply = _answer(q)
        reply.header.id ^= 1
        return [reply.pack()]

    server = fake(None, wrong)
    with pytest.raises(stub.StubError, match="does not match the query's id and question"):
        stub.query("www.foobar.com", "A", server.address, CLIENT_IP, tcp=True)


def test_tcp_connection_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((SERVER_IP, 0))
        port = probe.getsockname()[1]  # bound, not listening: connect is refused
        with pytest.raises(stub.StubError, match=rf"cannot reach {SERVER_IP}:{port} \(tcp\)"):
            stub.query("www.foobar.com", "A", (SERVER_IP, port), CLIENT_IP, tcp=True, timeout_s=1.0)


def test_bad_name_is_a_stub_error() -> None:
    with pytest.raises(stub.StubError, match="cannot ask"):
        stub.query("a" * 64 + ".example", "A", (SERVER_IP, 9), CLIENT_IP)
