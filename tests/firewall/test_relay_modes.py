"""The relay tests for every `--relay` mode (copy, splice, auto): a real firewall process, then the pumps in-process.

Addresses: publics 127.0.51.100+, inners 127.0.51.110+, in-process sockets on 127.0.51.120.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from pathlib import Path

import pytest
import trio

from foobar_ref.firewall import splice_relay
from foobar_ref.firewall.core import Command, Connection
from tests.firewall.fwutil import (
    EOF_TRAILER,
    FRONT,
    STORE_PORT,
    WEB_PORT,
    EchoServer,
    Running,
    connect_from,
    firewall,
    read_all,
    start_firewall,
    wait_for,
    write_topology,
)

MODES = ["copy", "splice", "auto"]
IDLE_S = 1.0
BYTES = "foobar_firewall_bytes_total"
FIVE_MIB = 5 * 1024 * 1024
IN_PROCESS_IP = "127.0.51.120"


def _pair(mode: str) -> tuple[str, str]:
    index = MODES.index(mode)
    return f"127.0.51.{100 + index}", f"127.0.51.{110 + index}"


@pytest.fixture(scope="module", params=MODES)
def relay_fw(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    mode = request.param
    public, inner = _pair(mode)
    folder = tmp_path_factory.mktemp(f"relay-{mode}")
    server = EchoServer((inner, WEB_PORT)).start()
    extra = ("--relay", mode, "--idle-timeout-s", str(IDLE_S))
    try:
        with firewall(write_topology(folder, public, inner), folder / "state", *extra) as running:
            yield mode, public, running, server
    finally:
        server.stop()


def _bytes(fw: Running) -> tuple[float, float]:
    return fw.counter(BYTES, direction="in"), fw.counter(BYTES, direction="out")


def test_both_ways_intact_half_close_and_counters(relay_fw) -> None:  # type: ignore[no-untyped-def]
    _, public, fw, echo = relay_fw
    before_in, before_out = _bytes(fw)
    with connect_from(FRONT, (public, WEB_PORT)) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        sock.sendall(b"pong")
        sock.shutdown(socket.SHUT_WR)  # half-close: the server still answers, then ends
        assert read_all(sock) == b"pong" + EOF_TRAILER
    assert echo.peers[-1][0] == public
    wait_for(lambda: _bytes(fw)[1] == before_out + 8 + len(EOF_TRAILER), what="bytes out")
    assert _bytes(fw)[0] == before_in + 8


def test_five_mib_both_ways_intact(relay_fw) -> None:  # type: ignore[no-untyped-def]
    _, public, fw, _ = relay_fw
    data = os.urandom(FIVE_MIB)
    before_in, before_out = _bytes(fw)
    with connect_from(FRONT, (public, WEB_PORT), timeout_s=10) as sock:

        def send() -> None:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = read_all(sock)
        sender.join(timeout=10)
    assert received == data + EOF_TRAILER
    wait_for(lambda: _bytes(fw) == (before_in + FIVE_MIB, before_out + FIVE_MIB + len(EOF_TRAILER)), what="counters")


def test_idle_relay_is_closed(relay_fw) -> None:  # type: ignore[no-untyped-def]
    _, public, fw, _ = relay_fw
    with connect_from(FRONT, (public, WEB_PORT), timeout_s=IDLE_S + 3) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        assert sock.recv(100) == b""  # closed by the sweeper
    wait_for(lambda: any(e["reason"] == "idle timeout" for e in fw.events("closed")), what="idle close logged")


def test_server_reset_is_passed_on(relay_fw) -> None:  # type: ignore[no-untyped-def]
    mode, public, fw, _ = relay_fw
    _, inner = _pair(mode)
    with socket.socket() as listener:
        listener.bind((inner, STORE_PORT))  # accepted from FRONT by the test rules
        listener.listen(1)
        listener.settimeout(5)
        with connect_from(FRONT, (public, STORE_PORT)) as sock:
            accepted, _ = listener.accept()
            accepted.settimeout(5)
            sock.sendall(b"hello")
            assert accepted.recv(5) == b"hello"
            accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            accepted.close()  # RST
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
    wait_for(lambda: any(e["reason"].startswith("server reset") for e in fw.events("closed")), what="reset logged")


def test_capture_always_copies(tmp_path: Path) -> None:
    public, inner = "127.0.51.105", "127.0.51.115"
    server = EchoServer((inner, WEB_PORT)).start()
    try:
        with firewall(
            write_topology(tmp_path, public, inner),
            tmp_path / "state",
            *("--relay", "splice", "--capture", str(tmp_path / "capture")),
        ), connect_from(FRONT, (public, WEB_PORT)) as sock:  # fmt: skip
            sock.sendall(b"seen")
            sock.shutdown(socket.SHUT_WR)
            assert read_all(sock) == b"seen" + EOF_TRAILER
        captured = {p.suffix: p.read_bytes() for p in (tmp_path / "capture").iterdir() if p.suffix in (".c2s", ".s2c")}
    finally:
        server.stop()
    assert captured == {".c2s": b"seen", ".s2c": b"seen" + EOF_TRAILER}


def test_unknown_relay_mode_is_refused(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, "127.0.51.106", "127.0.51.116")
    with pytest.raises(AssertionError, match="exited 2") as failed:
        start_firewall(topo, tmp_path / "state", "--relay", "mmap")
    assert "invalid choice: 'mmap'" in str(failed.value)


# --- in-process: back-pressure, switching, pipes ---------------------------------------------------------------


def _connected_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    outside = socket.create_connection(listener.getsockname(), timeout=5)
    inside, _ = listener.accept()
    inside.setblocking(False)
    return outside, inside


async def _relayed(maker, client_end, server_end, work):  # type: ignore[no-untyped-def]
    """Run a relay between two fresh TCP connections while `work(client, server)` runs in a thread."""
    conn = Connection(1, ("127.0.0.1", 1), ("127.0.0.1", 2), "accept", "test", Command.RELAY, 0.0)
    relay = maker(client_end[1], server_end[1], conn)
    outcome: list[str] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            outcome.append(await relay.run())

        nursery.start_soon(run)
        with trio.fail_after(10):
            await trio.to_thread.run_sync(work, client_end[0], server_end[0])
            while not outcome:
                await trio.sleep(0.01)
    for sock in (client_end[1], server_end[1]):
        trio.lowlevel.notify_closing(sock)
        sock.close()
    client_end[0].close()
    server_end[0].close()
    return relay, conn, outcome[0]


def _sockets():  # type: ignore[no-untyped-def]
    listener = socket.socket()
    listener.bind((IN_PROCESS_IP, 0))
    listener.listen(4)
    with listener:
        return _connected_pair(listener), _connected_pair(listener)


@pytest.mark.parametrize("mode", MODES)
async def test_a_reader_that_stops_stops_the_writer(mode: str) -> None:
    """Back-pressure: with the server not reading, the client's sends soon block; nothing is lost."""
    client_end, server_end = _sockets()
    chunk = os.urandom(256 * 1024)
    result: dict[str, int | bytes] = {}

    def work(client: socket.socket, server: socket.socket) -> None:
        client.settimeout(0.5)
        sent = 0
        try:
            while sent < 256 * 1024 * 1024:
                sent += client.send(chunk)
        except TimeoutError:
            pass  # blocked: every buffer on the way is full
        result["stalled_at"] = sent
        client.settimeout(5)
        client.shutdown(socket.SHUT_WR)
        result["got"] = read_all(server)
        server.close()
        client.recv(1)
        client.close()

    relay, conn, reason = await _relayed(splice_relay.relay_factory(mode), client_end, server_end, work)
    stalled = int(result["stalled_at"])  # type: ignore[call-overload]
    assert 0 < stalled < 64 * 1024 * 1024  # socket buffers and one pipe or buffer, not the whole stream
    assert result["got"] == (chunk * (stalled // len(chunk) + 1))[:stalled]
    assert conn.bytes_in == stalled and reason == "closed both ways"


async def test_auto_switches_to_splice_after_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splice_relay, "AUTO_SPLICE_AFTER_BYTES", 100_000)
    used: list[int] = []
    real_splice = splice_relay.SpliceRelay._splice

    async def counting(self, pipe, src, dst, direction, wait):  # type: ignore[no-untyped-def]
        used.append(self.conn.bytes_in)
        return await real_splice(self, pipe, src, dst, direction, wait)

    monkeypatch.setattr(splice_relay.SpliceRelay, "_splice", counting)
    data = os.urandom(1024 * 1024)

    def work(client: socket.socket, server: socket.socket) -> None:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        assert read_all(server) == data
        server.close()
        client.close()

    client_end, server_end = _sockets()
    _, conn, _ = await _relayed(splice_relay.relay_factory("auto"), client_end, server_end, work)
    assert conn.bytes_in == len(data)
    assert len(used) == 1 and 100_000 <= used[0] < len(data)  # the client->server direction switched once


async def test_short_exchange_in_auto_mode_never_splices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splice_relay, "_new_pipe", lambda: pytest.fail("a pipe was made"))
    monkeypatch.setattr(splice_relay, "_spare", [])

    def work(client: socket.socket, server: socket.socket) -> None:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert server.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
        server.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        server.close()
        assert read_all(client) == b"HTTP/1.1 200 OK\r\n\r\n"
        client.close()

    client_end, server_end = _sockets()
    _, conn, reason = await _relayed(splice_relay.relay_factory("auto"), client_end, server_end, work)
    assert (conn.bytes_in, conn.bytes_out, reason) == (18, 19, "closed both ways")


