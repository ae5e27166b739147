"""python -m foobar_ref.mysql --topology FILE --hop db-01 --state DIR

Initialises the instance's data directory when it is absent, writes its my.cnf,
then replaces this process with mariadbd (`os.execv`), so the pid the
supervisor started is the server's own pid: SIGTERM to it is a clean shutdown.
Users, schema and replication are set up afterwards over the Unix socket by
`foobar_ref.mysql.setup.configure`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from foobar_ref.mysql import config, egress
from foobar_ref.runtime.cli_args import parse_hop_args
from foobar_ref.topology import Topology

INSTALL_TIMEOUT_S = 120.0


def main() -> None:
    args = parse_hop_args("mysql")
    topo, hop = args.topology, args.hop
    if topo.service(hop).kind != "mariadb":
        print(f"mysql: {hop!r} is a {topo.service(hop).kind} service, not mariadb", file=sys.stderr)
        raise SystemExit(2)
    paths = config.instance_paths(args.state_dir, hop)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.tmp.mkdir(exist_ok=True)
    paths.cnf.write_text(config.render_cnf(topo, hop, paths))
    if not (paths.data / "mysql").is_dir():
        _install(hop, paths)
    ip, port = topo.listen(hop, "mysql")
    paths.egress.unlink(missing_ok=True)
    if topo.service(hop).replica_of is not None:
        _start_egress(topo, hop, paths)
    print(f"{hop}: starting mariadbd on {ip}:{port}, socket {paths.socket}, log {paths.error_log}", flush=True)
    argv = config.server_argv(paths)
    os.execv(argv[0], argv)


def _start_egress(topo: Topology, hop: str, paths: config.InstancePaths) -> None:
    """The replica's relay to its primary, leaving from the host's public address (see egress.py)."""
    primary = topo.service(hop).replica_of
    assert primary is not None
    host = topo.host_of(hop)
    peers = sorted({"127.0.0.1", host.address, *([host.inner] if host.inner else [])})
    try:
        port = egress.start(
            hop, host.listen_address, topo.reach(primary, "mysql"), topo.source_for(hop), peers, paths.egress
        )
    except OSError as err:
        print(f"{hop}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{hop}: replication egress on {host.listen_address}:{port} -> {primary}", flush=True)


def _install(hop: str, paths: config.InstancePaths) -> None:
    """Initialise into a scratch folder renamed into place, so a failed run leaves no half data directory."""
    print(f"{hop}: initialising {paths.data}", flush=True)
    partial = paths.data.with_name("data.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(paths.data, ignore_errors=True)
    try:
        done = subprocess.run(
            config.install_argv(paths, partial), capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"{hop}: mariadb-install-db failed: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    if done.returncode != 0:
        print(f"{hop}: mariadb-install-db exited {done.returncode}:\n{done.stdout}{done.stderr}", file=sys.stderr)
        raise SystemExit(1)
    partial.rename(paths.data)


if __name__ == "__main__":
    main()
