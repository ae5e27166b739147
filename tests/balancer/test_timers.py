"""HAProxy's request timers and termination states, from the instants the shell notes."""

from __future__ import annotations

import pytest

from foobar_ref.balancer import timers
from foobar_ref.balancer.timers import Clock, Ender, Phase, Termination, Timers


def test_a_request_on_a_new_tls_connection_says_where_its_time_went() -> None:
    clock = Clock(
        accepted_s=10.000, handshake_done_s=10.012, ready_s=10.012, first_byte_s=10.013, head_done_s=10.015,
        connect_started_s=10.015, connected_s=10.016, request_sent_s=10.016, response_head_s=10.046, ended_s=10.047,
    )  # fmt: skip
    got = Timers.of(clock)
    assert got == Timers(Th=12, Ti=1, TR=2, Tw=0, Tc=1, Tr=30, Ta=34)
    assert str(got) == "12/1/2/0/1/30/34"


def test_a_kept_alive_request_has_no_handshake_and_a_reused_backend_connection_costs_nothing() -> None:
    clock = Clock(ready_s=5.0, first_byte_s=7.5, head_done_s=7.5, connect_started_s=7.5, connected_s=7.5,
                  request_sent_s=7.5, response_head_s=7.52, ended_s=7.52)  # fmt: skip
    assert str(Timers.of(clock)) == "0/2500/0/0/0/20/20"


def test_phases_never_reached_are_minus_one() -> None:
    queued_then_refused = Clock(ready_s=0.0, first_byte_s=0.0, head_done_s=0.001, queued_s=0.001, ended_s=4.001)
    assert str(Timers.of(queued_then_refused)) == "0/0/1/-1/-1/-1/4001"
    too_slow_request = Clock(ready_s=0.0, first_byte_s=1.0, ended_s=6.0)
    assert str(Timers.of(too_slow_request)) == "0/1000/-1/-1/-1/-1/5000"
    dequeued = Clock(first_byte_s=0.0, head_done_s=0.0, queued_s=0.0, dequeued_s=1.25, connect_started_s=1.25)
    assert Timers.of(dequeued).Tw == 1250


def test_the_json_fields_carry_each_timer_and_the_termination() -> None:
    clock = Clock(first_byte_s=0.0, head_done_s=0.0, connect_started_s=0.0, connected_s=4.0)
    fields = timers.log_fields(clock, timers.of_upstream_failure("connect_failed", connect_timed_out=True))
    assert fields == {"timers": "0/-1/0/0/4000/-1/-1", "Th_ms": 0, "Ti_ms": -1, "TR_ms": 0, "Tw_ms": 0,
                      "Tc_ms": 4000, "Tr_ms": -1, "Ta_ms": -1, "termination": "sC"}  # fmt: skip


@pytest.mark.parametrize(
    ("failure", "timed_out", "code"),
    [("connect_failed", False, "SC"), ("connect_failed", True, "sC"), ("timeout", False, "sH"),
     ("no_response", False, "SH"), ("bad_response", False, "PH")],
)  # fmt: skip
def test_upstream_failures_map_to_haproxys_codes(failure: str, timed_out: bool, code: str) -> None:
    assert str(timers.of_upstream_failure(failure, timed_out)) == code


def test_named_terminations_and_the_farms_codes_read_back() -> None:
    named = [timers.NORMAL, timers.ANSWERED_LOCALLY, timers.BAD_REQUEST, timers.REQUEST_TIMEOUT,
             timers.CLIENT_GONE_IN_DATA, timers.CLIENT_TOO_SLOW_IN_DATA, timers.SERVER_GONE_IN_DATA]  # fmt: skip
    assert [str(t) for t in named] == ["--", "LR", "PR", "cR", "CD", "cD", "SD"]
    assert Termination.parse("sQ") == Termination(Ender.SERVER_TIMEOUT, Phase.QUEUE)
    assert str(Termination.parse("PQ")) == "PQ"
    for bad in ("", "s", "xQ", "sZ", "sQQ"):
        with pytest.raises(ValueError):
            Termination.parse(bad)
