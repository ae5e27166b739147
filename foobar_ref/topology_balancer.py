"""The balancer's own table in the topology: `[hosts.services.balancer]`, read and checked.

Theory of operation
-------------------
`topology.py` calls `read_balancer(reader, raw, key, backends)` for every
service of kind `balancer` (the table may be absent: every value then has its
default).  Problems are reported through the topology's reader, so each names
the file and the key path, and all of them are listed at once::

    seed.toml: hosts[4].services[0].balancer.check.fall: expected an integer in [1, 100], found 0

Defaults are HAProxy's where the reliability matrix does not say otherwise:
`roundrobin`, weight 1, `check inter 2s fall 3 rise 2` with a 2 s check
timeout (the matrix's), no slow start, no per-backend `maxconn` (0), 1024
frontend connections, a queue timeout equal to the connect timeout (HAProxy's
`timeout queue` preset), and the matrix's timeouts table (client 30 s, server
10 s, connect 4 s, request 5 s, keep-alive 10 s, handshake 5 s).  HAProxy warns
at start for every timeout left unset; `defaulted_timeouts` names them so the
balancer can do the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foobar_ref.topology import _Reader

ALGORITHMS = ("roundrobin", "leastconn")
MAX_WEIGHT = 256  # HAProxy's weight range is 0..256
MAX_WORKERS = 64
_LONGEST_S = 86400.0


@dataclass(frozen=True)
class CheckSettings:
    """Active health checks: HAProxy's `check inter 2s fall 3 rise 2` over an HTTP GET."""

    enabled: bool = True
    path: str = "/health"
    inter_s: float = 2.0
    fastinter_s: float | None = None  # between checks while a backend is changing state (None: inter_s)
    downinter_s: float | None = None  # between checks while a backend is down (None: inter_s)
    timeout_s: float = 2.0
    fall: int = 3
    rise: int = 2


@dataclass(frozen=True)
class QueueSettings:
    """Requests waiting for a free backend slot when every backend is at its `backend_maxconn`."""

    size: int = 1024
    timeout_s: float = 4.0  # HAProxy: `timeout queue` defaults to `timeout connect`


@dataclass(frozen=True)
class TimeoutSettings:
    """The matrix's limits and timeouts table, balancer column."""

    client_s: float = 30.0  # client inactivity while we send (slow reader) or read a body
    server_s: float = 10.0  # the backend's response: longer is a 504
    connect_s: float = 4.0  # to a backend, through its firewall
    request_s: float = 5.0  # a whole request head, from its first byte: longer is a 408
    keepalive_s: float = 10.0  # idle wait for the next request on a kept-alive connection
    handshake_s: float = 5.0  # a whole TLS handshake


@dataclass(frozen=True)
class TlsSettings:
    """Resumption switches (the profile itself is fixed: Mozilla intermediate, see balancer/tls.py)."""

    session_tickets: bool = True  # RFC 5077 tickets (TLS 1.2) and TLS 1.3 tickets
    session_cache: bool = True  # the server-side session-ID cache (TLS 1.2)


@dataclass(frozen=True)
class BalancerSettings:
    algorithm: str = "roundrobin"
    weights: Mapping[str, int] = field(default_factory=dict)  # backend -> 0..256; absent: 1
    check: CheckSettings = CheckSettings()
    slowstart_s: float = 0.0  # weight ramps from 1 to full over this after a backend comes back (0: none)
    maxconn: int = 1024  # client connections at once; more wait in the listen backlog
    backend_maxconn: int = 0  # requests at once per backend; more wait in the queue (0: no limit)
    queue: QueueSettings = QueueSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    workers: int = 1
    tls: TlsSettings = TlsSettings()
    defaulted_timeouts: tuple[str, ...] = ()  # timeouts the file left unset (the balancer warns)

    def weight(self, backend: str) -> int:
        return self.weights.get(backend, 1)


_KEYS = (
    "algorithm",
    "weights",
    "check",
    "slowstart_s",
    "maxconn",
    "backend_maxconn",
    "queue",
    "timeouts",
    "workers",
    "tls",
)


