"""Our engine against Prometheus itself: many expressions over one data set, answered by promtool and by us.

promtool's rule unit tests print what an expression returned when it differs from what the test
expected; asking for no samples at all makes it print every non-empty answer, at full precision
(Go's 'E' format round-trips).  Each answer is then compared with ours exactly (NaN with NaN), with
two exceptions allowed a last-bit difference: sums and means over several series (promtool loads
its series in Go's random map order, so it adds them in a different order from run to run), and
`exp` (Go's amd64 Exp takes an FMA path or not depending on the processor).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from foobar_ref.monitor.promql import Engine, Scalar, Vector, parse_metric
from foobar_ref.monitor.ruletest import expand_values
from foobar_ref.monitor.tsdb import Labels, Storage, labels_from

INTERVAL_S = 15
SERIES = {
    'req_total{job="web", code="200"}': "0+7x20 3+11x20",
    'req_total{job="web", code="500"}': "0+1x10 _x5 10+2x24",
    'req_total{job="db", code="200"}': "5+3.3x40",
    'temp{job="web", room="a"}': "20 21.5 19 18.25 22 NaN 23 24 stale 25 26 24.5 23 22 21 20 19 18 17 16",
    'temp{job="db", room="b"}': "-3 -2.5 0 1e3 -1e-3 7 7 7 7 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    'lat_bucket{job="web", le="0.05"}': "0+3x40",
    'lat_bucket{job="web", le="0.25"}': "0+9x40",
    'lat_bucket{job="web", le="1"}': "0+10x40",
    'lat_bucket{job="web", le="+Inf"}': "0+11x40",
    'lat_bucket{job="db", le="0.05"}': "0+1x40",
    'lat_bucket{job="db", le="0.25"}': "0+1x40",
    'lat_bucket{job="db", le="1"}': "0+6x40",
    'lat_bucket{job="db", le="+Inf"}': "0+6x40",
}
EXPRESSIONS = [
    "rate(req_total[1m])",
    "rate(req_total[2m] offset 1m)",
    "increase(req_total[3m])",
    "irate(req_total[1m])",
    "delta(temp[2m])",
    "idelta(temp[2m])",
    "deriv(temp[3m])",
    "predict_linear(temp[3m], 600)",
    "changes(temp[5m])",
    "resets(req_total[10m])",
    "avg_over_time(temp[2m])",
    "sum_over_time(temp[2m])",
    "min_over_time(temp[2m])",
    "max_over_time(temp[2m])",
    "stddev_over_time(temp[2m])",
    "stdvar_over_time(temp[2m])",
    "count_over_time(temp[2m])",
    "last_over_time(temp[2m])",
    "quantile_over_time(0.3, temp[3m])",
    "sum by (job) (rate(req_total[1m]))",
    "avg(temp)",
    "stddev by (job) (temp)",
    "quantile(0.9, rate(req_total[1m]))",
    'sum by (job) (rate(req_total{code=~"5.."}[1m])) / sum by (job) (rate(req_total[1m]))',
    "histogram_quantile(0.9, sum by (job, le) (rate(lat_bucket[2m])))",
    "histogram_quantile(0.5, rate(lat_bucket[1m]))",
    "histogram_quantile(0.99, sum by (le) (rate(lat_bucket[1m])))",
    "temp * 1.1 - 3 / 7",
    "temp % 0.7",
    "temp ^ 0.5",
    "2 ^ temp",
    "temp atan2 3",
    "temp > 7",
    "temp >= bool 7",
    "7 < temp",
    "-temp",
    "abs(temp)",
    "sqrt(temp)",
    "ln(temp)",
    "exp(temp / 10)",
    "ceil(temp / 3)",
    "round(temp, 0.3)",
    "clamp(temp, 0, 20)",
    "timestamp(temp)",
    "time() - timestamp(temp)",
    "rate(req_total[1m]) / on(job) group_left sum by (job) (rate(req_total[1m]))",
    "temp and on(job) req_total",
    "temp unless temp > 20",
    "scalar(sum(temp)) * 2",
    "ln(temp) + log2(temp) - log10(temp)",
    "temp ^ -1.5",
    "topk(1, temp)",
    "bottomk(1, rate(req_total[1m]))",
    'label_replace(temp, "where", "room-$1", "room", "(.)")',
    "count by (job) (req_total)",
    'absent(temp{job="none"})',
]
TIMES = ["1m", "2m30s", "5m", "7m45s", "10m"]


def load() -> Storage:
    storage = Storage(retention_s=10**6)
    for metric, values in SERIES.items():
        labels = parse_metric(metric)
        for index, value in enumerate(expand_values(values)):
            if value is not None:
                storage.append(labels, index * INTERVAL_S * 1000, value)
    return storage


def prometheus_answers(tmp_path: Path) -> dict[tuple[str, str], dict[Labels, float]]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make test installs Debian's prometheus package"
    tests = [{"expr": e, "eval_time": t, "exp_samples": []} for e in EXPRESSIONS for t in TIMES]
    document = {
        "rule_files": [],
        "tests": [
            {
                "interval": f"{INTERVAL_S}s",
                "input_series": [{"series": s, "values": v} for s, v in SERIES.items()],
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "oracle_test.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    answers: dict[tuple[str, str], dict[Labels, float]] = {(e, t): {} for e in EXPRESSIONS for t in TIMES}
    for block in re.finditer(r'expr: "((?:[^"\\]|\\.)*)", time: (\S+),\n\s+exp: nil\n\s+got: (.*)', done.stderr):
        expression = block.group(1).replace('\\"', '"').replace("\\\\", "\\")
        answers[(expression, block.group(2))] = _samples(block.group(3))
    assert "err:" not in done.stderr, done.stderr
    return answers


def _samples(text: str) -> dict[Labels, float]:
    found = {}
    for labels, value in re.findall(r"(\{[^}]*\}) (\S+?)(?:,|$)", text):
        pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels)
        found[labels_from(pairs)] = float(value)
    return found


def ours(engine: Engine, expression: str, at: str) -> dict[Labels, float]:
    minutes, _, rest = at.partition("m")
    t_s = int(minutes) * 60 + (int(rest.rstrip("s")) if rest else 0)
    result = engine.instant(expression, t_s)
    if isinstance(result, Scalar):
        return {(): result.value}
    assert isinstance(result, Vector)
    return {sample.labels: sample.value for sample in result.samples}


def _bits_equal(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


ORDER_OR_FMA_DEPENDENT = re.compile(r"\b(sum|avg|stddev|stdvar|exp)\b")


def _agree(expression: str, a: float, b: float) -> bool:
    if _bits_equal(a, b):
        return True
    return bool(ORDER_OR_FMA_DEPENDENT.search(expression)) and math.isclose(a, b, rel_tol=1e-15)


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[Labels, float]]:
    return prometheus_answers(tmp_path_factory.mktemp("oracle"))


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_same_answer_as_prometheus(expression: str, answers: dict) -> None:
    engine = Engine(load())
    for at in TIMES:
        theirs, mine = answers[(expression, at)], ours(engine, expression, at)
        assert set(mine) == set(theirs), (at, mine, theirs)
        for labels, value in theirs.items():
            assert _agree(expression, mine[labels], value), (at, labels, mine[labels], value)
