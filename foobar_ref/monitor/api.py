"""The monitor's HTTP answers: Prometheus's /api/v1, /federate, health, its own /metrics, the dashboard.

Theory of operation
-------------------
`Api.answer(request)` maps one parsed request (method, path, parameters) to a `Reply` (status,
content type, body) and does no I/O: the trio shell (service.py) reads requests and writes
replies, and passes the time in, so tests can drive every answer without a socket.

Parameters come from the query string and, for POST with `application/x-www-form-urlencoded`,
from the body too (Prometheus's `r.ParseForm`); a repeated key (`match[]`) keeps every value.
Times are Unix seconds or RFC 3339, durations seconds or Prometheus durations (`5m`, `1h30m`).

Answers have Prometheus's shapes, so Grafana's Prometheus data source, promtool and `foobar-ref
top` read them: `{"status": "success", "data": ...}`, or `{"status": "error", "errorType": ...,
"error": ...}` with 400 for bad_data (a parse error names its position: `invalid parameter
"query": 1:9: parse error: ...`), 422 for execution errors, 503 for timeouts.  A query runs
in the event loop; its cost is bounded by the engine and by the range limits here (at most
11,000 points per series, as Prometheus).

`/federate` answers, for the series matching any `match[]`, the latest sample within the lookback
window (5 min) unless it is a staleness marker, in the text format with timestamps; labels are
kept as stored (`job`, `instance`, `host`, `hop` ...), and a series without `instance` gets
`instance=""`, as Prometheus does, so a federating Prometheus with `honor_labels: true` keeps
them and adds none of its own.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from foobar_ref.monitor import dashboard, promql
from foobar_ref.monitor.exposition import LABEL_NAME, escape_label_value, format_value
from foobar_ref.monitor.notify import rfc3339
from foobar_ref.monitor.promql import PromQLError, parse_matchers, result_json
from foobar_ref.monitor.scrape import TargetState
from foobar_ref.monitor.tsdb import Labels, Matcher, Storage, is_stale, label_value

MAX_POINTS_PER_SERIES = 11_000
LOOKBACK_S = 300.0
MAX_FORM_FIELDS = 200
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
_STATUS_OF = {"bad_data": 400, "execution": 422, "timeout": 503, "canceled": 503, "not_found": 404}


StopCheck = Callable[[], bool]


class Engine(Protocol):
    def instant(self, query: str, t_s: float, should_stop: StopCheck | None = None) -> Any: ...

    def range(
        self, query: str, start_s: float, end_s: float, step_s: float, should_stop: StopCheck | None = None
    ) -> Any: ...


class Rules(Protocol):
    def alerts(self) -> list[dict[str, Any]]: ...

    def groups(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query string, as received
    body: bytes = b""
    content_type: str = ""


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class Params:
    values: dict[str, list[str]] = field(default_factory=dict)

    def one(self, name: str) -> str | None:
        """The first value, as Go's FormValue (a POSTed form's values come before the query string's)."""
        found = self.values.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])


def parse_time(text: str, name: str) -> float:
    """Unix seconds (with fraction) or RFC 3339, as Prometheus's parseTime."""
    try:
        return promql.parse_time(text)
    except PromQLError as err:
        raise ApiError("bad_data", f'invalid parameter "{name}": {err}') from None


def parse_duration(text: str, name: str) -> float:
    """Seconds (with fraction) or a Prometheus duration such as `1m30s`."""
    try:
        return promql.parse_duration(text)
    except PromQLError as err:
        raise ApiError("bad_data", f'invalid parameter "{name}": {err}') from None


