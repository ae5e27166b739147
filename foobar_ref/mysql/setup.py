"""Blocking set-up of a running MariaDB instance: wait for it, then users, schema and replication.

Theory of operation
-------------------
The supervisor starts `python -m foobar_ref.mysql` (which becomes mariadbd) and
then calls, from its own process:

1. `wait_ready`: connect over the instance's Unix socket until `SELECT 1`
   answers (the socket is a file in the instance's folder, reachable by no
   address, and the OS user logs in by `unix_socket` authentication: no
   password exists for the admin account);
2. `configure`: idempotent, so re-running it on a configured instance is safe.

Accounts: `store` (the stores' reads and writes), `repl` (replication) and
`monitor`, the monitoring client's least-privilege account, as mysqld_exporter's
documentation asks for (PROCESS, REPLICATION CLIENT; MariaDB 10.5+ also needs
SLAVE MONITOR for SHOW SLAVE STATUS), at most `MONITOR_MAX_CONNECTIONS` at once
so monitoring can never crowd out the site.  Their passwords are made once per
state folder (`credentials`).

Accounts are per instance and are not written to the binary log
(`sql_log_bin=0`): each server grants only the addresses that legitimately
reach *it* (`allowed_sources`), and a replica never gets a local GTID that
would break `gtid_strict_mode`.  The schema *is* logged, so a replica receives
it through replication: it starts from an empty `gtid_slave_pos` and replays
the primary's whole binlog.

Replication: the replica is pointed at the primary's public address (through
the primary host's firewall), `MASTER_USE_GTID=slave_pos`.  MySQL's
`MASTER_BIND` (bind the replica's source address) is tried first; MariaDB 10.11
answers it with a syntax error (1064: the option does not exist in MariaDB), so
the replica's I/O thread connects from the kernel's choice of source address
(127.0.0.1 on loopback) and `configure` falls back to the statement without it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pymysql

from foobar_ref.mysql import config
from foobar_ref.topology import Topology

DATABASE = "foobar"
STORE_USER = "store"
REPL_USER = "repl"
MONITOR_USER = "monitor"
MONITOR_MAX_CONNECTIONS = 3
USERS = (STORE_USER, REPL_USER, MONITOR_USER)
GRANTS = {
    STORE_USER: f"SELECT, INSERT ON {DATABASE}.*",
    REPL_USER: "REPLICATION SLAVE ON *.*",
    MONITOR_USER: "PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.*",
}
POLL_INTERVAL_S = 0.1
ADMIN_TIMEOUT_S = 5.0
CONNECT_RETRY_S = 1  # the replica retries a lost primary every second, not MariaDB's default 60 s
ER_PARSE_ERROR = 1064

MESSAGES_TABLE = """
CREATE TABLE IF NOT EXISTS foobar.messages (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  text VARCHAR(1000) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  served_by VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""


class MysqlSetupError(Exception):
    """The instance did not start or could not be configured; the message says why."""


# --- connections ------------------------------------------------------------


@contextmanager
def admin(state_dir: Path, hop: str, timeout_s: float = ADMIN_TIMEOUT_S) -> Iterator[pymysql.cursors.Cursor]:
    """A cursor as the instance's admin (the OS user, unix_socket authentication), autocommit on."""
    paths = config.instance_paths(state_dir, hop)
    conn = pymysql.connect(
        unix_socket=str(paths.socket),
        user=config.os_user(),
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        write_timeout=timeout_s,
        autocommit=True,
        charset="utf8mb4",
    )
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def wait_ready(
    topo: Topology, hop: str, state_dir: Path, timeout_s: float, process: subprocess.Popen[Any] | None = None
) -> None:
    """Return once the server answers SQL on its socket; raise MysqlSetupError on exit or timeout."""
    del topo  # the socket path depends only on the state folder and the hop
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise MysqlSetupError(f"mariadbd exited with code {process.returncode}: {_log_tail(state_dir, hop)}")
        try:
            with admin(state_dir, hop, timeout_s=2.0) as cursor:
                cursor.execute("SELECT 1")
                return
        except pymysql.Error as err:
            last = err
        time.sleep(POLL_INTERVAL_S)
    raise MysqlSetupError(f"not answering within {timeout_s:g} s ({last}): {_log_tail(state_dir, hop)}")


def _log_tail(state_dir: Path, hop: str, count: int = 5) -> str:
    try:
        lines = config.instance_paths(state_dir, hop).error_log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no error log)"
    return " | ".join(line for line in lines[-count:] if line.strip()) or "(empty error log)"


