"""Active health checks: `GET /health` to every backend, from the balancer's address, through its firewall.

Theory of operation
-------------------
`HealthChecker.run()` starts one task per backend.  Each task sleeps until
its next check (the first ones spread over one interval, `farm.first_check_delay_s`),
runs `check_once`, hands the result to the farm (`farm.checked`, pure: HAProxy's
rise/fall counter) and passes whatever the farm answered to the shell's
`carry_out` callback (log a backend going down or up, wake or refuse waiting
requests).  The next check starts one interval after this one *started*
(`farm.check_interval_s`: inter, fastinter, downinter), so with a check timeout
no longer than the interval (the topology insists) a hung backend's third
failed check lands `inter x fall` after its first.  In `maint`, or with checks
off, a task waits; `wake(backend)` cuts any wait short (HAProxy checks a server
at once when it leaves maintenance).

`check_once` is one HTTP/1.1 exchange on a new connection (Connection: close),
opened as the upstream opens its own: `runtime.trio_shell.connect_tcp` from the
balancer's source address to the backend's public address, so the backend's
firewall sees exactly what it sees for real traffic.  The whole check, connect
included, is bounded by the check timeout.  Results use HAProxy's check words:
L7OK (2xx or 3xx), L7STS (any other status), L7RSP (closed without an answer,
or not HTTP), L7TOUT (connected, no answer in time), L4CON (connect failed),
L4TOUT (no connection in time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import trio

from foobar_ref.balancer.farm import Command, Farm
from foobar_ref.balancer.servers import CheckResult
from foobar_ref.runtime import http_trio
from foobar_ref.runtime.trio_shell import connect_tcp
from foobar_ref.wire.errors import BadResponse, ExchangeFailed, NoResponse, ResponseTimeout
from foobar_ref.wire.limits import ClientLimits

USER_AGENT = b"foobar-ref-lb-check/1"
MAX_CHECK_BODY_BYTES = 64 * 1024

CarryOut = Callable[[str, CheckResult, list[Command]], None]


async def check_once(
    address: tuple[str, int], source_ip: str | None, path: str, host: str, timeout_s: float
) -> CheckResult:
    """One check: connect, GET `path`, read the whole answer, all within `timeout_s`."""
    started = trio.current_time()
    stream: trio.SocketStream | None = None
    result: CheckResult | None = None
    with trio.move_on_after(timeout_s):
        try:
            stream = await connect_tcp(address[0], address[1], source_ip, timeout_s)
        except OSError as err:
            result = CheckResult(False, "L4CON", detail=err.strerror or str(err))
        except trio.TooSlowError:
            pass  # L4TOUT below
        else:
            result = await _exchange(stream, path, host, timeout_s)
    if stream is not None:
        stream.socket.close()
    elapsed = trio.current_time() - started
    if result is None:
        code = "L4TOUT" if stream is None else "L7TOUT"
        result = CheckResult(
            False, code, detail=f"no {'connection' if stream is None else 'answer'} in {timeout_s:g} s"
        )
    return CheckResult(result.passed, result.code, result.status, elapsed, result.detail)


async def _exchange(stream: trio.SocketStream, path: str, host: str, timeout_s: float) -> CheckResult:
    limits = ClientLimits(head_s=timeout_s, read_s=timeout_s, send_s=timeout_s, max_body_bytes=MAX_CHECK_BODY_BYTES)
    client = http_trio.client(stream, limits)
    headers = [(b"Host", host.encode("ascii")), (b"User-Agent", USER_AGENT), (b"Connection", b"close")]
    try:
        response, _ = await client.exchange(b"GET", path.encode("ascii"), headers)
    except ResponseTimeout as err:
        return CheckResult(False, "L7TOUT", detail=err.detail)
    except (NoResponse, BadResponse) as err:
        return CheckResult(False, "L7RSP", detail=err.detail)
    except ExchangeFailed as err:
        return CheckResult(False, "L7RSP", detail=err.detail)
    except http_trio.GONE as err:
        return CheckResult(False, "L7RSP", detail=str(err) or type(err).__name__)
    status = response.status_code
    if 200 <= status < 400:
        return CheckResult(True, "L7OK", status)
    return CheckResult(False, "L7STS", status, detail=f"status {status}")


class HealthChecker:
    """One checking task per backend of `farm`; results go to the farm, then to `carry_out`."""

    def __init__(
        self,
        farm: Farm,
        addresses: Mapping[str, tuple[str, int]],
        source_ip: str | None,
        host: str,
        carry_out: CarryOut,
    ) -> None:
        self.farm = farm
        self.addresses = dict(addresses)
        self.source_ip = source_ip
        self.host = host
        self.carry_out = carry_out
        self._wakers = {name: trio.Event() for name in addresses}

    async def run(self) -> None:
        if not self.farm.settings.check.enabled:
            return
        async with trio.open_nursery() as nursery:
            for backend in self.addresses:
                nursery.start_soon(self._watch, backend)

    def wake(self, backend: str) -> None:
        """Check `backend` now (it left maintenance, say) instead of at its next turn."""
        self._wakers[backend].set()

    async def _watch(self, backend: str) -> None:
        check = self.farm.settings.check
        await self._sleep_until(backend, trio.current_time() + self.farm.first_check_delay_s(backend))
        while True:
            interval = self.farm.check_interval_s(backend)
            started = trio.current_time()
            if interval is None:  # maint: no checks until woken or the next look
                await self._sleep_until(backend, started + check.inter_s)
                continue
            result = await check_once(self.addresses[backend], self.source_ip, check.path, self.host, check.timeout_s)
            commands = self.farm.checked(backend, result, trio.current_time())
            self.carry_out(backend, result, commands)
            interval = self.farm.check_interval_s(backend) or check.inter_s
            await self._sleep_until(backend, started + interval)

    async def _sleep_until(self, backend: str, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._wakers[backend].wait()
        if self._wakers[backend].is_set():
            self._wakers[backend] = trio.Event()
