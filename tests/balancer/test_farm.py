"""The farm's decisions as transcripts: events in, commands out (health, algorithms, limits, queue)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foobar_ref.balancer.core import Failure
from foobar_ref.balancer.farm import (
    AdminSet,
    Arrived,
    Changed,
    Checked,
    Farm,
    Finished,
    Forward,
    Observation,
    Observed,
    Queued,
    Refuse,
    Retried,
    TimePassed,
    WeightSet,
    drive,
    observation_of,
)
from foobar_ref.balancer.servers import Admin, CheckResult, State
from foobar_ref.topology_balancer import BalancerSettings, CheckSettings, QueueSettings

OK = CheckResult(True, "L7OK", 200)
BAD = CheckResult(False, "L4CON", detail="connection refused")
TIMEOUT = CheckResult(False, "L7TOUT", detail="no response within 2 s")


def farm(backends: tuple[str, ...] = ("web-01", "web-02"), **options: object) -> Farm:
    return Farm(backends, BalancerSettings(**options))  # type: ignore[arg-type]


def picks(f: Farm, count: int, now_s: float = 0.0) -> list[str]:
    """Backends chosen for `count` requests, each finished before the next arrives."""
    chosen = []
    for _ in range(count):
        decision = f.arrive(now_s)
        assert isinstance(decision, Forward)
        chosen.append(decision.backend)
        f.finish(decision.ticket, now_s)
    return chosen


# --- algorithms -------------------------------------------------------------------------------


def test_equal_weights_are_plain_round_robin_in_topology_order() -> None:
    assert picks(farm(("a", "b", "c")), 6) == ["a", "b", "c", "a", "b", "c"]


def test_weights_3_to_1_give_3_to_1_within_5_percent_over_400_picks_and_interleave() -> None:
    f = farm(weights={"web-01": 3, "web-02": 1})
    chosen = picks(f, 400)
    counts = Counter(chosen)
    assert abs(counts["web-01"] / 400 - 0.75) <= 0.05 * 0.75
    assert chosen[:8] == ["web-01", "web-01", "web-02", "web-01"] * 2  # smooth: never a long run
    assert max(len(run) for run in "".join("a" if c == "web-01" else "b" for c in chosen).split("b")) == 3


def test_a_weight_changed_at_run_time_changes_the_split() -> None:
    f = farm()
    assert drive(f, [WeightSet("web-02", 0, 0.0)]) == []
    assert set(picks(f, 10)) == {"web-01"}
    f.set_weight("web-02", 2, 1.0)
    assert Counter(picks(f, 30, 1.0)) == {"web-02": 20, "web-01": 10}


@pytest.mark.parametrize("bad", [-1, 257, 1.5, True, "3"])
def test_a_weight_out_of_range_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"\[0, 256\]"):
        farm().set_weight("web-01", bad, 0.0)  # type: ignore[arg-type]


def test_leastconn_sends_a_new_request_to_the_less_busy_backend() -> None:
    f = farm(algorithm="leastconn")
    first, second, third = (f.arrive(0.0) for _ in range(3))
    assert [d.backend for d in (first, second, third)] == ["web-01", "web-02", "web-01"]  # type: ignore[union-attr]
    f.finish(second.ticket, 1.0)  # web-02 now idle, web-01 holds two
    assert [f.arrive(1.0).backend for _ in range(2)] == ["web-02", "web-02"]  # type: ignore[union-attr]


def test_leastconn_counts_load_per_unit_of_weight() -> None:
    f = farm(algorithm="leastconn", weights={"web-01": 3, "web-02": 1})
    busy = [f.arrive(0.0) for _ in range(8)]
    assert Counter(d.backend for d in busy) == {"web-01": 6, "web-02": 2}  # type: ignore[union-attr]


def test_leastconn_ties_go_round_robin() -> None:
    assert picks(farm(("a", "b", "c"), algorithm="leastconn"), 6) == ["a", "b", "c", "a", "b", "c"]


# --- health -------------------------------------------------------------------------------------


def test_fall_failed_checks_take_a_backend_down_and_rise_good_ones_bring_it_back() -> None:
    f = farm()
    f.checked("web-01", OK, 0.0)  # to full health: rise + fall - 1
    assert f.servers["web-01"].status_text() == "UP"
    transcript = drive(f, [Checked("web-01", BAD, 2.0), Checked("web-01", BAD, 4.0)])
    assert transcript == [] and f.servers["web-01"].status_text() == "UP 1/3"  # one more failure and it is down
    assert drive(f, [Checked("web-01", BAD, 6.0)]) == [
        Changed("web-01", State.UP, State.DOWN, "check L4CON: connection refused")
    ]
    assert set(picks(f, 4, 6.0)) == {"web-02"}
    assert drive(f, [Checked("web-01", OK, 8.0)]) == [] and f.servers["web-01"].status_text() == "DOWN 1/2"
    assert drive(f, [Checked("web-01", OK, 10.0)]) == [Changed("web-01", State.DOWN, State.UP, "check L7OK")]
    assert set(picks(f, 4, 10.0)) == {"web-01", "web-02"}


def test_a_backend_starts_up_but_falls_at_its_first_failure_as_haproxy_servers_do() -> None:
    f = farm()
    assert f.servers["web-02"].status_text() == "UP 1/3"  # as HAProxy shows a server before its first check
    assert drive(f, [Checked("web-02", BAD, 0.0)]) == [
        Changed("web-02", State.UP, State.DOWN, "check L4CON: connection refused")
    ]


def test_a_hung_backend_is_down_within_inter_times_fall() -> None:
    """Checks start every inter (2 s) and each times out after 2 s: the third failure lands at 6 s."""
    f = farm()
    f.checked("web-01", OK, -2.0)
    started, changes = 0.0, []
    while not changes:
        interval = f.check_interval_s("web-01")
        assert interval == 2.0
        changes = f.checked("web-01", TIMEOUT, started + 2.0)  # the check's timeout
        started += interval
    assert changes[0].after is State.DOWN and f.servers["web-01"].last_check.at_s == 6.0  # type: ignore[union-attr]


def test_response_timeouts_seen_in_traffic_count_like_failed_checks() -> None:
    f = farm()
    f.checked("web-01", OK, 0.0)
    events = [Observed("web-01", Observation.TIMED_OUT, t) for t in (10.0, 10.5, 11.0)]
    assert drive(f, events) == [Changed("web-01", State.UP, State.DOWN, "traffic timed_out")]
    assert f.servers["web-01"].observed_errors == {"timed_out": 3}
    assert f.servers["web-01"].failed_checks == 0  # checks and traffic are counted apart


def test_answers_do_not_raise_health_only_checks_do() -> None:
    f = farm()
    f.checked("web-01", BAD, 0.0)
    assert drive(f, [Observed("web-01", Observation.ANSWERED, 1.0)]) == []
    assert f.servers["web-01"].state is State.DOWN


def test_without_checks_backends_stay_up_whatever_traffic_shows() -> None:
    f = farm(check=CheckSettings(enabled=False))
    events = [Observed("web-01", Observation.CONNECT_FAILED, float(t)) for t in range(5)]
    assert drive(f, events) == [] and f.servers["web-01"].state is State.UP
    assert f.check_interval_s("web-01") is None


def test_check_intervals_follow_haproxy_fastinter_and_downinter() -> None:
    f = farm(check=CheckSettings(inter_s=2.0, fastinter_s=0.5, downinter_s=5.0))
    f.checked("web-01", OK, 0.0)
    assert f.check_interval_s("web-01") == 2.0  # full health
    f.checked("web-01", BAD, 1.0)
    assert f.check_interval_s("web-01") == 0.5  # going down
    f.checked("web-01", BAD, 1.5)
    f.checked("web-01", BAD, 2.0)
    assert f.check_interval_s("web-01") == 5.0  # down
    f.checked("web-01", OK, 7.0)
    assert f.check_interval_s("web-01") == 0.5  # coming up
    assert farm().check_interval_s("web-01") == 2.0  # unset: inter


def test_first_checks_spread_over_one_interval() -> None:
    f = farm(("a", "b", "c", "d"))
    assert [f.first_check_delay_s(n) for n in "abcd"] == [0.0, 0.5, 1.0, 1.5]


# --- admin states and slow start ----------------------------------------------------------------


def test_drain_takes_no_new_requests_while_open_ones_finish() -> None:
    f = farm()
    open_one = f.arrive(0.0)
    assert open_one == Forward(1, "web-01")
    assert drive(f, [AdminSet("web-01", Admin.DRAIN, 0.1)]) == [
        Changed("web-01", State.UP, State.DRAIN, "set state drain")
    ]
    assert set(picks(f, 6, 0.2)) == {"web-02"}
    assert f.servers["web-01"].served == 1
    assert drive(f, [Finished(1, 0.3)]) == [] and f.servers["web-01"].served == 0
    assert f.check_interval_s("web-01") == 2.0  # drained backends are still checked


def test_maint_stops_checks_and_ready_brings_it_back_up_at_once() -> None:
    f = farm()
    f.set_admin("web-01", Admin.MAINT, 0.0)
    assert f.check_interval_s("web-01") is None
    assert drive(f, [Checked("web-01", BAD, 1.0)]) == []
    assert set(picks(f, 4, 1.0)) == {"web-02"}
    assert drive(f, [AdminSet("web-01", Admin.READY, 2.0)]) == [
        Changed("web-01", State.MAINT, State.UP, "set state ready")
    ]
    assert f.servers["web-01"].total_downtime_s(3.0) == 2.0


def test_slow_start_ramps_the_weight_of_a_backend_that_came_back() -> None:
    f = farm(slowstart_s=10.0, weights={"web-01": 10, "web-02": 10})
    server = f.servers["web-01"]
    assert server.effective_weight(0.0) == 10  # not at start (HAProxy: only after a failure)
    for t in (0.0, 1.0, 2.0):
        f.checked("web-01", BAD, t)
    f.checked("web-01", OK, 3.0)
    f.checked("web-01", OK, 4.0)  # up again at 4 s
    assert [server.effective_weight(4.0 + s) for s in (0.0, 2.5, 5.0, 9.9, 10.0, 30.0)] == [1, 3, 5, 10, 10, 10]
    assert Counter(picks(f, 11, 4.0 + 0.5)) == {"web-02": 10, "web-01": 1}


# --- no backend, maxconn and the queue -------------------------------------------------------------


def test_no_backend_up_gives_503_with_retry_after_at_once() -> None:
    f = farm()
    drive(f, [Checked("web-01", BAD, 0.0), Checked("web-02", BAD, 0.0)])
    assert drive(f, [Arrived(0.1)]) == [Refuse(1, 503, 4, "SC", "no backend available")]
    assert f.refusals["SC"] == 1


def test_maxconn_queues_then_refuses_when_full_and_after_the_queue_timeout() -> None:
    f = Farm(("web-01",), BalancerSettings(backend_maxconn=1, queue=QueueSettings(size=1, timeout_s=4.0)))
    assert drive(f, [Arrived(0.0), Arrived(1.0), Arrived(2.0)]) == [
        Forward(1, "web-01"),
        Queued(2, 5.0),
        Refuse(3, 503, 1, "PQ", "the queue is full (1 waiting)"),
    ]
    assert f.next_deadline() == 5.0
    assert drive(f, [TimePassed(4.9)]) == []
    assert drive(f, [TimePassed(5.0)]) == [Refuse(2, 503, 1, "sQ", "no backend slot within 4 s")]
    assert f.queued == 0 and f.next_deadline() is None


def test_a_freed_slot_goes_to_the_oldest_waiting_request() -> None:
    f = Farm(("web-01", "web-02"), BalancerSettings(backend_maxconn=1))
    assert drive(f, [Arrived(0.0), Arrived(0.0), Arrived(0.1), Arrived(0.2)]) == [
        Forward(1, "web-01"),
        Forward(2, "web-02"),
        Queued(3, 4.1),
        Queued(4, 4.2),
    ]
    assert drive(f, [Finished(2, 1.0)]) == [Forward(3, "web-02")]
    assert drive(f, [Finished(1, 1.0)]) == [Forward(4, "web-01")]
    assert f.queue_max == 2


def test_newcomers_wait_behind_those_already_waiting() -> None:
    f = Farm(("web-01",), BalancerSettings(backend_maxconn=1))
    drive(f, [Arrived(0.0), Arrived(0.0)])
    f.set_weight("web-01", 1, 0.0)  # nothing freed: still queued
    assert f.arrive(0.5) == Queued(3, 4.5)


def test_a_waiting_request_that_leaves_frees_its_place() -> None:
    f = Farm(("web-01",), BalancerSettings(backend_maxconn=1))
    drive(f, [Arrived(0.0), Arrived(0.0), Arrived(0.0)])
    assert drive(f, [Finished(2, 1.0), Finished(1, 1.0)]) == [Forward(3, "web-01")]


def test_when_the_last_backend_goes_down_every_waiting_request_gets_503_at_once() -> None:
    f = Farm(("web-01",), BalancerSettings(backend_maxconn=1))
    drive(f, [Arrived(0.0), Arrived(0.0)])
    assert drive(f, [Checked("web-01", BAD, 1.0)]) == [
        Changed("web-01", State.UP, State.DOWN, "check L4CON: connection refused"),
        Refuse(2, 503, 4, "SC", "no backend available"),
    ]


def test_a_backend_coming_up_takes_waiting_requests() -> None:
    f = Farm(("web-01", "web-02"), BalancerSettings(backend_maxconn=1))
    f.checked("web-02", BAD, 0.0)
    drive(f, [Arrived(0.0), Arrived(0.0)])
    assert drive(f, [Checked("web-02", OK, 2.0), Checked("web-02", OK, 4.0)]) == [
        Changed("web-02", State.DOWN, State.UP, "check L7OK"),
        Forward(2, "web-02"),
    ]


def test_a_retry_goes_to_a_backend_not_yet_tried_and_frees_the_failed_slot() -> None:
    f = farm(("a", "b", "c"))
    assert f.arrive(0.0) == Forward(1, "a")
    assert drive(f, [Retried(1, ("a",), 0.1)]) == [Forward(1, "b")]
    assert f.servers["a"].served == 0 and f.servers["b"].served == 1
    assert drive(f, [Retried(1, ("a", "b", "c"), 0.2)]) == []
    assert all(server.served == 0 for server in f.servers.values())


# --- invariants ----------------------------------------------------------------------------------

_events = st.lists(
    st.one_of(
        st.builds(lambda: "arrive"),
        st.tuples(st.just("finish"), st.integers(1, 30)),
        st.tuples(st.just("check"), st.sampled_from(["a", "b"]), st.booleans()),
        st.tuples(st.just("admin"), st.sampled_from(["a", "b"]), st.sampled_from(list(Admin))),
        st.tuples(st.just("weight"), st.sampled_from(["a", "b"]), st.integers(0, 4)),
        st.builds(lambda: "tick"),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_events, st.sampled_from(["roundrobin", "leastconn"]))
def test_slots_are_never_lost_nor_over_the_limit(events: list[object], algorithm: str) -> None:
    f = Farm(
        ("a", "b"), replace(BalancerSettings(), algorithm=algorithm, backend_maxconn=2, queue=QueueSettings(3, 1.0))
    )
    now = 0.0
    for event in events:
        now += 0.25
        match event:
            case "arrive":
                f.arrive(now)
            case ("finish", ticket):
                f.finish(ticket, now)
            case ("check", name, passed):
                f.checked(name, OK if passed else BAD, now)
            case ("admin", name, admin):
                f.set_admin(name, admin, now)
            case ("weight", name, weight):
                f.set_weight(name, weight, now)
            case "tick":
                f.expire(now)
        held = Counter(f.backend_of(t) for t in range(1, 70) if f.backend_of(t))
        for server in f.servers.values():
            assert server.served == held[server.name] <= 2
        assert f.queued <= 3


def test_upstream_failures_count_for_health_as_haproxy_observes_them() -> None:
    assert observation_of(Failure.CONNECT, fresh_connection=True) is Observation.CONNECT_FAILED
    assert observation_of(Failure.TIMEOUT, fresh_connection=False) is Observation.TIMED_OUT
    assert observation_of(Failure.NO_RESPONSE, fresh_connection=True) is Observation.NO_ANSWER
    assert observation_of(Failure.NO_RESPONSE, fresh_connection=False) is None  # an idle keep-alive closed
    assert observation_of(Failure.BAD_RESPONSE, fresh_connection=True) is None
