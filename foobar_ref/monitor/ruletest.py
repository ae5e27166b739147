"""Rule unit tests in promtool's format, run on this project's engine: one test table, two engines.

    python -m foobar_ref.monitor.ruletest foobar_ref/monitor/alerts_test.yml    # as `promtool test rules`

The file (promtool's `test rules` format)::

    rule_files: [alerts.yml]          # relative to the test file; globs allowed
    evaluation_interval: 1m           # default 1m
    group_eval_order: [g1, g2]        # optional
    tests:
      - interval: 1m                  # between input samples
        input_series:
          - series: 'up{job="web", instance="a"}'
            values: '1 1 0x5 _ stale 0+10x3'     # expanding notation
        alert_rule_test:
          - eval_time: 5m
            alertname: TargetDown
            exp_alerts: [{exp_labels: {...}, exp_annotations: {...}}]
        promql_expr_test:
          - expr: sum(up)
            eval_time: 5m
            exp_samples: [{labels: '{job="web"}', value: 1}]

Expanding notation: `a` one value, `axN` N+1 copies, `a+bxN` / `a-bxN` N+1 values from a in steps
of b, `_` no sample, `_xN` N gaps, `stale` a staleness marker.

Semantics are promtool 2.42's: samples at i * interval from time 0; every group evaluated at each
evaluation interval from 0 to the largest eval_time; an alert test at eval_time t compares the firing
alerts after the evaluation at the last interval step at or before t; expressions are evaluated after
all rule evaluations; values compare exactly.  The output and exit code (0 all passed, 1 not) follow
promtool's.
"""

from __future__ import annotations

import glob
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml  # PyYAML

from foobar_ref.monitor.alerting import RuleManager
from foobar_ref.monitor.promql import Engine, PromQLError, Scalar, Vector, format_duration, parse_metric
from foobar_ref.monitor.promql.binary import format_labels
from foobar_ref.monitor.promql.values import go_exponent
from foobar_ref.monitor.rules import RuleFile, RuleFileError, RuleGroup, load_rule_file, parse_seconds
from foobar_ref.monitor.tsdb import STALE_NAN, Labels, Storage, labels_from

MAX_TEST_FILE_BYTES = 4 * 1024 * 1024
MAX_INPUT_SAMPLES = 1_000_000  # per test group, so a typo like 0+1x1000000000 is refused, not run
# no hexadecimal: in series values `0x6` means six zeros, as in promtool
_NUMBER = r"(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF]|[nN][aA][nN])"
_ITEM = re.compile(rf"(?P<start>[+-]?{_NUMBER})(?:(?P<step>[+-]{_NUMBER})?x(?P<times>\d+))?")
_FILE_FIELDS = {"rule_files", "evaluation_interval", "group_eval_order", "tests"}
_GROUP_FIELDS = {
    "interval",
    "input_series",
    "alert_rule_test",
    "promql_expr_test",
    "external_labels",
    "external_url",
    "name",
}
_ALERT_FIELDS = {"eval_time", "alertname", "exp_alerts"}
_EXPR_FIELDS = {"expr", "eval_time", "exp_samples"}
OMITTED = None


class UnitTestError(ValueError):
    pass


def expand_values(text: str) -> list[float | None]:
    """The values of an input series in promtool's expanding notation; None marks a missing sample."""
    values: list[float | None] = []
    for item in str(text).split():
        if item == "_":
            values.append(OMITTED)
        elif item.startswith("_x") and item[2:].isdigit():
            values.extend([OMITTED] * int(item[2:]))
        elif item == "stale":
            values.append(STALE_NAN)
        else:
            values.extend(_expand_item(item))
        if len(values) > MAX_INPUT_SAMPLES:
            raise UnitTestError(f"more than {MAX_INPUT_SAMPLES} values in one series")
    return values


def _expand_item(item: str) -> list[float | None]:
    match = _ITEM.fullmatch(item)
    if match is None:
        raise UnitTestError(f'bad series value "{item}": expected a number, "_", "stale", "axN" or "a+bxN"')
    start = _float(match.group("start"))
    if match.group("times") is None:
        return [start]
    times = int(match.group("times"))
    if times >= MAX_INPUT_SAMPLES:
        raise UnitTestError(f"more than {MAX_INPUT_SAMPLES} values in one series")
    step = _float(match.group("step")) if match.group("step") else 0.0
    out: list[float | None] = []
    for _ in range(times + 1):
        out.append(start)
        start += step
    return out


