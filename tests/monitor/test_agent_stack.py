"""The monitoring client on a real stack (tests/monitor/agentproc.py, 127.91.0.0/24 and 127.91.10.0/24).

The launcher starts a firewall, a MariaDB primary and its replica, a resolver, a store, a web
server, a balancer and the client `mon-web`; the tests scrape the client through the firewall
from the monitor host's address, as the monitoring service does.  The last tests stop hops.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from foobar_ref.launcher import supervise
from foobar_ref.mysql import setup
from tests.e2e.stackutil import connect_from, refused_or_closed
from tests.monitor.agentproc import METRICS_PORT, WEB_PORT, Samples, Stack, scrape, series, value

ER_TABLEACCESS_DENIED = 1142
HOST_HOPS = ("web-01", "store-01", "db-01", "db-02", "mon-web", "fw-web")
PROCESS_METRICS = (
    "foobar_process_cpu_seconds_total",
    "foobar_process_resident_memory_bytes",
    "foobar_process_open_fds",
    "foobar_process_threads",
    "foobar_process_start_time_seconds",
)
NODE_LABELS = {
    "node_cpu_seconds_total": {"cpu", "mode"},
    "node_load1": set(),
    "node_load5": set(),
    "node_load15": set(),
    "node_memory_MemTotal_bytes": set(),
    "node_memory_MemAvailable_bytes": set(),
    "node_network_receive_bytes_total": {"device"},
    "node_network_transmit_bytes_total": {"device"},
    "node_filesystem_size_bytes": {"device", "device_error", "fstype", "mountpoint"},
    "node_filesystem_free_bytes": {"device", "device_error", "fstype", "mountpoint"},
    "node_filesystem_avail_bytes": {"device", "device_error", "fstype", "mountpoint"},
    "node_boot_time_seconds": set(),
    "node_time_seconds": set(),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("agent-stack"), 0)
    try:
        yield running
    finally:
        running.down()


def samples(stack: Stack) -> Samples:
    page = scrape(stack.at.metrics, stack.at.monitor)
    assert page.status == 200, page.body
    return page.samples


def wait_for(stack: Stack, check, timeout_s: float = 10.0) -> Samples:  # type: ignore[no-untyped-def]
    """Scrape until `check(samples)` holds (a hop counts a request just after answering it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        page = samples(stack)
        if check(page) or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def test_the_page_parses_and_host_metrics_have_node_exporters_names_and_labels(stack: Stack) -> None:
    page = scrape(stack.at.metrics, stack.at.monitor)
    assert page.status == 200 and page.content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = list(text_string_to_metric_families(page.body.decode()))
    assert len({f.name for f in families}) == len(families)  # every family once
    parsed = page.samples
    for name, labels in NODE_LABELS.items():
        found = series(parsed, name)
        assert found, name
        assert all(set(s) == labels for s in found), (name, found)
    assert {s["mode"] for s in series(parsed, "node_cpu_seconds_total")} == {
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    }  # fmt: skip
    (filesystem,) = series(parsed, "node_filesystem_avail_bytes")
    assert stack.state.root.resolve().is_relative_to(filesystem["mountpoint"])
    not_node = [(name, labels) for (name, labels) in parsed if not name.startswith("node_")]
    assert all("hop" in dict(labels) for _, labels in not_node), [n for n, ls in not_node if "hop" not in dict(ls)]


def test_every_hop_of_the_host_has_its_process_figures_and_is_up(stack: Stack) -> None:
    parsed = samples(stack)
    stack_file = json.loads(stack.state.stack_file.read_text())
    started = {h["name"]: h["started"] for h in stack_file["hops"]}
    for hop in HOST_HOPS:
        assert value(parsed, "foobar_hop_up", hop=hop) == 1, hop
        for name in PROCESS_METRICS:
            assert value(parsed, name, hop=hop) is not None, (hop, name)
        assert value(parsed, "foobar_process_start_time_seconds", hop=hop) == pytest.approx(started[hop], abs=0.01)
    assert value(parsed, "foobar_process_threads", hop="db-01") > 1  # mariadbd itself, not a Python wrapper
    hops_with_series = {labels["hop"] for labels in series(parsed, "foobar_process_threads")}
    assert hops_with_series == set(HOST_HOPS)  # nothing from the other hosts (lb-01, dns)


def test_the_hops_own_metrics_are_on_the_page_with_their_hop(stack: Stack) -> None:
    parsed = samples(stack)
    assert value(parsed, "foobar_firewall_conntrack_entries", hop="fw-web", state="held") is not None
    assert value(parsed, "foobar_http_requests_in_flight", hop="web-01") == 0
    assert value(parsed, "foobar_http_requests_in_flight", hop="store-01") == 0
    assert value(parsed, "foobar_store_query_duration_seconds_count", hop="store-01", kind="read") is not None
    for source in ("node", "processes", "admin/web-01", "admin/store-01", "admin/fw-web", "mariadb/db-01"):
        assert value(parsed, "foobar_agent_collect_success", hop="mon-web", source=source) == 1, source


def test_requests_are_counted_by_the_web_server_and_by_its_access_log(stack: Stack) -> None:
    before = samples(stack)
    user, health = 7, 3
    for path, count in (("/", user), ("/health", health)):
        for _ in range(count):
            with connect_from(stack.at.lb, (stack.at.public, WEB_PORT)) as sock:  # through the firewall, as lb-01
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n".encode())
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")

    def delta(page: Samples, name: str, **labels: str) -> float:
        return (value(page, name, **labels) or 0) - (value(before, name, **labels) or 0)

    def counted(page: Samples) -> bool:
        logged = delta(page, "foobar_access_log_requests_total", hop="web-01", code="200")
        return logged + delta(page, "foobar_access_log_health_checks_total", hop="web-01", code="200") >= user + health

    after = wait_for(stack, counted)
    assert delta(after, "foobar_access_log_requests_total", hop="web-01", code="200") == user
    assert delta(after, "foobar_access_log_health_checks_total", hop="web-01", code="200") == health
    assert delta(after, "foobar_http_requests_total", hop="web-01", method="GET", code="200") == user
    assert delta(after, "foobar_http_health_checks_total", hop="web-01", code="200") == health


def test_only_the_monitor_host_gets_through_the_firewall(stack: Stack) -> None:
    rules = "foobar_firewall_rule_connections_total"
    before = samples(stack)
    reject = next(s for s in series(before, rules) if s["rule"].endswith("reject"))
    policy = next(s for s in series(before, rules) if s["handle"] == "policy")
    assert scrape(stack.at.metrics, stack.at.monitor).status == 200
    assert refused_or_closed(stack.at.client, stack.at.metrics) == "reset"  # the client host: rejected
    assert refused_or_closed(stack.at.lb, stack.at.metrics) == "silent"  # anyone else: dropped
    after = samples(stack)
    assert value(after, rules, **reject) == value(before, rules, **reject) + 1
    assert value(after, rules, **policy) == value(before, rules, **policy) + 1
    monitoring = next(s for s in series(after, rules) if s["rule"].startswith(f"tcp dport {METRICS_PORT} "))
    assert value(after, rules, **monitoring) >= 3
    # past the firewall, the client itself takes connections only from its host's public address
    assert refused_or_closed(stack.at.monitor, stack.at.metrics_inner) in ("reset", "closed")


def test_openmetrics_when_asked_for(stack: Stack) -> None:
    page = scrape(stack.at.metrics, stack.at.monitor, accept="application/openmetrics-text;version=1.0.0")
    assert page.status == 200 and page.content_type.startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in openmetrics_families(page.body.decode())}
    assert {s.labels["hop"] for s in families["foobar_hop_up"].samples} == set(HOST_HOPS)
    assert families["node_cpu_seconds"].type == "counter"


