"""The browser: one request through the project's own DNS, from the client host, step by step.

Theory of operation
-------------------
`fetch(url)` does what a browser does when you type a URL, one visible step at a time:

1. parse the URL: scheme, host, port, target (`parse_url`);
2. resolve the host with the project's resolver (`foobar_ref.dns.stub`), not the
   operating system's: www.foobar.com exists only in the project's zone.  An IP
   address in the URL skips this step;
3. open a TCP connection *from the client host's address* (so that firewall
   rules by source address mean something) to the first address that answers;
4. for https, run the TLS handshake with full verification: the chain must lead
   to `ca_file` and the certificate must hold the host's name (sent as SNI);
5. send the request and read the whole response, bounded in size and in time:
   one deadline of `timeout_s` covers every step of a request.

Each step's facts land in an `Exchange`; each failure is a typed `BrowserError`
naming the step (exchange.py).  `open_session` keeps the connection open between
requests (HTTP keep-alive), as browsers do, for the benchmark; a request on a
kept connection the server has meanwhile closed is retried once on a new one when
its method is idempotent (GET, HEAD, OPTIONS), as browsers do.

Everything here blocks (stdlib socket and ssl): a command-line browser does one
thing at a time.  HTTP goes through h11, read by the same `read_message` the hops
use, so a response gets the same framing checks as a request does.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

import h11

from foobar_ref.client.exchange import (
    BrowserError,
    CertificateError,
    ConnectError,
    DnsError,
    DnsStep,
    Exchange,
    HttpError,
    TcpStep,
    TlsError,
    TlsStep,
    UrlError,
)
from foobar_ref.client.render import render
from foobar_ref.dns import stub
from foobar_ref.wire import http as wire

if TYPE_CHECKING:
    from foobar_ref.topology import Topology

__all__ = [
    "BrowserError", "CertificateError", "ConnectError", "DnsError", "Exchange", "HttpError", "Session",
    "TlsError", "UrlError", "fetch", "open_session", "parse_url", "render",
]  # fmt: skip

USER_AGENT = "foobar-ref/0.1"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # characters a browser leaves as they are in a path
_T = TypeVar("_T")


@dataclass(frozen=True)
class Target:
    """Where a URL points: scheme, host, port and the request target (path + query)."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def is_tls(self) -> bool:
        return self.scheme == "https"

    @property
    def is_ip(self) -> bool:
        parts = self.host.split(".")
        return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)

    @property
    def host_header(self) -> str:
        return self.host if self.port == DEFAULT_PORTS[self.scheme] else f"{self.host}:{self.port}"