class Api:
    """Every answer of the monitor's HTTP port but the socket work."""

    def __init__(
        self,
        engine: Engine,
        storage: Storage,
        rules: Rules,
        targets: Callable[[], Sequence[TargetState]],
        own_metrics: Callable[[], bytes],
        scrape_interval_s: float,
        scrape_timeout_s: float,
        clock: Callable[[], float],
        max_query_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self.clock = clock  # monotonic seconds, for query deadlines
        self.max_query_s = max_query_s
        self.storage = storage
        self.rules = rules
        self.targets = targets
        self.own_metrics = own_metrics
        self.scrape_interval_s = scrape_interval_s
        self.scrape_timeout_s = scrape_timeout_s
        self.routes: dict[str, Callable[[Params, float], Any]] = {
            "/api/v1/query": self.query,
            "/api/v1/query_range": self.query_range,
            "/api/v1/series": self.series,
            "/api/v1/labels": self.labels,
            "/api/v1/targets": self.active_targets,
            "/api/v1/alerts": lambda params, now_s: {"alerts": self.rules.alerts()},
            "/api/v1/rules": lambda params, now_s: {"groups": self.rules.groups()},
            "/api/v1/metadata": lambda params, now_s: {},
        }

    def answer(self, request: Request, now_s: float) -> Reply:
        """The reply to one request; never raises for anything a client can send."""
        path, _, query = request.target.partition("?")
        if request.method not in ("GET", "HEAD", "POST"):
            return Reply(405, TEXT, b"method not allowed\n", (("Allow", "GET, HEAD, POST"),))
        try:
            params = self._params(query, request)
        except ApiError as err:
            return _error(err)
        if path.startswith("/api/"):
            return self._api(path, params, now_s)
        if path == "/federate":
            return self._federate(params, now_s)
        if path in ("/-/healthy", "/-/ready"):
            word = "Healthy" if path == "/-/healthy" else "Ready"
            return Reply(200, TEXT, f"foobar-ref monitor is {word}.\n".encode())
        if path == "/metrics":
            return Reply(200, EXPOSITION, self.own_metrics())
        asset = dashboard.asset(path)
        if asset is not None:
            return Reply(200, asset[0], asset[1], (("Cache-Control", "no-cache"),))
        return Reply(404, TEXT, b"404 page not found\n")

    def _params(self, query: str, request: Request) -> Params:
        params = Params()
        sources = [query]
        if request.method == "POST" and request.content_type.startswith("application/x-www-form-urlencoded"):
            try:
                sources.insert(0, request.body.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError("bad_data", "the form body is not UTF-8") from None
        for source in sources:
            try:
                pairs = urllib.parse.parse_qsl(source, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
            except ValueError as err:
                raise ApiError("bad_data", f"cannot read the parameters: {err}") from None
            for key, value in pairs:
                params.values.setdefault(key, []).append(value)
        return params

    def _api(self, path: str, params: Params, now_s: float) -> Reply:
        route = self.routes.get(path)
        name = _label_values_name(path)
        try:
            if route is not None:
                data = route(params, now_s)
            elif name is not None:
                data = self.label_values(name, params)
            else:
                raise ApiError("not_found", f"no API endpoint {path}")
        except ApiError as err:
            return _error(err)
        except PromQLError as err:
            return _error(ApiError(err.error_type, str(err)))
        return Reply(200, JSON, _json({"status": "success", "data": data}))

    # --- queries -----------------------------------------------------------------------------------

    def query(self, params: Params, now_s: float) -> Any:
        text = params.one("query") or ""
        t_s = parse_time(params.one("time") or "", "time") if params.one("time") else now_s
        stop = self._deadline(params)
        return result_json(_run(lambda: self.engine.instant(text, t_s, stop)))

    def query_range(self, params: Params, now_s: float) -> Any:
        text = params.one("query") or ""
        start = parse_time(_required(params, "start"), "start")
        end = parse_time(_required(params, "end"), "end")
        step = parse_duration(_required(params, "step"), "step")
        stop = self._deadline(params)
        if end < start:
            raise ApiError("bad_data", 'invalid parameter "end": end timestamp must not be before start time')
        if step <= 0:
            raise ApiError(
                "bad_data",
                'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
                "Try a positive integer",
            )
        if (end - start) / step > MAX_POINTS_PER_SERIES:
            raise ApiError(
                "bad_data",
                "exceeded maximum resolution of 11,000 points per timeseries. "
                "Try decreasing the query resolution (?step=XX)",
            )
        return result_json(_run(lambda: self.engine.range(text, start, end, step, stop)))

    def _deadline(self, params: Params) -> StopCheck:
        """The query's stop check: the request's `timeout`, at most `max_query_s` (queries share the thread)."""
        limit = self.max_query_s
        if params.one("timeout"):
            limit = min(limit, max(0.0, parse_duration(params.one("timeout") or "", "timeout")))
        deadline = self.clock() + limit
        return lambda: self.clock() > deadline

    # --- metadata ----------------------------------------------------------------------------------

    def _matching(self, params: Params, required: bool) -> list[Labels] | None:
        selectors = params.all("match[]")
        if not selectors:
            if required:
                raise ApiError("bad_data", "no match[] parameter provided")
            return None
        window = self._window(params)
        found: set[Labels] = set()
        for selector in selectors:
            matchers = _matchers(selector)
            if window is None:
                found.update(self.storage.series(matchers))
            else:
                found.update(labels for labels, _ in self.storage.select(matchers, *window))
        return sorted(found)

    def _window(self, params: Params) -> tuple[int, int] | None:
        start, end = params.one("start"), params.one("end")
        if not start and not end:
            return None
        start_ms = int(parse_time(start, "start") * 1000) if start else -(2**62)
        end_ms = int(parse_time(end, "end") * 1000) if end else 2**62
        return start_ms, end_ms

    def series(self, params: Params, now_s: float) -> Any:
        return [dict(labels) for labels in self._matching(params, required=True) or []]

    def labels(self, params: Params, now_s: float) -> Any:
        matching = self._matching(params, required=False)
        if matching is None:
            return self.storage.label_names()
        return sorted({name for labels in matching for name, _ in labels})

    def label_values(self, name: str, params: Params) -> Any:
        if not LABEL_NAME.fullmatch(name):
            raise ApiError("bad_data", f'invalid label name: "{name}"')
        matching = self._matching(params, required=False)
        if matching is None:
            return self.storage.label_values(name)
        return sorted({value for labels in matching for label, value in labels if label == name})

    def active_targets(self, params: Params, now_s: float) -> Any:
        return {"activeTargets": [self._target(state) for state in self.targets()], "droppedTargets": []}

    def _target(self, state: TargetState) -> dict[str, Any]:
        target = state.target
        last = state.last_scrape_s
        return {
            "discoveredLabels": target.discovered_labels,
            "labels": target.labels,
            "scrapePool": target.job,
            "scrapeUrl": target.scrape_url,
            "globalUrl": target.scrape_url,
            "lastError": state.last_error,
            "lastScrape": rfc3339(last) if last is not None else "0001-01-01T00:00:00Z",
            "lastScrapeDuration": round(state.last_duration_s, 6),
            "health": state.health,
            "scrapeInterval": promql.format_duration(self.scrape_interval_s),
            "scrapeTimeout": promql.format_duration(self.scrape_timeout_s),
        }

    # --- federation --------------------------------------------------------------------------------

    def _federate(self, params: Params, now_s: float) -> Reply:
        selectors = params.all("match[]")
        if not selectors:
            return Reply(400, TEXT, b"no match[] parameter provided\n")
        try:
            matcher_sets = [_matchers(selector) for selector in selectors]
        except ApiError as err:
            return Reply(400, TEXT, f"{err}\n".encode())
        end_ms = int(now_s * 1000)
        latest: dict[Labels, tuple[int, float]] = {}
        for matchers in matcher_sets:
            for labels, samples in self.storage.select(matchers, end_ms - int(LOOKBACK_S * 1000), end_ms):
                if samples.t_ms and not is_stale(samples.values[-1]):
                    latest[labels] = (samples.t_ms[-1], samples.values[-1])
        return Reply(200, EXPOSITION, "".join(_federation_lines(latest)).encode())


def _federation_lines(latest: dict[Labels, tuple[int, float]]) -> Iterable[str]:
    """`# TYPE name untyped` per metric name, then its series with value and timestamp (ms)."""
    rows = []
    for labels, (t_ms, value) in latest.items():
        name = label_value(labels, "__name__")
        pairs = [f'{k}="{escape_label_value(v)}"' for k, v in labels if k != "__name__"]
        if not any(k == "instance" for k, _ in labels):
            pairs.append('instance=""')
        rows.append((name, labels, f"{name}{{{','.join(sorted(pairs))}}} {format_value(value)} {t_ms}\n"))
    family = None
    for name, _, line in sorted(rows):
        if name != family:
            family = name
            yield f"# TYPE {name} untyped\n"
        yield line


def _matchers(selector: str) -> list[Matcher]:
    try:
        return list(parse_matchers(selector))
    except PromQLError as err:
        raise ApiError("bad_data", f'invalid parameter "match[]": {err}') from None


def _required(params: Params, name: str) -> str:
    value = params.one(name)
    if not value:
        raise ApiError("bad_data", f'invalid parameter "{name}": cannot parse "" to a valid timestamp')
    return value


def _run(query: Callable[[], Any]) -> Any:
    """Run a query; a parse error is reported as Prometheus does, as an invalid `query` parameter."""
    try:
        return query()
    except PromQLError as err:
        if err.error_type == "bad_data" and not str(err).startswith("invalid parameter"):
            raise ApiError("bad_data", f'invalid parameter "query": {err}') from None
        raise


def _label_values_name(path: str) -> str | None:
    prefix, suffix = "/api/v1/label/", "/values"
    if path.startswith(prefix) and path.endswith(suffix) and len(path) > len(prefix) + len(suffix):
        return urllib.parse.unquote(path[len(prefix) : -len(suffix)])
    return None


def _error(err: ApiError) -> Reply:
    body = {"status": "error", "errorType": err.error_type, "error": str(err)}
    return Reply(_STATUS_OF.get(err.error_type, 500), JSON, _json(body))


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
