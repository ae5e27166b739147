"""The rule manager through time: pending, firing, keep_firing_for, resolution, ALERTS, recording, API views."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from foobar_ref.monitor.alerting import AlertChange, RuleManager
from foobar_ref.monitor.promql import Engine
from foobar_ref.monitor.rules import parse_rule_text
from foobar_ref.monitor.templates import TemplateData, TemplateError, compile_template, expand
from foobar_ref.monitor.tsdb import Matcher, Storage, is_stale, labels_from

RULES = """
groups:
  - name: hops
    rules:
      - record: hop:up:sum
        expr: sum by (hop) (hop_up)
      - alert: HopDown
        expr: hop_up == 0
        for: 10s
        keep_firing_for: 10s
        labels: {severity: critical, where: "{{ $labels.host }}"}
        annotations:
          summary: "{{ $labels.hop }} is down ({{ $value }})"
          missing: "{{ $labels.nothing }}"
"""
WEB = labels_from({"__name__": "hop_up", "hop": "web-01", "host": "web-01"})
STORE = labels_from({"__name__": "hop_up", "hop": "store-01", "host": "web-01"})


def manager(text: str = RULES, **options: object) -> tuple[RuleManager, Storage]:
    storage = Storage(retention_s=10**6)
    rule_file = parse_rule_text(text, Path("rules.yml"))
    return RuleManager(rule_file, Engine(storage), storage, **options), storage  # type: ignore[arg-type]


def feed(storage: Storage, t_s: int, web: float, store: float = 1.0) -> None:
    storage.append(WEB, t_s * 1000, web)
    storage.append(STORE, t_s * 1000, store)


def run(rules: RuleManager, storage: Storage, web_values: list[float], step_s: int = 5) -> list[list[AlertChange]]:
    """Feed web-01's hop_up (one value per step), evaluating after each; returns each step's changes."""
    changes = []
    for index, value in enumerate(web_values):
        feed(storage, index * step_s, value)
        changes.append(rules.evaluate(index * step_s))
    return changes


def series(storage: Storage, name: str, at_s: float) -> dict:
    found = {}
    for labels, samples in storage.select([Matcher.make("__name__", "=", name)], 0, int(at_s * 1000)):
        found[labels] = (samples.t_ms[-1] / 1000, samples.values[-1])
    return found


def test_an_alert_is_pending_then_fires_after_for() -> None:
    rules, storage = manager()
    changes = run(rules, storage, [1, 0, 0])  # 0 s, 5 s, 10 s
    assert changes == [[], [], []]
    [alert] = rules.alerts()
    assert alert == {
        "labels": {
            "alertname": "HopDown",
            "host": "web-01",
            "hop": "web-01",
            "severity": "critical",
            "where": "web-01",
        },
        "annotations": {"missing": "<no value>", "summary": "web-01 is down (0)"},
        "state": "pending",
        "activeAt": "1970-01-01T00:00:05Z",
        "value": "0e+00",
    }
    feed(storage, 15, 0)
    [fired] = rules.evaluate(15)
    assert (fired.status, fired.starts_at_s, fired.ends_at_s, fired.expr) == ("firing", 5, None, "hop_up == 0")
    assert fired.labels["alertname"] == "HopDown" and fired.annotations["summary"] == "web-01 is down (0)"
    assert rules.alerts()[0]["state"] == "firing"


def test_keep_firing_for_holds_the_alert_then_it_resolves() -> None:
    rules, storage = manager()
    changes = run(rules, storage, [0, 0, 0, 1, 1])  # fires at 10 s; the condition stops at 15 s
    assert [c.status for step in changes for c in step] == ["firing"]
    assert rules.alerts()[0]["state"] == "firing" and rules.alerts()[0]["keepFiringSince"] == "1970-01-01T00:00:15Z"
    feed(storage, 25, 1)
    [resolved] = rules.evaluate(25)  # 15 s + keep_firing_for 10 s: no longer kept
    assert (resolved.status, resolved.starts_at_s, resolved.ends_at_s) == ("resolved", 0, 25)
    assert rules.alerts() == []
    assert rules.groups()[0]["rules"][1]["state"] == "inactive"


def test_a_pending_alert_is_dropped_when_the_condition_stops() -> None:
    rules, storage = manager()
    changes = run(rules, storage, [0, 1, 0])
    assert changes == [[], [], []]
    assert rules.alerts()[0]["activeAt"] == "1970-01-01T00:00:10Z"  # a new pending alert, not the first one


def test_alerts_write_alerts_series_and_mark_them_stale_when_gone() -> None:
    rules, storage = manager()
    run(rules, storage, [0, 0, 0])
    alerts = series(storage, "ALERTS", 10)
    key = labels_from(
        {
            "__name__": "ALERTS",
            "alertname": "HopDown",
            "alertstate": "firing",
            "hop": "web-01",
            "host": "web-01",
            "severity": "critical",
            "where": "web-01",
        }
    )
    assert alerts[key] == (10, 1.0)
    pending_key = labels_from({**dict(key), "alertstate": "pending"})
    assert alerts[pending_key][0] == 10 and is_stale(alerts[pending_key][1])  # the pending series ended at 10 s
    for_state = series(storage, "ALERTS_FOR_STATE", 10)
    assert list(for_state.values()) == [(10, 0.0)]  # activeAt, in seconds
    assert rules.engine.instant('ALERTS{alertstate="firing"}', 10).samples  # type: ignore[union-attr]


def test_recording_rules_append_their_series_and_mark_vanished_ones_stale() -> None:
    rules, storage = manager()
    feed(storage, 0, 1, store=1)
    rules.evaluate(0)
    recorded = series(storage, "hop:up:sum", 0)
    assert recorded == {
        labels_from({"__name__": "hop:up:sum", "hop": "web-01"}): (0, 1.0),
        labels_from({"__name__": "hop:up:sum", "hop": "store-01"}): (0, 1.0),
    }
    storage.append(WEB, 5000, 1.0)  # store-01 no longer reported...
    storage.mark_stale(STORE, 5000)
    rules.evaluate(5)
    after = series(storage, "hop:up:sum", 5)
    assert is_stale(after[labels_from({"__name__": "hop:up:sum", "hop": "store-01"})][1])  # ...so its record goes stale


def test_a_failing_query_marks_the_rule_unhealthy_and_keeps_its_alerts() -> None:
    text = """
