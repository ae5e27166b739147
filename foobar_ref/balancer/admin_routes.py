"""The balancer's admin socket routes: stats, and setting a backend's weight or state at run time.

    GET  /stats                                  the HTML stats page
    GET  /stats.json                             the same numbers as JSON
    POST /backend/<name>?weight=N                0..256
    POST /backend/<name>?state=ready|drain|maint (both at once is allowed)

`LbAdmin.answer(method, target)` is the whole logic, free of I/O (time comes
from the `now` callable the shell gives): it returns (status, content type,
body).  Changes go through the farm; what they cause (waiting requests
served, a backend leaving the rotation) is handed to `carry_out`, and
`wake_check` makes the health checker look at a backend that left `maint` at
once.  A bad request gets 400 naming the parameter, an unknown backend 404
listing the known ones; nothing is half-applied (everything is checked before
anything changes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from foobar_ref.balancer import stats
from foobar_ref.balancer.counters import Counters
from foobar_ref.balancer.farm import Command, Farm
from foobar_ref.balancer.servers import Admin
from foobar_ref.topology_balancer import MAX_WEIGHT

Answer = tuple[int, str, bytes]
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"


class LbAdmin:
    def __init__(
        self,
        hop: str,
        farm: Farm,
        counters: Counters,
        now: Callable[[], float],
        started_s: float,
        carry_out: Callable[[list[Command], str], None] = lambda commands, why: None,
        wake_check: Callable[[str], None] = lambda backend: None,
    ) -> None:
        self.hop = hop
        self.farm = farm
        self.counters = counters
        self.now = now
        self.started_s = started_s
        self.carry_out = carry_out
        self.wake_check = wake_check

    def answer(self, method: str, target: str) -> Answer:
        parts = urlsplit(target)
        path = parts.path
        if path in ("/stats", "/stats.json"):
            if method != "GET":
                return 405, TEXT, f"{path} answers GET only\n".encode()
            snap = stats.snapshot(self.hop, self.farm, self.counters, self.now(), self.started_s)
            return (
                (200, JSON, stats.to_json(snap))
                if path.endswith(".json")
                else (200, HTML, stats.to_html(snap).encode())
            )
        if path.startswith("/backend/"):
            if method != "POST":
                return 405, TEXT, b"/backend/<name> answers POST only\n"
            return self._set(path.removeprefix("/backend/"), parts.query)
        return 404, TEXT, b"not here (GET /stats, GET /stats.json, POST /backend/<name>?weight=N&state=S)\n"

    def routes(self) -> Mapping[tuple[str, str], Callable[[], Awaitable[tuple[int, bytes]]]]:
        """The fixed-path routes in runtime/admin.py's shape (its routes see no query string)."""

        def route(target: str) -> Callable[[], Awaitable[tuple[int, bytes]]]:
            async def run() -> tuple[int, bytes]:
                status, _, body = self.answer("GET", target)
                return status, body

            return run

        return {("GET", "/stats"): route("/stats"), ("GET", "/stats.json"): route("/stats.json")}

    def _set(self, name: str, query: str) -> Answer:
        if name not in self.farm.servers:
            known = ", ".join(self.farm.servers)
            return 404, TEXT, f"no backend {name!r} (known: {known})\n".encode()
        params = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - {"weight", "state"})
        if unknown or not params or any(len(v) != 1 for v in params.values()):
            return 400, TEXT, b"expected ?weight=N and/or ?state=ready|drain|maint, each once\n"
        weight, admin, problem = _parse(params)
        if problem:
            return 400, TEXT, problem.encode() + b"\n"
        now_s = self.now()
        done = []
        if weight is not None:
            before = self.farm.servers[name].weight
            self.carry_out(self.farm.set_weight(name, weight, now_s), f"weight {name} {before} -> {weight}")
            done.append(f"weight {before} -> {weight}")
        if admin is not None:
            before_state = self.farm.servers[name].admin.value
            self.carry_out(self.farm.set_admin(name, admin, now_s), f"state {name} {before_state} -> {admin.value}")
            if admin is Admin.READY:
                self.wake_check(name)
            done.append(f"state {before_state} -> {admin.value}")
        status_text = self.farm.servers[name].status_text()
        return 200, TEXT, f"{name}: {', '.join(done)} (now {status_text})\n".encode()


def _parse(params: dict[str, list[str]]) -> tuple[int | None, Admin | None, str | None]:
    weight = admin = None
    if "weight" in params:
        text = params["weight"][0]
        if not (text.isascii() and text.isdigit() and len(text) <= 3) or int(text) > MAX_WEIGHT:
            return None, None, f"weight must be an integer in [0, {MAX_WEIGHT}], not {text!r}"
        weight = int(text)
    if "state" in params:
        text = params["state"][0]
        try:
            admin = Admin(text)
        except ValueError:
            return None, None, f"state must be one of ready, drain, maint, not {text!r}"
    return weight, admin, None
