"""One test table, two engines: alerts_test.yml passes promtool and ours; both fail alike on a wrong expectation."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from foobar_ref.monitor.ruletest import UnitTestError, expand_values, go_duration, run_file
from foobar_ref.monitor.tsdb import is_stale

MONITOR = Path(__file__).resolve().parents[2] / "foobar_ref" / "monitor"
RULES, TESTS = MONITOR / "alerts.yml", MONITOR / "alerts_test.yml"
PROMTOOL_TIMEOUT_S = 120


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: make test installs Debian's prometheus package"
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S)


def run_ours(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "foobar_ref.monitor.ruletest", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1 2 3", [1, 2, 3]),
        ("0+10x3", [0, 10, 20, 30]),
        ("10-2x2", [10, 8, 6]),
        ("-1+1x2", [-1, 0, 1]),
        ("5x2", [5, 5, 5]),
        ("1 _ 3", [1, None, 3]),
        ("_x3 1", [None, None, None, 1]),
        ("0x6", [0] * 7),  # not hexadecimal: six more zeros
        ("1e3 Inf -Inf", [1000, math.inf, -math.inf]),
        ("0.1+0.1x2", [0.1, 0.2, 0.30000000000000004]),  # accumulated, as promtool does
    ],
)
def test_expanding_notation(text: str, values: list[float | None]) -> None:
    assert expand_values(text) == values


def test_stale_and_bad_values() -> None:
    [value] = expand_values("stale")
    assert value is not None and is_stale(value)
    for bad in ("1+x2", "abc", "1x", "0+1x99999999999"):
        with pytest.raises(UnitTestError):
            expand_values(bad)


def test_go_durations() -> None:
    assert [go_duration(s) for s in (0, 1.5, 60, 300, 3600, 3725)] == ["0s", "1.5s", "1m0s", "5m0s", "1h0m0s", "1h2m5s"]


def test_the_shipped_rules_pass_promtool_check() -> None:
    checked = run_promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_shipped_rule_tests_pass_both_engines() -> None:
    theirs = run_promtool("test", "rules", str(TESTS))
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert run_file(TESTS) == []
    ours = run_ours(TESTS)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert ours.stdout == theirs.stdout  # "Unit Testing:  ...\n  SUCCESS\n\n"


def _mutated(tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    shutil.copy(RULES, tmp_path / "alerts.yml")
    document = yaml.safe_load(TESTS.read_text())
    change(document)
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _group(document: dict, name: str) -> dict:
    return next(group for group in document["tests"] if group["name"] == name)


def _wrong_sample(document: dict) -> None:
    _group(document, "traffic")["promql_expr_test"][0]["exp_samples"][1]["value"] = 61


def _wrong_annotation(document: dict) -> None:
    _group(document, "availability")["alert_rule_test"][1]["exp_alerts"][0]["exp_annotations"]["summary"] = "nope"


def _alert_expected_too_early(document: dict) -> None:
    _group(document, "database")["alert_rule_test"][1]["eval_time"] = "20s"


def _missing_expected_alert(document: dict) -> None:
    _group(document, "host")["alert_rule_test"][1]["exp_alerts"] = []


def _extra_label(document: dict) -> None:
    _group(document, "traffic")["alert_rule_test"][1]["exp_alerts"][0]["exp_labels"]["team"] = "web"


def _unparsable_expression(document: dict) -> None:
    _group(document, "traffic")["promql_expr_test"][0]["expr"] = "sum(rate(x[5m])"


def _wrong_label_in_sample(document: dict) -> None:
    _group(document, "traffic")["promql_expr_test"][1]["exp_samples"][0]["labels"] = '{hop="web-01"}'


MUTATIONS = [
    _wrong_sample,
    _wrong_annotation,
    _alert_expected_too_early,
    _missing_expected_alert,
    _extra_label,
    _unparsable_expression,
    _wrong_label_in_sample,
]


@pytest.mark.parametrize("change", MUTATIONS, ids=[m.__name__.strip("_") for m in MUTATIONS])
def test_a_wrong_expectation_fails_both_engines_with_the_same_report(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = _mutated(tmp_path, change)
    errors = run_file(path)
    assert errors, "our runner passed a wrong expectation"
    theirs = run_promtool("test", "rules", str(path))
    ours = run_ours(path)
    assert (theirs.returncode, ours.returncode) == (1, 1)
    if change is _unparsable_expression:  # both refuse it; the parser's wording is each engine's own
        assert "FAILED" in ours.stderr and 'expr: "sum(rate(x[5m])"' in ours.stderr
        return
    assert ours.stderr == theirs.stderr
    assert ours.stdout == theirs.stdout


def test_rule_evaluation_errors_stop_the_test_group(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        'groups:\n  - name: g\n    rules:\n      - alert: Dup\n        expr: label_replace(up, "job", "x", "", "")\n'
    )
    (tmp_path / "bad_test.yml").write_text(
        "rule_files: [bad.yml]\ntests:\n  - interval: 1m\n    input_series:\n"
        "      - {series: 'up{job=\"a\", i=\"1\"}', values: '1'}\n"
        "      - {series: 'up{job=\"b\", i=\"1\"}', values: '1'}\n"
        "    alert_rule_test:\n      - {eval_time: 0m, alertname: Dup}\n"
    )
    errors = run_file(tmp_path / "bad_test.yml")
    assert errors == ["    rule: Dup, time: 0s, err: vector cannot contain metrics with the same labelset"]
    theirs = run_promtool("test", "rules", str(tmp_path / "bad_test.yml"))
    assert theirs.returncode == 1 and "rule: Dup, time: 0s, err:" in theirs.stderr


def test_a_missing_file_and_bad_yaml_fail_cleanly(tmp_path: Path) -> None:
    assert run_file(tmp_path / "absent.yml")
    (tmp_path / "t.yml").write_text("tests: [\n")
    assert run_file(tmp_path / "t.yml")
    (tmp_path / "u.yml").write_text("tests: []\nunknown: 1\n")
    assert run_file(tmp_path / "u.yml") == ["field unknown not found in unit-test file"]
    usage = run_ours(tmp_path / "absent.yml")
    assert usage.returncode == 1 and "FAILED" in usage.stderr


SCENARIO_RULES = """
groups:
  - name: g
    rules:
      - record: job:x:sum
        expr: sum by (job) (x)
      - alert: XZero
        expr: x == 0
        for: 1m
        keep_firing_for: 2m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} {{ $value }} {{ $value | humanize }}"}
