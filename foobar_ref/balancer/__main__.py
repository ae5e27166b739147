"""python -m foobar_ref.balancer --topology FILE --hop lb-01 --state DIR --cert FILE --key FILE
[--handshake-timeout-s SECONDS]

--cert is the leaf certificate followed by its chain (PEM), --key its private key.
--handshake-timeout-s bounds each TLS handshake (default 5 s): a client that
stalls mid-handshake is closed after it.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from pathlib import Path

from foobar_ref.balancer.shell import HANDSHAKE_TIMEOUT_S, Balancer, server_context
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, bind_admin_socket, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args, seconds
from foobar_ref.runtime.trio_shell import Listener, open_tcp_listener, run_hop


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cert", type=Path, required=True, help="PEM: the leaf certificate, then its chain")
    parser.add_argument("--key", type=Path, required=True, help="PEM: the leaf's private key")
    parser.add_argument(
        "--handshake-timeout-s",
        type=seconds,
        default=HANDSHAKE_TIMEOUT_S,
        help=f"seconds a client has to finish the TLS handshake (default {HANDSHAKE_TIMEOUT_S:g})",
    )


def main() -> None:
    args = parse_hop_args("balancer", extend=_flags)
    topo, hop = args.topology, args.hop
    if topo.service(hop).kind != "balancer":
        print(f"balancer: {hop!r} is a {topo.service(hop).kind} service, not a balancer", file=sys.stderr)
        raise SystemExit(2)
    try:
        tls = server_context(args.extra.cert, args.extra.key)
    except (OSError, ssl.SSLError) as err:
        print(f"{hop}: cannot load --cert {args.extra.cert} / --key {args.extra.key}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    metrics = Metrics()
    balancer = Balancer(topo, hop, metrics, tls, args.extra.handshake_timeout_s)
    host = topo.host_of(hop)
    allowed = frozenset(a for a in (host.address, host.inner) if a) if host.inner else None
    ports = topo.service(hop).ports

    def build():  # type: ignore[no-untyped-def]
        listeners = [Listener(open_tcp_listener(*topo.listen(hop, "https")), balancer.handle_https, allowed, "https")]
        if "http" in ports:
            listeners.append(
                Listener(open_tcp_listener(*topo.listen(hop, "http")), balancer.handle_http, allowed, "http")
            )
        admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
        return listeners, [lambda: serve_admin(admin, metrics), balancer.upstream.reap]

    run_hop(hop, build, metrics)


if __name__ == "__main__":
    main()
