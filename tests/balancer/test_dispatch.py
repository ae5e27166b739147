"""The farm driven from trio: queue waits, wake-ups on freed slots, queue timeouts, clients that leave."""

from __future__ import annotations

import trio
import trio.testing

from foobar_ref.balancer.dispatch import Dispatcher
from foobar_ref.balancer.farm import Changed, Farm, Forward, Observation, Refuse
from foobar_ref.balancer.servers import CheckResult, State
from foobar_ref.topology_balancer import BalancerSettings, QueueSettings

ONE_SLOT = BalancerSettings(backend_maxconn=1, queue=QueueSettings(size=2, timeout_s=4.0))


async def test_a_waiting_request_goes_when_the_slot_is_freed(autojump_clock: trio.testing.MockClock) -> None:
    dispatcher = Dispatcher(Farm(("web-01",), ONE_SLOT))
    first = await dispatcher.take()
    assert first == Forward(1, "web-01")
    got: list[Forward | Refuse] = []

    async def second() -> None:
        got.append(await dispatcher.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.sleep(1.0)
        assert got == [] and dispatcher.farm.queued == 1
        dispatcher.done(first.ticket)
    assert got == [Forward(2, "web-01")] and trio.current_time() == 1.0


async def test_a_request_waits_no_longer_than_the_queue_timeout(autojump_clock: trio.testing.MockClock) -> None:
    dispatcher = Dispatcher(Farm(("web-01",), ONE_SLOT))
    await dispatcher.take()
    started = trio.current_time()
    refused = await dispatcher.take()
    assert refused == Refuse(2, 503, 1, "sQ", "no backend slot within 4 s")
    assert trio.current_time() - started == 4.0 and dispatcher.farm.queued == 0


async def test_a_client_that_leaves_while_waiting_leaves_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    dispatcher = Dispatcher(Farm(("web-01",), ONE_SLOT))
    first = await dispatcher.take()
    with trio.move_on_after(1.0):
        await dispatcher.take()
    assert dispatcher.farm.queued == 0
    dispatcher.done(first.ticket)
    assert dispatcher.farm.servers["web-01"].served == 0


async def test_waiting_requests_get_503_at_once_when_the_last_backend_goes_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    changes: list[Changed] = []
    dispatcher = Dispatcher(Farm(("web-01",), ONE_SLOT), changes.append)
    await dispatcher.take()
    got: list[Forward | Refuse] = []

    async def waiting() -> None:
        got.append(await dispatcher.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting)
        await trio.sleep(0.5)
        commands = dispatcher.farm.checked("web-01", CheckResult(False, "L4CON"), trio.current_time())
        dispatcher.carry_out(commands)
    assert got == [Refuse(2, 503, 4, "SC", "no backend available")] and trio.current_time() == 0.5
    assert changes == [Changed("web-01", State.UP, State.DOWN, "check L4CON")]


async def test_a_retry_moves_on_and_traffic_failures_reach_the_farm() -> None:
    dispatcher = Dispatcher(Farm(("web-01", "web-02"), BalancerSettings()))
    first = await dispatcher.take()
    assert isinstance(first, Forward) and first.backend == "web-01"
    dispatcher.observe("web-01", Observation.CONNECT_FAILED)
    assert dispatcher.retry(first.ticket, ["web-01"]) == Forward(1, "web-02")
    assert dispatcher.retry(first.ticket, ["web-01", "web-02"]) is None
    assert dispatcher.farm.servers["web-01"].state is State.DOWN  # a fresh backend falls at its first failure
