"""What one browser request did, step by step: the records `fetch` returns and its errors.

Each step of a request (DNS, TCP, TLS, HTTP) is one small frozen record, so the
verbose view (`render.py`), the tests and the benchmark read the same facts.
Errors are typed by the step that failed, each with a message that names the
addresses involved and the likely cause, the way a learner would want to read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BrowserError(Exception):
    """A request that could not complete; subclasses name the step that failed."""


class UrlError(BrowserError):
    """The URL or request cannot be sent (unknown scheme, no host, bad header ...)."""


class DnsError(BrowserError):
    """The name did not resolve: NXDOMAIN, SERVFAIL, no A record, or no answer in time."""


class ConnectError(BrowserError):
    """No TCP connection: refused, reset, dropped (timed out), or the source address cannot be bound."""


class CertificateError(BrowserError):
    """The server's certificate is not trusted: wrong CA, wrong name, expired (wraps SSLCertVerificationError)."""


class TlsError(BrowserError):
    """The TLS handshake failed for a reason other than trust (protocol, alert, connection cut)."""


class HttpError(BrowserError):
    """No valid HTTP response: malformed, cut short, too large, or not complete in time."""


@dataclass(frozen=True)
class DnsStep:
    """The resolver's answer for the URL's host name."""

    name: str
    server: str  # "ip:port" of the resolver asked
    rcode: str
    answers: tuple[tuple[str, int, str, str], ...]  # (name, ttl, type, value)
    addresses: tuple[str, ...]
    rtt_s: float
    query_id: int | None = None
    transport: str = "udp"  # "tcp" when the UDP reply was truncated and asked again over TCP


@dataclass(frozen=True)
class TcpStep:
    local: str  # "ip:port" the client bound
    remote: str  # "ip:port" it connected to
    connect_s: float


@dataclass(frozen=True)
class TlsStep:
    version: str  # e.g. TLSv1.3
    cipher: str
    alpn: str | None
    subject: str  # the server certificate's subject, e.g. CN=www.foobar.com
    issuer: str
    names: tuple[str, ...]  # subjectAltName DNS names
    not_after: str
    handshake_s: float
    ca_file: str | None  # the trust anchor it was verified against (None: the system store)


@dataclass
class Exchange:
    """One request and its response, with every step that carried it."""

    url: str
    method: str
    request_line: str  # e.g. "GET / HTTP/1.1"
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]  # names in lower case, as h11 gives them
    body: bytes
    dns: DnsStep | None  # None: the URL held an IP address
    tcp: TcpStep
    tls: TlsStep | None  # None: plain http
    response_s: float  # request sent -> whole response read
    total_s: float
    reused: bool = False  # the connection carried an earlier request (keep-alive)
    notes: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of a response header, by case-insensitive name."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k == wanted), None)

    @property
    def served_by(self) -> str | None:
        """Which web server answered (its X-Served-By header)."""
        return self.header("x-served-by")

    @property
    def request_id(self) -> str | None:
        return self.header("x-request-id")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")
