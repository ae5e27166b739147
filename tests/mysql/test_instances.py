"""A real primary + replica: replication, least-privilege accounts, refused sources, re-configure."""

from __future__ import annotations

import secrets
from pathlib import Path

import pymysql
import pytest

from foobar_ref.mysql import setup
from tests.mysql.harness import Databases, databases, start_instance

ER_HOST_NOT_PRIVILEGED = 1130
ER_TABLEACCESS_DENIED = 1142
ER_OPTION_PREVENTS_STATEMENT = 1290
RESTART_DB_PORT = 3320
RESTART_STORE_PORT = 8120


def _store(dbs: Databases, db: str, source: str) -> pymysql.connections.Connection:
    ip, port = dbs.topo.listen(db, "mysql")
    password = setup.credentials(dbs.state)["store"]
    return pymysql.connect(
        host=ip,
        port=port,
        user="store",
        password=password,
        database="foobar",
        bind_address=source,
        connect_timeout=4,
        read_timeout=5,
        autocommit=True,
    )


def test_a_write_on_the_primary_appears_on_the_replica(dbs: Databases) -> None:
    marker = f"replicated {secrets.token_hex(4)}"
    with setup.admin(dbs.state, "db-01") as cursor:
        cursor.execute("INSERT INTO foobar.messages (text, served_by) VALUES (%s, %s)", (marker, "test"))
    status = setup.wait_replicated(dbs.state, "db-02", "db-01", timeout_s=10)
    assert status["Slave_IO_Running"] == "Yes" and status["Slave_SQL_Running"] == "Yes"
    assert status["Last_IO_Error"] == ""
    with setup.admin(dbs.state, "db-02") as cursor:
        cursor.execute("SELECT served_by FROM foobar.messages WHERE text = %s", (marker,))
        assert cursor.fetchall() == (("test",),)


def test_replication_arrives_from_the_replica_hosts_address(dbs: Databases) -> None:
    with setup.admin(dbs.state, "db-01") as cursor:
        cursor.execute("SELECT host FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'")
        hosts = [row[0].rsplit(":", 1)[0] for row in cursor.fetchall()]
    assert hosts == [dbs.topo.source_for("db-02")]


def test_mariadb_has_no_master_bind_so_the_replica_uses_its_egress(dbs: Databases) -> None:
    assert dbs.configured["db-02"]["master_bind"] is False
    status = setup.replication_status(dbs.state, "db-02")
    assert status["egress"]["source"] == "127.0.52.2"
    assert status["egress"]["upstream"] == list(dbs.topo.reach("db-01", "mysql"))


def test_a_source_that_is_not_granted_is_refused(dbs: Databases) -> None:
    with pytest.raises(pymysql.err.OperationalError) as refused:
        _store(dbs, "db-01", "127.0.52.99")
    assert refused.value.args[0] == ER_HOST_NOT_PRIVILEGED
    assert "127.0.52.99" in refused.value.args[1]


def test_store_may_select_and_insert_and_nothing_more(dbs: Databases) -> None:
    conn = _store(dbs, "db-01", "127.0.52.2")
    try:
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO messages (text, served_by) VALUES (%s, %s)", ("ok", "test"))
            cursor.execute("SELECT COUNT(*) FROM messages")
            assert cursor.fetchone()[0] >= 1
            for statement in ("DROP TABLE messages", "DELETE FROM messages", "UPDATE messages SET text = 'x'"):
                with pytest.raises(pymysql.err.OperationalError) as denied:
                    cursor.execute(statement)
                assert denied.value.args[0] == ER_TABLEACCESS_DENIED, statement
    finally:
        conn.close()


def test_the_replica_refuses_writes(dbs: Databases) -> None:
    conn = _store(dbs, "db-02", "127.0.52.2")
    try:
        with conn.cursor() as cursor, pytest.raises(pymysql.err.OperationalError) as refused:
            cursor.execute("INSERT INTO messages (text, served_by) VALUES (%s, %s)", ("no", "test"))
        assert refused.value.args[0] == ER_OPTION_PREVENTS_STATEMENT
    finally:
        conn.close()


def test_configure_again_changes_nothing(dbs: Databases) -> None:
    before = setup.credentials(dbs.state)
    for hop in ("db-01", "db-02"):
        assert setup.configure(dbs.topo, hop, dbs.state) == dbs.configured[hop]
    assert setup.credentials(dbs.state) == before
    with setup.admin(dbs.state, "db-01") as cursor:
        cursor.execute("INSERT INTO foobar.messages (text, served_by) VALUES ('after', 'test')")
    status = setup.wait_replicated(dbs.state, "db-02", "db-01", timeout_s=10)
    assert status["gtid_slave_pos"] == setup.replication_status(dbs.state, "db-01")["gtid_binlog_pos"]


def test_a_restarted_replica_catches_up(tmp_path: Path) -> None:
    with databases(tmp_path, RESTART_DB_PORT, RESTART_STORE_PORT) as pair:
        assert setup.stop(pair.pids["db-02"], timeout_s=20) is True
        with setup.admin(pair.state, "db-01") as cursor:
            cursor.execute("INSERT INTO foobar.messages (text, served_by) VALUES ('while down', 'test')")
        again = start_instance(pair.topology_path, "db-02", pair.state)
        try:
            setup.wait_ready(pair.topo, "db-02", pair.state, 30, process=again)
            setup.configure(pair.topo, "db-02", pair.state)
            setup.wait_replicated(pair.state, "db-02", "db-01", timeout_s=10)
            with setup.admin(pair.state, "db-02") as cursor:
                cursor.execute("SELECT COUNT(*) FROM foobar.messages WHERE text = 'while down'")
                assert cursor.fetchone() == (1,)
        finally:
            setup.stop(again.pid, timeout_s=20)
            again.wait(timeout=5)