def _open_pipes() -> int:
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:") for fd in _fds())


def _fds() -> list[str]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own fd, already closed
        fds.append(name)
    return fds


async def test_pipes_are_reused_after_clean_ends_and_closed_after_aborts(monkeypatch: pytest.MonkeyPatch) -> None:
    spare: list[tuple[int, int]] = []
    monkeypatch.setattr(splice_relay, "_spare", spare)
    pipes_before = _open_pipes()

    def clean(client: socket.socket, server: socket.socket) -> None:
        client.sendall(b"x")
        client.shutdown(socket.SHUT_WR)
        assert read_all(server) == b"x"
        server.close()
        client.close()

    await _relayed(splice_relay.relay_factory("splice"), *_sockets(), clean)
    kept = set(spare)  # one pipe per direction (or one for both, when one ended before the other began)
    assert 1 <= len(kept) <= 2
    await _relayed(splice_relay.relay_factory("splice"), *_sockets(), clean)
    assert kept <= set(spare) and len(spare) <= 2  # the same pipes again
    assert _open_pipes() - pipes_before == 2 * len(spare)

    def reset(client: socket.socket, server: socket.socket) -> None:
        client.sendall(b"y" * 1000)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()  # RST

    relay, _, reason = await _relayed(splice_relay.relay_factory("splice"), *_sockets(), reset)
    assert reason.startswith("server reset") and relay.aborted
    assert _open_pipes() - pipes_before == 2 * len(spare) <= 4  # every pipe is either spare or closed
    for pipe in list(spare):
        spare.remove(pipe)
        os.close(pipe[0])
        os.close(pipe[1])


async def test_auto_keeps_many_small_exchanges_on_the_copy_pump(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only bulk reads count towards the switch: a long keep-alive of small messages is never spliced."""
    monkeypatch.setattr(splice_relay, "AUTO_SPLICE_AFTER_BYTES", 1000)
    monkeypatch.setattr(splice_relay, "_new_pipe", lambda: pytest.fail("a pipe was made"))
    monkeypatch.setattr(splice_relay, "_spare", [])
    request, answer, rounds = b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n" * 5, 100

    def work(client: socket.socket, server: socket.socket) -> None:
        for _ in range(rounds):
            client.sendall(request)
            assert server.recv(100) == request
            server.sendall(answer)
            assert client.recv(200) == answer
        server.close()
        client.close()

    client_end, server_end = _sockets()
    _, conn, reason = await _relayed(splice_relay.relay_factory("auto"), client_end, server_end, work)
    assert (conn.bytes_in, conn.bytes_out) == (rounds * len(request), rounds * len(answer)) and conn.bytes_in > 1000
    assert reason == "closed both ways"
