"""Real store processes against the real MariaDB primary + replica."""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref import topology
from foobar_ref.mysql import setup
from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime import admin
from foobar_ref.runtime.asyncio_shell import admin_socket_path
from foobar_ref.topology import Topology
from tests.mysql.harness import write_topology
from tests.store.client import connect, read_all, request, status_of
from tests.store.conftest import REQUEST_TIMEOUT_S, Stores, start_store, stop_process, wait_line

SILENT_DB_PORT = 3319
SILENT_STORE_PORT = 8119


def call(stores: Stores, hop: str, method: str, target: str, body: object = None, **kw: object):  # type: ignore[no-untyped-def]
    return request(stores.address(hop), stores.source(hop), method, target, body, **kw)  # type: ignore[arg-type]


def test_post_then_get_on_the_primary(stores: Stores) -> None:
    text = f"hello {secrets.token_hex(4)}"
    code, _, created = call(stores, "store-01", "POST", "/messages", {"text": text})
    assert code == 201
    assert created == {"id": created["id"], "text": text, "served_by": "store-01", "written_to": "db-01"}
    code, _, listed = call(stores, "store-01", "GET", "/messages?limit=5")
    assert code == 200 and listed["read_from"] == "db-01" and listed["served_by"] == "store-01"
    newest = listed["messages"][0]
    assert (newest["id"], newest["text"], newest["served_by"]) == (created["id"], text, "store-01")
    assert newest["created_at"].endswith("Z")


def test_store_02_writes_to_the_primary_and_reads_the_write_from_the_replica(stores: Stores) -> None:
    text = f"through replication {secrets.token_hex(4)}"
    code, _, created = call(stores, "store-02", "POST", "/messages", {"text": text})
    assert (code, created["written_to"], created["served_by"]) == (201, "db-01", "store-02")
    setup.wait_replicated(stores.dbs.state, "db-02", "db-01", timeout_s=10)
    code, _, listed = call(stores, "store-02", "GET", "/messages?limit=100")
    assert code == 200 and listed["read_from"] == "db-02"
    assert created["id"] in [m["id"] for m in listed["messages"]]


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE messages;--",
        "\\' OR 1=1 -- ",
        "Robert'); DELETE FROM messages; --",
        "emoji \U0001f600 and NUL \x00 and quotes \" '",
        "x" * 1000,
    ],
)
def test_text_is_stored_verbatim(stores: Stores, text: str) -> None:
    code, _, created = call(stores, "store-01", "POST", "/messages", {"text": text})
    assert code == 201
    _, _, listed = call(stores, "store-01", "GET", "/messages?limit=100")
    assert {"id": created["id"], "text": text} in [{"id": m["id"], "text": m["text"]} for m in listed["messages"]]
    with setup.admin(stores.dbs.state, "db-01") as cursor:
        cursor.execute("SELECT COUNT(*) FROM foobar.messages")  # the table is still there
        assert cursor.fetchone()[0] >= 1


@pytest.mark.parametrize(
    ("method", "target", "body", "headers", "code"),
    [
        ("POST", "/messages", {"text": ""}, {}, 422),
        ("POST", "/messages", {"text": "x" * 1001}, {}, 422),
        ("POST", "/messages", {"text": 12}, {}, 422),
        ("GET", "/messages?limit=0", None, {}, 422),
        ("GET", "/messages?limit=101", None, {}, 422),
        ("POST", "/messages", b'{"text": "unclosed', {"Content-Type": "application/json"}, 400),
        ("POST", "/messages", b'{"text": "\xff\xfe"}', {"Content-Type": "application/json"}, 400),
        ("POST", "/messages", b'{"text": "hi"}', {"Content-Type": "text/plain"}, 415),
        ("POST", "/messages", b'{"text": "hi"}', {}, 415),
        ("GET", "/nope", None, {}, 404),
        ("DELETE", "/messages", None, {}, 405),
        ("PUT", "/health", None, {}, 405),
    ],
)
def test_bad_requests_get_a_precise_answer(stores: Stores, method: str, target: str, body, headers, code: int) -> None:  # type: ignore[no-untyped-def]
    got, reply_headers, payload = call(stores, "store-01", method, target, body, headers=headers)
    assert got == code
    assert payload["status"] == code and payload["error"]
    if code == 405:
        assert reply_headers["allow"]


def test_a_body_over_1_mib_is_413(stores: Stores) -> None:
    with connect(stores.address("store-01"), stores.source("store-01")) as sock:
        size = 1024 * 1024 + 1
        head = f"POST /messages HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode())
        assert status_of(read_all(sock)) == 413


