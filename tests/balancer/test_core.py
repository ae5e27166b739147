"""lb-01's pure decisions: round-robin with passive health, retries, headers, the idle pool."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foobar_ref.balancer import core
from foobar_ref.balancer.core import Failure, Health, IdlePool, RoundRobin, Seen

HOLD = core.HOLD_DOWN_S


def test_plans_start_one_step_further_each_request() -> None:
    rr = RoundRobin(["web-01", "web-02", "web-03"])
    plans = [rr.plan(now_s=0.0) for _ in range(4)]
    assert plans == [
        ("web-01", "web-02", "web-03"),
        ("web-02", "web-03", "web-01"),
        ("web-03", "web-01", "web-02"),
        ("web-01", "web-02", "web-03"),
    ]


def test_an_unreachable_backend_is_skipped_for_the_hold_down_then_probed() -> None:
    rr = RoundRobin(["web-01", "web-02"])
    assert rr.record("web-01", Seen.UNREACHABLE, now_s=100.0) == (Health.UP, Health.DOWN)
    assert rr.plan(now_s=100.0) == ("web-02",)
    assert rr.plan(now_s=100.0 + HOLD - 0.001) == ("web-02",)
    assert rr.plan(now_s=100.0 + HOLD) == ("web-01", "web-02")  # hold-down over: offered again
    assert rr.health("web-01") is Health.DOWN
    assert rr.record("web-01", Seen.ANSWERED, now_s=100.0 + HOLD) == (Health.DOWN, Health.UP)


def test_a_failed_probe_starts_a_new_hold_down() -> None:
    rr = RoundRobin(["web-01", "web-02"], hold_down_s=2.0)
    rr.record("web-01", Seen.UNREACHABLE, now_s=0.0)
    assert rr.record("web-01", Seen.UNREACHABLE, now_s=2.5) == (Health.DOWN, Health.DOWN)
    assert "web-01" not in rr.plan(now_s=4.0)
    assert "web-01" in rr.plan(now_s=4.5)


def test_when_every_backend_is_down_all_are_offered_soonest_back_first() -> None:
    rr = RoundRobin(["web-01", "web-02"])
    rr.record("web-02", Seen.UNREACHABLE, now_s=10.0)
    rr.record("web-01", Seen.UNREACHABLE, now_s=11.0)
    assert rr.plan(now_s=12.0) == ("web-02", "web-01")


def test_a_round_robin_needs_a_backend() -> None:
    with pytest.raises(ValueError):
        RoundRobin([])


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=30), st.integers(min_value=1, max_value=30))
def test_every_plan_tries_each_backend_at_most_once(downs: list[str], requests: int) -> None:
    rr = RoundRobin(["a", "b", "c"])
    for i, name in enumerate(downs):
        rr.record(name, Seen.UNREACHABLE, now_s=float(i))
    for _ in range(requests):
        plan = rr.plan(now_s=float(len(downs)))
        assert plan and len(plan) == len(set(plan)) and set(plan) <= {"a", "b", "c"}


def test_healthy_backends_share_requests_evenly() -> None:
    rr = RoundRobin(["web-01", "web-02"])
    firsts = [rr.plan(now_s=0.0)[0] for _ in range(100)]
    assert firsts.count("web-01") == firsts.count("web-02") == 50


@pytest.mark.parametrize(
    ("method", "failure", "retry"),
    [
        ("GET", Failure.CONNECT, True),
        ("GET", Failure.NO_RESPONSE, True),
        ("HEAD", Failure.NO_RESPONSE, True),
        ("GET", Failure.BAD_RESPONSE, False),
        ("GET", Failure.TIMEOUT, False),
        ("POST", Failure.CONNECT, True),  # nothing was sent
        ("POST", Failure.NO_RESPONSE, False),  # the backend may have acted on it
        ("DELETE", Failure.NO_RESPONSE, False),
    ],
)
def test_retry_rules(method: str, failure: Failure, retry: bool) -> None:
    assert core.may_retry(method, failure) is retry


def test_failures_that_say_a_backend_is_unreachable() -> None:
    assert core.seen_of(Failure.CONNECT, fresh_connection=True) is Seen.UNREACHABLE
    assert core.seen_of(Failure.NO_RESPONSE, fresh_connection=True) is Seen.UNREACHABLE
    assert core.seen_of(Failure.NO_RESPONSE, fresh_connection=False) is None  # a stale pooled socket
    assert core.seen_of(Failure.BAD_RESPONSE, fresh_connection=True) is None
    assert core.seen_of(Failure.TIMEOUT, fresh_connection=True) is None
    assert [core.status_for(f) for f in Failure] == [502, 502, 502, 504]


def test_request_headers_replace_what_a_client_could_forge() -> None:
    sent = [
        (b"host", b"www.foobar.com"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"X-Forwarded-Proto", b"http"),
        (b"x-request-id", b"forged"),
        (b"traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
        (b"connection", b"keep-alive, x-secret"),
        (b"x-secret", b"hop only"),
        (b"keep-alive", b"timeout=5"),
        (b"te", b"trailers"),
        (b"upgrade", b"websocket"),
        (b"proxy-authorization", b"Basic eA=="),
        (b"content-length", b"2"),
        (b"expect", b"100-continue"),
        (b"accept", b"text/html"),
    ]
    out = core.request_headers(sent, "203.0.113.7", "c" * 32, b"00-" + b"c" * 32 + b"-" + b"d" * 16 + b"-01")
    assert out == [
        (b"host", b"www.foobar.com"),
        (b"accept", b"text/html"),
        (b"X-Forwarded-For", b"203.0.113.7"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Request-Id", b"c" * 32),
        (b"traceparent", b"00-" + b"c" * 32 + b"-" + b"d" * 16 + b"-01"),
    ]


def test_response_headers_reframe_and_add_request_id_and_hsts() -> None:
    got = [
        (b"content-type", b"text/html"),
        (b"transfer-encoding", b"chunked"),
        (b"connection", b"keep-alive"),
        (b"x-served-by", b"web-01"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"strict-transport-security", b"max-age=0"),
    ]
    out = core.response_headers(got, "e" * 32, body_length=12)
    assert out == [
        (b"content-type", b"text/html"),
        (b"x-served-by", b"web-01"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"Content-Length", b"12"),
        (b"X-Request-Id", b"e" * 32),
        (b"Strict-Transport-Security", b"max-age=63072000"),
    ]


def test_a_head_response_keeps_the_backends_length() -> None:
    out = core.response_headers([(b"content-length", b"1234")], "e" * 32, body_length=None)
    assert (b"content-length", b"1234") in out
    assert not core.sets_body_length("HEAD", 200)
    assert not core.sets_body_length("GET", 304) and not core.sets_body_length("GET", 204)
    assert core.sets_body_length("GET", 200) and core.sets_body_length("POST", 404)


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", [(b"host", b"a")], None),
        ("CONNECT", [(b"host", b"a")], 405),
        ("TRACE", [(b"host", b"a")], 405),
        ("GET", [], 400),  # HTTP/1.0 without Host: nothing to forward
    ],
)
def test_requests_the_balancer_answers_itself(method: str, headers: list, expected: int | None) -> None:
    refused = core.refusal(method, b"/", headers)
    assert (refused[0] if refused else None) == expected


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (b"/", None),
        (b"/a/b.c/..d/?q=../..", None),  # dots inside a segment, and anything in the query, are fine
        (b"/%7Euser/x%20y", None),
        (b"/../../etc/passwd", "dot-segment in the path"),
        (b"/a/./b", "dot-segment in the path"),
        (b"/a/..", "dot-segment in the path"),
        (b"/%2e%2e/%2E%2E/etc/passwd", "dot-segment in the path"),
        (b"/a%5c..%5cb", "dot-segment in the path"),  # backslash: some servers take it as a separator
        (b"/%00", "control byte in the path"),
        (b"/x%0d%0aSet-Cookie:%20a=1", "control byte in the path"),
        (b"/%7f", "control byte in the path"),
    ],
)
def test_unsafe_paths_are_refused(target: bytes, reason: str | None) -> None:
    assert core.unsafe_path(target) == reason
    refused = core.refusal("GET", target, [(b"host", b"a")])
    assert refused == (None if reason is None else (400, reason))


@pytest.mark.parametrize(
    ("host", "target", "port", "location"),
    [
        (b"www.foobar.com", b"/some/page?x=1", 443, "https://www.foobar.com/some/page?x=1"),
        (b"WWW.foobar.com:80", b"/", 443, "https://www.foobar.com/"),
        (b"www.foobar.com", b"/", 8443, "https://www.foobar.com:8443/"),
        (b"127.0.53.1", b"/a", 443, "https://127.0.53.1/a"),
        (None, b"/", 443, None),
        (b"", b"/", 443, None),
        (b"evil.com/x", b"/", 443, None),
        (b"a@evil.com", b"/", 443, None),
        (b"-bad.com", b"/", 443, None),
        (b"www.foobar.com", b"*", 443, None),
    ],
)
def test_redirect_location(host: bytes | None, target: bytes, port: int, location: str | None) -> None:
    assert core.redirect_location(host, target, port) == location


def test_idle_pool_reuses_newest_first_and_expires() -> None:
    pool: IdlePool[str] = IdlePool(max_idle=2, idle_s=8.0)
    assert pool.put("web-01", "old", now_s=0.0) is None
    assert pool.put("web-01", "new", now_s=5.0) is None
    assert pool.put("web-01", "extra", now_s=5.0) == "extra"  # full: the caller closes it
    assert pool.take("web-01", now_s=6.0) == ("new", [])
    assert pool.take("web-01", now_s=8.0) == (None, ["old"])
    assert pool.take("web-02", now_s=8.0) == (None, [])


def test_idle_pool_expire_and_drain() -> None:
    pool: IdlePool[str] = IdlePool(max_idle=4, idle_s=8.0)
    pool.put("web-01", "a", now_s=0.0)
    pool.put("web-02", "b", now_s=1.0)
    pool.put("web-02", "c", now_s=9.0)
    assert pool.expire(now_s=9.0) == ["a", "b"]
    assert pool.count("web-02") == 1
    assert pool.drain() == ["c"] and pool.count("web-02") == 0
