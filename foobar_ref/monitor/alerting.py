"""The rule manager: evaluates recording and alerting rules group by group, as Prometheus 2.42 does. Pure.

Theory of operation
-------------------
`evaluate(t_s)` runs every group whose interval has come round (`evaluate_all` runs all of them, as
promtool's unit tests do).  A group runs its rules in order at the same timestamp, so a rule sees
what the rules before it recorded.

A recording rule's samples are renamed to the rule's name, its labels applied, and appended.
An alerting rule (Prometheus's `AlertingRule.Eval`) turns each sample of its expression into an alert
identified by the sample's labels (minus `__name__`) plus the rule's labels and `alertname`: new
ones start *pending* at `t`; a pending alert whose condition held for `for` becomes *firing*; when
the condition stops, a pending alert is dropped, a firing one keeps firing while `keep_firing_for`
has not passed since the condition stopped, then turns *inactive* (resolved) and is forgotten 15
minutes later.  Every pending and firing alert writes `ALERTS{alertname, alertstate, ...} 1` and
`ALERTS_FOR_STATE{...} <activeAt>`; a series a rule wrote last time and not this time gets a
staleness marker, so it leaves instant queries at once.

A rule whose query fails keeps its alerts as they were, and reports `health: err` with the error.
Transitions (firing, resolved) are returned for notification.  No clock is read: evaluation times
are the argument, and durations are measured only if a `timer` function is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from foobar_ref.monitor.promql import Engine, PromQLError, Scalar, Vector, go_exponent, rfc3339
from foobar_ref.monitor.promql.binary import drop_name
from foobar_ref.monitor.rules import Rule, RuleFile, RuleGroup, load_rule_file
from foobar_ref.monitor.templates import TemplateData, TemplateError, expand
from foobar_ref.monitor.tsdb import METRIC_NAME, Labels, Storage, labels_from

RESOLVED_RETENTION_S = 15 * 60  # a resolved alert is remembered (and reported resolved) this long
ZERO_TIME = "0001-01-01T00:00:00Z"
DUE_TOLERANCE = 0.9  # a group is due once 90 % of its interval has passed, so scheduling jitter skips no round


@dataclass(frozen=True)
class AlertChange:
    """One alert's transition, for notification (Alertmanager's webhook fields)."""

    status: str  # "firing" or "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_s: float
    ends_at_s: float | None
    expr: str
    value: float


@dataclass
class Alert:
    labels: Labels
    annotations: dict[str, str]
    value: float
    active_at_s: float
    state: str = "pending"  # pending, firing, inactive
    fired_at_s: float | None = None
    resolved_at_s: float | None = None
    keep_firing_since_s: float | None = None


@dataclass
class _RuleState:
    rule: Rule
    health: str = "unknown"
    last_error: str = ""
    last_evaluation_s: float | None = None
    evaluation_s: float = 0.0
    active: dict[Labels, Alert] = field(default_factory=dict)
    written: set[Labels] = field(default_factory=set)  # series written at the last evaluation


@dataclass
class _GroupState:
    group: RuleGroup
    interval_s: float | None  # None: every call of evaluate() is a round (the caller's cadence is the interval)
    rules: list[_RuleState]
    last_evaluation_s: float | None = None
    previous_evaluation_s: float | None = None
    evaluation_s: float = 0.0

    def interval_for_api(self) -> float:
        if self.interval_s is not None:
            return self.interval_s
        if self.last_evaluation_s is not None and self.previous_evaluation_s is not None:
            return round(self.last_evaluation_s - self.previous_evaluation_s, 3)
        return 0.0


class RuleManager:
    """Evaluates a rule file's groups against `engine`, writing results into `storage`.

    A group without an `interval` of its own uses `default_interval_s`; when that is None too (the
    default), it is evaluated at every call of `evaluate`, so the caller's cadence (the topology's
    `evaluation_interval_s`) is its interval.
    """

    def __init__(
        self,
        rule_file: RuleFile | Path | str,
        engine: Engine,
        storage: Storage,
        *,
        default_interval_s: float | None = None,
        external_labels: dict[str, str] | None = None,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self.rule_file = rule_file if isinstance(rule_file, RuleFile) else load_rule_file(Path(rule_file))
        self.engine = engine
        self.storage = storage
        self.external_labels = dict(external_labels or {})
        self.timer = timer
        self._groups = [
            _GroupState(group, group.interval_s or default_interval_s, [_RuleState(rule) for rule in group.rules])
            for group in self.rule_file.groups
        ]

    # --- evaluation --------------------------------------------------------------------------------

    def evaluate(self, t_s: float) -> list[AlertChange]:
        """Evaluate every group that is due at `t_s`; returns the alerts that fired or resolved."""
        changes: list[AlertChange] = []
        for group in self._groups:
            last, interval = group.last_evaluation_s, group.interval_s
            if last is None or interval is None or t_s - last >= interval * DUE_TOLERANCE:
                changes.extend(self._evaluate_group(group, t_s))
        return changes

    def evaluate_all(self, t_s: float) -> list[AlertChange]:
        """Evaluate every group at `t_s`, due or not."""
        changes: list[AlertChange] = []
        for group in self._groups:
            changes.extend(self._evaluate_group(group, t_s))
        return changes

    def _evaluate_group(self, group: _GroupState, t_s: float) -> list[AlertChange]:
        started = self._now()
        changes: list[AlertChange] = []
        for state in group.rules:
            rule_started = self._now()
            try:
                if state.rule.kind == "record":
                    written = self._record(state.rule, t_s, group.group.limit)
                else:
                    written, rule_changes = self._alert(state, t_s, group.group.limit)
                    changes.extend(rule_changes)
            except PromQLError as error:
                state.health, state.last_error = "err", error.message
            else:
                state.health, state.last_error = "ok", ""
                self._write_stale(state, written, t_s)
            state.last_evaluation_s = t_s
            state.evaluation_s = self._now() - rule_started
        group.previous_evaluation_s, group.last_evaluation_s = group.last_evaluation_s, t_s
        group.evaluation_s = self._now() - started
        return changes

    def _now(self) -> float:
        return self.timer() if self.timer is not None else 0.0

    def _query(self, rule: Rule, t_s: float) -> list[tuple[Labels, float]]:
        result = self.engine.instant_node(rule.node, t_s)
        if isinstance(result, Scalar):
            return [((), result.value)]
        assert isinstance(result, Vector)
        return [(sample.labels, sample.value) for sample in result.samples]

    def _record(self, rule: Rule, t_s: float, limit: int) -> set[Labels]:
        t_ms = round(t_s * 1000)
        output: dict[Labels, float] = {}
        for labels, value in self._query(rule, t_s):
            named = dict(labels)
            named[METRIC_NAME] = rule.name
            named.update(rule.labels)
            key = labels_from(named)
            if key in output:
                raise PromQLError(
                    "execution", "vector contains metrics with the same labelset after applying rule labels"
                )
            output[key] = value
        if 0 < limit < len(output):
            raise PromQLError("execution", f"exceeded limit of {limit} with {len(output)} series")
        for key, value in output.items():
            self.storage.append(key, t_ms, value)
        return set(output)

    def _write_stale(self, state: _RuleState, written: set[Labels], t_s: float) -> None:
        t_ms = round(t_s * 1000)
        for labels in state.written - written:
            self.storage.mark_stale(labels, t_ms)
        state.written = written

    # --- alerting rules ----------------------------------------------------------------------------

    def _alert(self, state: _RuleState, t_s: float, limit: int) -> tuple[set[Labels], list[AlertChange]]:
        rule = state.rule
        fresh = self._alerts_now(rule, t_s)
        for key, alert in fresh.items():
            existing = state.active.get(key)
            if existing is not None and existing.state != "inactive":
                existing.value, existing.annotations = alert.value, alert.annotations
            else:
                state.active[key] = alert
        changes: list[AlertChange] = []
        samples: dict[Labels, float] = {}
        for key, alert in list(state.active.items()):
            if key not in fresh:
                keep = self._keeps_firing(rule, alert, t_s)
                if alert.state == "pending" or (
                    alert.resolved_at_s is not None and t_s - alert.resolved_at_s > RESOLVED_RETENTION_S
                ):
                    del state.active[key]
                if alert.state != "inactive" and not keep:
                    if alert.state == "firing":
                        changes.append(self._change("resolved", rule, alert, t_s))
                    alert.state, alert.resolved_at_s = "inactive", t_s
                if not keep:
                    continue
            else:
                alert.keep_firing_since_s = None
            if alert.state == "pending" and _ms(t_s - alert.active_at_s) >= _ms(rule.for_s):
                alert.state, alert.fired_at_s = "firing", t_s
                changes.append(self._change("firing", rule, alert, None))
            samples.update(_alert_samples(rule, alert))
        if 0 < limit < len(samples) // 2:  # two series (ALERTS, ALERTS_FOR_STATE) per pending or firing alert
            state.active.clear()
            raise PromQLError("execution", f"exceeded limit of {limit} with {len(samples) // 2} alerts")
        t_ms = round(t_s * 1000)
        for labels, value in samples.items():
            self.storage.append(labels, t_ms, value)
        return set(samples), changes

    @staticmethod
    def _keeps_firing(rule: Rule, alert: Alert, t_s: float) -> bool:
        if alert.state != "firing" or rule.keep_firing_for_s <= 0:
            return False
        if alert.keep_firing_since_s is None:
            alert.keep_firing_since_s = t_s
        return _ms(t_s - alert.keep_firing_since_s) < _ms(rule.keep_firing_for_s)

    def _alerts_now(self, rule: Rule, t_s: float) -> dict[Labels, Alert]:
        fresh: dict[Labels, Alert] = {}
        for labels, value in self._query(rule, t_s):
            data = TemplateData(dict(labels), value, self.external_labels)
            alert_labels = dict(drop_name(labels))
            for name in rule.labels:
                alert_labels[name] = self._expand(rule, f"labels.{name}", data)
            alert_labels["alertname"] = rule.name
            annotations = {name: self._expand(rule, f"annotations.{name}", data) for name in sorted(rule.annotations)}
            key = labels_from(alert_labels)
            if key in fresh:
                raise PromQLError(
                    "execution", "vector contains metrics with the same labelset after applying alert labels"
                )
            fresh[key] = Alert(key, annotations, value, t_s)
        return fresh

    @staticmethod
    def _expand(rule: Rule, key: str, data: TemplateData) -> str:
        try:
            return expand(rule.templates[key], data)
        except TemplateError as error:
            return f"<error expanding template: {error}>"

    @staticmethod
    def _change(status: str, rule: Rule, alert: Alert, ends_at_s: float | None) -> AlertChange:
        return AlertChange(
            status, dict(alert.labels), dict(alert.annotations), alert.active_at_s, ends_at_s, rule.expr, alert.value
        )

    # --- the API's views ---------------------------------------------------------------------------

    def alerts(self) -> list[dict[str, object]]:
        """`/api/v1/alerts`'s `alerts`: every pending and firing alert, in Prometheus's JSON shape."""
        out: list[dict[str, object]] = []
        for group in self._groups:
            for state in group.rules:
                out.extend(_alert_json(alert) for alert in _current(state))
        return out

    def groups(self) -> list[dict[str, object]]:
        """`/api/v1/rules`'s `groups`, in Prometheus's JSON shape."""
        return [
            {
                "name": group.group.name,
                "file": str(self.rule_file.path),
                "rules": [_rule_json(state) for state in group.rules],
                "interval": group.interval_for_api(),
                "limit": group.group.limit,
                "evaluationTime": group.evaluation_s,
                "lastEvaluation": _time(group.last_evaluation_s),
            }
            for group in self._groups
        ]

    def active_alerts(self) -> list[Alert]:
        """Pending and firing alerts (for tests and the unit-test runner)."""
        return [alert for group in self._groups for state in group.rules for alert in _current(state)]

    def alerting_rule_names(self) -> list[str]:
        return [state.rule.name for group in self._groups for state in group.rules if state.rule.kind == "alert"]

    def alerts_of(self, name: str) -> list[Alert]:
        return [
            alert
            for group in self._groups
            for state in group.rules
            if state.rule.kind == "alert" and state.rule.name == name
            for alert in _current(state)
        ]


def _alert_samples(rule: Rule, alert: Alert) -> dict[Labels, float]:
    """ALERTS (1) and ALERTS_FOR_STATE (activeAt, in whole seconds) of one pending or firing alert."""
    base = dict(rule.labels)
    base.update(alert.labels)
    base["alertname"] = rule.name
    alerts = labels_from({**base, METRIC_NAME: "ALERTS", "alertstate": alert.state})
    for_state = labels_from({**base, METRIC_NAME: "ALERTS_FOR_STATE"})
    return {alerts: 1.0, for_state: float(math.floor(alert.active_at_s))}


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _time(t_s: float | None) -> str:
    return rfc3339(t_s) if t_s is not None else ZERO_TIME


def _current(state: _RuleState) -> list[Alert]:
    alerts = [alert for alert in state.active.values() if alert.resolved_at_s is None]
    return sorted(alerts, key=lambda alert: alert.labels)


def _alert_json(alert: Alert) -> dict[str, object]:
    body: dict[str, object] = {
        "labels": dict(alert.labels),
        "annotations": dict(sorted(alert.annotations.items())),
        "state": alert.state,
        "activeAt": rfc3339(alert.active_at_s),
        "value": go_exponent(alert.value),
    }
    if alert.keep_firing_since_s is not None:
        body["keepFiringSince"] = rfc3339(alert.keep_firing_since_s)
    return body


def _rule_json(state: _RuleState) -> dict[str, object]:
    rule = state.rule
    body: dict[str, object] = {"name": rule.name, "query": rule.expr.strip()}
    if rule.kind == "alert":
        states = {alert.state for alert in state.active.values()}
        body.update(
            state="firing" if "firing" in states else "pending" if "pending" in states else "inactive",
            duration=rule.for_s,
            keepFiringFor=rule.keep_firing_for_s,
            labels=dict(sorted(rule.labels.items())),
            annotations=dict(sorted(rule.annotations.items())),
            alerts=[_alert_json(alert) for alert in _current(state)],
        )
    elif rule.labels:
        body["labels"] = dict(sorted(rule.labels.items()))
    body["health"] = state.health
    if state.last_error:
        body["lastError"] = state.last_error
    body["evaluationTime"] = state.evaluation_s
    body["lastEvaluation"] = _time(state.last_evaluation_s)
    body["type"] = "alerting" if rule.kind == "alert" else "recording"
    return body
