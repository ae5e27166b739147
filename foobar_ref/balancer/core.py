"""lb-01's decisions, free of I/O: which backend next, whether to retry, which headers cross.

Theory of operation
-------------------
Round-robin with passive health.  `RoundRobin.plan(now_s)` gives, for one
request, the backends to try in order: it starts one place further round the
ring than the previous request did and leaves out backends that are down.
Each backend is tried at most once per request.

Health is a two-state machine driven by what the shell saw (the table
`_TRANSITIONS`): a failed connect (or a fresh connection closed before any
response byte, which is how a dead web server looks through its firewall)
moves a backend to DOWN for `hold_down_s`; any answer moves it back to UP.
Once the hold-down has passed, a DOWN backend is offered again (one request
probes it).  When every backend is down they are all offered anyway, soonest
to recover first: a slow 502 is better than refusing a server that just came
back.

Retries follow HAProxy's default (`retries` retries connection failures only,
non-idempotent requests are never replayed): GET and HEAD move to the next
backend after a failed connect or a connection closed before any response
byte; other methods only after a failed connect, when nothing was sent.  A bad
response (502) or a response timeout (504) is never retried.

Requests answered here (`refusal`): CONNECT/TRACE, no Host, a path with
dot-segments or control bytes (`unsafe_path`).

Headers: the client's hop-by-hop headers (and any it names in `Connection`)
stay on its connection; the forwarding headers a client could forge
(X-Forwarded-*, X-Real-IP, X-Request-Id, traceparent) are replaced by the
balancer's own.  Times are plain floats passed in (`now_s`), never read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

HOLD_DOWN_S = 5.0
HSTS = b"max-age=63072000"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})
REFUSED_METHODS = frozenset({"CONNECT", "TRACE"})

Headers = list[tuple[bytes, bytes]]
T = TypeVar("T")


# --- round-robin and backend health --------------------------------------


class Health(Enum):
    UP = "up"
    DOWN = "down"


class Seen(Enum):
    """What the shell saw of one attempt, as far as health is concerned."""

    ANSWERED = "answered"
    UNREACHABLE = "unreachable"


_TRANSITIONS = {
    (Health.UP, Seen.ANSWERED): Health.UP,
    (Health.UP, Seen.UNREACHABLE): Health.DOWN,
    (Health.DOWN, Seen.ANSWERED): Health.UP,
    (Health.DOWN, Seen.UNREACHABLE): Health.DOWN,
}


@dataclass
class Backend:
    name: str
    health: Health = Health.UP
    down_until_s: float = 0.0

    def available(self, now_s: float) -> bool:
        return self.health is Health.UP or now_s >= self.down_until_s


class RoundRobin:
    """Backends in topology order, a cursor that moves one step per request, and their health."""

    def __init__(self, names: Iterable[str], hold_down_s: float = HOLD_DOWN_S) -> None:
        self.backends = [Backend(name) for name in names]
        if not self.backends:
            raise ValueError("round-robin needs at least one backend")
        self.hold_down_s = hold_down_s
        self._cursor = 0

    def plan(self, now_s: float) -> tuple[str, ...]:
        """The backends to try for the next request, in order; each at most once."""
        start = self._cursor
        self._cursor = (self._cursor + 1) % len(self.backends)
        ring = self.backends[start:] + self.backends[:start]
        available = [b.name for b in ring if b.available(now_s)]
        if available:
            return tuple(available)
        return tuple(b.name for b in sorted(ring, key=lambda b: b.down_until_s))

    def record(self, name: str, seen: Seen, now_s: float) -> tuple[Health, Health]:
        """Apply one observation; returns (before, after) so the shell can log a change."""
        backend = self._backend(name)
        before = backend.health
        backend.health = _TRANSITIONS[(before, seen)]
        if seen is Seen.UNREACHABLE:
            backend.down_until_s = now_s + self.hold_down_s
        return before, backend.health

    def health(self, name: str) -> Health:
        return self._backend(name).health

    def _backend(self, name: str) -> Backend:
        return next(b for b in self.backends if b.name == name)


# --- what went wrong upstream, and what follows from it --------------------


class Failure(Enum):
    CONNECT = "connect_failed"  # no connection: nothing was sent
    NO_RESPONSE = "no_response"  # sent, but closed or reset before any response byte
    BAD_RESPONSE = "bad_response"  # bytes came back that are not a whole HTTP response
    TIMEOUT = "timeout"  # no whole response within the response timeout


def may_retry(method: str, failure: Failure) -> bool:
    if failure is Failure.CONNECT:
        return True
    return failure is Failure.NO_RESPONSE and method in IDEMPOTENT_METHODS


def seen_of(failure: Failure, fresh_connection: bool) -> Seen | None:
    """How a failure counts for health: None when it says nothing about reachability."""
    if failure is Failure.CONNECT or (failure is Failure.NO_RESPONSE and fresh_connection):
        return Seen.UNREACHABLE
    return None


def status_for(failure: Failure) -> int:
    return 504 if failure is Failure.TIMEOUT else 502


# --- requests and responses -------------------------------------------------

_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"})
_REPLACED_ON_REQUEST = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"x-request-id", b"traceparent"}
)
# Recomputed from the buffered body; Expect is answered by buffering, not passed on.
_REFRAMED = frozenset({b"content-length", b"expect"})
_REPLACED_ON_RESPONSE = frozenset({b"x-request-id", b"strict-transport-security"})


def _connection_bound(headers: Headers) -> frozenset[bytes]:
    """Hop-by-hop names: the fixed set, Proxy-*, and every name listed in Connection."""
    listed = {
        token.strip().lower() for name, value in headers if name.lower() == b"connection" for token in value.split(b",")
    }
    names = {name.lower() for name, _ in headers if name.lower().startswith(b"proxy-")}
    return frozenset(_HOP_BY_HOP | listed | names)


def request_headers(headers: Headers, client_ip: str, trace_id: str, traceparent: bytes) -> Headers:
    """The headers to send upstream: Host and end-to-end headers kept, forwarding headers set by us."""
    dropped = _connection_bound(headers) | _REPLACED_ON_REQUEST | _REFRAMED
    kept = [(name, value) for name, value in headers if name.lower() not in dropped]
    return kept + [
        (b"X-Forwarded-For", client_ip.encode("ascii")),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Request-Id", trace_id.encode("ascii")),
        (b"traceparent", traceparent),
    ]


def response_headers(headers: Headers, trace_id: str, body_length: int | None) -> Headers:
    """The backend's headers for the client: framing redone, X-Request-Id and HSTS set.

    `body_length` None keeps the backend's Content-Length (HEAD, 204, 304: no body follows).
    """
    dropped = _connection_bound(headers) | _REPLACED_ON_RESPONSE
    if body_length is not None:
        dropped |= {b"content-length"}
    kept = [(name, value) for name, value in headers if name.lower() not in dropped]
    framing = [(b"Content-Length", str(body_length).encode())] if body_length is not None else []
    return kept + framing + [(b"X-Request-Id", trace_id.encode("ascii")), (b"Strict-Transport-Security", HSTS)]


def sets_body_length(method: str, status: int) -> bool:
    """Whether the response to `method` with `status` carries a body whose length we set."""
    return method != "HEAD" and status not in (204, 304) and not 100 <= status < 200


def refusal(method: str, target: bytes, headers: Headers) -> tuple[int, str] | None:
    """Requests the balancer answers itself instead of forwarding: (status, reason)."""
    if method in REFUSED_METHODS:
        return 405, f"{method} is not allowed here"
    if not any(name.lower() == b"host" for name, _ in headers):
        return 400, "a Host header is required"
    unsafe = unsafe_path(target)
    if unsafe is not None:
        return 400, unsafe
    return None


def unsafe_path(target: bytes) -> str | None:
    """Why a target's path (percent-decoded once) must not reach a backend, or None.

    Browsers remove dot-segments before sending, so `..` or `.` as a segment
    (plain or encoded) only comes from a probe; so do control bytes (`%00`, an
    encoded CR/LF a backend might echo into a header).  Refused, not normalised:
    the backend then sees exactly the path the client wrote, or nothing.
    """
    decoded = unquote_to_bytes(target.split(b"?", 1)[0])
    if any(byte < 0x20 or byte == 0x7F for byte in decoded):
        return "control byte in the path"
    if any(segment in (b".", b"..") for segment in decoded.replace(b"\\", b"/").split(b"/")):
        return "dot-segment in the path"
    return None


_HOST = re.compile(rb"^([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::[0-9]{1,5})?$")


def redirect_location(host: bytes | None, target: bytes, https_port: int) -> str | None:
    """https URL for a plain-HTTP request, or None when the Host header is not a host name."""
    match = _HOST.match(host or b"")
    if match is None or not target.startswith(b"/"):
        return None
    suffix = "" if https_port == 443 else f":{https_port}"
    return f"https://{match.group(1).decode('ascii').lower()}{suffix}{target.decode('latin-1')}"


# --- idle upstream connections --------------------------------------------------


@dataclass
class IdlePool(Generic[T]):
    """Idle keep-alive connections per backend, newest reused first, each kept at most `idle_s`."""

    max_idle: int
    idle_s: float
    _idle: dict[str, list[tuple[float, T]]] = field(default_factory=dict)

    def put(self, key: str, item: T, now_s: float) -> T | None:
        """Keep `item`; returns it back when the pool for `key` is full (the caller closes it)."""
        slot = self._idle.setdefault(key, [])
        if len(slot) >= self.max_idle:
            return item
        slot.append((now_s, item))
        return None

    def take(self, key: str, now_s: float) -> tuple[T | None, list[T]]:
        """(the newest fresh item or None, the expired items to close)."""
        expired = self._expire_slot(key, now_s)
        slot = self._idle.get(key, [])
        return (slot.pop()[1] if slot else None), expired

    def expire(self, now_s: float) -> list[T]:
        return [item for key in list(self._idle) for item in self._expire_slot(key, now_s)]

    def drain(self) -> list[T]:
        items = [item for slot in self._idle.values() for _, item in slot]
        self._idle.clear()
        return items

    def count(self, key: str) -> int:
        return len(self._idle.get(key, []))

    def _expire_slot(self, key: str, now_s: float) -> list[T]:
        slot = self._idle.get(key, [])
        fresh = [(t, item) for t, item in slot if now_s - t < self.idle_s]
        expired = [item for t, item in slot if now_s - t >= self.idle_s]
        self._idle[key] = fresh
        return expired
