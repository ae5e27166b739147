"""`foobar-ref top`, `alerts` and `monitor prometheus-config`: the monitoring service from a terminal.

All three read the monitoring service's Prometheus-compatible API (`/api/v1/...` on the
monitor host), the same API a Grafana data source or `promtool query` would use, so what the
terminal shows is what the dashboard shows.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from foobar_ref.cli.common import DEFAULT_STATE, StateOpt, TopologyOpt, console, err_console, stack_topology
from foobar_ref.launcher.plan import StatePaths
from foobar_ref.topology import Topology

API_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024
WINDOW = "30s"  # rate() window of `top`: a few scrapes at the demo's interval, short enough to follow a burst

# What `top` shows per hop; every hop counts what it handled in foobar_requests_total.
TOP_QUERIES = {
    "qps": f"sum by (hop) (rate(foobar_requests_total[{WINDOW}]))",
    "p50": f"histogram_quantile(0.5, sum by (hop, le) (rate(foobar_request_seconds_bucket[{WINDOW}])))",
    "p99": f"histogram_quantile(0.99, sum by (hop, le) (rate(foobar_request_seconds_bucket[{WINDOW}])))",
    "errors": f'sum by (hop) (rate(foobar_requests_total{{outcome=~"5.."}}[{WINDOW}]))',
    "up": "foobar_hop_up",
}


class MonitorUnavailable(Exception):
    """The monitoring service did not answer, or answered an error; the message says which."""


@dataclass(frozen=True)
class MonitorApi:
    """A blocking client of the monitoring service's /api/v1."""

    base_url: str

    def get(self, path: str, **params: str) -> Any:
        url = self.base_url.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=API_TIMEOUT_S) as answer:
                payload = json.loads(answer.read(MAX_ANSWER_BYTES))
        except urllib.error.HTTPError as err:
            payload = _error_payload(err)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise MonitorUnavailable(f"the monitoring service at {self.base_url} did not answer: {reason}") from None
        if payload.get("status") != "success":
            raise MonitorUnavailable(f"{payload.get('errorType', 'error')}: {payload.get('error', payload)}")
        return payload["data"]

    def vector(self, query: str) -> dict[str, float]:
        """An instant query's samples keyed by their `hop` label."""
        data = self.get("/api/v1/query", query=query)
        return {item["metric"].get("hop", ""): float(item["value"][1]) for item in data["result"]}