def test_other_paths_methods_and_bad_requests(stack: Stack) -> None:
    assert scrape(stack.at.metrics, stack.at.monitor, path="/").body.startswith(b"mon-web: the monitoring client")
    assert scrape(stack.at.metrics, stack.at.monitor, path="/nope").status == 404
    for raw, status in (
        (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", b"413"),
        (b"\x16\x03\x01 not http at all\r\n\r\n", b"400"),
    ):
        with connect_from(stack.at.monitor, stack.at.metrics) as sock:
            sock.sendall(raw)
            assert sock.recv(65536).startswith(b"HTTP/1.1 " + status + b" "), raw
    assert scrape(stack.at.metrics, stack.at.monitor).status == 200  # and it goes on serving


# --- MariaDB ---------------------------------------------------------------------------------


def test_mariadb_figures_under_mysqld_exporters_names(stack: Stack) -> None:
    parsed = samples(stack)
    for db in ("db-01", "db-02"):
        assert value(parsed, "mysql_up", hop=db) == 1
        assert value(parsed, "mysql_global_status_queries", hop=db) > 0
        assert value(parsed, "mysql_global_status_threads_connected", hop=db) >= 1
        assert value(parsed, "mysql_global_status_commands_total", hop=db, command="select") >= 0
    assert value(parsed, "mysql_global_variables_read_only", hop="db-01") == 0
    assert value(parsed, "mysql_global_variables_read_only", hop="db-02") == 1
    slave = {
        "hop": "db-02",
        "master_host": stack.at.inner,
        "master_uuid": "",
        "channel_name": "",
        "connection_name": "",
    }
    replica_series = series(parsed, "mysql_slave_status_slave_io_running")
    assert len(replica_series) == 1 and replica_series[0]["hop"] == "db-02"
    slave["master_host"] = replica_series[0]["master_host"]  # the replica's egress relay on the host's address
    assert value(parsed, "mysql_slave_status_slave_io_running", **slave) == 1
    assert value(parsed, "mysql_slave_status_slave_sql_running", **slave) == 1
    assert value(parsed, "mysql_slave_status_seconds_behind_master", **slave) == 0
    types = {
        f.name: f.type for f in text_string_to_metric_families(scrape(stack.at.metrics, stack.at.monitor).body.decode())
    }
    assert types["mysql_up"] == "gauge" and types["mysql_global_status_queries"] == "unknown"
    assert types["mysql_slave_status_seconds_behind_master"] == "unknown"


def test_the_monitor_account_has_only_what_it_needs(stack: Stack) -> None:
    password = setup.credentials(stack.state.root)["monitor"]
    ip, port = stack.topo.listen("db-01", "mysql")
    conn = pymysql.connect(host=ip, port=port, user="monitor", password=password, bind_address=stack.at.public,
                           connect_timeout=5, read_timeout=5)  # fmt: skip
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW ALL SLAVES STATUS")
            for statement in ("SELECT * FROM foobar.messages", "INSERT INTO foobar.messages (text) VALUES ('x')"):
                with pytest.raises(pymysql.err.OperationalError) as denied:
                    cursor.execute(statement)
                assert denied.value.args[0] == ER_TABLEACCESS_DENIED, statement
    finally:
        conn.close()


# --- hops going away (these change the stack: they run last) ---------------------------------


def test_a_stopped_hop_is_down_and_the_page_still_comes(stack: Stack) -> None:
    supervise.ask(stack.state, "pause", "web-01")  # SIGSTOP, told to the supervisor so its watchdog leaves it
    try:
        page = scrape(stack.at.metrics, stack.at.monitor)
        assert page.status == 200
        assert page.seconds < 5  # the budget (1 s), not the client's patience
        parsed = page.samples
        assert value(parsed, "foobar_hop_up", hop="web-01") == 0
        assert value(parsed, "foobar_agent_collect_success", hop="mon-web", source="admin/web-01") == 0
        assert all(value(parsed, "foobar_hop_up", hop=hop) == 1 for hop in HOST_HOPS if hop != "web-01")
        assert value(parsed, "node_load1") is not None and value(parsed, "mysql_up", hop="db-01") == 1
        assert value(parsed, "foobar_http_requests_in_flight", hop="web-01") is None  # no partial page
        hurried = scrape(stack.at.metrics, stack.at.monitor, timeout_s=0.8)  # a scraper that waits 0.8 s at most
        assert hurried.seconds < 0.8 and value(hurried.samples, "foobar_hop_up", hop="web-01") == 0
    finally:
        supervise.ask(stack.state, "resume", "web-01")
    assert (
        value(wait_for(stack, lambda p: value(p, "foobar_hop_up", hop="web-01") == 1), "foobar_hop_up", hop="web-01")
        == 1
    )


def test_a_stopped_hop_is_down(stack: Stack) -> None:
    supervise.ask(stack.state, "stop", "store-01")  # the supervisor would restart a hop merely killed

    def gone(page: Samples) -> bool:  # the scrape that saw it die may still hold its last figures
        return value(page, "foobar_hop_up", hop="store-01") == 0 and not value(
            page, "foobar_process_threads", hop="store-01"
        )

    parsed = wait_for(stack, gone)
    assert value(parsed, "foobar_hop_up", hop="store-01") == 0
    assert value(parsed, "foobar_process_cpu_seconds_total", hop="store-01") is None
    assert value(parsed, "foobar_hop_up", hop="web-01") == 1


def test_a_stopped_database_is_mysql_up_0(stack: Stack) -> None:
    supervise.ask(stack.state, "stop", "db-02")
    parsed = wait_for(stack, lambda p: value(p, "mysql_up", hop="db-02") == 0)
    assert value(parsed, "mysql_up", hop="db-02") == 0
    assert value(parsed, "foobar_hop_up", hop="db-02") == 0
    assert value(parsed, "mysql_up", hop="db-01") == 1
    assert series(parsed, "mysql_slave_status_slave_io_running") == []


def test_sigterm_stops_the_client_cleanly(stack: Stack) -> None:
    pid = stack.pid("mon-web")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = stack.state.log("mon-web").read_text()
    assert '"event": "stopped"' in log and "Traceback" not in log
