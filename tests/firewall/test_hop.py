"""The firewall as a real process on 127.0.51.0/24: relay, reset, silence, counters, capture, PROXY, stop."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from foobar_ref.firewall.capture import read_capture
from tests.firewall.fwutil import (
    CLIENT,
    EOF_TRAILER,
    FRONT,
    HOP,
    REJECT_RULE,
    STORE_PORT,
    STRANGER,
    WEB_PORT,
    WEB_RULE,
    EchoServer,
    Running,
    connect_from,
    firewall,
    read_all,
    refused_at_once,
    start_firewall,
    stop,
    wait_for,
    write_topology,
)

PUBLIC, INNER = "127.0.51.2", "127.0.51.12"
HOLD_S = IDLE_S = 2.0
CONNS = "foobar_firewall_connections_total"
BYTES = "foobar_firewall_bytes_total"


@pytest.fixture(scope="module")
def echo():
    server = EchoServer((INNER, WEB_PORT)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fw(tmp_path_factory, echo) -> Running:
    folder = tmp_path_factory.mktemp("fw")
    topo = write_topology(folder, PUBLIC, INNER)
    extra = ("--capture", str(folder / "capture"), "--drop-hold-s", str(HOLD_S), "--idle-timeout-s", str(IDLE_S))
    with firewall(topo, folder / "state", *extra) as running:
        yield running


def _capture(fw: Running, sport: int):
    def closed():
        return next(
            (r for r in read_capture(fw.state.parent / "capture") if r.src.endswith(f":{sport}") and r.end), None
        )

    return wait_for(closed, what=f"capture of the connection from port {sport}")


def test_allowed_connection_relays_both_ways_and_half_close(fw: Running, echo: EchoServer) -> None:
    before_in, before_out = fw.counter(BYTES, direction="in"), fw.counter(BYTES, direction="out")
    before = fw.counter(CONNS, action="accept", rule=WEB_RULE)
    with connect_from(FRONT, (PUBLIC, WEB_PORT)) as sock:
        sport = sock.getsockname()[1]
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"  # relayed while the connection is open both ways
        sock.sendall(b"pong")
        sock.shutdown(socket.SHUT_WR)  # client half-closes: the server still answers, then ends
        assert read_all(sock) == b"pong" + EOF_TRAILER
    assert echo.peers[-1][0] == PUBLIC  # relayed from the guarded host's public address
    assert fw.counter(CONNS, action="accept", rule=WEB_RULE) == before + 1
    wait_for(lambda: fw.counter(BYTES, direction="out") == before_out + 8 + len(EOF_TRAILER), what="bytes out")
    assert fw.counter(BYTES, direction="in") == before_in + 8
    record = _capture(fw, sport)
    assert (record.c2s, record.s2c) == (b"pingpong", b"pingpong" + EOF_TRAILER)
    assert record.upstream == f"{PUBLIC}:{echo.peers[-1][1]}->{INNER}:{WEB_PORT}"
    names = {p.name for p in (fw.state.parent / "capture").iterdir()}
    assert f"{record.id:06d}_{FRONT}_{sport}_to_{PUBLIC}_{WEB_PORT}.c2s" in names


def test_five_mib_relayed_intact_and_capture_is_bounded(fw: Running) -> None:
    data = os.urandom(5 * 1024 * 1024)
    before_in = fw.counter(BYTES, direction="in")
    with connect_from(FRONT, (PUBLIC, WEB_PORT), timeout_s=10) as sock:
        sport = sock.getsockname()[1]

        def send() -> None:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = read_all(sock)
        sender.join(timeout=10)
    assert received == data + EOF_TRAILER
    record = _capture(fw, sport)
    assert (record.bytes_in, record.bytes_out) == (len(data), len(data) + len(EOF_TRAILER))
    assert record.c2s == data[: 4 * 1024 * 1024] and record.truncated
    assert fw.counter(BYTES, direction="in") == before_in + len(data)


def test_rejected_source_is_reset_at_once(fw: Running) -> None:
    rule = REJECT_RULE
    before, before_requests = (
        fw.counter(CONNS, action="reject", rule=rule),
        fw.counter("foobar_requests_total", outcome="reject"),
    )
    assert refused_at_once(CLIENT, (PUBLIC, WEB_PORT)) < 1.0
    assert fw.counter(CONNS, action="reject", rule=rule) == before + 1
    assert fw.counter("foobar_requests_total", outcome="reject") == before_requests + 1
    lines = [e["line"] for e in fw.events("decision")]
    expected = f"test reject: SRC={CLIENT} DST={PUBLIC} PROTO=TCP"
    assert any(line.startswith(expected) and f"ACTION=reject RULE={rule}" in line for line in lines)


def test_dropped_source_gets_no_answer_until_it_gives_up(fw: Running) -> None:
    before = fw.counter(CONNS, action="drop", rule="policy")
    with connect_from(STRANGER, (PUBLIC, WEB_PORT), timeout_s=1.0) as sock:
        sport = sock.getsockname()[1]
        with pytest.raises(TimeoutError):
            sock.recv(100)
    assert fw.counter(CONNS, action="drop", rule="policy") == before + 1
    closed = wait_for(lambda: [e for e in fw.events("closed") if e["src"] == f"{STRANGER}:{sport}"], what="closed")
    assert closed[0]["reason"] == "client closed" and closed[0]["end"] - closed[0]["start"] < HOLD_S


def test_dropped_client_that_sends_then_leaves_is_noticed(fw: Running) -> None:
    with connect_from(STRANGER, (PUBLIC, STORE_PORT)) as sock:
        sport = sock.getsockname()[1]
        sock.sendall(b"hello?")  # left unread by the firewall
    closed = wait_for(lambda: [e for e in fw.events("closed") if e["src"] == f"{STRANGER}:{sport}"], what="closed")
    assert closed[0]["reason"] == "client closed"


def test_hold_time_is_bounded(fw: Running) -> None:
    with connect_from(STRANGER, (PUBLIC, WEB_PORT), timeout_s=HOLD_S + 3) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # the firewall gave up holding it
        assert HOLD_S - 0.5 < time.monotonic() - started < HOLD_S + 2


def test_idle_relay_is_closed(fw: Running) -> None:
    with connect_from(FRONT, (PUBLIC, WEB_PORT), timeout_s=IDLE_S + 3) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert IDLE_S - 0.5 < time.monotonic() - started < IDLE_S + 2


def test_unreachable_inner_service_resets_the_client(fw: Running) -> None:
    before = fw.counter("foobar_firewall_upstream_failures_total")
    assert refused_at_once(FRONT, (PUBLIC, STORE_PORT)) < 1.0  # accepted by rule, but nothing listens inside
    assert fw.counter("foobar_firewall_upstream_failures_total") == before + 1
    assert any(e["upstream"] == f"{INNER}:{STORE_PORT}" for e in fw.events("upstream_failed"))


def test_proxy_line_is_sent_when_configured(tmp_path: Path) -> None:
    public, inner = "127.0.51.5", "127.0.51.15"
    server = EchoServer((inner, WEB_PORT)).start()
    try:
        with firewall(write_topology(tmp_path, public, inner, proxy=True), tmp_path / "state"), \
                connect_from(FRONT, (public, WEB_PORT)) as sock:  # fmt: skip
            sport = sock.getsockname()[1]
            sock.sendall(b"body")
            sock.shutdown(socket.SHUT_WR)
            echoed = read_all(sock)
    finally:
        server.stop()
    assert echoed == f"PROXY TCP4 {FRONT} {public} {sport} {WEB_PORT}\r\n".encode() + b"body" + EOF_TRAILER
    assert not (tmp_path / "capture").exists()


def test_sigterm_exits_cleanly_with_open_connections(tmp_path: Path) -> None:
    public, inner = "127.0.51.6", "127.0.51.16"
    server = EchoServer((inner, WEB_PORT)).start()
    running = start_firewall(write_topology(tmp_path, public, inner), tmp_path / "state")
    try:
        relayed = connect_from(FRONT, (public, WEB_PORT))
        relayed.sendall(b"x")
        assert relayed.recv(1) == b"x"
        held = connect_from(STRANGER, (public, WEB_PORT))
        wait_for(lambda: len(running.tracked()) == 2, what="two tracked connections")
        started = time.monotonic()
        assert stop(running, timeout_s=5.0) == 0
        assert time.monotonic() - started < 5.0
        assert relayed.recv(100) == b""
        reasons = {e["reason"] for e in running.events("closed")}
        assert reasons == {"firewall stopping"} and running.events("stopped")
        relayed.close()
        held.close()
    finally:
        stop(running)
        server.stop()


def test_bind_failure_names_the_address_and_exits_2(tmp_path: Path) -> None:
    public, inner = "127.0.51.4", "127.0.51.14"
    with socket.socket() as squatter:
        squatter.bind((public, STORE_PORT))
        squatter.listen(1)
        with pytest.raises(AssertionError, match="exited 2"):
            start_firewall(write_topology(tmp_path, public, inner), tmp_path / "state")
    output = (tmp_path / "state" / "firewall.log").read_text()
    assert f"cannot listen on {public}:{STORE_PORT}" in output and "READY" not in output


def test_a_hop_that_is_not_a_firewall_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exited 2") as failed:
        topo = write_topology(tmp_path, "127.0.51.7", "127.0.51.17")
        start_firewall(topo, tmp_path / "state", "--hop", "app-web")
    assert "'app-web' is not a firewall" in str(failed.value)
    assert HOP in str(failed.value)
