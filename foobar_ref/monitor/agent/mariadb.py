"""The host's MariaDB instances, with mysqld_exporter's names, types and labels (plus `hop`, the instance).

Theory of operation
-------------------
`collect()` is blocking (PyMySQL) and runs in a worker thread under the
scrape's budget (collector.py, whose per-source lock keeps a late thread and
the next scrape from sharing the connection); the connection's own timeouts
(connect, read, write: the same budget) end a thread that the scrape stopped
waiting for.  The connection is kept
between scrapes and opened again, once, when it fails; it leaves from the host's
own address to the instance's listen address, as the store does, with the
`monitor` account made by mysql/setup.py (PROCESS, REPLICATION CLIENT, SLAVE
MONITOR; at most 3 connections).

What it exposes, named as mysqld_exporter names it (collector/global_status.go,
slave_status.go, global_variables.go, exporter.go):

  mysql_up                                     gauge, 1 when the instance answered
  mysql_global_status_<variable>               untyped, lower-cased SHOW GLOBAL STATUS names
  mysql_global_status_commands_total{command}  counter, the Com_* variables
  mysql_global_variables_<variable>            gauge (max_connections, read_only)
  mysql_slave_status_<column>{master_host,master_uuid,channel_name,connection_name}
                                               untyped, from SHOW ALL SLAVES STATUS (replicas only);
                                               Yes/No as 1/0, NULL (e.g. Seconds_Behind_Master while
                                               the SQL thread is stopped) leaves the series out

Only a fixed list of variables and columns is read, in one statement over
information_schema's GLOBAL_STATUS and GLOBAL_VARIABLES, so a scrape parses a
few dozen values, not SHOW GLOBAL STATUS's five hundred.  SHOW ALL SLAVES STATUS
costs most (its 60-odd column definitions come even when it has no row), so an
instance that showed no replication connection is asked again only when
`Slave_running` says ON or `SLAVE_RECHECK_S` has passed; a replica is asked at
every scrape, so a stopped replication shows at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pymysql
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, UnknownMetricFamily
from prometheus_client.metrics_core import Metric

from foobar_ref.mysql.setup import MONITOR_USER

STATUS_VARIABLES = (
    "Uptime", "Queries", "Questions", "Threads_connected", "Threads_running", "Threads_created", "Connections",
    "Max_used_connections", "Aborted_clients", "Aborted_connects", "Slow_queries", "Bytes_received", "Bytes_sent",
    "Slave_running",
)  # fmt: skip
COMMANDS = ("select", "insert", "update", "delete", "commit")
GLOBAL_VARIABLES = ("max_connections", "read_only")
SLAVE_COLUMNS = (
    "Slave_IO_Running", "Slave_SQL_Running", "Seconds_Behind_Master", "Last_Errno", "Last_IO_Errno",
    "Last_SQL_Errno", "Read_Master_Log_Pos", "Exec_Master_Log_Pos", "Relay_Log_Space", "Master_Server_Id",
    "SQL_Delay",
)  # fmt: skip
SLAVE_RECHECK_S = 30.0
SLAVE_LABELS = ["hop", "master_host", "master_uuid", "channel_name", "connection_name"]
_WORDS = {"yes": 1.0, "on": 1.0, "primary": 1.0, "no": 0.0, "off": 0.0, "disabled": 0.0, "connecting": 0.0}
_WORDS |= {"non-primary": 0.0, "disconnected": 0.0}
_STATUS_NAMES = [name.upper() for name in (*STATUS_VARIABLES, *(f"Com_{c}" for c in COMMANDS))]
_VARIABLE_NAMES = [name.upper() for name in GLOBAL_VARIABLES]
FIGURES_SQL = (
    "SELECT 'status', VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
    f" WHERE VARIABLE_NAME IN ({', '.join('%s' for _ in _STATUS_NAMES)})"
    " UNION ALL SELECT 'variables', VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES"
    f" WHERE VARIABLE_NAME IN ({', '.join('%s' for _ in _VARIABLE_NAMES)})"
)
Rows = tuple[list[Any], list[Any], list[str]]  # (figures, slave status rows, their column names)


def parse_status(value: object) -> float | None:
    """mysqld_exporter's parseStatus for the values read here: yes/no words, numbers; None when neither."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    word = _WORDS.get(text.lower())
    if word is not None:
        return word
    try:
        return float(text)
    except ValueError:
        return None


