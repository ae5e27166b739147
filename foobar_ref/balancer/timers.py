"""Where a request's time went, and how it ended, as HAProxy logs them. Pure.

Theory of operation
-------------------
The shell notes instants on a `Clock` as the request goes (any monotonic clock,
in seconds; an instant never reached stays None) and, at the end, logs
`Timers.of(clock)` and a `Termination`.

Timers, in integer milliseconds, -1 for a phase never reached (HAProxy's
`%Th/%Ti/%TR/%Tw/%Tc/%Tr/%Ta`, configuration.txt "Timing events"):

    Th  accepted -> TLS handshake done (first request of a connection only; 0 after)
    Ti  idle: ready for a request -> its first byte (keep-alive wait)
    TR  first byte -> whole request head (HAProxy: timeout http-request)
    Tw  waiting in the queue for a backend slot
    Tc  connecting to the backend (0 on a reused keep-alive connection)
    Tr  request sent -> whole response head (the backend's own time)
    Ta  first byte -> last byte of the response (the request's active time)

Termination state: two letters, HAProxy's `%tsc` first half.  The first says
who ended it (`-` nobody: normal; `C`/`c` the client: abort / timeout; `S`/`s`
the server: abort or refusal / timeout; `P` the proxy refused; `L` answered
locally; `R` a resource ran out; `I` an internal error; `D` the backend went
down), the second in which phase (`R` request, `Q` queue, `C` connect, `H`
response head, `D` data, `L` last data, `-` done).  `--` is a clean exchange,
`sH` a backend that did not answer in time, `SC` no backend to connect to,
`sQ` a queue timeout, `cR` a client too slow with its request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Ender(Enum):
    NONE = "-"
    CLIENT_ABORT = "C"
    CLIENT_TIMEOUT = "c"
    SERVER_ABORT = "S"
    SERVER_TIMEOUT = "s"
    PROXY = "P"
    LOCAL = "L"
    RESOURCE = "R"
    INTERNAL = "I"
    SERVER_DOWN = "D"


class Phase(Enum):
    NONE = "-"
    REQUEST = "R"
    QUEUE = "Q"
    CONNECT = "C"
    HEADERS = "H"
    DATA = "D"
    LAST = "L"


@dataclass(frozen=True)
class Termination:
    ender: Ender
    phase: Phase

    def __str__(self) -> str:
        return self.ender.value + self.phase.value

    @classmethod
    def parse(cls, code: str) -> Termination:
        """`Termination.parse("sQ")`, e.g. from the farm's Refuse.termination."""
        if len(code) != 2:
            raise ValueError(f"a termination state is two letters, not {code!r}")
        return cls(Ender(code[0]), Phase(code[1]))


NORMAL = Termination(Ender.NONE, Phase.NONE)
ANSWERED_LOCALLY = Termination(Ender.LOCAL, Phase.REQUEST)  # redirect, refused method or path
BAD_REQUEST = Termination(Ender.PROXY, Phase.REQUEST)  # 400/413/414/431/501/505 from the parser
REQUEST_TIMEOUT = Termination(Ender.CLIENT_TIMEOUT, Phase.REQUEST)  # 408
CLIENT_GONE_IN_REQUEST = Termination(Ender.CLIENT_ABORT, Phase.REQUEST)
CLIENT_GONE_IN_DATA = Termination(Ender.CLIENT_ABORT, Phase.DATA)
CLIENT_TOO_SLOW_IN_DATA = Termination(Ender.CLIENT_TIMEOUT, Phase.DATA)  # a slow reader
SERVER_GONE_IN_DATA = Termination(Ender.SERVER_ABORT, Phase.DATA)
SERVER_TOO_SLOW_IN_DATA = Termination(Ender.SERVER_TIMEOUT, Phase.DATA)


def of_upstream_failure(failure: str, connect_timed_out: bool = False) -> Termination:
    """For core.Failure's values: connect_failed, no_response, bad_response, timeout."""
    if failure == "connect_failed":
        return Termination(Ender.SERVER_TIMEOUT if connect_timed_out else Ender.SERVER_ABORT, Phase.CONNECT)
    if failure == "timeout":
        return Termination(Ender.SERVER_TIMEOUT, Phase.HEADERS)
    if failure == "bad_response":
        return Termination(Ender.PROXY, Phase.HEADERS)  # HAProxy's PH: an invalid response blocked
    return Termination(Ender.SERVER_ABORT, Phase.HEADERS)  # closed or reset before answering


@dataclass
class Clock:
    """Instants of one request (seconds); the shell sets them as they happen."""

    accepted_s: float | None = None  # the connection (first request only)
    handshake_done_s: float | None = None  # TLS (first request only)
    ready_s: float | None = None  # began waiting for this request
    first_byte_s: float | None = None
    head_done_s: float | None = None
    queued_s: float | None = None
    dequeued_s: float | None = None
    connect_started_s: float | None = None
    connected_s: float | None = None
    request_sent_s: float | None = None
    response_head_s: float | None = None
    ended_s: float | None = None


@dataclass(frozen=True)
class Timers:
    Th: int
    Ti: int
    TR: int
    Tw: int
    Tc: int
    Tr: int
    Ta: int

    @classmethod
    def of(cls, c: Clock) -> Timers:
        handshake = _span(c.accepted_s, c.handshake_done_s)
        queue = (
            _span(c.queued_s, c.dequeued_s)
            if c.queued_s is not None
            else (0 if c.connect_started_s is not None else -1)
        )
        return cls(
            Th=handshake if c.accepted_s is not None else 0,
            Ti=_span(c.ready_s, c.first_byte_s),
            TR=_span(c.first_byte_s, c.head_done_s),
            Tw=queue,
            Tc=_span(c.connect_started_s, c.connected_s),
            Tr=_span(c.request_sent_s, c.response_head_s),
            Ta=_span(c.first_byte_s, c.ended_s),
        )

    def __str__(self) -> str:
        """HAProxy's httplog field: Th/Ti/TR/Tw/Tc/Tr/Ta."""
        return f"{self.Th}/{self.Ti}/{self.TR}/{self.Tw}/{self.Tc}/{self.Tr}/{self.Ta}"

    def fields(self) -> dict[str, int | str]:
        """For the request's JSON log line."""
        return {"timers": str(self), "Th_ms": self.Th, "Ti_ms": self.Ti, "TR_ms": self.TR, "Tw_ms": self.Tw,
                "Tc_ms": self.Tc, "Tr_ms": self.Tr, "Ta_ms": self.Ta}  # fmt: skip


def _span(start: float | None, end: float | None) -> int:
    if start is None or end is None:
        return -1
    return max(0, round((end - start) * 1000))


def log_fields(clock: Clock, termination: Termination) -> dict[str, int | str]:
    return {**Timers.of(clock).fields(), "termination": str(termination)}