# --- accounts -----------------------------------------------------------------


def credentials(state_dir: Path) -> dict[str, str]:
    """The accounts' passwords: made once per state folder (a missing one is added), file mode 0600."""
    path = config.credentials_path(state_dir)
    try:
        data = json.loads(path.read_text())
        known = {u: data[u] for u in USERS if isinstance(data, dict) and isinstance(data.get(u), str)}
    except (OSError, ValueError):
        known = {}
    if len(known) == len(USERS):
        return known
    made = {user: known.get(user) or secrets.token_urlsafe(24) for user in USERS}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(made, f)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return made


def allowed_sources(topo: Topology, hop: str) -> list[str]:
    """Source addresses that may log in to this instance.

    Its own host's addresses (local clients bind the host's public address;
    a firewall relays from the guarded host's public address).  A host without a
    firewall is reached directly, so the sources of the services that connect to
    it (stores, replicas) are added too.
    """
    host = topo.host_of(hop)
    sources = [a for a in (host.address, host.inner) if a]
    if topo.firewall_of(host.name) is None:
        for svc in topo.services:
            if hop in (svc.read_from, svc.write_to, svc.replica_of):
                sources.append(topo.source_for(svc.name))
    return sorted(set(sources))


def _ensure_account(cursor: pymysql.cursors.Cursor, user: str, host: str, password: str, grant: str) -> None:
    limit = f" WITH MAX_USER_CONNECTIONS {MONITOR_MAX_CONNECTIONS}" if user == MONITOR_USER else ""
    cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
    cursor.execute(f"ALTER USER %s@%s IDENTIFIED BY %s{limit}", (user, host, password))
    cursor.execute(f"GRANT {grant} TO %s@%s", (user, host))


def _ensure_accounts(cursor: pymysql.cursors.Cursor, topo: Topology, hop: str, state_dir: Path) -> None:
    secret = credentials(state_dir)
    wanted = allowed_sources(topo, hop)
    cursor.execute("SET SESSION sql_log_bin = 0")  # accounts are per instance: see the module docstring
    for user, grant in GRANTS.items():
        cursor.execute("SELECT Host FROM mysql.user WHERE User = %s", (user,))
        for (stale,) in cursor.fetchall():
            if stale not in wanted:  # the topology changed: the old address may no longer log in
                cursor.execute("DROP USER %s@%s", (user, stale))
        for source in wanted:
            _ensure_account(cursor, user, source, secret[user], grant)
    cursor.execute("SET SESSION sql_log_bin = 1")


# --- configure ------------------------------------------------------------------


def configure(topo: Topology, hop: str, state_dir: Path) -> dict[str, Any]:
    """Idempotent set-up; returns what was done (for logs and tests)."""
    service = topo.service(hop)
    try:
        with admin(state_dir, hop) as cursor:
            _ensure_accounts(cursor, topo, hop, state_dir)
            if service.replica_of is None:
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4")
                cursor.execute(MESSAGES_TABLE)
                return {"role": "primary", "allowed": allowed_sources(topo, hop)}
            bound = _replicate(cursor, topo, hop, state_dir)
            return {"role": "replica", "allowed": allowed_sources(topo, hop), "master_bind": bound}
    except pymysql.Error as err:
        raise MysqlSetupError(f"configuring {hop} failed: {err}") from None


