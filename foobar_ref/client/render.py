"""Plain text for `foobar-ref get`: the body, or every step the way `curl -v` prints it.

    * DNS www.foobar.com A asked 127.0.3.1:53/udp (id 4242): NOERROR in 0.9 ms
    *   www.foobar.com. 300 A 127.0.1.1
    * Connected 127.0.0.10:40312 -> 127.0.1.1:443 in 0.2 ms
    * TLS TLSv1.3 TLS_AES_256_GCM_SHA384 in 3.1 ms
    > GET / HTTP/1.1
    < HTTP/1.1 200 OK
    * served by web-01, request id 4bf9..., 9.8 ms total

Lines starting with `*` are what the client did, `>` what it sent, `<` what it
received; the body follows the headers.  No colour or markup: the caller prints it.
"""

from __future__ import annotations

from foobar_ref.client.exchange import DnsStep, Exchange, TcpStep, TlsStep

MAX_SHOWN_REQUEST_BODY = 200  # characters of a request body shown in the verbose view


def render(exchange: Exchange, verbose: bool = False) -> str:
    """The response body (as text); with `verbose`, every step before it and a summary after it."""
    if not verbose:
        return _body_text(exchange).rstrip("\n")
    lines: list[str] = []
    lines += ["* DNS not asked: the connection is already open"] if exchange.reused else dns_lines(exchange.dns)
    lines += connection_lines(exchange.tcp, exchange.tls, exchange.reused)
    lines += request_lines(exchange)
    lines += response_lines(exchange)
    lines += [f"* {note}" for note in exchange.notes]
    body = _body_text(exchange).rstrip("\n")
    if body:
        lines.append(body)
    lines.append(f"* {summary(exchange)}")
    return "\n".join(lines)


def summary(exchange: Exchange) -> str:
    parts = [f"served by {exchange.served_by}" if exchange.served_by else "no X-Served-By header"]
    if exchange.request_id:
        parts.append(f"request id {exchange.request_id}")
    parts.append(f"{_ms(exchange.total_s)} total")
    return ", ".join(parts)


def dns_lines(dns: DnsStep | None) -> list[str]:
    if dns is None:
        return ["* DNS skipped: the URL holds an IP address"]
    query_id = f" (id {dns.query_id})" if dns.query_id is not None else ""
    lines = [f"* DNS {dns.name} A asked {dns.server}/{dns.transport}{query_id}: {dns.rcode} in {_ms(dns.rtt_s)}"]
    lines += [f"*   {name} {ttl} {rtype} {value}" for name, ttl, rtype, value in dns.answers]
    return lines


def connection_lines(tcp: TcpStep, tls: TlsStep | None, reused: bool) -> list[str]:
    if reused:
        return [f"* Re-using connection {tcp.local} -> {tcp.remote}" + (f" ({tls.version})" if tls else "")]
    lines = [f"* Connected {tcp.local} -> {tcp.remote} in {_ms(tcp.connect_s)}"]
    if tls is None:
        return lines + ["* plain HTTP: no TLS, every byte below crosses the network readable"]
    alpn = f", ALPN {tls.alpn}" if tls.alpn else ""
    trusted = tls.ca_file or "the system's trust store"
    return lines + [
        f"* TLS {tls.version} {tls.cipher}{alpn} in {_ms(tls.handshake_s)}",
        f"*   server certificate: {tls.subject}",
        f"*   names: {', '.join(tls.names) or '(none)'}",
        f"*   issuer: {tls.issuer}",
        f"*   expires: {tls.not_after}",
        f"*   verified against {trusted}",
    ]


def request_lines(exchange: Exchange) -> list[str]:
    lines = [f"> {exchange.request_line}"]
    lines += [f"> {name}: {value}" for name, value in exchange.request_headers]
    lines.append(">")
    if exchange.request_body:
        shown = exchange.request_body.decode("utf-8", errors="replace")
        if len(shown) > MAX_SHOWN_REQUEST_BODY:
            shown = shown[:MAX_SHOWN_REQUEST_BODY] + "..."
        lines.append(f"> [{len(exchange.request_body)} bytes] {shown}")
    return lines


def response_lines(exchange: Exchange) -> list[str]:
    lines = [f"< HTTP/{exchange.http_version} {exchange.status} {exchange.reason}".rstrip()]
    lines += [f"< {name}: {value}" for name, value in exchange.headers]
    lines.append("<")
    lines.append(f"* response read in {_ms(exchange.response_s)}: {len(exchange.body)} bytes of body")
    return lines


def _body_text(exchange: Exchange) -> str:
    try:
        return exchange.body.decode("utf-8")
    except UnicodeDecodeError:
        kind = exchange.header("content-type") or "unknown type"
        return f"[{len(exchange.body)} bytes of {kind}, not UTF-8 text]"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
