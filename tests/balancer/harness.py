"""Real sockets around one balancer process: certificates, a topology in 127.0.53.0/24, fake web servers, clients.

Everything binds only addresses in 127.0.53.0/24.  The fake web servers are
small h11 servers on threads that record what reached them; the balancer runs
as `python -m foobar_ref.balancer` exactly as the launcher starts it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from foobar_ref.balancer.proxy_protocol import ProxyHeader, format_line
from tests.topologies import firewall, host, resolver, service, topology_text

READY_TIMEOUT_S = 15.0
IO_TIMEOUT_S = 5.0
CLIENT_IP = "127.0.53.100"
SITE = "www.foobar.com"


# --- certificates -------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    chain: Path
    key: Path


def make_certs(folder: Path) -> Certs:
    """A throwaway CA and a www.foobar.com leaf, both ECDSA P-256; chain = leaf + CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "balancer test CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SITE)]), ca_name, leaf_key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SITE)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    certs = Certs(folder / "ca.crt", folder / "site.crt", folder / "site.key")
    certs.ca.write_bytes(ca.public_bytes(pem))
    certs.chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    certs.key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certs


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: datetime.datetime) -> x509.CertificateBuilder:  # type: ignore[no-untyped-def]
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


# --- fake web servers -----------------------------------------------------------


@dataclass
class Seen:
    """One request as a fake web server received it."""

    peer: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


@dataclass
class FakeWeb:
    """An h11 server on a thread: answers `hello from NAME`; /garbage answers bytes that are not HTTP."""

    name: str
    ip: str
    seen: list[Seen] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)  # every raw byte, all connections

    def __post_init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.ip, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, (peer, _) = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock, peer), daemon=True).start()

    def _serve(self, sock: socket.socket, peer: str) -> None:
        sock.settimeout(20.0)
        conn = h11.Connection(h11.SERVER)
        try:
            with sock:
                while self._exchange(sock, conn, peer):
                    conn.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return

    def _exchange(self, sock: socket.socket, conn: h11.Connection, peer: str) -> bool:
        request, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                self.received += data
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False  # ConnectionClosed
        assert request is not None
        headers = [(k.decode(), v.decode("latin-1")) for k, v in request.headers]
        self.seen.append(Seen(peer, request.method.decode(), request.target.decode(), headers, body))
        if request.target == b"/garbage":
            sock.sendall(b"this is not HTTP at all\r\n\r\n")
            return False
        reply = f"hello from {self.name}".encode()
        response = h11.Response(
            status_code=200,
            headers=[("Content-Type", "text/plain"), ("Content-Length", str(len(reply))), ("X-Served-By", self.name)],
        )
        data = conn.send(response) + (conn.send(h11.Data(data=reply)) if request.method != b"HEAD" else b"")
        sock.sendall(data + conn.send(h11.EndOfMessage()))
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


