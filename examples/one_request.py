"""One request through the running stack, and what each step returned.

Start the stack first (`foobar-ref up`), then:

    python examples/one_request.py                       # state ./.foobar-ref, the seed topology
    python examples/one_request.py STATE_DIR [TOPOLOGY.toml] [URL]

This is what `foobar-ref get -v` does, written out so you can change it: ask
for another path, POST a message, or call `fetch` in a loop and watch
X-Served-By alternate between the web servers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from foobar_ref import topology
from foobar_ref.client import browser


def main(argv: list[str]) -> int:
    # Where the stack keeps its files: certs/ca.crt is the CA that signed the site's certificate.
    state = Path(argv[0]) if argv else Path(".foobar-ref")
    # The topology says where the resolver listens and which address the client host has.
    topo = topology.load(argv[1] if len(argv) > 1 else None)
    url = argv[2] if len(argv) > 2 else topo.site_url  # https://www.foobar.com/ for the seed
    ca_file = state / "certs" / "ca.crt"

    try:
        exchange = browser.fetch(url, topology=topo, ca_file=ca_file, timeout_s=10)
    except browser.BrowserError as err:
        # The error's class names the step that failed: DnsError, ConnectError,
        # CertificateError, TlsError or HttpError.
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1

    # 1. DNS: the project's resolver turned the name into an address.
    if exchange.dns is not None:
        dns = exchange.dns
        print(f"DNS   {dns.name} -> {', '.join(dns.addresses)} (asked {dns.server}, {dns.rtt_s * 1000:.1f} ms)")
    # 2. TCP: from the client host's address to the balancer's public address (firewall-1 owns it).
    print(f"TCP   {exchange.tcp.local} -> {exchange.tcp.remote}")
    # 3. TLS: the balancer proved it holds a certificate for the name, signed by our CA.
    if exchange.tls is not None:
        tls = exchange.tls
        print(f"TLS   {tls.version} {tls.cipher}, certificate {tls.subject} issued by {tls.issuer}")
    # 4. HTTP: the status line, and the headers the balancer and the web server added.
    print(f"HTTP  {exchange.status} {exchange.reason}, {len(exchange.body)} bytes")
    print(f"      served by {exchange.served_by}, request id {exchange.request_id}")
    print(f"      {exchange.total_s * 1000:.1f} ms in all")
    # The full step-by-step view, as `foobar-ref get -v` prints it:
    print()
    print(browser.render(exchange, verbose=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