def _float(text: str) -> float:
    return float(text)


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): 0s, 1.5s, 1m0s, 1h0m0s."""
    if seconds == 0:
        return "0s"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(round(seconds * 1000), 3_600_000)
    minutes, millis = divmod(rest, 60_000)
    text = f"{millis // 1000}" + (f".{millis % 1000:03d}".rstrip("0") if millis % 1000 else "") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


@dataclass(frozen=True)
class _Settings:
    rule_files: list[Path]
    evaluation_interval_s: float
    group_order: dict[str, int]


def run_file(path: Path) -> list[str]:
    """Run one unit-test file; returns promtool-style error texts (empty when every test passed)."""
    try:
        document = _load(path)
        settings = _settings(document, path)
    except UnitTestError as error:
        return [str(error)]
    errors: list[str] = []
    for group in document.get("tests") or []:
        try:
            errors.extend(_TestGroup(group, settings).run())
        except UnitTestError as error:
            errors.append(str(error))
    return errors


def _load(path: Path) -> dict:
    try:
        raw = path.read_bytes()[: MAX_TEST_FILE_BYTES + 1]
    except OSError as error:
        raise UnitTestError(f"{path}: {error.strerror}") from None
    if len(raw) > MAX_TEST_FILE_BYTES:
        raise UnitTestError(f"{path}: larger than {MAX_TEST_FILE_BYTES} bytes")
    try:
        document = yaml.safe_load(raw) or {}
    except yaml.YAMLError as error:
        raise UnitTestError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(document, dict):
        raise UnitTestError(f"{path}: a unit-test file is a mapping")
    _known(document, _FILE_FIELDS, "unit-test file")
    return document


def _known(mapping: object, fields: set[str], what: str) -> dict:
    if not isinstance(mapping, dict):
        raise UnitTestError(f"{what} must be a mapping")
    unknown = sorted(set(map(str, mapping)) - fields)
    if unknown:
        raise UnitTestError(f"field {unknown[0]} not found in {what}")
    return mapping


def _settings(document: dict, path: Path) -> _Settings:
    files: list[Path] = []
    for pattern in document.get("rule_files") or []:
        candidate = Path(str(pattern))
        if not candidate.is_absolute():
            candidate = path.parent / candidate
        matches = sorted(glob.glob(str(candidate)))
        if not matches:
            print(f"  WARNING: no file match pattern {candidate}", file=sys.stderr)
        files.extend(Path(match) for match in matches)
    interval = _seconds(document.get("evaluation_interval"), "evaluation_interval") or 60.0
    order: dict[str, int] = {}
    for index, name in enumerate(document.get("group_eval_order") or []):
        if name in order:
            raise UnitTestError(f"group name repeated in evaluation order: {name}")
        order[str(name)] = index
    return _Settings(files, interval, order)


def _seconds(value: object, what: str) -> float:
    if value is None:
        return 0.0
    seconds = parse_seconds(str(value))
    if seconds is None:
        raise UnitTestError(f'{what}: not a valid duration string: "{value}"')
    return seconds


def _rules(settings: _Settings) -> RuleFile:
    groups: list[RuleGroup] = []
    for path in settings.rule_files:
        try:
            groups.extend(load_rule_file(path).groups)
        except RuleFileError as error:
            raise UnitTestError("\n".join(error.problems)) from None
    groups.sort(key=lambda group: settings.group_order.get(group.name, 0))
    return RuleFile(settings.rule_files[0] if settings.rule_files else Path("."), tuple(groups))


class _TestGroup:
    def __init__(self, spec: object, settings: _Settings) -> None:
        self.spec = _known(spec, _GROUP_FIELDS, "test group")
        self.settings = settings
        self.name = str(self.spec.get("name") or "")
        self.storage = Storage(retention_s=10 * 365 * 86400, max_bytes=2**62)
        self.engine = Engine(self.storage)
        external = {str(k): str(v) for k, v in (self.spec.get("external_labels") or {}).items()}
        interval = _seconds(self.spec.get("interval"), "interval")  # none: every sample at 0 s, as promtool 2.42
        self.manager = RuleManager(_rules(settings), self.engine, self.storage, external_labels=external)
        self._load_series(interval)
        self.alert_tests = [_known(t, _ALERT_FIELDS, "alert_rule_test") for t in self.spec.get("alert_rule_test") or []]
        self.expr_tests = [_known(t, _EXPR_FIELDS, "promql_expr_test") for t in self.spec.get("promql_expr_test") or []]

    def _load_series(self, interval_s: float) -> None:
        total = 0
        for entry in self.spec.get("input_series") or []:
            entry = _known(entry, {"series", "values"}, "input_series")
            try:
                labels = parse_metric(str(entry.get("series", "")))
            except PromQLError as error:
                raise UnitTestError(f'series "{entry.get("series")}": {error.message}') from None
            values = expand_values(str(entry.get("values", "")))
            total += len(values)
            if total > MAX_INPUT_SAMPLES:
                raise UnitTestError(f"more than {MAX_INPUT_SAMPLES} input samples in one test group")
            for index, value in enumerate(values):
                if value is not OMITTED:
                    self.storage.append(labels, round(index * interval_s * 1000), value)

    def run(self) -> list[str]:
        step_s = self.settings.evaluation_interval_s
        times = [_seconds(t.get("eval_time"), "eval_time") for t in self.alert_tests]
        times += [_seconds(t.get("eval_time"), "eval_time") for t in self.expr_tests]
        last_s = max(times, default=0.0)
        errors: list[str] = []
        pending = sorted(zip(times[: len(self.alert_tests)], self.alert_tests, strict=True), key=lambda p: p[0])
        step = 0
        while step * step_s <= last_s + 1e-9:
            t_s = step * step_s
            failures = self._evaluate(t_s)
            if failures:
                return errors + failures
            while pending and t_s <= pending[0][0] < t_s + step_s:
                errors.extend(self._check_alerts(*pending.pop(0)))
            step += 1
        for test in self.expr_tests:
            errors.extend(self._check_expression(test))
        return errors

    def _evaluate(self, t_s: float) -> list[str]:
        self.manager.evaluate_all(t_s)
        failures = []
        for group in self.manager.groups():
            for rule in group["rules"]:  # type: ignore[attr-defined]
                if rule.get("health") == "err":
                    failures.append(f"    rule: {rule['name']}, time: {go_duration(t_s)}, err: {rule['lastError']}")
        return failures

    def _check_alerts(self, eval_s: float, test: dict) -> list[str]:
        name = str(test.get("alertname") or "")
        if not name:
            where = f" (in TestGroup {self.name})" if self.name else ""
            return [
                f"an item under alert_rule_test misses required attribute alertname at eval_time "
                f"{format_duration(eval_s)}{where}"
            ]
        got = sorted(
            (alert.labels, labels_from(alert.annotations))
            for alert in self.manager.alerts_of(name)
            if alert.state == "firing"
        )
        expected = []
        for item in test.get("exp_alerts") or []:
            item = _known(item, {"exp_labels", "exp_annotations"}, "exp_alerts")
            labels = {str(k): str(v) for k, v in (item.get("exp_labels") or {}).items()}
            labels["alertname"] = name
            annotations = {str(k): str(v) for k, v in (item.get("exp_annotations") or {}).items()}
            expected.append((labels_from(labels), labels_from(annotations)))
        expected.sort()
        if expected == got:
            return []
        prefix = f"    name: {self.name},\n" if self.name else ""
        return [
            f"{prefix}    alertname: {name}, time: {format_duration(eval_s)}, \n"
            f"        exp:{_indent(_alerts_text(expected), ' ' * 12)}, \n"
            f"        got:{_indent(_alerts_text(got), ' ' * 12)}"
        ]

    def _check_expression(self, test: dict) -> list[str]:
        expr = str(test.get("expr") or "")
        eval_s = _seconds(test.get("eval_time"), "eval_time")
        when = format_duration(eval_s)
        try:
            got = _samples(self.engine, expr, eval_s)
        except PromQLError as error:
            return [f"    expr: {_go_quote(expr)}, time: {when}, err: {error.message}"]
        expected = []
        for item in test.get("exp_samples") or []:
            item = _known(item, {"labels", "value"}, "exp_samples")
            try:
                labels = parse_metric(str(item.get("labels") or ""))
            except PromQLError as error:
                message = f"labels {_go_quote(str(item.get('labels')))}: {error.message}"
                return [f"    expr: {_go_quote(expr)}, time: {when}, err: {message}"]
            expected.append((labels, _number(item.get("value"))))
        expected.sort(key=lambda sample: sample[0])
        if expected == got:
            return []
        return [
            f"    expr: {_go_quote(expr)}, time: {when},\n"
            f"        exp: {_samples_text(expected)}\n        got: {_samples_text(got)}"
        ]


def _samples(engine: Engine, expr: str, t_s: float) -> list[tuple[Labels, float]]:
    result = engine.instant(expr, t_s)
    if isinstance(result, Scalar):
        return [((), result.value)]
    if not isinstance(result, Vector):
        raise PromQLError("execution", "rule result is not a vector or scalar")
    return sorted(((s.labels, s.value) for s in result.samples), key=lambda sample: sample[0])


def _number(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return _float(str(value).strip())
    except ValueError:
        raise UnitTestError(f"exp_samples: value {value!r} is not a number") from None


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _indent(text: str, indent: str) -> str:
    return ("\n" + indent).join(text.split("\n"))


def _alerts_text(alerts: Sequence[tuple[Labels, Labels]]) -> str:
    if not alerts:
        return "[]"
    parts = [
        f"{index}:" + _indent(f"\nLabels:{format_labels(labels)}\nAnnotations:{format_labels(annotations)}", "  ")
        for index, (labels, annotations) in enumerate(alerts)
    ]
    return "[\n" + ",\n".join(parts) + "\n]"


def _samples_text(samples: Sequence[tuple[Labels, float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(f"{format_labels(labels)} {go_exponent(value).upper()}" for labels, value in samples)


def main(argv: Sequence[str] | None = None) -> int:
    files = list(sys.argv[1:] if argv is None else argv)
    if not files:
        print("usage: python -m foobar_ref.monitor.ruletest TEST_FILE...", file=sys.stderr)
        return 2
    failed = False
    for name in files:
        print("Unit Testing: ", name)
        errors = run_file(Path(name))
        if errors:
            failed = True
            print("  FAILED:", file=sys.stderr)
            for error in errors:
                print(error, file=sys.stderr)
                print()
        else:
            print("  SUCCESS")
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