class Closer:
    """What a firewall in front of a dead web server looks like: accepts, reads a little, closes."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.accepted = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((ip, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with sock:
                sock.settimeout(1.0)
                with contextlib.suppress(OSError):
                    sock.recv(65536)

    def stop(self) -> None:
        self.listener.close()


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


# --- topology ---------------------------------------------------------------------


@dataclass(frozen=True)
class LbPlan:
    """Where the balancer under test lives and what stands behind it."""

    address: str
    inner: str | None  # set: a firewall guards the balancer
    proxy_protocol: bool
    backends: list[tuple[str, str, int]]  # (name, ip, port)
    https_port: int = 0
    http_port: int = 0

    @property
    def listen_ip(self) -> str:
        return self.inner or self.address


def write_topology(folder: Path, plan: LbPlan) -> Path:
    (folder / "test.hints").write_text(". 3600 IN NS a.root.test.\na.root.test. 3600 IN A 127.0.53.54\n")
    ports = {"https": plan.https_port, "http": plan.http_port}
    lb = service("lb-01", "balancer", ports, backends=[name for name, _, _ in plan.backends])
    data = [
        service("store-01", "store", {"http": 8100}, read_from="db-01", write_to="db-01"),
        service("db-01", "mariadb", {"mysql": 3307}),
    ]
    hosts = [
        host("client", "client", "127.0.53.100"),
        resolver("127.0.53.53", 53, root_hints="test.hints"),
        host("lb-01", "balancer", plan.address, plan.inner, [lb]),
        host("data", "server", "127.0.53.60", services=data),
    ]
    for name, ip, port in plan.backends:
        hosts.append(host(name, "server", ip, services=[service(name, "web", {"http": port}, store="store-01")]))
    firewalls = [firewall("firewall-1", "lb-01", proxy_protocol=plan.proxy_protocol)] if plan.inner else []
    path = folder / "topology.toml"
    path.write_text(topology_text({"domain": "foobar.com", "entry": "lb-01"}, hosts, firewalls))
    return path


# --- the balancer process ------------------------------------------------------------


class BalancerProcess:
    """`python -m foobar_ref.balancer ...`, its READY line, its log lines, and a clean stop."""

    def __init__(self, folder: Path, plan: LbPlan, certs: Certs, flags: tuple[str, ...] = ()) -> None:
        self.plan = plan
        self.certs = certs
        self.state = folder / "state"
        topology = write_topology(folder, plan)
        argv = [sys.executable, "-m", "foobar_ref.balancer", "--topology", str(topology), "--hop", "lb-01"]
        argv += ["--state", str(self.state), "--cert", str(certs.chain), "--key", str(certs.key), *flags]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.process.stderr or []), daemon=True).start()
        if not self._ready.wait(READY_TIMEOUT_S):
            self.stop()
            raise AssertionError(f"balancer never ready: {self.lines} {self.errors}")

    def _read(self) -> None:
        for line in self.process.stdout or []:
            self.lines.append(line)
            if line.startswith("READY "):
                self._ready.set()

    @property
    def https(self) -> tuple[str, int]:
        return self.plan.listen_ip, self.plan.https_port

    @property
    def http(self) -> tuple[str, int]:
        return self.plan.listen_ip, self.plan.http_port

    def events(self, name: str) -> list[dict]:
        records = [json.loads(line) for line in list(self.lines) if line.startswith("{")]
        return [r for r in records if r.get("event") == name]

    def stop(self, timeout_s: float = 5.0) -> float:
        """SIGTERM; returns how long the process took to exit (kills it after `timeout_s`)."""
        started = time.monotonic()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return time.monotonic() - started


# --- clients -----------------------------------------------------------------------------


def connect(address: tuple[str, int], source_ip: str = CLIENT_IP, proxy_from: str | None = None) -> socket.socket:
    """A TCP connection; `proxy_from` sends the PROXY line a firewall would send for that client."""
    sock = socket.socket()
    sock.settimeout(IO_TIMEOUT_S)
    sock.bind((source_ip, 0))
    sock.connect(address)
    if proxy_from is not None:
        sock.sendall(format_line(ProxyHeader("TCP4", proxy_from, address[0], 40000, address[1])))
    return sock


def client_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["http/1.1"])
    return context


def tls_connect(
    address: tuple[str, int], ca: Path, source_ip: str = CLIENT_IP, proxy_from: str | None = None
) -> ssl.SSLSocket:
    return client_context(ca).wrap_socket(connect(address, source_ip, proxy_from), server_hostname=SITE)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


class HttpClient:
    """HTTP/1.1 over an already connected (plain or TLS) socket, keep-alive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)

    def request(
        self, method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> Reply:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        all_headers = [("Host", SITE)] + (headers or [])
        if body:
            all_headers.append(("Content-Length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=all_headers))
        data += (self.conn.send(h11.Data(data=body)) if body else b"") + self.conn.send(h11.EndOfMessage())
        self.sock.sendall(data)
        return read_reply(self.sock, self.conn)


def read_reply(sock: socket.socket, conn: h11.Connection | None = None) -> Reply:
    conn = conn or _after_raw_request()
    status, headers, body = 0, [], b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = [(k.decode(), v.decode("latin-1")) for k, v in event.headers]
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return Reply(status, headers, body)
        else:
            raise AssertionError(f"connection closed before a whole response: {event!r}")


def _after_raw_request() -> h11.Connection:
    """A client connection in the state where a response is expected (the request was sent raw)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", SITE)]))
    conn.send(h11.EndOfMessage())
    return conn


def closed_without_answer(sock: socket.socket) -> bool:
    """True when the peer closes (or resets) without sending any byte."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, ssl.SSLError):
        return False
