"""The monitor's start and stop as a real process: SIGTERM, and a rule file refused before READY."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.monitor.monitorproc import RULES, monitor_process, write_topology


def test_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    topology = write_topology(tmp_path, {"solo": "127.90.7.1"}, rules, scrape_interval_s=1, scrape_timeout_s=0.5)
    with monitor_process(tmp_path, topology) as monitor:
        monitor.proc.terminate()
        assert monitor.proc.wait(10) == 0
    events = [json.loads(line)["event"] for line in monitor.log.read_text().splitlines() if line.startswith("{")]
    assert events[-2:] == ["stopping", "stopped"]
    assert not (tmp_path / "run" / "monitor.admin.sock").exists()


def test_a_malformed_rule_file_is_refused_at_start_with_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "bad.yml"
    rules.write_text("groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: sum(rate(up[5m])\n")
    topology = write_topology(tmp_path, {"solo": "127.90.7.1"}, rules)
    done = subprocess.run(
        [sys.executable, "-m", "foobar_ref.monitor", "--topology", str(topology), "--hop", "monitor"]
        + ["--state", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert f"{rules}:5:" in done.stderr
    assert "READY" not in done.stdout and "Traceback" not in done.stderr
