"""python -m foobar_ref.web --topology FILE --hop web-01 --state DIR
[--access-log-max-bytes N] [--access-log-backups N]

The access log is `<state>/logs/<hop>.access.log` (observe/access_log.py), rotated
when it would grow past --access-log-max-bytes (default 16 MiB), keeping
--access-log-backups older files (default 3).
"""

from __future__ import annotations

import argparse
import sys

from foobar_ref.observe.access_log import access_log_path
from foobar_ref.observe.metrics import Metrics
from foobar_ref.runtime.admin import admin_socket_path, bind_admin_socket, serve_admin
from foobar_ref.runtime.cli_args import parse_hop_args
from foobar_ref.runtime.trio_shell import Listener, open_tcp_listener, run_hop
from foobar_ref.web.access_log import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, AccessLog
from foobar_ref.web.shell import WebServer


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text}")
    return value


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--access-log-max-bytes", type=_positive, default=DEFAULT_MAX_BYTES,
        help=f"rotate the access log before it grows past this size (default {DEFAULT_MAX_BYTES})",
    )  # fmt: skip
    parser.add_argument(
        "--access-log-backups", type=_positive, default=DEFAULT_BACKUPS,
        help=f"rotated access log files kept: .1 (newest) to .N (default {DEFAULT_BACKUPS})",
    )  # fmt: skip


def main() -> None:
    args = parse_hop_args("web", extend=_flags)
    topo, hop = args.topology, args.hop
    path = access_log_path(args.state_dir, hop)
    try:
        access_log = AccessLog(path, args.extra.access_log_max_bytes, args.extra.access_log_backups)
    except OSError as err:
        print(f"{hop}: cannot open the access log {path}: {err.strerror or err}", file=sys.stderr)
        raise SystemExit(2) from None
    metrics = Metrics()
    server = WebServer(topo, hop, metrics, access_log)
    host = topo.host_of(hop)
    allowed = frozenset(a for a in (host.address, host.inner) if a) if host.inner else None

    def build():  # type: ignore[no-untyped-def]
        listener = open_tcp_listener(*topo.listen(hop, "http"))
        admin = bind_admin_socket(admin_socket_path(args.state_dir, hop))
        return [Listener(listener, server.handle, allowed)], [lambda: serve_admin(admin, metrics)]

    run_hop(hop, build, metrics)


if __name__ == "__main__":
    main()