def parse_url(url: str) -> Target:
    """Split an http(s) URL; UrlError says what is wrong with it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise UrlError(f"{url!r}: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        hint = f" (did you mean https://{url.strip()}?)" if not parts.scheme else ""
        raise UrlError(f"{url!r}: the scheme must be http or https{hint}")
    host = parts.hostname or ""
    if not host:
        raise UrlError(f"{url!r}: no host name")
    if parts.username is not None or parts.password is not None:
        raise UrlError(f"{url!r}: user names and passwords in a URL are not supported")
    if ":" in host or not host.isascii():
        raise UrlError(f"{url!r}: only ASCII host names and IPv4 addresses are supported")
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
    return Target(scheme, host, port or DEFAULT_PORTS[scheme], path)


def fetch(
    url: str,
    method: str = "GET",
    data: bytes | str | None = None,
    topology: Topology | None = None,
    ca_file: str | Path | None = None,
    resolver: tuple[str, int] | None = None,
    source_ip: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    headers: Iterable[tuple[str, str]] = (),
) -> Exchange:
    """One request on a new connection (closed after it), every step recorded in the returned Exchange.

    `topology` supplies the resolver and the client host's source address unless
    `resolver` / `source_ip` are given.  `ca_file` is the CA to trust for https
    (None: the system's trust store).
    """
    with open_session(
        url, topology=topology, ca_file=ca_file, resolver=resolver, source_ip=source_ip, timeout_s=timeout_s
    ) as session:
        return session.request(method, data=data, headers=headers, keep_alive=False)


def open_session(
    url: str,
    topology: Topology | None = None,
    ca_file: str | Path | None = None,
    resolver: tuple[str, int] | None = None,
    source_ip: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Session:
    """A keep-alive session to the URL's origin: several requests on one (TLS) connection."""
    return Session(url, topology=topology, ca_file=ca_file, resolver=resolver, source_ip=source_ip, timeout_s=timeout_s)


@dataclass
class _Link:
    """One open connection and the h11 state that frames messages on it."""

    sock: socket.socket
    conn: h11.Connection
    tcp: TcpStep
    tls: TlsStep | None
    requests: int = 0


class _StaleConnection(HttpError):
    """A kept-alive connection the server closed before answering: safe to retry an idempotent request."""


class Session:
    """Requests to one origin (scheme, host, port), reusing one connection while the server allows it."""

    def __init__(
        self,
        url: str,
        *,
        topology: Topology | None = None,
        ca_file: str | Path | None = None,
        resolver: tuple[str, int] | None = None,
        source_ip: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.target = parse_url(url)
        self.resolver = resolver or (topology.resolver if topology is not None else None)
        self.source_ip = source_ip or (topology.client_host().address if topology is not None else None)
        self.ca_file = Path(ca_file) if ca_file is not None else None
        self.timeout_s = timeout_s
        self.dns: DnsStep | None = None
        self._addresses: tuple[str, ...] = (self.target.host,) if self.target.is_ip else ()
        self._context: ssl.SSLContext | None = None
        self._link: _Link | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._link is not None:
            self._link.sock.close()
            self._link = None

    def request(
        self,
        method: str = "GET",
        path: str | None = None,
        data: bytes | str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        keep_alive: bool = True,
    ) -> Exchange:
        """Send one request (path defaults to the session URL's) and read its whole response."""
        started = time.monotonic()
        deadline = started + self.timeout_s
        method = method.upper()
        target = self.target.path if path is None else _checked_path(path)
        body = data.encode() if isinstance(data, str) else (data or b"")
        sent_headers = self._request_headers(method, body, list(headers), keep_alive)
        try:
            return self._attempt(method, target, sent_headers, body, keep_alive, started, deadline)
        except _StaleConnection as stale:
            if method not in IDEMPOTENT_METHODS:
                raise
            exchange = self._attempt(method, target, sent_headers, body, keep_alive, started, deadline)
            exchange.notes.append(f"retried on a new connection: {stale}")
            return exchange

    # --- one attempt: connect if needed, send, read ------------------------------

    def _attempt(
        self,
        method: str,
        target: str,
        sent_headers: list[tuple[str, str]],
        body: bytes,
        keep_alive: bool,
        started: float,
        deadline: float,
    ) -> Exchange:
        link = self._open_link(deadline)
        reused = link.requests > 0
        link.requests += 1
        try:
            _send(link, method, target, sent_headers, body, deadline, reused)
            sent_at = time.monotonic()
            message = _read_response(link, deadline, self.timeout_s, reused)
        except BaseException:
            self.close()
            raise
        done = time.monotonic()
        if keep_alive and link.conn.our_state is h11.DONE and link.conn.their_state is h11.DONE:
            link.conn.start_next_cycle()
        else:
            self.close()
        head: Any = message.head
        return Exchange(
            url=f"{self.target.scheme}://{self.target.host_header}{target}",
            method=method,
            request_line=f"{method} {target} HTTP/1.1",
            request_headers=sent_headers,
            request_body=body,
            status=head.status_code,
            reason=head.reason.decode("latin-1"),
            http_version=head.http_version.decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.headers],
            body=message.body,
            dns=self.dns,
            tcp=link.tcp,
            tls=link.tls,
            response_s=done - sent_at,
            total_s=done - started,
            reused=reused,
        )

    def _open_link(self, deadline: float) -> _Link:
        link = self._link
        if link is not None and link.conn.our_state is h11.IDLE and link.conn.their_state is h11.IDLE:
            return link
        self.close()
        if not self._addresses:
            self.dns = resolve(self.target.host, self.resolver, self.source_ip, _left(deadline))
            self._addresses = self.dns.addresses
        sock, tcp = connect(self._addresses, self.target.port, self.source_ip, deadline)
        tls: TlsStep | None = None
        if self.target.is_tls:
            sock, tls = handshake(sock, self.target.host, self._tls_context(), self.ca_file, tcp.remote, deadline)
        self._link = _Link(sock, wire.new_connection(h11.CLIENT), tcp, tls)
        return self._link

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_context(self.ca_file)
        return self._context

    def _request_headers(
        self, method: str, body: bytes, extra: list[tuple[str, str]], keep_alive: bool
    ) -> list[tuple[str, str]]:
        names = {name.lower() for name, _ in extra}
        out = [("Host", self.target.host_header), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
        out = [(k, v) for k, v in out if k.lower() not in names]
        out.append(("Connection", "keep-alive" if keep_alive else "close"))
        if body and "content-type" not in names:
            out.append(("Content-Type", "application/json"))
        out += extra
        if (body or method in ("POST", "PUT", "PATCH")) and "content-length" not in names:
            out.append(("Content-Length", str(len(body))))
        return out


# --- the steps, one function each -------------------------------------------------


def resolve(name: str, resolver: tuple[str, int] | None, source_ip: str | None, timeout_s: float) -> DnsStep:
    """Ask the project's resolver for the name's A records; DnsError unless it answers with one."""
    if resolver is None:
        raise DnsError(f"{name}: no resolver to ask (give a topology or resolver=(ip, port))")
    try:
        answer = stub.query(name, "A", server=resolver, source_ip=source_ip, timeout_s=timeout_s)
    except stub.StubError as err:  # timeout, unreachable server, unreadable or mismatched reply
        raise DnsError(f"{name}: {err}") from err
    step = DnsStep(
        name=name,
        server=_address_text(answer.server),
        rcode=str(answer.rcode),
        answers=tuple(answer.answers),
        addresses=tuple(answer.addresses),
        rtt_s=float(answer.rtt_s),
        query_id=answer.query_id,
        transport=answer.transport,
    )
    if step.rcode != "NOERROR":
        hint = _RCODE_HINTS.get(step.rcode, "")
        raise DnsError(f"{name}: {step.rcode} from the resolver {step.server}{hint}")
    if not step.addresses:
        raise DnsError(f"{name}: the resolver {step.server} answered NOERROR but with no A record")
    return step


_RCODE_HINTS = {
    "NXDOMAIN": " (no such name in the zone)",
    "SERVFAIL": " (the resolver could not find an answer)",
    "REFUSED": " (the resolver refuses to answer this client or this name)",
    "FORMERR": " (the resolver could not parse the query)",
}


def connect(
    addresses: Iterable[str], port: int, source_ip: str | None, deadline: float
) -> tuple[socket.socket, TcpStep]:
    """A TCP connection to the first address that accepts, bound to `source_ip`."""
    failures: list[str] = []
    for ip in addresses:
        started = time.monotonic()
        try:
            sock = socket.create_connection(
                (ip, port), timeout=_left(deadline), source_address=(source_ip, 0) if source_ip else None
            )
        except OSError as err:
            failures.append(f"{ip}:{port} {_connect_failure(err, source_ip)}")
            continue
        # Without TCP_NODELAY the request waits for the ACK of the TLS handshake's last flight
        # (Nagle + delayed ACK: about 40 ms on loopback), which the trace showed as a stall.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local_ip, local_port = sock.getsockname()[:2]
        return sock, TcpStep(f"{local_ip}:{local_port}", f"{ip}:{port}", time.monotonic() - started)
    raise ConnectError(f"cannot connect from {source_ip or 'any address'} to " + "; ".join(failures or ["nothing"]))


def _connect_failure(err: OSError, source_ip: str | None) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "refused (nothing listens there, or a firewall rejects this source)"
    if isinstance(err, TimeoutError):
        return "did not answer in time (a firewall may be dropping this source)"
    if err.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind the source address {source_ip} (not an address of this machine)"
    return err.strerror or str(err)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Full verification (chain and name) against `ca_file`, or the system's store when None."""
    if ca_file is not None and not ca_file.is_file():
        raise CertificateError(f"CA certificate file {ca_file} does not exist (`foobar-ref certs` makes it)")
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (ssl.SSLError, OSError) as err:
        raise CertificateError(f"cannot load the CA certificate file {ca_file}: {err}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def handshake(
    sock: socket.socket, host: str, context: ssl.SSLContext, ca_file: Path | None, remote: str, deadline: float
) -> tuple[ssl.SSLSocket, TlsStep]:
    """Run the TLS handshake on a connected socket; CertificateError when the server is not trusted."""
    started = time.monotonic()
    sock.settimeout(_left(deadline))
    try:
        tls = context.wrap_socket(sock, server_hostname=host.rstrip("."))
    except ssl.SSLCertVerificationError as err:
        sock.close()
        raise CertificateError(_certificate_failure(err, host, remote, ca_file)) from None
    except TimeoutError:
        sock.close()
        raise TlsError(f"TLS handshake with {remote} not finished in time") from None
    except ssl.SSLError as err:
        sock.close()
        raise TlsError(f"TLS handshake with {remote} failed: {err.reason or err}") from None
    except OSError as err:
        sock.close()
        reason = err.strerror or type(err).__name__
        raise TlsError(
            f"{remote} cut the connection during the TLS handshake ({reason}); a firewall may reject this source"
        ) from None
    peer: Any = tls.getpeercert() or {}  # a dict of tuples, as the ssl module documents
    cipher = tls.cipher()
    return tls, TlsStep(
        version=tls.version() or "?",
        cipher=cipher[0] if cipher else "?",
        alpn=tls.selected_alpn_protocol(),
        subject=_dn_text(peer.get("subject", ())),
        issuer=_dn_text(peer.get("issuer", ())),
        names=tuple(str(v) for k, v in peer.get("subjectAltName", ()) if k == "DNS"),
        not_after=str(peer.get("notAfter", "?")),
        handshake_s=time.monotonic() - started,
        ca_file=str(ca_file) if ca_file else None,
    )


def _certificate_failure(err: ssl.SSLCertVerificationError, host: str, remote: str, ca_file: Path | None) -> str:
    what = err.verify_message or str(err)
    if err.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
        return f"the certificate of {remote} does not name {host} ({what}); its names are in the site certificate"
    trust = f"the CA in {ca_file}" if ca_file else "a CA in the system's trust store"
    return f"the certificate of {host} at {remote} is not trusted: {what} (it must chain to {trust})"


def _send(
    link: _Link, method: str, target: str, headers: list[tuple[str, str]], body: bytes, deadline: float, reused: bool
) -> None:
    try:
        payload = link.conn.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            payload += link.conn.send(h11.Data(data=body)) or b""
        payload += link.conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError as err:
        raise UrlError(f"cannot send this request: {err}") from None
    link.sock.settimeout(_left(deadline))
    try:
        link.sock.sendall(payload or b"")
    except TimeoutError:
        raise HttpError(f"{link.tcp.remote} did not take the request in time") from None
    except OSError as err:
        failure = _StaleConnection if reused else HttpError
        raise failure(f"{link.tcp.remote} closed the connection while the request was sent ({err})") from None


def _read_response(link: _Link, deadline: float, timeout_s: float, reused: bool) -> wire.Message:
    received = 0

    async def receive(max_bytes: int) -> bytes:
        nonlocal received
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        link.sock.settimeout(left)
        data = link.sock.recv(max_bytes)
        received += len(data)
        return data

    remote = link.tcp.remote
    try:
        message = _run_sync(wire.read_message(link.conn, receive, MAX_RESPONSE_BODY_BYTES))
    except wire.HttpError as err:
        if reused and received == 0:  # closed before a byte of the answer: h11 calls it a protocol error
            raise _StaleConnection(f"{remote} closed the kept-alive connection") from None
        raise HttpError(f"bad response from {remote}: {err.reason}") from None
    except TimeoutError:
        raise HttpError(f"no complete response from {remote} within {timeout_s:g} s ({received} bytes read)") from None
    except ssl.SSLError as err:
        raise TlsError(f"TLS failed while reading from {remote}: {err.reason or err}") from None
    except OSError as err:
        if reused and received == 0:
            raise _StaleConnection(f"{remote} closed the kept-alive connection ({err})") from None
        raise HttpError(f"the connection to {remote} failed while reading the response ({err})") from None
    if message is None:
        if reused and received == 0:
            raise _StaleConnection(f"{remote} closed the kept-alive connection")
        raise HttpError(f"{remote} closed the connection without answering")
    return message


def _run_sync(coroutine: Awaitable[_T]) -> _T:
    """Run a coroutine that never suspends (its awaits are all plain blocking calls) to its result.

    `wire.read_message` is written once for the async hops; with a `receive` that
    blocks instead of awaiting, it finishes on the first `send(None)`.
    """
    coro: Any = coroutine
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("read_message suspended: its receive must not await anything")


def _checked_path(path: str) -> str:
    if not path.startswith("/"):
        raise UrlError(f"{path!r}: a request path starts with /")
    return quote(path, safe=_PATH_SAFE + "?")


def _left(deadline: float) -> float:
    """Seconds left before the deadline (a hair above zero, so a socket call times out at once)."""
    return max(deadline - time.monotonic(), 0.001)


def _address_text(server: object) -> str:
    if isinstance(server, tuple | list) and len(server) == 2:
        return f"{server[0]}:{server[1]}"
    return str(server)


def _dn_text(rdns: Iterable[Iterable[tuple[str, str]]]) -> str:
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    parts = [f"{short.get(k, k)}={v}" for rdn in rdns for k, v in rdn]
    return ",".join(reversed(parts)) or "(empty)"
