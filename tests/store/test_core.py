"""The store's decisions as transcripts: request in, reply or database command out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foobar_ref.store import core
from foobar_ref.store.core import CheckHealth, Insert, Recent, Reply, Request, Row, Where

JSON = "application/json"


def post(body: bytes, content_type: str | None = JSON) -> Request:
    return Request("POST", "/messages", content_type, body)


def status(decision: core.Decision) -> int:
    assert isinstance(decision, Reply), decision
    return decision.status


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (Request("GET", "/health"), CheckHealth()),
        (Request("GET", "/messages"), Recent(20)),
        (Request("GET", "/messages?limit=1"), Recent(1)),
        (Request("GET", "/messages?limit=100&x=1"), Recent(100)),
        (post(b'{"text": "hi"}'), Insert("hi")),
        (post(b'{"text": "hi", "other": 1}'), Insert("hi")),
        (
            post('{"text": "caf\\u00e9 \U0001f600"}'.encode(), "application/json; charset=utf-8"),
            Insert("café \U0001f600"),
        ),
        (post(b'{"text": "\'; DROP TABLE messages;--"}'), Insert("'; DROP TABLE messages;--")),
        (post(b'{"text": "a\\u0000b"}'), Insert("a\x00b")),
    ],
)
def test_accepted(request_: Request, expected: core.Decision) -> None:
    assert core.decide(request_) == expected


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (Request("GET", "/nope"), 404),
        (Request("GET", "/messages/1"), 404),
        (Request("DELETE", "/messages"), 405),
        (Request("PUT", "/health"), 405),
        (Request("POST", "/health"), 405),
        (Request("GET", "/messages?limit=0"), 422),
        (Request("GET", "/messages?limit=101"), 422),
        (Request("GET", "/messages?limit=abc"), 422),
        (Request("GET", "/messages?limit=-1"), 422),
        (Request("GET", "/messages?limit=%C2%B2"), 422),  # a superscript two is a digit to str.isdigit
        (Request("GET", "/messages?limit=1&limit=2"), 422),
        (Request("GET", "/messages?limit="), 422),
        (post(b'{"text": "hi"}', None), 415),
        (post(b'{"text": "hi"}', "text/plain"), 415),
        (post(b'{"text": "hi"}', "application/json; charset=latin-1"), 415),
        (post(b"\xff\xfe{}"), 400),
        (post(b'{"text": "hi"'), 400),
        (post(b""), 400),
        (post(b'{"text": "a", "text": "b"}'), 400),
        (post(b'{"text": NaN}'), 400),
        (post(b"[" * 100_000 + b"]" * 100_000), 400),
        (post(b'{"text": ""}'), 422),
        (post(b'{"text": 5}'), 422),
        (post(b'{"message": "hi"}'), 422),
        (post(b'["hi"]'), 422),
        (post(b'"hi"'), 422),
        (post(b'{"text": "\\ud800"}'), 422),
        (post(json.dumps({"text": "x" * 1001}).encode()), 422),
    ],
)
def test_refused(request_: Request, code: int) -> None:
    assert status(core.decide(request_)) == code


def test_405_names_the_allowed_methods() -> None:
    reply = core.decide(Request("DELETE", "/messages"))
    assert isinstance(reply, Reply) and reply.allow == ("GET", "POST")
    assert reply.payload["status"] == 405


def test_exactly_1000_characters_are_accepted() -> None:
    text = "\U0001f600" * 1000  # 1000 characters, 4000 bytes: the column counts characters
    assert core.decide(post(json.dumps({"text": text}).encode())) == Insert(text)


def test_answers_name_who_served_and_which_database() -> None:
    where = Where("store-02", write_to="db-01", read_from="db-02")
    assert core.created(where, 7, "hi") == Reply(
        201, {"id": 7, "text": "hi", "served_by": "store-02", "written_to": "db-01"}
    )
    listing = core.listing(where, [Row(7, "hi", "store-01", "2026-01-01T00:00:00.000000Z")])
    assert listing.payload == {
        "messages": [{"id": 7, "text": "hi", "served_by": "store-01", "created_at": "2026-01-01T00:00:00.000000Z"}],
        "served_by": "store-02",
        "read_from": "db-02",
    }


def test_health_is_503_when_one_database_does_not_answer() -> None:
    where = Where("store-02", "db-01", "db-02")
    assert core.health(where, {"db-01": None, "db-02": None}).status == 200
    degraded = core.health(where, {"db-01": None, "db-02": "no answer within 5 s"})
    assert degraded.status == 503
    assert degraded.payload["databases"] == {"db-01": "ok", "db-02": "no answer within 5 s"}


@given(st.binary(max_size=200), st.sampled_from([None, JSON, "text/plain", "application/json; charset=utf-8"]))
def test_any_body_gets_an_answer_never_an_exception(body: bytes, content_type: str | None) -> None:
    decision = core.decide(post(body, content_type))
    assert isinstance(decision, Insert) or status(decision) in (400, 415, 422)


@given(st.text(max_size=50))
def test_any_query_string_gets_an_answer(query: str) -> None:
    decision = core.decide(Request("GET", "/messages?" + query))
    assert isinstance(decision, Recent) or status(decision) in (400, 422)