def _replicate(cursor: pymysql.cursors.Cursor, topo: Topology, hop: str, state_dir: Path) -> bool:
    """Point the replica at its primary's public address; True when MASTER_BIND was accepted.

    Without MASTER_BIND (MariaDB) the replica goes through its egress relay, which
    binds the host's public address: see egress.py.
    """
    primary = topo.service(hop).replica_of
    assert primary is not None
    options = (
        "MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
        f"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY={CONNECT_RETRY_S}"
    )
    auth = (REPL_USER, credentials(state_dir)[REPL_USER])
    cursor.execute("STOP SLAVE")
    try:
        params = (*topo.reach(primary, "mysql"), *auth, topo.source_for(hop))
        cursor.execute(f"CHANGE MASTER TO {options}, MASTER_BIND=%s", params)
        bound = True
    except pymysql.err.ProgrammingError as err:
        if err.args[0] != ER_PARSE_ERROR:
            raise
        cursor.execute(f"CHANGE MASTER TO {options}", (*_egress_or_direct(topo, hop, state_dir), *auth))
        bound = False
    cursor.execute("START SLAVE")
    return bound


def _egress_or_direct(topo: Topology, hop: str, state_dir: Path) -> tuple[str, int]:
    primary = topo.service(hop).replica_of
    assert primary is not None
    try:
        info = json.loads(config.instance_paths(state_dir, hop).egress.read_text())
        return str(info["listen"][0]), int(info["listen"][1])
    except (OSError, ValueError, KeyError, IndexError):
        return topo.reach(primary, "mysql")  # no relay running: connect from the kernel's choice of source


# --- replication status -------------------------------------------------------


def replication_status(state_dir: Path, hop: str) -> dict[str, Any]:
    """The replica's SHOW SLAVE STATUS essentials plus the GTID positions (primary: positions only)."""
    with admin(state_dir, hop) as cursor:
        cursor.execute("SELECT @@gtid_binlog_pos, @@gtid_current_pos, @@gtid_slave_pos")
        binlog_pos, current_pos, slave_pos = cursor.fetchone()
        cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
        names = [d[0] for d in cursor.description] if cursor.description else []
    status: dict[str, Any] = {
        "gtid_binlog_pos": binlog_pos,
        "gtid_current_pos": current_pos,
        "gtid_slave_pos": slave_pos,
    }
    if row is None:
        return status | {"replica": False}
    slave = dict(zip(names, row, strict=True))
    keys = ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error", "Master_Host", "Master_Port")
    status |= {"replica": True, "Gtid_IO_Pos": slave.get("Gtid_IO_Pos")} | {k: slave.get(k) for k in keys}
    with suppress(OSError, ValueError):
        status["egress"] = json.loads(config.instance_paths(state_dir, hop).egress.read_text())
    return status


def wait_replicated(state_dir: Path, replica: str, primary: str, timeout_s: float) -> dict[str, Any]:
    """Wait until the replica has applied everything the primary has binlogged (MASTER_GTID_WAIT)."""
    with admin(state_dir, primary) as cursor:
        cursor.execute("SELECT @@gtid_binlog_pos")
        (target,) = cursor.fetchone()
    with admin(state_dir, replica, timeout_s=timeout_s + ADMIN_TIMEOUT_S) as cursor:
        cursor.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (target, timeout_s))
        (result,) = cursor.fetchone()
    if result != 0:
        status = replication_status(state_dir, replica)
        raise MysqlSetupError(f"{replica} did not reach {primary}'s {target} within {timeout_s:g} s: {status}")
    return replication_status(state_dir, replica)


# --- stop -----------------------------------------------------------------------


def stop(pid: int, timeout_s: float = 20.0) -> bool:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL. True when it stopped on TERM."""

    def gone() -> bool:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        except ChildProcessError:
            pass  # not our child: poll with signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(POLL_INTERVAL_S)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    while not gone() and time.monotonic() < deadline + 5.0:
        time.sleep(POLL_INTERVAL_S)
    return False
