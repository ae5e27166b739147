"""The monitoring half on the running stack: clients through their firewalls, QPS two ways, alerts.

Real processes, real MariaDB, the monitor scraping every second (see conftest).  The tests that
stop a web server come last in this file and wait until the stack serves from both again.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml

from foobar_ref.client import browser
from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics
from tests.e2e.monitorutil import Traffic, api, firing, query, values_by, wait_for
from tests.e2e.stackutil import cli, refused_or_closed

pytestmark = pytest.mark.stack

CLIENT_INSTANCES = {"127.0.1.1:9100", "127.0.2.1:9100", "127.0.2.2:9100"}
WEB_SERVERS = ("web-01", "web-02")
RULES = Path(__file__).resolve().parents[2] / "foobar_ref" / "monitor" / "alerts.yml"


def _hop_pid(stack: dict, name: str) -> int:
    return next(hop["pid"] for hop in stack["hops"] if hop["name"] == name)


def _firewall_decisions(stack: dict, firewall: str, action: str) -> float:
    text = read_metrics(admin_socket_path(stack["state_dir"], firewall))
    samples = parse_exposition(text)
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "foobar_firewall_connections_total" and dict(labels).get("action") == action
    )


def test_status_names_the_monitor(stack: dict) -> None:
    assert stack["monitor"] == "http://127.0.4.1:9090/"
    roles = {hop["name"]: hop["role"] for hop in stack["hops"]}
    assert {name: roles.get(name) for name in ("mon-lb-01", "mon-web-01", "mon-web-02", "monitor")} == {
        "mon-lb-01": "monitor-client",
        "mon-web-01": "monitor-client",
        "mon-web-02": "monitor-client",
        "monitor": "monitor",
    }


def test_every_client_is_up_through_its_firewall(stack: dict) -> None:
    def all_up() -> dict[str, float] | None:
        found = values_by(query(stack, 'up{job="monitor-client"}'), "instance")
        return found if set(found) == CLIENT_INSTANCES and all(v == 1 for v in found.values()) else None

    wait_for("every monitoring client up", all_up, timeout_s=20)
    targets = api(stack, "/api/v1/targets")["activeTargets"]
    by_instance = {t["labels"]["instance"]: t for t in targets if t["labels"].get("job") == "monitor-client"}
    assert set(by_instance) == CLIENT_INSTANCES
    assert {t["health"] for t in by_instance.values()} == {"up"}
    # every hop of every client's host is watched, and its process is up
    hops = values_by(query(stack, "foobar_hop_up"), "hop")
    expected = {"lb-01", "firewall-1", "web-01", "store-01", "db-01", "firewall-2", "web-02", "store-02", "db-02"}
    assert expected <= set(hops) and all(hops[h] == 1 for h in expected), hops


def test_a_client_refuses_every_other_source_at_its_firewall(stack: dict) -> None:
    rejected = _firewall_decisions(stack, "firewall-2", "reject")
    dropped = _firewall_decisions(stack, "firewall-2", "drop")
    # the browser's host: firewall-2 rejects the client at once (a reset)
    assert refused_or_closed("127.0.0.10", ("127.0.2.1", 9100)) == "reset"
    # the balancer's host may reach port 80, not 9100: the policy drops it (silence)
    assert refused_or_closed("127.0.1.1", ("127.0.2.1", 9100)) in ("silent", "reset", "closed")
    assert _firewall_decisions(stack, "firewall-2", "reject") == rejected + 1
    assert _firewall_decisions(stack, "firewall-2", "drop") == dropped + 1


def _samples(stack: dict, selector: str, window_s: int) -> list[tuple[float, float]]:
    data = api(stack, "/api/v1/query", query=f"{selector}[{window_s}s]")
    assert data["resultType"] == "matrix" and len(data["result"]) == 1, data
    return [(float(t), float(v)) for t, v in data["result"][0]["values"]]


def _aligned_increase(stack: dict, selector: str, before: float, window_s: int = 120) -> float:
    """`increase(selector[W])` evaluated at the last sample, W reaching exactly back to the last sample before
    `before`: with no gap at either end of the window, Prometheus's extrapolation adds nothing."""
    samples = _samples(stack, selector, window_s)
    start = max(t for t, _ in samples if t < before)
    end = samples[-1][0]
    window_ms = round((end - start) * 1000)
    results = query(stack, f"increase({selector}[{window_ms}ms])", at=end)
    assert len(results) == 1, results
    return float(results[0]["value"][1])


