"""Rule files read as Prometheus reads them: every problem named with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from foobar_ref.monitor.rules import RuleFileError, load_rule_file

SHIPPED = Path(__file__).resolve().parents[2] / "foobar_ref" / "monitor" / "alerts.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path)
    return [problem.removeprefix(f"{path}:") for problem in caught.value.problems]


def test_the_shipped_rules_load() -> None:
    rules = load_rule_file(SHIPPED)
    names = [rule.name for group in rules.groups for rule in group.rules]
    assert {"TargetDown", "HopDown", "BalancerBackendDown", "WebServerQpsHigh", "HttpErrorRatioHigh"} <= set(names)
    for group in rules.groups:
        assert group.interval_s is None  # the service's evaluation interval applies
        for rule in group.rules:
            if rule.kind == "alert":
                assert rule.labels.get("severity") in ("critical", "warning"), rule.name
                assert {"summary", "description"} <= set(rule.annotations), rule.name


def test_a_good_file_is_read_whole(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
groups:
  - name: one
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {source: rules}
      - alert: Down
        expr: up == 0
        for: 1m30s
        keep_firing_for: 2m
        labels: {severity: critical}
        annotations: {summary: "{{ $labels.job }} down"}
  - name: empty
""",
    )
    rules = load_rule_file(path)
    one, empty = rules.groups
    assert (one.name, one.interval_s, one.line) == ("one", 30.0, 3)
    record, alert = one.rules
    assert (record.kind, record.name, record.labels, record.line) == ("record", "job:up:sum", {"source": "rules"}, 6)
    assert (alert.kind, alert.for_s, alert.keep_firing_for_s, alert.line) == ("alert", 90.0, 120.0, 9)
    assert empty.rules == ()


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """groups:
  - name: g
    rules:
      - alert: Bad
        expr: |
          sum(rate(x[5m]))
            / foo(y)
        for: 1x
        annotations: {a: "{{ .Nope }}"}
        bogus: 1
      - record: a-b
        expr: up
        for: 1m
      - expr: up
      - alert: NoExpr
      - record: r
        alert: a
        expr: up
      - alert: RangeResult
        expr: up[5m]
  - name: g
""",
    )
    assert found == [
        '7: group "g", rule 1, "Bad": could not parse expression: 2:5: parse error: unknown function with name "foo"',
        '8: for: not a valid duration string: "1x"',
        '9: group "g", rule 1, "Bad": annotation "a": template: __alert_Bad: function ".Nope" not defined',
        '10: group "g", rule 1: unknown field "bogus" (known: record, alert, expr, for, keep_firing_for, labels, '
        "annotations)",
        '11: group "g", rule 2, "a-b": invalid field \'for\' in recording rule',
        '11: group "g", rule 2, "a-b": invalid recording rule name: a-b',
        "14: group \"g\", rule 3, \"\": one of 'record' or 'alert' must be set",
        '15: group "g", rule 4, "NoExpr": field \'expr\' must be set in rule',
        "16: group \"g\", rule 5, \"a\": only one of 'record' and 'alert' must be set (alert at line 17)",
        '20: group "g", rule 6, "RangeResult": expression must be an instant vector or a scalar, got matrix',
        '21: groupname: "g" is repeated in the same file (first at line 2)',
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("groups: [\n", "2: invalid YAML"),
        ("groups:\n  - name: ''\n", "2: Groupname must not be empty"),
        ("groupz: []\n", '1: rule file: unknown field "groupz" (known: groups)'),
        ("groups:\n  - name: g\n    interval: fast\n", '3: group "g": interval: not a valid duration string: "fast"'),
        ("groups:\n  - name: g\n    rules: {a: 1}\n", "3: rules must be a list"),
        ("groups:\n  - name: g\n    name: h\n", '3: group: key "name" already defined at line 2'),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels: {__name__: x}\n",
            '6: group "g", rule 1, "A": invalid label name: __name__',
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'up{'\n",
            '5: group "g", rule 1, "A": could not parse expression: 1:4: parse error: unexpected end of input inside '
            "braces",
        ),
    ],
)
def test_single_problems(tmp_path: Path, text: str, expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems(tmp_path, text)), problems(tmp_path, text)


def test_an_empty_file_has_no_groups(tmp_path: Path) -> None:
    assert load_rule_file(write(tmp_path, "")).groups == ()


def test_a_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError) as caught:
        load_rule_file(tmp_path / "absent.yml")
    assert "cannot read" in caught.value.problems[0]
