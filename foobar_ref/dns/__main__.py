"""python -m foobar_ref.dns --topology FILE --hop dns --state DIR

Loads the zone named by the service's `zone_file` (a broken zone stops the hop
with `file:line: what` and exit status 2, before anything listens), then serves
it on UDP and TCP at the service's `dns` port.
"""

from __future__ import annotations

import sys

from foobar_ref.dns import zone
from foobar_ref.dns.core import Authority
from foobar_ref.dns.shell import DnsServer
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args
from foobar_ref.runtime.trio_shell import Listener, log, open_tcp_listener, open_udp_socket, run_hop


def main() -> None:
    args = parse_hop_args("dns")
    topo, hop = args.topology, args.hop
    service = topo.service(hop) if hop in {s.name for s in topo.services} else None
    if service is None or service.kind != "authoritative" or service.zone_file is None:
        print(f"dns: {hop!r} is not an authoritative dns service with a zone_file in {topo.path}", file=sys.stderr)
        raise SystemExit(2)
    try:
        loaded = zone.load(service.zone_file, origin=f"{topo.domain}.")
    except zone.ZoneError as err:
        print(f"dns: bad zone: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    log(hop, "zone_loaded", file=str(service.zone_file), origin=str(loaded.origin), names=len(loaded.records))
    metrics = Metrics()
    server = DnsServer(hop, Authority(loaded), metrics)
    ip, port = topo.listen(hop, "dns")

    def build():  # type: ignore[no-untyped-def]
        tcp = open_tcp_listener(ip, port)
        udp = open_udp_socket(ip, port)
        admin = admin_socket_path(args.state_dir, hop)
        return [Listener(tcp, server.handle_tcp)], [lambda: server.serve_udp(udp), lambda: serve_admin(admin, metrics)]

    run_hop(hop, build, metrics, listen_extra=[f"{ip}:{port}/udp"])


if __name__ == "__main__":
    main()