def _site_requests(stack: dict, count: int) -> None:
    with browser.open_session(stack["url"], topology=stack["topology_obj"], ca_file=Path(stack["ca"])) as session:
        for _ in range(count):
            assert session.request("GET", "/").status == 200


def test_user_requests_are_counted_exactly_by_the_monitor_and_the_access_log(stack: dict) -> None:
    n = 300
    _site_requests(stack, 4)  # each web server's 200 series exists (a series is born at its first request)
    time.sleep(2.5)  # a scrape of every client before the burst
    before = time.time()
    _site_requests(stack, n)
    time.sleep(3.5)  # and a couple after it

    http = sum(
        _aligned_increase(stack, f'foobar_http_requests_total{{hop="{h}",code="200"}}', before) for h in WEB_SERVERS
    )
    log = sum(
        _aligned_increase(stack, f'foobar_access_log_requests_total{{hop="{h}",code="200"}}', before)
        for h in WEB_SERVERS
    )
    assert abs(http - n) <= 0.02 * n, (http, n)
    assert abs(log - n) <= 0.02 * n, (log, n)
    # the one-line question an operator asks, over a window with the burst inside it
    window = math.ceil(time.time() - before) + 2
    total = values_by(query(stack, f'sum(increase(foobar_http_requests_total{{hop=~"web-0[12]"}}[{window}s]))'), "")
    assert total[""] >= n * 0.98, total


def test_prometheus_config_passes_promtool(stack: dict, tmp_path: Path) -> None:
    import subprocess

    done = cli("monitor", "prometheus-config", str(tmp_path), "--state", str(stack["state_dir"]))
    assert done.returncode == 0, done.stderr
    for args in (
        ["check", "config", str(tmp_path / "prometheus.yml")],
        ["check", "rules", str(tmp_path / "alerts.yml")],
        ["test", "rules", str(tmp_path / "alerts_test.yml")],
    ):
        checked = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, (args, checked.stdout, checked.stderr)