def test_a_slow_request_is_408(stores: Stores) -> None:
    with connect(stores.address("store-01"), stores.source("store-01")) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /messages HTTP/1.1\r\nHost: s\r\n")  # the head never ends
        reply = read_all(sock)
        assert status_of(reply) == 408
        assert REQUEST_TIMEOUT_S - 0.1 <= time.monotonic() - started < REQUEST_TIMEOUT_S + 2


def test_keep_alive_serves_several_requests_on_one_connection(stores: Stores) -> None:
    address, source = stores.address("store-01"), stores.source("store-01")
    conn = http.client.HTTPConnection(*address, timeout=8, source_address=(source, 0))
    try:
        assert request(address, source, "GET", "/health", conn=conn)[0] == 200
        first = conn.sock.getsockname()
        assert request(address, source, "GET", "/messages?limit=1", conn=conn)[0] == 200
        assert request(address, source, "GET", "/nope", conn=conn)[0] == 404
        assert conn.sock.getsockname() == first
    finally:
        conn.close()


def test_the_admin_socket_is_where_the_tools_look() -> None:
    assert admin_socket_path(Path("state"), "store-01") == admin.admin_socket_path(Path("state"), "store-01")


def test_a_peer_from_another_host_is_closed_at_once(stores: Stores) -> None:
    path = admin_socket_path(stores.dbs.state, "store-01")
    key = ("foobar_refused_peers_total", (("hop", "store-01"),))
    before = parse_exposition(admin.read_metrics(path)).get(key, 0.0)
    try:  # the store closes at once: the reset may land on connect, send or read
        with connect(stores.address("store-01"), "127.0.52.99") as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: s\r\n\r\n")
            assert read_all(sock) == b""
    except ConnectionResetError:
        pass
    assert parse_exposition(admin.read_metrics(path))[key] == before + 1


def test_requests_are_counted_and_logged_with_the_trace_id(stores: Stores) -> None:
    path = admin_socket_path(stores.dbs.state, "store-01")
    key = ("foobar_requests_total", (("hop", "store-01"), ("outcome", "201")))
    before = parse_exposition(admin.read_metrics(path)).get(key, 0.0)
    trace = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"}
    assert call(stores, "store-01", "POST", "/messages", {"text": "traced"}, headers=headers)[0] == 201
    assert parse_exposition(admin.read_metrics(path))[key] == before + 1
    lines = [json.loads(line) for line in stores.logs["store-01"].read_text().splitlines() if trace in line]
    assert [(r["method"], r["path"], r["status"]) for r in lines] == [("POST", "/messages", 201)]


@pytest.fixture
def lonely_store(stores: Stores, tmp_path: Path) -> Iterator[tuple[Topology, subprocess.Popen[bytes], Path]]:
    """A store-01 of its own topology whose database accepts connections but never answers."""
    silent = socket.socket()
    silent.bind(("127.0.52.1", SILENT_DB_PORT))
    silent.listen(16)
    path = write_topology(tmp_path, SILENT_DB_PORT, SILENT_STORE_PORT)
    state = tmp_path / "state"
    (state / "mysql").mkdir(parents=True)
    (state / "mysql" / "credentials.json").write_text(json.dumps(setup.credentials(stores.dbs.state)))
    proc, log = start_store(path, state, "store-01")
    try:
        wait_line(proc, log, "READY hop=store-01")
        yield topology.load(path), proc, log
    finally:
        stop_process(proc)
        silent.close()


def test_a_database_that_does_not_answer_is_503_and_sigterm_exits_0(
    lonely_store: tuple[Topology, subprocess.Popen[bytes], Path],
) -> None:
    topo, proc, log = lonely_store
    address = topo.listen("store-01", "http")
    started = time.monotonic()
    code, _, payload = request(address, "127.0.52.1", "POST", "/messages", {"text": "lost?"})
    assert code == 503 and "db-01" in payload["error"]
    assert 4.5 <= time.monotonic() - started < 7.0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert '"event": "stopped"' in log.read_text()


def test_a_second_store_on_the_same_address_exits_2_naming_it(stores: Stores) -> None:
    proc, log = start_store(stores.dbs.topology_path, stores.dbs.state, "store-01", log_name="store-01-again")
    try:
        assert proc.wait(timeout=15) == 2
    finally:
        stop_process(proc)
    ip, port = stores.address("store-01")
    assert f"cannot listen on {ip}:{port}" in log.read_text()