def _error_payload(err: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        payload = json.loads(err.read(MAX_ANSWER_BYTES))
        return payload if isinstance(payload, dict) else {"error": str(payload)}
    except ValueError:
        return {"errorType": f"HTTP {err.code}", "error": err.reason}


def _api(state: Path, topology: Path | None) -> tuple[Topology, MonitorApi]:
    topo = stack_topology(StatePaths(state.resolve()), topology)
    if topo.monitor_url is None:
        err_console.print(f"{topo.path} has no monitoring service (a service of kind 'monitor')", markup=False)
        raise typer.Exit(2)
    return topo, MonitorApi(topo.monitor_url)


# --- foobar-ref alerts ----------------------------------------------------------------------------


def alerts_table(alerts: list[dict[str, Any]]) -> Table:
    table = Table("alert", "state", "since", "labels", "summary")
    order = {"firing": 0, "pending": 1}
    for alert in sorted(alerts, key=lambda a: (order.get(a["state"], 2), a["labels"].get("alertname", ""))):
        labels = {k: v for k, v in alert["labels"].items() if k not in ("alertname", "severity")}
        state = alert["state"]
        style = "red" if state == "firing" else "yellow"
        table.add_row(
            alert["labels"].get("alertname", "?"),
            f"[{style}]{state}[/{style}]",
            alert.get("activeAt", "")[:19].replace("T", " "),
            " ".join(f"{k}={v}" for k, v in sorted(labels.items())),
            alert.get("annotations", {}).get("summary", ""),
        )
    return table


def alerts(
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    as_json: Annotated[bool, typer.Option("--json", help="the API's answer as it is")] = False,
) -> None:
    """The alerts pending or firing now, from the monitoring service."""
    _, api = _api(state, topology)
    try:
        found = api.get("/api/v1/alerts")["alerts"]
    except MonitorUnavailable as err:
        err_console.print(f"foobar-ref alerts: {err}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(found, indent=2))
    elif not found:
        console.print("no alert is pending or firing")
    else:
        console.print(alerts_table(found))


# --- foobar-ref top -------------------------------------------------------------------------------


def top_frame(api: MonitorApi, hops: list[str]) -> Table:
    """One frame of `top`: a row per hop, then the alerts under it."""
    figures = {name: api.vector(query) for name, query in TOP_QUERIES.items()}
    seen = sorted(set(hops) | {hop for values in figures.values() for hop in values if hop})
    table = Table("hop", "QPS", "p50 ms", "p99 ms", "5xx/s", "up", title=f"foobar-ref top   {time.strftime('%X')}")
    for hop in seen:
        up = figures["up"].get(hop)
        table.add_row(
            hop,
            _number(figures["qps"].get(hop), "{:.1f}"),
            _number(_ms(figures["p50"].get(hop)), "{:.1f}"),
            _number(_ms(figures["p99"].get(hop)), "{:.1f}"),
            _number(figures["errors"].get(hop), "{:.2f}"),
            "-" if up is None else ("yes" if up == 1 else "[red]NO[/red]"),
        )
    firing = api.get("/api/v1/alerts")["alerts"]
    table.caption = f"{len(firing)} alert(s) pending or firing" + (
        ": " + ", ".join(f"{a['labels'].get('alertname')} ({a['state']})" for a in firing) if firing else ""
    )
    return table


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _number(value: float | None, form: str) -> str:
    if value is None or value != value:  # NaN: a quantile with no observation in the window
        return "-"
    return form.format(value)


def top(
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
    interval: Annotated[float, typer.Option("--interval", "-n", help="seconds between refreshes")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
) -> None:
    """A live view of the stack: QPS, p50/p99 and 5xx per hop, hops up or down, alerts (Ctrl-C ends it)."""
    topo, api = _api(state, topology)
    hops = sorted(s.name for s in topo.services if s.kind not in ("mariadb", "authoritative", "resolver"))
    try:
        if once:
            console.print(top_frame(api, hops))
            return
        with Live(top_frame(api, hops), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(max(interval, 0.5))
                live.update(top_frame(api, hops))
    except MonitorUnavailable as err:
        err_console.print(f"foobar-ref top: {err}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        return


# --- foobar-ref monitor prometheus-config DIR -------------------------------------------------------

monitor_app = typer.Typer(no_args_is_help=True, help="The monitoring service: configuration for the real tools.")


def prometheus_config(topo: Topology, interval_s: float) -> str:
    """A prometheus.yml that federates every series from the monitoring service and loads its rules."""
    assert topo.monitor_url is not None
    target = topo.monitor_url.removeprefix("http://").rstrip("/")
    return f"""# Written by `foobar-ref monitor prometheus-config`: a real Prometheus beside the project's monitor.
# It federates every series the monitor scraped from the monitoring clients (honor_labels keeps
# their job, instance, host and hop labels; federated samples keep their own timestamps) and
# evaluates the same alert rules.  /federate gives the latest sample of each series, so it is
# read twice per scrape interval of the monitor: no sample is skipped between two reads.
global:
  scrape_interval: {_duration(interval_s / 2)}
  scrape_timeout: {_duration(interval_s / 2)}
  evaluation_interval: {_duration(interval_s)}

rule_files:
  - alerts.yml

scrape_configs:
  - job_name: foobar-federate
    honor_labels: true
    metrics_path: /federate
    params:
      "match[]":
        - '{{job=~".+"}}'
    static_configs:
      - targets: ["{target}"]
"""


def _duration(seconds: float) -> str:
    """Prometheus's duration syntax takes whole numbers only: 500ms, not 0.5s."""
    return f"{round(seconds * 1000)}ms"


@monitor_app.command("prometheus-config")
def prometheus_config_command(
    directory: Annotated[Path, typer.Argument(help="folder to write prometheus.yml, alerts.yml, alerts_test.yml")],
    topology: TopologyOpt = None,
    state: StateOpt = DEFAULT_STATE,
) -> None:
    """Write a prometheus.yml federating from the monitor, its rule file and the rules' unit tests."""
    topo = stack_topology(StatePaths(state.resolve()), topology)
    if topo.monitor_url is None:
        err_console.print(f"{topo.path} has no monitoring service", markup=False)
        raise typer.Exit(2)
    service = topo.services_of_kind("monitor")[0]
    assert service.monitor is not None
    directory.mkdir(parents=True, exist_ok=True)
    shipped = Path(str(resources.files("foobar_ref.monitor")))
    shutil.copyfile(service.monitor.rule_file or shipped / "alerts.yml", directory / "alerts.yml")
    shutil.copyfile(shipped / "alerts_test.yml", directory / "alerts_test.yml")
    (directory / "prometheus.yml").write_text(prometheus_config(topo, service.monitor.scrape_interval_s))
    for name in ("prometheus.yml", "alerts.yml", "alerts_test.yml"):
        console.print(f"wrote {directory / name}", markup=False)
    console.print(f"check:  promtool check config {directory / 'prometheus.yml'}", markup=False)
    console.print(f"test:   promtool test rules {directory / 'alerts_test.yml'}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the CLI."""
    app.command()(top)
    app.command()(alerts)
    app.add_typer(monitor_app, name="monitor")
