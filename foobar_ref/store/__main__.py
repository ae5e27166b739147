"""python -m foobar_ref.store --topology FILE --hop store-01 --state DIR [--request-timeout-s 10]

Listens on the host's inner address (topology.listen(hop, "http")), accepts only
its own host's addresses as peers, and serves the messages API backed by the
databases named by the service's `write_to` and `read_from`.
"""

from __future__ import annotations

import argparse
import sys

from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.asyncio_shell import (
    Listener,
    admin_socket_path,
    bind_admin_socket,
    open_tcp_listener,
    run_hop,
    serve_admin,
)
from foobar_ref.runtime.cli_args import parse_hop_args, seconds
from foobar_ref.store import core, repo
from foobar_ref.store.shell import REQUEST_TIMEOUT_S, StoreServer


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--request-timeout-s", type=seconds, default=REQUEST_TIMEOUT_S,
        help=f"time a client has to send a whole request once it started (default {REQUEST_TIMEOUT_S:g}; -> 408)",
    )  # fmt: skip


def main() -> None:
    args = parse_hop_args("store", extend=_flags)
    topo, hop = args.topology, args.hop
    service = topo.service(hop)
    if service.kind != "store" or service.write_to is None or service.read_from is None:
        print(f"store: {hop!r} is a {service.kind} service, not a store", file=sys.stderr)
        raise SystemExit(2)
    metrics = Metrics()
    repo.bind_source(topo.source_for(hop))
    repository = repo.Repository(topo, hop, args.state_dir)
    where = core.Where(hop, service.write_to, service.read_from)
    server = StoreServer(where, repository, metrics, args.extra.request_timeout_s)
    host = topo.host_of(hop)
    allowed = frozenset(a for a in (host.address, host.inner) if a)

    def build():  # type: ignore[no-untyped-def]
        listener = open_tcp_listener(*topo.listen(hop, "http"))
        admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
        return [Listener(listener, server.handle, allowed)], [lambda: serve_admin(admin, metrics)]

    run_hop(hop, build, metrics, on_stop=repository.close)


if __name__ == "__main__":
    main()
