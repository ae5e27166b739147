"""The records a trace is built from and made of: the client's facts, the topology's path, spans.

Pure data.  `facts_of` turns the browser's `Exchange` into `ClientFacts` (the
client's own clock and the keys the hops' logs are joined on); `layout_of`
reads from the topology which hop stands where on the request's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from foobar_ref.client.exchange import Exchange
from foobar_ref.topology import Topology

CIPHERTEXT = "ciphertext (TLS)"
PLAINTEXT = "plaintext HTTP"
DNS_QUERY = "DNS query"
TLS_TERMINATED = "ciphertext -> plaintext HTTP"  # TLS ends here


@dataclass(frozen=True)
class ClientFacts:
    """What the client itself saw of one request, on its own wall clock (seconds since the epoch)."""

    started: float  # when the request began (before DNS)
    total_s: float
    response_s: float  # request sent -> whole response read
    source_ip: str
    tcp_local: str  # "ip:port" the client bound
    tcp_remote: str  # "ip:port" it connected to
    connect_s: float
    tls: bool
    handshake_s: float
    method: str
    target: str
    status: int
    trace_id: str | None  # the X-Request-Id the balancer answered with (= the trace id)
    served_by: str | None
    request_bytes: int
    response_bytes: int
    url: str = ""
    dns_query_id: int | None = None  # None: the URL held an IP address
    dns_rtt_s: float = 0.0
    dns_server: str | None = None
    dns_addresses: tuple[str, ...] = ()

    @property
    def ended(self) -> float:
        return self.started + self.total_s

    @property
    def sent_at(self) -> float:
        """When the request's first byte left (after DNS, TCP and TLS)."""
        return self.ended - self.response_s


def facts_of(exchange: Exchange, started: float, source_ip: str) -> ClientFacts:
    """The client's side of a trace: `started` is the wall-clock time (time.time()) before fetch."""
    dns = exchange.dns
    target = urlsplit(exchange.url).path or "/"
    return ClientFacts(
        started=started,
        total_s=exchange.total_s,
        response_s=exchange.response_s,
        source_ip=exchange.tcp.local.rsplit(":", 1)[0] or source_ip,
        tcp_local=exchange.tcp.local,
        tcp_remote=exchange.tcp.remote,
        connect_s=exchange.tcp.connect_s,
        tls=exchange.tls is not None,
        handshake_s=exchange.tls.handshake_s if exchange.tls is not None else 0.0,
        method=exchange.method,
        target=target,
        status=exchange.status,
        trace_id=exchange.request_id,
        served_by=exchange.served_by,
        request_bytes=len(exchange.request_body),
        response_bytes=len(exchange.body),
        url=exchange.url,
        dns_query_id=dns.query_id if dns is not None else None,
        dns_rtt_s=dns.rtt_s if dns is not None else 0.0,
        dns_server=dns.server if dns is not None else None,
        dns_addresses=dns.addresses if dns is not None else (),
    )


@dataclass(frozen=True)
class Layout:
    """Which hop stands where on the path, by name, and the addresses that tell hops apart."""

    resolver: str | None
    dns_servers: Mapping[str, str]  # authoritative server ip -> its hop
    entry_firewall: str | None  # in front of the balancer
    balancer: str
    balancer_source: str  # the address the balancer's upstream connections come from
    backend_firewalls: Mapping[str, str]  # web hop -> the firewall in front of it
    stores: Mapping[str, str]  # web hop -> its store


def layout_of(topo: Topology) -> Layout:
    resolvers = topo.services_of_kind("resolver")
    entry_host = topo.host_of(topo.entry).name
    entry_firewall = topo.firewall_of(entry_host)
    backends = topo.service(topo.entry).backends
    firewalls = {b: fw.name for b in backends if (fw := topo.firewall_of(topo.host_of(b).name)) is not None}
    stores = {b: store for b in backends if (store := topo.service(b).store) is not None}
    return Layout(
        resolver=resolvers[0].name if resolvers else None,
        dns_servers={topo.host_of(s.name).address: s.name for s in topo.services_of_kind("authoritative")},
        entry_firewall=entry_firewall.name if entry_firewall is not None else None,
        balancer=topo.entry,
        balancer_source=topo.source_for(topo.entry),
        backend_firewalls=firewalls,
        stores=stores,
    )


@dataclass(frozen=True)
class Span:
    """One hop's part in the request, on the client's time axis (seconds after the request began)."""

    hop: str
    start_s: float
    duration_s: float
    saw: str
    decision: str
    bytes_in: int | None = None  # towards the server (request)
    bytes_out: int | None = None  # towards the client (response)
    depth: int = 0  # 0: a hop on the path; 1: a step inside the hop above (the resolver's questions)
    note: str = ""  # how the span was joined or estimated, when that is not exact
    estimated: bool = False  # the hop logs no timing: start and duration are read off its neighbours

    def as_json(self) -> dict[str, object]:
        return {
            "hop": self.hop,
            "start_ms": round(self.start_s * 1000, 3),
            "duration_ms": round(self.duration_s * 1000, 3),
            "saw": self.saw,
            "decision": self.decision,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "depth": self.depth,
            "note": self.note,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class Trace:
    trace_id: str | None
    url: str
    spans: tuple[Span, ...]
    missing: tuple[str, ...] = ()  # hops expected on the path whose events were not found
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        return {
            "trace_id": self.trace_id,
            "url": self.url,
            "spans": [span.as_json() for span in self.spans],
            "missing": list(self.missing),
            "notes": list(self.notes),
        }
