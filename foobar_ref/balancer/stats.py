"""lb-01's stats, in the spirit of HAProxy's stats page: one model, as JSON and as an HTML page. Pure.

Theory of operation
-------------------
`snapshot(hop, farm, counters, now_s, started_s)` joins the farm (health,
admin state, weights, load, queue, last check) and the traffic counters into
one dict of plain values, with HAProxy's field names where it has one:
`scur` `smax` `slim` `stot` (sessions: current, max, limit, total), `rate`
`rate_max`, `qcur` `qmax` `qlimit`, `econ` `eresp` `ereq` `wretr`, `chkfail`
`chkdown` `lastchg` `downtime`, `check_status` `check_code` `check_duration`,
`hrsp_2xx`..., `bin` `bout`, `weight` (effective, during slow start) and
`uweight` (set).  `to_json` and `to_html` render it; neither reads anything else,
so the admin socket's `/stats` and `/stats.json` and `foobar-ref lb stats` all
show the same numbers.
"""

from __future__ import annotations

import html
import json
from typing import Any

from foobar_ref.balancer.counters import STATUS_CLASSES, Counters, Traffic
from foobar_ref.balancer.farm import Farm
from foobar_ref.balancer.servers import Server

REFRESH_S = 5


def snapshot(hop: str, farm: Farm, counters: Counters, now_s: float, started_s: float) -> dict[str, Any]:
    front = counters.frontend
    settings = farm.settings
    servers = [_server(s, farm, counters, now_s) for s in farm.servers.values()]
    up = sum(1 for s in farm.servers.values() if s.usable())
    return {
        "hop": hop,
        "uptime_s": round(now_s - started_s, 3),
        "frontend": {
            "scur": front.current, "smax": front.max_current, "slim": front.limit, "stot": front.total,
            "rate": front.session_rate.rate(now_s), "rate_max": front.session_rate.max_rate,
            "ereq": front.request_errors, **_traffic(front.traffic, now_s),
        },
        "backend": {
            "algorithm": settings.algorithm, "status": "UP" if up else "DOWN", "act": up,
            "qcur": farm.queued, "qmax": farm.queue_max, "qlimit": settings.queue.size,
            "scur": sum(s.served for s in farm.servers.values()),
            "refusals": dict(farm.refusals),
            "check": {"enabled": settings.check.enabled, "path": settings.check.path, "inter_s": settings.check.inter_s,
                      "fall": settings.check.fall, "rise": settings.check.rise},
        },
        "servers": servers,
    }  # fmt: skip


def _server(server: Server, farm: Farm, counters: Counters, now_s: float) -> dict[str, Any]:
    backend = counters.backends[server.name]
    last = server.last_check
    weight = server.effective_weight(now_s)
    return {
        "name": server.name, "status": server.status_text(), "state": server.state.value, "admin": server.admin.value,
        "weight": weight, "uweight": server.weight,
        "throttle": round(100 * weight / server.weight) if 0 < weight < server.weight else None,
        "scur": server.served, "smax": server.max_served, "slim": farm.settings.backend_maxconn or None,
        "lbtot": server.total, "econ": backend.connect_errors, "eresp": backend.response_errors,
        "wretr": backend.retries, "observed": dict(server.observed_errors),
        "chkfail": server.failed_checks, "chkdown": server.downs,
        "lastchg_s": round(now_s - server.last_change_s, 3), "downtime_s": round(server.total_downtime_s(now_s), 3),
        "check_status": last.result.code if last else None, "check_code": last.result.status if last else None,
        "check_duration_ms": round(last.result.duration_s * 1000) if last else None,
        "check_detail": last.result.detail if last else None,
        "last_chk_s": round(now_s - last.at_s, 3) if last else None,
        **_traffic(backend.traffic, now_s),
    }  # fmt: skip


def _traffic(traffic: Traffic, now_s: float) -> dict[str, Any]:
    return {
        "req_tot": traffic.requests,
        "req_rate": traffic.request_rate.rate(now_s),
        "req_rate_max": traffic.request_rate.max_rate,
        **{f"hrsp_{kind}": traffic.responses[kind] for kind in STATUS_CLASSES},
        "bin": traffic.bytes_in,
        "bout": traffic.bytes_out,
        "termination": dict(sorted(traffic.terminations.items())),
    }


def to_json(stats: dict[str, Any]) -> bytes:
    return json.dumps(stats, indent=1).encode() + b"\n"


# --- the HTML page -------------------------------------------------------------------------------

_SERVER_COLUMNS = [
    ("status", "Status"), ("weight", "Wght"), ("uweight", "Set"), ("scur", "Cur"), ("smax", "Max"),
    ("slim", "Limit"), ("lbtot", "Total"), ("req_rate", "Rate"), ("hrsp_2xx", "2xx"), ("hrsp_5xx", "5xx"),
    ("econ", "Conn err"), ("eresp", "Resp err"), ("wretr", "Retr"), ("check_status", "Check"),
    ("check_code", "Code"), ("check_duration_ms", "ms"), ("last_chk_s", "Last chk s"), ("chkfail", "Chk fail"),
    ("chkdown", "Downs"), ("lastchg_s", "Last chg s"), ("downtime_s", "Downtime s"),
]  # fmt: skip
_STATE_COLOURS = {"up": "#c0f0c0", "down": "#f0a0a0", "drain": "#a0c0f0", "maint": "#c0c0c0"}
_STYLE = (
    "body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin-bottom:1em}"
    "td,th{border:1px solid #999;padding:2px 6px;text-align:right}th{background:#ddd}td.name{text-align:left}"
)


def to_html(stats: dict[str, Any]) -> str:
    hop = html.escape(stats["hop"])
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='{REFRESH_S}'>",
        f"<title>{hop} stats</title><style>{_STYLE}</style></head><body>",
        f"<h1>{hop}: statistics</h1><p>up {stats['uptime_s']:.0f} s</p>",
        _frontend_table(stats["frontend"]),
        _backend_table(stats["backend"], stats["servers"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def _frontend_table(front: dict[str, Any]) -> str:
    names = ["scur", "smax", "slim", "stot", "rate", "rate_max", "req_tot", "req_rate", "ereq", "hrsp_2xx",
             "hrsp_4xx", "hrsp_5xx", "bin", "bout"]  # fmt: skip
    head = "".join(f"<th>{n}</th>" for n in names)
    row = "".join(f"<td>{_cell(front[n])}</td>" for n in names)
    return f"<h2>frontend</h2><table><tr>{head}</tr><tr>{row}</tr></table>"


def _backend_table(backend: dict[str, Any], servers: list[dict[str, Any]]) -> str:
    head = "<tr><th>backend</th>" + "".join(f"<th>{label}</th>" for _, label in _SERVER_COLUMNS) + "</tr>"
    rows = [
        f"<tr style='background:{_STATE_COLOURS.get(s['state'], '#fff')}'>"
        + f"<td class='name'>{html.escape(s['name'])}</td>"
        + "".join(f"<td>{_cell(s[key])}</td>" for key, _ in _SERVER_COLUMNS)
        + "</tr>"
        for s in servers
    ]
    summary = (
        f"<p>algorithm {html.escape(backend['algorithm'])}, {backend['act']} usable, "
        f"queue {backend['qcur']} (max {backend['qmax']}, limit {backend['qlimit']}), "
        f"refused: {html.escape(json.dumps(backend['refusals']))}</p>"
    )
    return f"<h2>backend</h2>{summary}<table>{head}{''.join(rows)}</table>"


def _cell(value: Any) -> str:
    return "-" if value is None else html.escape(str(value))
