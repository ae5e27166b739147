"""Stats (counters, JSON, HTML), the admin routes over the farm, and `foobar-ref lb` against a real admin socket."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from foobar_ref.balancer import stats
from foobar_ref.balancer.admin_routes import LbAdmin
from foobar_ref.balancer.counters import Counters, RateCounter
from foobar_ref.balancer.farm import Changed, Command, Farm, Forward
from foobar_ref.balancer.servers import Admin, CheckResult, State
from foobar_ref.cli import app
from foobar_ref.cli.lb import render
from foobar_ref.runtime.admin_socket import admin_response, admin_socket_path, bind_admin_socket, head_complete
from foobar_ref.topology_balancer import BalancerSettings


class Time:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_rate_reads_a_steady_flow_at_any_instant_and_forgets_a_gap() -> None:
    rate = RateCounter()
    for i in range(100):  # 25 per second for 4 s
        rate.add(10.0 + i * 0.04)
    assert rate.rate(13.99) == 25 and rate.rate(14.5) in (12, 13)  # half of the last second's window left
    assert rate.rate(20.0) == 0 and rate.max_rate >= 25


def busy_farm() -> tuple[Farm, Counters, Time]:
    farm = Farm(("web-01", "web-02"), BalancerSettings(weights={"web-01": 3}, backend_maxconn=10))
    counters = Counters(("web-01", "web-02"), maxconn=1024)
    clock = Time()
    counters.connection_opened(clock.now_s)
    for _ in range(4):
        decision = farm.arrive(clock.now_s)
        assert isinstance(decision, Forward)
        counters.request_done(200, 100, 2000, clock.now_s, decision.backend, "--")
        farm.finish(decision.ticket, clock.now_s)
    counters.request_done(400, 50, 120, clock.now_s, None, "PR")
    counters.upstream_failed("web-02", "connect_failed")
    counters.retried("web-01")
    farm.checked("web-02", CheckResult(False, "L4CON", None, 0.003, "refused"), clock.now_s)
    farm.checked("web-01", CheckResult(True, "L7OK", 200, 0.002), clock.now_s)  # full health: "UP", not "UP 1/3"
    return farm, counters, clock


def test_the_snapshot_joins_farm_and_counters_under_haproxys_names() -> None:
    farm, counters, clock = busy_farm()
    snap = stats.snapshot("lb-01", farm, counters, clock.now_s + 0.5, started_s=90.0)
    assert snap["uptime_s"] == 10.5
    front = snap["frontend"]
    assert (front["scur"], front["stot"], front["slim"], front["req_tot"], front["ereq"]) == (1, 1, 1024, 5, 1)
    assert (front["hrsp_2xx"], front["hrsp_4xx"], front["bin"], front["bout"]) == (4, 1, 450, 8120)
    one, two = snap["servers"]
    assert (one["name"], one["status"], one["weight"], one["lbtot"], one["hrsp_2xx"], one["wretr"]) == (
        "web-01", "UP", 3, 3, 3, 1
    )  # fmt: skip
    assert (two["status"], two["state"], two["econ"], two["check_status"], two["check_duration_ms"]) == (
        "DOWN", "down", 1, "L4CON", 3
    )  # fmt: skip
    assert two["chkdown"] == 1 and two["downtime_s"] == 0.5 and snap["backend"]["act"] == 1
    assert json.loads(stats.to_json(snap)) == snap


def test_the_html_page_has_a_row_per_backend_and_escapes_what_it_shows() -> None:
    farm = Farm(("web-01", "<b>x</b>"), BalancerSettings())
    page = stats.to_html(stats.snapshot("lb-01", farm, Counters(("web-01", "<b>x</b>"), 8), 1.0, 0.0))
    assert page.count("<td class='name'>") == 2 and "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "<title>lb-01 stats</title>" in page


# --- admin routes ---------------------------------------------------------------------------------


@pytest.fixture
def admin() -> tuple[LbAdmin, list[tuple[list[Command], str]], list[str]]:
    farm, counters, clock = busy_farm()
    carried: list[tuple[list[Command], str]] = []
    woken: list[str] = []
    routes = LbAdmin("lb-01", farm, counters, clock, 90.0, lambda c, why: carried.append((c, why)), woken.append)
    return routes, carried, woken


def test_stats_routes_answer_json_and_html(admin: tuple[LbAdmin, list, list]) -> None:  # type: ignore[type-arg]
    routes = admin[0]
    status, kind, body = routes.answer("GET", "/stats.json")
    assert (status, kind) == (200, "application/json") and json.loads(body)["hop"] == "lb-01"
    status, kind, body = routes.answer("GET", "/stats?x=1")
    assert (status, kind) == (200, "text/html; charset=utf-8") and body.startswith(b"<!doctype html>")
    assert routes.answer("POST", "/stats")[0] == 405 and routes.answer("GET", "/nothing")[0] == 404


def test_weight_and_state_are_set_through_the_farm(admin: tuple[LbAdmin, list, list]) -> None:  # type: ignore[type-arg]
    routes, carried, woken = admin
    status, _, body = routes.answer("POST", "/backend/web-01?weight=0&state=drain")
    assert status == 200 and body == b"web-01: weight 3 -> 0, state ready -> drain (now DRAIN)\n"
    assert routes.farm.servers["web-01"].weight == 0
    assert carried[-1] == ([Changed("web-01", State.UP, State.DRAIN, "set state drain")], "state web-01 ready -> drain")
    assert routes.answer("POST", "/backend/web-02?state=ready")[0] == 200
    assert woken == ["web-02"] and routes.farm.servers["web-02"].admin is Admin.READY


@pytest.mark.parametrize(
    ("target", "status", "says"),
    [
        ("/backend/web-09?weight=1", 404, "known: web-01, web-02"),
        ("/backend/web-01?weight=257", 400, "[0, 256]"),
        ("/backend/web-01?weight=-1", 400, "[0, 256]"),
        ("/backend/web-01?weight=%C2%B2", 400, "[0, 256]"),
        ("/backend/web-01?weight=" + "1" * 5000, 400, "[0, 256]"),
        ("/backend/web-01?state=down", 400, "ready, drain, maint"),
        ("/backend/web-01?weight=2&state=sleep", 400, "ready, drain, maint"),
        ("/backend/web-01?colour=red", 400, "expected ?weight"),
        ("/backend/web-01", 400, "expected ?weight"),
        ("/backend/web-01?weight=1&weight=2", 400, "each once"),
    ],
)
def test_bad_changes_are_refused_whole(admin: tuple[LbAdmin, list, list], target: str, status: int, says: str) -> None:  # type: ignore[type-arg]
    routes, carried, _ = admin
    got, _, body = routes.answer("POST", target)
    assert got == status and says in body.decode()
    assert carried == [] and routes.farm.servers["web-01"].weight == 3  # nothing half-applied
    assert routes.answer("GET", "/backend/web-01?weight=1")[0] == 405


# --- the CLI against a real admin socket -------------------------------------------------------------


@pytest.fixture
def socket_state(tmp_path: Path, admin: tuple[LbAdmin, list, list]) -> Iterator[Path]:  # type: ignore[type-arg]
    """An admin socket answering with LbAdmin (full targets, as the shell will mount it)."""
    routes = admin[0]
    listener = bind_admin_socket(admin_socket_path(tmp_path, "lb-01"))
    listener.setblocking(True)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while not head_complete(request) and (chunk := conn.recv(4096)):
                    request += chunk
                method, target = request.split(b" ")[:2]
                status, _, body = routes.answer(method.decode(), target.decode())
                conn.sendall(admin_response(status, body))

    threading.Thread(target=serve, daemon=True).start()
    yield tmp_path
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()


def test_lb_stats_prints_a_row_per_backend(socket_state: Path) -> None:
    result = CliRunner().invoke(app, ["lb", "stats", "--state", str(socket_state)])
    assert result.exit_code == 0, result.output
    assert "lb-01 (roundrobin): 1 connections" in result.output
    wide = Console(width=250, record=True)
    wide.print(
        render(json.loads(CliRunner().invoke(app, ["lb", "stats", "--json", "--state", str(socket_state)]).output))
    )
    table = wide.export_text()
    assert "web-01" in table and "UP" in table and "DOWN" in table and "L4CON" in table and "L7OK 200" in table
    raw = CliRunner().invoke(app, ["lb", "stats", "--json", "--state", str(socket_state)])
    assert json.loads(raw.output)["servers"][1]["status"] == "DOWN"


def test_lb_set_changes_a_backend_and_says_so_or_fails_with_the_reason(socket_state: Path) -> None:
    result = CliRunner().invoke(app, ["lb", "set", "web-01", "weight", "7", "--state", str(socket_state)])
    assert result.exit_code == 0 and "web-01: weight 3 -> 7 (now UP)" in result.output
    drained = CliRunner().invoke(app, ["lb", "set", "web-02", "state", "maint", "--state", str(socket_state)])
    assert drained.exit_code == 0 and "(now MAINT)" in drained.output
    refused = CliRunner().invoke(app, ["lb", "set", "web-01", "weight", "300", "--state", str(socket_state)])
    assert refused.exit_code == 1 and "[0, 256]" in refused.output
    missing = CliRunner().invoke(app, ["lb", "stats", "--state", str(socket_state / "nowhere")])
    assert missing.exit_code == 1 and "not running" in missing.output
