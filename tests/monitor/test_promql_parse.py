"""PromQL parsing: what parses, Prometheus's bad_data errors with positions, garbage never raising anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foobar_ref.monitor.promql import Engine, PromQLError, ast, parse, parse_duration, parse_matchers, parse_metric
from foobar_ref.monitor.tsdb import Matcher, Storage
from tests.monitor.test_promql_eval import load

VALID = [
    ("up", ast.VECTOR),
    ('up{job="web", instance=~"127\\\\..*"}', ast.VECTOR),
    ('{__name__=~"foo.+", job!=""}', ast.VECTOR),
    ("foo:bar:rate5m", ast.VECTOR),
    ("foo[5m]", ast.MATRIX),
    ("foo[1h30m] offset -5m", ast.MATRIX),
    ("rate(foo[5m] offset 1m)", ast.VECTOR),
    ("sum by (job) (rate(foo[5m]))", ast.VECTOR),
    ("sum(rate(foo[5m])) without (instance,)", ast.VECTOR),
    ("topk(3, foo)", ast.VECTOR),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))", ast.VECTOR),
    ("a / on(x) group_left(y) b", ast.VECTOR),
    ("a > bool 1", ast.VECTOR),
    ("a and b or c unless d", ast.VECTOR),
    ("1 + 2 * 3 ^ 2", ast.SCALAR),
    ("1 == bool 2", ast.SCALAR),
    ("-(1)", ast.SCALAR),
    ("0x1F + Inf - NaN + 1e3 + .5", ast.SCALAR),
    ('"a string"', ast.STRING),
    ("`raw \\ string`", ast.STRING),
    ("time()", ast.SCALAR),
    ("scalar(up)", ast.SCALAR),
    ("absent(up{job='x'})", ast.VECTOR),
    ("up # a comment\n  + 1", ast.VECTOR),
    ("SUM(up) BY (job)", ast.VECTOR),
    ("sum(up) by (on, by, offset)", ast.VECTOR),  # keywords are label names inside a grouping
]


@pytest.mark.parametrize(("query", "kind"), VALID, ids=[q for q, _ in VALID])
def test_valid_queries_parse_with_their_type(query: str, kind: str) -> None:
    assert parse(query).type == kind


def test_precedence_follows_prometheus() -> None:
    node = parse("a or b and c unless d")
    assert isinstance(node, ast.Binary) and node.op == "or"
    power = parse("2 ^ 3 ^ 2")
    assert isinstance(power, ast.Binary) and isinstance(power.rhs, ast.Binary)  # right-associative
    unary = parse("-a ^ 2")
    assert isinstance(unary, ast.Unary) and isinstance(unary.expr, ast.Binary)  # -(a ^ 2)
    mixed = parse("a - b * c > d")
    assert isinstance(mixed, ast.Binary) and mixed.op == ">"


ERRORS = [
    ("foo(bar)", '1:1: parse error: unknown function with name "foo"'),
    ("sum(rate(foo(x[5m])))", '1:10: parse error: unknown function with name "foo"'),
    ("", "1:1: parse error: no expression found in input"),
    ("rate(up)", '1:6: parse error: expected type range vector in call to function "rate", got instant vector'),
    ("sum(up[5m])", "1:5: parse error: expected type instant vector in aggregation expression, got range vector"),
    ("1 > 2", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
    ("up + bool 1", "1:4: parse error: bool modifier can only be used on comparison operators"),
    ("1 and up", '1:1: parse error: set operator "and" not allowed in binary scalar expression'),
    ("1 + on(x) up", "1:1: parse error: vector matching only allowed between instant vectors"),
    ("{}", "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    ('{a=""}', "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    ('up{__name__="x"}', '1:1: parse error: metric name must not be set twice: "up" or "x"'),
    ("up[5m:1m]", "1:3: parse error: subqueries are not supported by this engine"),
    ("up @ 100", "1:4: parse error: the @ modifier is not supported by this engine"),
    ("sin(up)", '1:1: parse error: function "sin" is not supported by this engine'),
    ('count_values("v", up)', '1:1: parse error: aggregation "count_values" is not supported by this engine'),
    ("abs()", '1:1: parse error: expected 1 argument(s) in call to "abs", got 0'),
    ("round(up, 1, 2)", '1:1: parse error: expected at most 2 argument(s) in call to "round", got 3'),
    ("label_join(up)", '1:1: parse error: expected at least 3 argument(s) in call to "label_join", got 1'),
    ("topk(up)", "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1"),
    (
        "rate(up[5m]) offset 1m",
        "1:14: parse error: offset modifier must be preceded by an instant vector selector or range vector selector "
        "or a subquery",
    ),
    ("up offset 1m offset 2m", "1:14: parse error: offset may not be set multiple times"),
    ("(up)[5m]", "1:1: parse error: ranges only allowed for vector selectors"),
    (
        "-up[5m]",
        "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, "
        'got "range vector"',
    ),
    ('"a" + 1', "1:1: parse error: binary expression must contain only scalar and instant vector types"),
    ("up +", "1:5: parse error: unexpected end of input"),
    ("5m", '1:1: parse error: unexpected duration "5m"'),
    ("up[5x]", '1:4: parse error: bad number or duration syntax: "5x"'),
    ("up[1m1h]", '1:4: parse error: bad duration syntax: "1m1h"'),
    ('up{job="web"', "1:13: parse error: unexpected end of input inside braces"),
    (
        'up{job=~"("}',
        "1:4: parse error: invalid regular expression '(': missing ), unterminated subpattern at position 0",
    ),
    ('"unterminated', "1:1: parse error: unterminated quoted string"),
    ("up $ 1", "1:4: parse error: unexpected character: '$'"),
    ("sum(up) by (job) by (x)", '1:18: parse error: unexpected identifier "by"'),
    ("up\n  + foo(x)", '2:5: parse error: unknown function with name "foo"'),
    ("(" * 200 + "1" + ")" * 200, "1:101: parse error: expression nested more than 100 levels deep"),
]


@pytest.mark.parametrize(("query", "message"), ERRORS, ids=[q[:40] for q, _ in ERRORS])
def test_bad_queries_answer_bad_data_naming_the_position(query: str, message: str) -> None:
    with pytest.raises(PromQLError) as caught:
        parse(query)
    assert caught.value.error_type == "bad_data"
    assert caught.value.message == message


def test_the_engine_refuses_an_overlong_query() -> None:
    engine = Engine(Storage(), max_query_length=100)
    with pytest.raises(PromQLError) as caught:
        engine.instant("up + " * 30 + "1", 0)
    assert caught.value.error_type == "bad_data"


def test_series_selectors_for_federation_and_the_series_api() -> None:
    assert parse_matchers('up{job="web"}') == [Matcher.make("__name__", "=", "up"), Matcher.make("job", "=", "web")]
    assert parse_matchers('{__name__=~"foobar_.+"}') == [Matcher.make("__name__", "=~", "foobar_.+")]
    for bad in ("up + 1", "rate(up[5m])", "up[5m]", "up offset 5m", "{}"):
        with pytest.raises(PromQLError):
            parse_matchers(bad)


def test_metrics_as_written_in_rule_tests() -> None:
    assert parse_metric('up{job="web", instance="a"}') == (("__name__", "up"), ("instance", "a"), ("job", "web"))
    assert parse_metric('{job="web"}') == (("job", "web"),)
    assert parse_metric("") == ()
    with pytest.raises(PromQLError):
        parse_metric('up{job=~"web"}')


@pytest.mark.parametrize(
    ("text", "seconds"), [("15", 15.0), ("0.5", 0.5), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25)]
)
def test_api_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "1e400", "-"])
def test_bad_api_durations(text: str) -> None:
    with pytest.raises(PromQLError):
        parse_duration(text)


PIECES = [
    "up",
    "foo_bar",
    "sum",
    "rate",
    "by",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "5m",
    "1",
    "0.5",
    '"x"',
    "'y'",
    "=",
    "!=",
    "=~",
    "!~",
    "+",
    "-",
    "*",
    "/",
    "^",
    "%",
    "==",
    ">",
    "bool",
    "on",
    "ignoring",
    "group_left",
    "and",
    "or",
    "unless",
    "offset",
    "@",
    ":",
    "job",
    "le",
    "histogram_quantile",
    "topk",
    "#",
    "\n",
    " ",
    "`",
    "\\",
    "Inf",
    "NaN",
    "0x",
    "1e",
    "absent",
    "time()",
    "[5m:1m]",
    "foo(",
    "$",
    "€",
]


SOUP_STORAGE = load(
    "15s",
    {
        'up{job="web", le="0.1"}': "1 0 1 stale 1",
        'up{job="db", le="+Inf"}': "0+1x4",
        'foo_bar{job="web"}': "5 _ 3 2 1",
        'foo_bar{job="web", le="1"}': "1x4",
    },
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=25).map("".join))
def test_token_soup_only_ever_raises_promql_errors(query: str) -> None:
    engine = Engine(SOUP_STORAGE)
    try:
        engine.instant(query, 45.0)
    except PromQLError as error:
        assert error.error_type in ("bad_data", "execution")
        if error.error_type == "bad_data" and "parse error" in error.message:
            line, column = error.message.split(":")[:2]
            assert int(line) >= 1 and int(column) >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_only_ever_raises_promql_errors(query: str) -> None:
    try:
        parse(query)
    except PromQLError as error:
        assert error.error_type == "bad_data"
