"""python -m foobar_ref.dns --topology FILE --hop NAME --state DIR [resolver flags]

An `authoritative` service loads its `zone_file` (a broken zone stops the hop
with `file:line: what` and exit status 2, before anything listens) and serves
it.  A `resolver` service loads its `root_hints` (checked the same way) and
resolves iteratively from them; it serves the names under the top-level labels
the topology's zones hold (the toy hierarchy) and refuses the rest.  Both
listen on UDP and TCP at the service's `dns` port.
"""

from __future__ import annotations

import argparse
import socket
import sys

from foobar_ref import topology as topology_module
from foobar_ref.dns import zone
from foobar_ref.dns.cache import Cache
from foobar_ref.dns.core import Authority
from foobar_ref.dns.iterate import Config, Resolver
from foobar_ref.dns.resolver import Front
from foobar_ref.dns.resolver_shell import MAX_RESOLUTIONS, TCP_READ_TIMEOUT_S, UPSTREAM_PORT, DnsMetrics, ResolverServer
from foobar_ref.dns.shell import DnsServer
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, bind_admin_socket, serve_admin
from foobar_ref.runtime.cli_args import HopArgs, parse_hop_args, seconds
from foobar_ref.runtime.trio_shell import Listener, log, open_tcp_listener, open_udp_socket, run_hop


def _flags(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    parser.add_argument("--upstream-timeout-s", type=seconds, default=defaults.upstream_timeout_s)
    parser.add_argument("--tries", type=int, default=defaults.tries, help="rounds over a zone's servers")
    parser.add_argument("--resolution-timeout-s", type=seconds, default=defaults.resolution_timeout_s)
    parser.add_argument("--max-resolutions", type=int, default=MAX_RESOLUTIONS, help="concurrent resolutions")
    parser.add_argument("--tcp-read-timeout-s", type=seconds, default=TCP_READ_TIMEOUT_S)
    parser.add_argument("--upstream-port", type=int, default=UPSTREAM_PORT, help="the authorities' port")
    parser.add_argument("--no-query-log", action="store_true", help="do not log one line per client query")


def main() -> None:
    args = parse_hop_args("dns", extend=_flags)
    service = args.topology.service(args.hop) if args.hop in {s.name for s in args.topology.services} else None
    if service is not None and service.kind == "authoritative" and service.zone_file is not None:
        _authoritative(args, service.zone_file)
    elif service is not None and service.kind == "resolver" and service.root_hints is not None:
        _resolver(args)
    else:
        print(
            f"dns: {args.hop!r} is not an authoritative or resolver dns service in {args.topology.path}",
            file=sys.stderr,
        )
        raise SystemExit(2)


def _authoritative(args: HopArgs, zone_file: object) -> None:
    hop = args.hop
    try:
        loaded = zone.load(str(zone_file))
    except zone.ZoneError as err:
        print(f"dns: bad zone: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    log(hop, "zone_loaded", file=str(zone_file), origin=str(loaded.origin), names=len(loaded.records))
    metrics = Metrics()
    server = DnsServer(hop, Authority(loaded), metrics)
    _serve(args, metrics, server.handle_tcp, server.serve_udp)


def _resolver(args: HopArgs) -> None:
    hop, topo, extra = args.hop, args.topology, args.extra
    hints_file = topo.service(hop).root_hints
    try:
        hints = zone.load_hints(str(hints_file))
    except zone.ZoneError as err:
        print(f"dns: bad root hints: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    config = Config(extra.upstream_timeout_s, extra.tries, extra.resolution_timeout_s)
    tlds = hierarchy_tlds(topo, hints)
    front = Front(Resolver(Cache(), hints, config), tlds)
    log(
        hop,
        "hints_loaded",
        file=str(hints_file),
        servers=[str(h.name) for h in hints],
        tlds=sorted(t.decode() for t in tlds),
    )
    metrics = DnsMetrics(hop)
    server = ResolverServer(
        hop,
        front,
        metrics,
        topo.source_for(hop),
        extra.upstream_port,
        extra.max_resolutions,
        extra.tcp_read_timeout_s,
        query_log=not extra.no_query_log,
    )

    async def serve_udp(sock) -> None:  # type: ignore[no-untyped-def]
        raw = socket.socket(fileno=sock.detach())
        await server.serve_udp(raw)

    _serve(args, metrics, server.handle_tcp, serve_udp)


def hierarchy_tlds(topo: topology_module.Topology, hints: tuple[zone.Hint, ...]) -> frozenset[bytes]:
    """Top-level labels the toy hierarchy serves: those of its zones, of the root's delegations and of the hints."""
    tlds = {zone.key(h.name)[-1] for h in hints if zone.key(h.name)}
    for service in topo.services_of_kind("authoritative"):
        try:
            loaded = zone.load(str(service.zone_file))
        except zone.ZoneError:
            continue  # that server refuses to start, and says why
        names = [zone.key(loaded.origin), *loaded.cuts, *loaded.records]
        tlds |= {name[-1] for name in names if name}
    if topo.domain:
        tlds.add(topo.domain.rstrip(".").rsplit(".", 1)[-1].lower().encode())
    return frozenset(tlds)


def _serve(args: HopArgs, metrics: Metrics, handle_tcp, serve_udp) -> None:  # type: ignore[no-untyped-def]
    hop = args.hop
    ip, port = args.topology.listen(hop, "dns")

    def build():  # type: ignore[no-untyped-def]
        tcp = open_tcp_listener(ip, port)
        udp = open_udp_socket(ip, port)
        admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
        return [Listener(tcp, handle_tcp)], [lambda: serve_udp(udp), lambda: serve_admin(admin, metrics)]

    run_hop(hop, build, metrics, listen_extra=[f"{ip}:{port}/udp"])


if __name__ == "__main__":
    main()
