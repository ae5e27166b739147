"""python -m foobar_ref.web --topology FILE --hop web-01 --state DIR"""

from __future__ import annotations

from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, bind_admin_socket, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args
from foobar_ref.runtime.trio_shell import Listener, open_tcp_listener, run_hop
from foobar_ref.web.shell import WebServer


def main() -> None:
    args = parse_hop_args("web")
    topo, hop = args.topology, args.hop
    metrics = Metrics()
    server = WebServer(topo, hop, metrics)
    host = topo.host_of(hop)
    allowed = frozenset(a for a in (host.address, host.inner) if a) if host.inner else None

    def build():  # type: ignore[no-untyped-def]
        listener = open_tcp_listener(*topo.listen(hop, "http"))
        admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
        return [Listener(listener, server.handle, allowed)], [lambda: serve_admin(admin, metrics)]

    run_hop(hop, build, metrics)


if __name__ == "__main__":
    main()
