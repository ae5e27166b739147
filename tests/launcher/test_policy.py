"""The restart policy as transcripts: back-off, budget, dependency order, requests, watchdog, the stack file's form."""

from __future__ import annotations

import json

from foobar_ref.launcher import policy
from foobar_ref.launcher.policy import HopStatus, Phase, RestartPolicy

RULES = RestartPolicy()


def run(status: HopStatus, at: float, pid: int = 100) -> None:
    policy.started(status, at, pid, at, RULES)
    policy.ready(status, at + 0.5)


def test_a_crash_loop_backs_off_doubling_then_gives_up_once_the_budget_is_spent() -> None:
    status, now, delays = HopStatus("web-01"), 0.0, []
    policy.started(status, now, 1, now, RULES)
    while True:
        delay = policy.exited(status, now + 0.1, "exited with code 2: cannot listen", RULES)
        if delay is None:
            break
        delays.append(delay)
        now = status.due
        assert policy.may_start(status, now, [])
        policy.started(status, now, 1, now, RULES)
    assert delays == [0.5, 1.0, 2.0, 4.0]  # RULES.burst (5) starts in all: the first and four restarts
    assert status.phase is Phase.FAILED and status.restarts == 4
    assert status.last_exit == "exited with code 2: cannot listen; gave up: 5 starts within 60 s"
    assert not policy.may_start(status, now + 100, [])


def test_a_hop_that_ran_stable_starts_its_back_off_afresh_and_old_starts_leave_the_budget() -> None:
    status = HopStatus("lb-01")
    for n in range(10):  # one crash every 100 s: never FAILED
        run(status, n * 100.0)
        assert policy.exited(status, n * 100.0 + 50, "killed by SIGKILL", RULES) == RULES.restart_s
    assert status.restarts == 9 and len(status.starts) == 1


def test_the_back_off_is_capped() -> None:
    status = HopStatus("dns", exits_in_row=10)
    policy.started(status, 0.0, 1, 0.0, RULES)
    assert policy.exited(status, 1.0, "x", RULES) == RULES.restart_max_s


def test_a_hop_waits_while_an_upstream_is_on_its_way_up_but_not_for_one_that_failed_or_stopped() -> None:
    status = HopStatus("web-01", phase=Phase.BACKOFF, due=5.0)
    assert not policy.may_start(status, 4.9, [])
    for phase in (Phase.PENDING, Phase.STARTING, Phase.BACKOFF):
        assert not policy.may_start(status, 5.0, [Phase.RUNNING, phase])
    assert policy.may_start(status, 5.0, [Phase.RUNNING, Phase.FAILED, Phase.STOPPED])


def test_stopping_is_not_a_crash_and_a_stopped_hop_stays_stopped_until_asked() -> None:
    status = HopStatus("web-02")
    run(status, 0.0)
    status.phase, status.wanted = Phase.STOPPING, "stopped"
    assert policy.exited(status, 1.0, "exited with code 0", RULES) is None
    assert status.phase is Phase.STOPPED and status.restarts == 0
    assert not policy.may_start(status, 100.0, [])
    policy.asked_to_start(status, restart=False)
    assert status.phase is Phase.PENDING and policy.may_start(status, 100.0, [])
    policy.started(status, 100.0, 2, 100.0, RULES)
    assert status.restarts == 0  # a start asked for is not a restart ...
    policy.ready(status, 100.5)
    status.phase = Phase.STOPPING  # ... but `restart HOP` is
    policy.exited(status, 101.0, "exited with code 0", RULES)
    policy.asked_to_start(status, restart=True)
    policy.started(status, 101.0, 3, 101.0, RULES)
    assert status.restarts == 1


def test_start_after_failed_gives_a_fresh_budget() -> None:
    status = HopStatus("store-01", phase=Phase.FAILED, starts=[1.0, 2.0, 3.0, 4.0, 5.0], exits_in_row=5)
    policy.asked_to_start(status, restart=False)
    assert (status.phase, status.starts, status.exits_in_row) == (Phase.PENDING, [], 0)


def test_the_watchdog_kills_after_misses_in_a_row_and_memory_after_strikes_in_a_row() -> None:
    status = HopStatus("firewall-1")
    answers = [False, False, True, False, False, False]
    assert [policy.probed(status, a, RULES) for a in answers] == [False, False, False, False, False, True]
    limit = 100
    readings = [150, 150, 90, 150, 150, 150]
    assert [policy.memory_checked(status, r, limit, RULES) for r in readings] == [False] * 5 + [True]


def test_a_status_goes_through_the_stack_file_and_unknown_or_bad_fields_take_defaults() -> None:
    status = HopStatus("db-01", restarts=3, last_exit="killed by SIGKILL", last_exit_at=12.5, up_since=20.0)
    status.phase = Phase.RUNNING
    record = json.loads(json.dumps(policy.to_record(status)))
    assert policy.from_record("db-01", record) == status
    odd = policy.from_record("db-01", {"phase": "dancing", "restarts": "many", "up_since": 3, "extra": 1})
    assert odd.phase is Phase.PENDING and odd.restarts == 0 and odd.up_since == 3.0
