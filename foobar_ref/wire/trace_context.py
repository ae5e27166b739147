"""W3C Trace Context (`traceparent`): the thread that ties one request's events together across hops.

The trace id doubles as the request id a learner sees on the page.  A hop keeps
the trace id it received (or starts one) and sends the next hop a fresh span id.
"""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def traceparent(trace_id: str) -> bytes:
    """A traceparent for the next hop: same trace, a fresh span id."""
    return b"00-%s-%s-01" % (trace_id.encode("ascii"), secrets.token_hex(8).encode("ascii"))


def trace_id_of(value: bytes | None) -> str | None:
    """The trace id of a traceparent value, or None when absent or malformed."""
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip())
    return match.group(1).decode() if match else None
