"""Active health checks on real sockets: small backends of our own that answer, fail, close or hang."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import pytest
import trio

from foobar_ref.balancer.farm import Changed, Command, Farm
from foobar_ref.balancer.health import HealthChecker, check_once
from foobar_ref.balancer.servers import Admin, CheckResult, State
from foobar_ref.topology_balancer import BalancerSettings, CheckSettings

BACKEND_IP = "127.0.61.2"
SOURCE_IP = "127.0.61.1"
HOST = "www.foobar.com"


class Backend:
    """A tiny HTTP server on a real socket; `mode` says how it treats the next connections."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.seen: list[tuple[str, bytes]] = []  # (peer ip, request head)
        self.listener = trio.socket.socket()
        self.port = 0

    async def start(self, nursery: trio.Nursery) -> None:
        await self.listener.bind((BACKEND_IP, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        nursery.start_soon(self._accept)

    @property
    def address(self) -> tuple[str, int]:
        return BACKEND_IP, self.port

    async def _accept(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                sock, peer = await self.listener.accept()
                nursery.start_soon(self._serve, trio.SocketStream(sock), peer[0])

    async def _serve(self, stream: trio.SocketStream, peer: str) -> None:
        async with stream:
            if self.mode == "close":
                return
            head = b""
            while b"\r\n\r\n" not in head:
                data = await stream.receive_some(4096)
                if not data:
                    return
                head += data
            self.seen.append((peer, head))
            if self.mode == "hang":
                await trio.sleep_forever()
            if self.mode == "garbage":
                await stream.send_all(b"not http at all\r\n\r\n")
                return
            status = b"503 Service Unavailable" if self.mode == "503" else b"200 OK"
            await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


async def with_backend(mode: str, body: Callable[[Backend], Awaitable[None]]) -> None:
    backend = Backend(mode)
    async with trio.open_nursery() as nursery:
        await backend.start(nursery)
        await body(backend)
        nursery.cancel_scope.cancel()


async def test_a_healthy_backend_passes_and_sees_the_check_from_the_balancers_address() -> None:
    async def body(backend: Backend) -> None:
        result = await check_once(backend.address, SOURCE_IP, "/health", HOST, 2.0)
        assert (result.passed, result.code, result.status) == (True, "L7OK", 200)
        assert 0 < result.duration_s < 2.0
        peer, head = backend.seen[0]
        assert peer == SOURCE_IP
        assert head.startswith(b"GET /health HTTP/1.1\r\n")
        assert b"host: www.foobar.com" in head.lower() and b"connection: close" in head.lower()

    await with_backend("ok", body)


@pytest.mark.parametrize(
    ("mode", "code"), [("503", "L7STS"), ("close", "L7RSP"), ("garbage", "L7RSP"), ("hang", "L7TOUT")]
)
async def test_a_failing_backend_fails_its_check_with_haproxys_word(mode: str, code: str) -> None:
    async def body(backend: Backend) -> None:
        with trio.fail_after(3.0):
            result = await check_once(backend.address, SOURCE_IP, "/health", HOST, 0.5)
        assert (result.passed, result.code) == (False, code), result
        if mode == "hang":
            assert 0.5 <= result.duration_s < 1.5

    await with_backend(mode, body)


async def test_nothing_listening_is_a_failed_connect() -> None:
    with socket.socket() as probe:
        probe.bind((BACKEND_IP, 0))
        port = probe.getsockname()[1]
    result = await check_once((BACKEND_IP, port), SOURCE_IP, "/health", HOST, 1.0)
    assert (result.passed, result.code) == (False, "L4CON")
    assert "refused" in result.detail.lower()


async def test_the_checker_takes_a_failing_backend_out_after_fall_checks_and_back_after_rise() -> None:
    check = CheckSettings(inter_s=0.2, timeout_s=0.2, fall=3, rise=2)
    farm = Farm(("web-01",), BalancerSettings(check=check))
    log: list[tuple[float, Command]] = []

    def carry_out(backend: str, result: CheckResult, commands: list[Command]) -> None:
        log.extend((trio.current_time(), c) for c in commands)

    async def body(backend: Backend) -> None:
        checker = HealthChecker(farm, {"web-01": backend.address}, SOURCE_IP, HOST, carry_out)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(checker.run)
            await trio.sleep(0.5)
            assert log == [] and farm.servers["web-01"].status_text() == "UP"
            backend.mode = "hang"
            hung_at = trio.current_time()
            with trio.fail_after(5.0):
                while not log:
                    await trio.sleep(0.05)
            went_down_at, change = log[0]
            assert change == Changed("web-01", State.UP, State.DOWN, change.reason)
            assert change.reason.startswith("check L7TOUT")
            # the first failed check started at most one interval after the hang, the third one 2 intervals later
            assert went_down_at - hung_at <= check.inter_s * check.fall + check.timeout_s + 0.3
            backend.mode = "ok"
            with trio.fail_after(5.0):
                while len(log) < 2:
                    await trio.sleep(0.05)
            assert log[1][1] == Changed("web-01", State.DOWN, State.UP, "check L7OK")
            assert farm.servers["web-01"].failed_checks in (3, 4)  # a check hung when it recovered may fail too
            nursery.cancel_scope.cancel()

    await with_backend("ok", body)


async def test_a_backend_in_maint_is_not_checked_and_is_checked_at_once_when_woken() -> None:
    check = CheckSettings(inter_s=1.0, timeout_s=0.5)
    farm = Farm(("web-01",), BalancerSettings(check=check))
    farm.set_admin("web-01", Admin.MAINT, 0.0)

    async def body(backend: Backend) -> None:
        checker = HealthChecker(farm, {"web-01": backend.address}, SOURCE_IP, HOST, lambda *_: None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(checker.run)
            await trio.sleep(1.5)
            assert backend.seen == []
            farm.set_admin("web-01", Admin.READY, trio.current_time())
            checker.wake("web-01")
            await trio.sleep(0.3)
            assert len(backend.seen) == 1
            nursery.cancel_scope.cancel()

    await with_backend("ok", body)
