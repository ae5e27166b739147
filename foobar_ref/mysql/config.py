"""Where a MariaDB instance keeps its files, and the my.cnf that starts it. Pure.

Each instance owns one folder, `<state>/mysql/<hop>/`: the data directory, the
option file, the Unix socket, the pid file and the error log all live there, so
two instances (or two stacks in two state folders) never share a file, and
nothing of the system's own MariaDB (/etc/mysql, /run/mysqld, port 3306) is read
or touched: the server is always started with `--defaults-file`, which makes it
read no other option file.

The settings aim at a small server that starts in a second or two and is still
durable and replication-ready: ROW binlog with GTIDs in strict mode, a flush to
disk at every commit (`innodb_flush_log_at_trx_commit=1`, `sync_binlog=1`), a
32 MiB buffer pool and no performance schema.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from foobar_ref.topology import Topology

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
SERVER_ID_BASE = 1  # server_id = base + the instance's index among the topology's mariadb services
BUFFER_POOL = "32M"
REDO_LOG_SIZE = "16M"
MAX_CONNECTIONS = 100


@dataclass(frozen=True)
class InstancePaths:
    """Every file one instance uses, all under `<state>/mysql/<hop>/`."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def cnf(self) -> Path:
        return self.root / "my.cnf"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "mysqld.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    @property
    def egress(self) -> Path:
        return self.root / "egress.json"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"


def instance_paths(state_dir: Path, hop: str) -> InstancePaths:
    return InstancePaths(Path(state_dir) / "mysql" / hop)


def credentials_path(state_dir: Path) -> Path:
    """The passwords of `store` and `repl`, shared by every instance of one stack (mode 0600)."""
    return Path(state_dir) / "mysql" / "credentials.json"


def os_user() -> str:
    """The OS account the server runs as, which is also the admin account it trusts (unix_socket)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def server_id(topo: Topology, hop: str) -> int:
    names = [s.name for s in topo.services_of_kind("mariadb")]
    return SERVER_ID_BASE + names.index(hop)


def render_cnf(topo: Topology, hop: str, paths: InstancePaths) -> str:
    """The whole option file for one instance (a replica adds read_only)."""
    ip, port = topo.listen(hop, "mysql")
    replica = topo.service(hop).replica_of is not None
    settings: list[tuple[str, object]] = [
        ("datadir", paths.data),
        ("socket", paths.socket),
        ("pid_file", paths.pid_file),
        ("log_error", paths.error_log),
        ("tmpdir", paths.tmp),
        ("bind_address", ip),
        ("port", port),
        ("skip_name_resolve", "ON"),
        ("local_infile", "OFF"),
        ("character_set_server", "utf8mb4"),
        ("collation_server", "utf8mb4_unicode_ci"),
        ("sql_mode", "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"),
        ("max_connections", MAX_CONNECTIONS),
        # replication: every instance can serve as a primary later
        ("server_id", server_id(topo, hop)),
        ("log_bin", "mariadb-bin"),
        ("log_bin_index", "mariadb-bin.index"),
        ("relay_log", "relay-bin"),
        ("relay_log_index", "relay-bin.index"),
        ("relay_log_recovery", "ON"),
        ("binlog_format", "ROW"),
        ("gtid_strict_mode", "ON"),
        ("log_slave_updates", "ON"),
        ("read_only", "ON" if replica else "OFF"),
        # durable: nothing acknowledged is lost in a crash
        ("innodb_flush_log_at_trx_commit", 1),
        ("sync_binlog", 1),
        # small and quick to start
        ("innodb_buffer_pool_size", BUFFER_POOL),
        ("innodb_log_file_size", REDO_LOG_SIZE),
        ("innodb_log_buffer_size", "4M"),
        ("innodb_use_native_aio", "OFF"),
        ("performance_schema", "OFF"),
        ("key_buffer_size", "1M"),
        ("aria_pagecache_buffer_size", "4M"),
        ("table_open_cache", 200),
        ("thread_cache_size", 8),
    ]
    lines = [f"# {hop}: written by `python -m foobar_ref.mysql`; rewritten at every start", "[mariadbd]"]
    lines += [f"{key} = {value}" for key, value in settings]
    return "\n".join(lines) + "\n"


def install_argv(paths: InstancePaths, datadir: Path) -> list[str]:
    """Create the system tables in `datadir`: root (and the OS user) log in by unix_socket only; no test db."""
    argv = [INSTALL_DB, f"--defaults-file={paths.cnf}", f"--datadir={datadir}"]
    argv += ["--auth-root-authentication-method=socket", "--skip-test-db", f"--user={os_user()}"]
    return argv


def server_argv(paths: InstancePaths) -> list[str]:
    argv = [MARIADBD, f"--defaults-file={paths.cnf}"]
    if os.geteuid() == 0:
        argv.append("--user=root")  # mariadbd refuses to run as root unless told so
    return argv