groups:
  - name: g
    rules:
      - alert: Dup
        expr: label_replace(hop_up, "hop", "same", "", "")
"""
    rules, storage = manager(text)
    feed(storage, 0, 1, store=1)
    assert rules.evaluate(0) == []
    rule = rules.groups()[0]["rules"][0]  # type: ignore[index]
    assert rule["health"] == "err" and rule["lastError"] == "vector cannot contain metrics with the same labelset"


def test_groups_view_in_prometheus_shape() -> None:
    ticks = iter([0.0, 0.001, 0.003, 0.004, 0.006, 0.010])
    rules, storage = manager(timer=lambda: next(ticks))
    feed(storage, 0, 1)
    rules.evaluate(0)
    [group] = rules.groups()
    assert group["name"] == "hops" and group["file"] == "rules.yml" and group["limit"] == 0
    assert group["lastEvaluation"] == "1970-01-01T00:00:00Z" and group["evaluationTime"] == pytest.approx(0.01)
    record, alert = group["rules"]  # type: ignore[misc]
    assert record == {
        "name": "hop:up:sum",
        "query": "sum by (hop) (hop_up)",
        "health": "ok",
        "evaluationTime": pytest.approx(0.002),
        "lastEvaluation": "1970-01-01T00:00:00Z",
        "type": "recording",
    }
    assert alert["type"] == "alerting" and alert["state"] == "inactive" and alert["alerts"] == []
    assert (alert["duration"], alert["keepFiringFor"]) == (10.0, 10.0)
    assert alert["annotations"]["summary"] == "{{ $labels.hop }} is down ({{ $value }})"  # as written


def test_groups_without_an_interval_follow_the_callers_cadence_and_others_wait() -> None:
    text = """
groups:
  - name: every-call
    rules: [{record: a, expr: vector(1)}]
  - name: slow
    interval: 30s
    rules: [{record: b, expr: vector(1)}]