class MariadbSource:
    def __init__(
        self, hop: str, address: tuple[str, int], source_ip: str, password: Callable[[], str], timeout_s: float
    ) -> None:
        self.hop = hop
        self.name = f"mariadb/{hop}"
        self.address = address
        self.source_ip = source_ip
        self.password = password
        self.timeout_s = timeout_s
        self._conn: pymysql.connections.Connection[Any] | None = None
        self._replica_seen = False  # the last SHOW ALL SLAVES STATUS had a row
        self._slaves_asked_s = -math.inf

    def missed(self) -> list[Metric]:
        return [_up(self.hop, 0.0)]

    def collect(self) -> list[Metric]:
        """Blocking: mysql_up 1 and the figures; raises pymysql.Error or OSError when the instance does not answer."""
        fresh = self._conn is None
        try:
            try:
                rows = self._query()
            except (pymysql.Error, OSError):
                if fresh:
                    raise  # a new connection failed: the instance is down
                self.close()
                rows = self._query()  # a kept connection may have died with a restart: once more, fresh
        except BaseException:
            self.close()
            raise
        return [_up(self.hop, 1.0), *_families(self.hop, *rows)]

    def _query(self) -> Rows:
        if self._conn is None:
            self._conn = pymysql.connect(
                host=self.address[0], port=self.address[1], user=MONITOR_USER, password=self.password(),
                bind_address=self.source_ip, connect_timeout=self.timeout_s, read_timeout=self.timeout_s,
                write_timeout=self.timeout_s, autocommit=True,
            )  # fmt: skip
        with self._conn.cursor() as cursor:
            cursor.execute(FIGURES_SQL, [*_STATUS_NAMES, *_VARIABLE_NAMES])
            figures = list(cursor.fetchall())
            if not self._ask_slaves(figures):
                return figures, [], []
            cursor.execute("SHOW ALL SLAVES STATUS")
            slaves = list(cursor.fetchall())
            columns = [d[0] for d in cursor.description or ()]
        self._replica_seen, self._slaves_asked_s = bool(slaves), time.monotonic()
        return figures, slaves, columns

    def _ask_slaves(self, figures: list[Any]) -> bool:
        running = any(name.upper() == "SLAVE_RUNNING" and parse_status(value) == 1.0 for _, name, value in figures)
        return self._replica_seen or running or time.monotonic() - self._slaves_asked_s >= SLAVE_RECHECK_S

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except (pymysql.Error, OSError):
                pass


def _up(hop: str, value: float) -> Metric:
    return _one(GaugeMetricFamily("mysql_up", "Whether the MySQL server is up.", labels=["hop"]), hop, value)


def _one(family: GaugeMetricFamily | UnknownMetricFamily, hop: str, value: float) -> Metric:
    family.add_metric([hop], value)
    return family


def _families(hop: str, figures: list[Any], slaves: list[Any], columns: list[str]) -> list[Metric]:
    families: list[Metric] = []
    commands = CounterMetricFamily(
        "mysql_global_status_commands", "Total number of executed MySQL commands.", labels=["hop", "command"]
    )
    for table, name, raw in figures:
        value = parse_status(raw)
        if value is None:
            continue
        key = str(name).lower()
        if table == "variables":
            doc = "Generic gauge metric from SHOW GLOBAL VARIABLES."
            families.append(_one(GaugeMetricFamily(f"mysql_global_variables_{key}", doc, labels=["hop"]), hop, value))
        elif key.startswith("com_"):
            commands.add_metric([hop, key[4:]], value)
        else:
            doc = "Generic metric from SHOW GLOBAL STATUS."
            families.append(_one(UnknownMetricFamily(f"mysql_global_status_{key}", doc, labels=["hop"]), hop, value))
    families.append(commands)
    return families + _slave_families(hop, slaves, columns)


def _slave_families(hop: str, slaves: list[Any], columns: list[str]) -> list[Metric]:
    by_column: dict[str, UnknownMetricFamily] = {}
    for row in slaves:
        values = dict(zip(columns, row, strict=False))
        labels = [hop, _text(values.get("Master_Host")), _text(values.get("Master_UUID"))]
        labels += [_text(values.get("Channel_Name")), _text(values.get("Connection_name"))]
        for column in SLAVE_COLUMNS:
            value = parse_status(values.get(column))
            if value is None:
                continue
            family = by_column.get(column)
            if family is None:
                family = by_column[column] = UnknownMetricFamily(
                    f"mysql_slave_status_{column.lower()}",
                    "Generic metric from SHOW SLAVE STATUS.",
                    labels=SLAVE_LABELS,
                )
            family.add_metric(labels, value)
    return list(by_column.values())


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
