"""Sans-IO codecs the hops share; for HTTP/1.1, one connection core (no I/O, no clock).

- `connection`  ServerConnection / ClientConnection: bytes in, events out; calls in, bytes out
- `cycle`       what both roles share: the receive buffer, the lanes, body framing, the cycle
- `events`      Request, Response, Data, EndOfMessage, ConnectionClosed, NEED_DATA, PAUSED
- `fastlane`    the strict parser for simple heads (the speed trick; `benchmarks/wire_core.py`)
- `h11_lane`    h11 reading every message the fast lane declines (the only h11 import of the core)
- `writer`      heads and body framing, byte for byte what h11 writes
- `head_checks` the limits and refusals h11 leaves to us (414, 431, obs-fold, 405, 505, 413 ...)
- `limits`      ServerLimits, ClientLimits and the default refusal, for the drivers
- `errors`      Local/Remote protocol errors with a status hint; a client exchange's failures
- `trace_context` W3C traceparent helpers
- `http`        the whole-message reader the hops used before the core (kept until they move)

The drivers that put the core on sockets live in `runtime/`: `http_trio`,
`http_asyncio`, `http_blocking` (over `http_server` and `http_client`).
"""