"""
    rules, storage = manager(text)
    for t in (0, 5, 10, 29, 30, 31):
        rules.evaluate(t)
    fast, slow = rules.groups()
    assert fast["lastEvaluation"] == "1970-01-01T00:00:31Z" and fast["interval"] == 1.0
    assert slow["lastEvaluation"] == "1970-01-01T00:00:29Z" and slow["interval"] == 30.0  # 90 % of 30 s had passed
    with_default, _ = manager(text, default_interval_s=20.0)
    for t in (0, 5, 10):
        with_default.evaluate(t)
    assert with_default.groups()[0]["lastEvaluation"] == "1970-01-01T00:00:00Z"


def test_a_path_is_accepted_in_place_of_a_loaded_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text(RULES)
    storage = Storage()
    rules = RuleManager(path, Engine(storage), storage)
    assert [g["name"] for g in rules.groups()] == ["hops"]


# Prometheus's own template expectations (template/template_test.go)
HUMANIZE = [
    ("{{ humanize $value }}", 0.0, "0"),
    ("{{ humanize $value }}", 1.0, "1"),
    ("{{ humanize $value }}", 1234567.0, "1.235M"),
    ("{{ humanize $value }}", 0.12, "120m"),
    ("{{ humanize $value }}", -1.0, "-1"),
    ("{{ humanize1024 $value }}", 1048576.0, "1Mi"),
    ("{{ humanize1024 $value }}", 0.12, "0.12"),
    ("{{ humanize1024 $value }}", 1234567.0, "1.177Mi"),
    ("{{ humanizeDuration $value }}", 0.0, "0s"),
    ("{{ humanizeDuration $value }}", 60.0, "1m 0s"),
    ("{{ humanizeDuration $value }}", 86400.0 + 3600, "1d 1h 0m 0s"),
    ("{{ humanizeDuration $value }}", -(86400 * 2 + 3600 * 3 + 60 * 4 + 5.0), "-2d 3h 4m 5s"),
    ("{{ humanizeDuration $value }}", 899.99, "14m 59s"),
    ("{{ humanizeDuration $value }}", 0.0001, "100us"),
    ("{{ humanizeDuration $value }}", 0.12345, "123.5ms"),
    ("{{ humanizeDuration $value }}", 1.2345, "1.234s"),
    ("{{ humanizeDuration $value }}", 12.345, "12.35s"),
    ("{{ $value | humanizePercentage }}", -0.22222, "-22.22%"),
    ("{{ $value | humanizePercentage }}", 0.1234567, "12.35%"),
    ("{{ $value | humanizePercentage }}", 1.23456, "123.5%"),
    ("{{ humanize $value }}:{{ humanize1024 $value }}:{{ humanizeDuration $value }}", math.inf, "+Inf:+Inf:+Inf"),
    ("{{ humanize $value }}", math.nan, "NaN"),
    ('{{ printf "%.2f" $value }}', 0.125, "0.12"),
    ('{{ printf "%d%%" $value }}', 42.9, "42%"),
    ("{{ $value }}", 1234567.0, "1.234567e+06"),
    ("{{ .Value }} {{ .Labels.hop }} {{ $labels.hop | toUpper }}", 2.5, "2.5 web-01 WEB-01"),
    ("a {{- $labels.hop -}} b {{/* a comment */}}", 1.0, "aweb-01b "),
    ("{{ $externalLabels.site }} {{ $labels.none }}", 1.0, "lab <no value>"),
]


@pytest.mark.parametrize(("text", "value", "output"), HUMANIZE, ids=[f"{t}|{v}" for t, v, _ in HUMANIZE])
def test_templates_expand_as_prometheus_does(text: str, value: float, output: str) -> None:
    template = compile_template(text, "t")
    assert expand(template, TemplateData({"hop": "web-01"}, value, {"site": "lab"})) == output


@pytest.mark.parametrize(
    "text", ["{{ if $value }}x{{ end }}", '{{ query "up" }}', "{{ $value | nonsense }}", "{{ }}", "{{ $labels.x"]
)
def test_templates_outside_the_subset_are_refused_at_load(text: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(text, "t")


def test_a_groups_limit_fails_the_rule_that_exceeds_it() -> None:
    text = """
groups:
  - name: g
    limit: 1
    rules:
      - record: copied
        expr: hop_up
      - alert: AnyHop
        expr: hop_up >= 0
"""
    rules, storage = manager(text)
    feed(storage, 0, 1, store=1)  # two series
    assert rules.evaluate(0) == []
    record, alert = rules.groups()[0]["rules"]  # type: ignore[misc]
    assert (record["health"], record["lastError"]) == ("err", "exceeded limit of 1 with 2 series")
    assert (alert["health"], alert["lastError"]) == ("err", "exceeded limit of 1 with 2 alerts")
    assert rules.alerts() == [] and series(storage, "copied", 0) == {} and series(storage, "ALERTS", 0) == {}