def read_balancer(r: _Reader, raw: Any, key: str, backends: tuple[str, ...]) -> BalancerSettings:
    """The settings of one balancer service; every problem goes to `r`."""
    t = r.table(raw, key, _KEYS)
    defaults = BalancerSettings()
    algorithm = t.get("algorithm", defaults.algorithm)
    if algorithm not in ALGORITHMS:
        r.problem(f"{key}.algorithm", f"expected one of {', '.join(ALGORITHMS)}, found {algorithm!r}")
        algorithm = defaults.algorithm
    timeouts_raw = t.get("timeouts", {})
    timeouts = _read_dataclass(r, timeouts_raw, f"{key}.timeouts", TimeoutSettings())
    given = timeouts_raw if isinstance(timeouts_raw, dict) else {}
    unset = tuple(f.name for f in fields(TimeoutSettings) if f.name not in given)
    queue = _read_dataclass(r, t.get("queue", {}), f"{key}.queue", QueueSettings(timeout_s=timeouts.connect_s))
    return BalancerSettings(
        algorithm=algorithm,
        weights=_read_weights(r, t.get("weights", {}), f"{key}.weights", backends),
        check=_read_check(r, t.get("check", {}), f"{key}.check"),
        slowstart_s=_seconds(r, t, "slowstart_s", key, defaults.slowstart_s, allow_zero=True),
        maxconn=_integer(r, t, "maxconn", key, defaults.maxconn, 1, 1_000_000),
        backend_maxconn=_integer(r, t, "backend_maxconn", key, defaults.backend_maxconn, 0, 1_000_000),
        queue=queue,
        timeouts=timeouts,
        workers=_integer(r, t, "workers", key, defaults.workers, 1, MAX_WORKERS),
        tls=_read_dataclass(r, t.get("tls", {}), f"{key}.tls", TlsSettings()),
        defaulted_timeouts=unset,
    )


def _read_check(r: _Reader, raw: Any, key: str) -> CheckSettings:
    check = _read_dataclass(r, raw, key, CheckSettings())
    if not check.path.startswith("/") or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in check.path):
        r.problem(f"{key}.path", f"expected a path starting with '/', no spaces or control bytes, found {check.path!r}")
    if check.timeout_s > check.inter_s:
        r.problem(f"{key}.timeout_s", "must not be longer than inter_s (one check at a time per backend)")
    return check


def _read_weights(r: _Reader, raw: Any, key: str, backends: tuple[str, ...]) -> dict[str, int]:
    t = r.table(raw, key, backends)
    weights: dict[str, int] = {}
    for name in backends:
        if name in t:
            weights[name] = _integer(r, t, name, key, 1, 0, MAX_WEIGHT)
    return weights


# --- typed values -------------------------------------------------------------------------

_INTEGER_BOUNDS = {"fall": (1, 100), "rise": (1, 100), "size": (0, 1_000_000)}
_OPTIONAL = {"fastinter_s", "downinter_s"}


def _read_dataclass(r: _Reader, raw: Any, key: str, default: Any) -> Any:
    """A flat table of bools, ints, seconds and strings, typed after `default`'s fields."""
    names = tuple(f.name for f in fields(default))
    t = r.table(raw, key, names)
    values: dict[str, Any] = {}
    for name in names:
        if name not in t:
            continue
        current = getattr(default, name)
        if name.endswith("_s"):
            values[name] = _seconds(r, t, name, key, current, allow_zero=False)
        elif isinstance(current, bool):
            values[name] = _boolean(r, t, name, key, current)
        elif isinstance(current, int):
            low, high = _INTEGER_BOUNDS.get(name, (0, 1_000_000))
            values[name] = _integer(r, t, name, key, current, low, high)
        else:
            values[name] = r.text(t, name, key) or current
    return replace(default, **values)


def _seconds(r: _Reader, t: dict[str, Any], name: str, key: str, default: Any, allow_zero: bool) -> Any:
    if name not in t:
        return default
    value = t[name]
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not (0 <= value <= _LONGEST_S) or (value == 0 and not allow_zero):
        span = "[0" if allow_zero else "(0"
        r.problem(f"{key}.{name}", f"expected seconds, a number in {span}, {_LONGEST_S:g}], found {value!r}")
        return default
    return float(value)


def _integer(r: _Reader, t: dict[str, Any], name: str, key: str, default: int, low: int, high: int) -> int:
    if name not in t:
        return default
    value = t[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        r.problem(f"{key}.{name}", f"expected an integer in [{low}, {high}], found {value!r}")
        return default
    return value


def _boolean(r: _Reader, t: dict[str, Any], name: str, key: str, default: bool) -> bool:
    value = t[name]
    if not isinstance(value, bool):
        r.problem(f"{key}.{name}", f"expected true or false, found {value!r}")
        return default
    return value