def _qps_threshold() -> float:
    """The web-server QPS alert's threshold, read from the shipped rule file."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "WebServerQpsHigh":
                return float(rule["expr"].rsplit(">", 1)[1].strip())
    raise AssertionError("no WebServerQpsHigh rule in alerts.yml")


def test_a_load_burst_fires_the_qps_alert(stack: dict) -> None:
    threshold = _qps_threshold()
    with Traffic(stack, clients=4, pause_s=0.0, max_s=90, max_requests=40_000) as traffic:
        alert, took = wait_for("WebServerQpsHigh firing", lambda: firing(stack, "WebServerQpsHigh"), timeout_s=80)
    assert traffic.statuses.get(200, 0) > 0 and alert["labels"]["hop"] in WEB_SERVERS
    print(f"QPS alert (threshold {threshold:g}/s) fired after {took:.1f} s of load; {traffic.sent} requests")


def test_the_dashboard_shows_every_hop_with_traffic(stack: dict) -> None:
    from tests.monitor.test_dashboard import Rows, browse

    hops = {"lb-01", "firewall-1", "firewall-2", "firewall-3", "web-01", "web-02", "store-01", "store-02"}
    with Traffic(
        stack, clients=1, pause_s=0.05, max_s=60, max_requests=2_000, paths=("/", "/", "/api/messages", "/api/messages")
    ):  # round-robin sends each pair to both

        def every_hop_counted() -> dict[str, float] | None:
            rates = values_by(query(stack, "sum by (hop) (rate(foobar_requests_total[1m]))"), "hop")
            seen.append(rates)
            return None if any(rates.get(hop, 0) <= 0 for hop in hops) else rates

        seen: list[dict[str, float]] = []

        try:
            wait_for("a rate for every hop", every_hop_counted, timeout_s=30)
        except AssertionError as err:
            raise AssertionError(f"{err}; rates last seen: {seen[-1:]}") from None
        done = browse(stack["monitor"], "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    page = Rows()
    page.feed(done.stdout)
    qps = {row["data-hop"]: float(row["data-qps"] or 0) for row in page.having("data-hop")}
    assert all(qps.get(hop, 0) > 0 for hop in hops), qps
    assert {row["data-backend"] for row in page.having("data-backend")} == {"web-01", "web-02"}
    assert {row["data-db"] for row in page.having("data-db")} == {"db-01", "db-02"}
    assert page.banner_hidden, "a panel failed to refresh"


def _prometheus_ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_a_real_prometheus_federates_and_agrees(stack: dict, tmp_path: Path) -> None:
    """Debian's Prometheus federates from the monitor; one increase() at one fixed time agrees within 5 %."""
    import shutil
    import subprocess
    import urllib.parse
    import urllib.request

    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is needed (make test installs it)"
    done = cli("monitor", "prometheus-config", str(tmp_path), "--state", str(stack["state_dir"]))
    assert done.returncode == 0, done.stderr
    address = "127.0.4.2:9091"
    url = f"http://{address}"
    with Traffic(stack, clients=1, pause_s=0.02, max_s=120, max_requests=5_000):
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address={address}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
        )
        try:
            try:
                wait_for("Prometheus ready", lambda: _prometheus_ready(url), timeout_s=30)
            except AssertionError as err:
                raise AssertionError(f"{err}: {(tmp_path / 'prometheus.log').read_text()[-2000:]}") from None
            time.sleep(25)  # federation reads of lb-01's figures under load
            # a fixed time both have samples around, and a window that starts well after Prometheus's first read
            at = time.time() - 3
            expr = 'sum(increase(foobar_requests_total{hop="lb-01"}[15s]))'
            with urllib.request.urlopen(
                f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"}), timeout=10
            ) as answer:
                theirs = json.loads(answer.read())["data"]["result"]
            ours = query(stack, expr, at=at)
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert theirs and ours, (theirs, ours, (tmp_path / "prometheus.log").read_text()[-2000:])
    theirs_value, ours_value = float(theirs[0]["value"][1]), float(ours[0]["value"][1])
    assert ours_value > 0
    assert abs(theirs_value - ours_value) <= 0.05 * ours_value, (theirs_value, ours_value)


def test_a_hung_web_server_fires_an_alert_and_it_resolves(stack: dict) -> None:
    with Traffic(stack, clients=1, pause_s=0.1, max_s=150):
        # SIGSTOP through the supervisor (`foobar-ref pause`), whose watchdog would otherwise cure the hang itself
        assert cli("pause", "web-01", "--state", str(stack["state_dir"])).returncode == 0
        try:
            alert, took = wait_for("an alert for web-01", lambda: firing(stack, "HopDown", hop="web-01"), 30)
            print(f"HopDown for web-01 fired {took:.1f} s after SIGSTOP")
            # the terminal views say so too
            listed = cli("alerts", "--json", "--state", str(stack["state_dir"]))
            assert listed.returncode == 0 and any(
                a["labels"]["alertname"] == "HopDown" and a["labels"]["hop"] == "web-01" and a["state"] == "firing"
                for a in json.loads(listed.stdout)
            ), listed.stdout
            frame = cli("top", "--once", "--state", str(stack["state_dir"]))
            assert frame.returncode == 0, frame.stderr
            row = next(line for line in frame.stdout.splitlines() if " web-01 " in line)
            assert "NO" in row and "HopDown (firing)" in frame.stdout, frame.stdout
        finally:
            assert cli("resume", "web-01", "--state", str(stack["state_dir"])).returncode == 0
        _, resolved = wait_for("the web-01 alert resolved", lambda: firing(stack, "HopDown", hop="web-01") is None, 60)
        print(f"resolved {resolved:.1f} s after SIGCONT")

    def both_serve() -> bool:
        served = {
            browser.fetch(stack["url"], topology=stack["topology_obj"], ca_file=Path(stack["ca"])).served_by
            for _ in range(4)
        }
        return served == set(WEB_SERVERS)

    wait_for("both web servers serving again", both_serve, timeout_s=30)
