"""Tiny servers for the browser's tests, on 127.0.54.0/24 only: a DNS responder and an HTTP(S) server.

Each runs in a thread, answers with real protocol bytes (dnslib, ssl, h11), records what it saw,
and stops when its `with` block ends.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import h11
from dnslib import QTYPE, RCODE, RR, A, DNSError, DNSRecord

from tests.topologies import host, resolver, service, topology_text, web_store_db

CLIENT_IP = "127.0.54.10"
DNS_IP = "127.0.54.53"
WEB_IP = "127.0.54.2"
POLL_S = 0.05
HANDLER_TIMEOUT_S = 3.0


class FakeDns:
    """Names in `zone` get their A record, others NXDOMAIN; `silent` never answers."""

    def __init__(self, zone: dict[str, str], silent: bool = False) -> None:
        self.zone = zone
        self.silent = silent
        self.queries: list[tuple[str, str]] = []  # (client ip, name asked)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((DNS_IP, 0))
        self.sock.settimeout(POLL_S)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
                query = DNSRecord.parse(data)
            except (TimeoutError, DNSError):
                continue
            name = str(query.q.qname).rstrip(".")
            self.queries.append((peer[0], name))
            if self.silent:
                continue
            reply = query.reply()
            if name in self.zone:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(self.zone[name]), ttl=300))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            self.sock.sendto(reply.pack(), peer)


class FakeWeb:
    """An HTTP/1.1 server (TLS when given a certificate) answering every request with a JSON echo.

    modes: "echo" (keep-alive honoured), "close_after_one" (closes after each response although the
    client asked to keep the connection), "silent" (reads the request, never answers), "raw" (sends
    `raw_reply` bytes as the whole response).
    """

    def __init__(
        self, cert: Path | None = None, key: Path | None = None, mode: str = "echo", raw_reply: bytes = b""
    ) -> None:
        self.mode = mode
        self.raw_reply = raw_reply
        self.context: ssl.SSLContext | None = None
        if cert is not None and key is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(cert, key)
        self.connections: list[str] = []  # peer "ip:port" per accepted connection
        self.requests: list[dict[str, object]] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((WEB_IP, 0))
        self.listener.listen(16)
        self.listener.settimeout(POLL_S)
        self.port: int = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> FakeWeb:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, peer = self.listener.accept()
            except TimeoutError:
                continue
            self.connections.append(f"{peer[0]}:{peer[1]}")
            thread = threading.Thread(target=self._handle, args=(raw, peer[0]), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, raw: socket.socket, peer_ip: str) -> None:
        raw.settimeout(HANDLER_TIMEOUT_S)
        try:
            sock = self.context.wrap_socket(raw, server_side=True) if self.context else raw
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with sock:
            try:
                self._converse(sock, peer_ip)
            except (OSError, h11.ProtocolError):
                return

    def _converse(self, sock: socket.socket, peer_ip: str) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request, body = _read_request(conn, sock)
            if request is None:
                return
            if self.mode == "silent":
                self._stop.wait(HANDLER_TIMEOUT_S)
                return
            if self.mode == "raw":
                sock.sendall(self.raw_reply)
                return
            sock.sendall(self._respond(conn, request, body, peer_ip))
            if self.mode == "close_after_one" or conn.our_state is not h11.DONE:
                return
            if conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _respond(self, conn: h11.Connection, request: h11.Request, body: bytes, peer_ip: str) -> bytes:
        seen = {
            "method": request.method.decode(),
            "target": request.target.decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.headers],
            "body": body.decode("utf-8", errors="replace"),
            "peer": peer_ip,
        }
        self.requests.append(seen)
        payload = json.dumps(seen).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("X-Served-By", "fake-web"),
            ("X-Request-Id", f"req-{len(self.requests)}"),
        ]
        out = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
        out += conn.send(h11.Data(data=payload))
        out += conn.send(h11.EndOfMessage())
        return out


def _read_request(conn: h11.Connection, sock: socket.socket) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""


def write_topology(folder: Path, dns_port: int, https_port: int) -> Path:
    """A minimal topology on 127.0.54.0/24 pointing at the fake servers."""
    hosts = [
        host("client", "client", CLIENT_IP),
        resolver(DNS_IP, dns_port),
        host("lb", "balancer", WEB_IP, services=[service("lb", "balancer", {"https": https_port}, backends=["web"])]),
        host("web", "server", "127.0.54.20", services=web_store_db("web", "store", "db", (8080, 8100, 3307))),
    ]
    text = topology_text({"domain": "foobar.com", "entry": "lb"}, hosts)
    path = folder / "topology.toml"
    path.write_text(text)
    return path