"""

# Each scenario is run by promtool and by our runner; their reports must be identical, pass or fail.
SCENARIOS = {
    "no interval: every sample at 0 s, the first kept": """
  - input_series: [{series: 'x{job="a"}', values: '1 2 3'}]
    promql_expr_test:
      - {expr: x, eval_time: 2m, exp_samples: [{labels: 'x{job="a"}', value: 3}]}
""",
    "gaps and staleness": """
  - interval: 1m
    input_series: [{series: 'x{job="a"}', values: '1 _ _ 4 stale 6'}]
    promql_expr_test:
      - {expr: x, eval_time: 2m, exp_samples: [{labels: 'x{job="a"}', value: 1}]}
      - {expr: x, eval_time: 4m, exp_samples: []}
      - {expr: 'count_over_time(x[10m])', eval_time: 5m, exp_samples: [{labels: '{job="a"}', value: 3}]}
""",
    "for, keep_firing_for and the value at the last evaluation": """
  - interval: 30s
    input_series: [{series: 'x{job="a"}', values: '1 0 0 0 1 1 1 1 1 1'}]
    alert_rule_test:
      - {eval_time: 1m, alertname: XZero}
      - eval_time: 90s
        alertname: XZero
        exp_alerts: [{exp_labels: {job: a, severity: page}, exp_annotations: {summary: "a 0 0"}}]
      - eval_time: 3m
        alertname: XZero
        exp_alerts: [{exp_labels: {job: a, severity: page}, exp_annotations: {summary: "a 0 0"}}]
      - {eval_time: 4m, alertname: XZero}
""",
    "alert checks between evaluations use the earlier one": """
  - interval: 1m
    input_series: [{series: 'x{job="a"}', values: '0x5'}]
    alert_rule_test:
      - eval_time: 61s
        alertname: XZero
        exp_alerts: [{exp_labels: {job: a, severity: page}, exp_annotations: {summary: "a 0 0"}}]
""",
    "recorded series and exact float comparison": """
  - interval: 1m
    input_series:
      - {series: 'x{job="a", i="1"}', values: '0.1+0.1x3'}
      - {series: 'x{job="a", i="2"}', values: '0.2+0.1x3'}
    promql_expr_test:
      - {expr: 'job:x:sum', eval_time: 3m, exp_samples: [{labels: 'job:x:sum{job="a"}', value: 0.9}]}
      - {expr: 'rate(x[3m])', eval_time: 3m, exp_samples: [{labels: '{job="a", i="1"}', value: 0.001666}]}
""",
}


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(SCENARIOS))
def test_scenarios_get_the_same_report_from_both_engines(tmp_path: Path, scenario: str) -> None:
    (tmp_path / "r.yml").write_text(SCENARIO_RULES)
    path = tmp_path / "t.yml"
    path.write_text("rule_files: [r.yml]\nevaluation_interval: 30s\ntests:" + SCENARIOS[scenario])
    theirs = run_promtool("test", "rules", str(path))
    ours = run_ours(path)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
