"""The web servers' access log: where it is, one line's format, and reading a line back. Pure.

The web server writes it (web/access_log.py); the monitoring client of its host
follows it and counts requests (monitor/agent/access_log.py): the design's
"number of requests the web server processed", counted the way an operator
would with nginx and a log shipper.  The file is the contract between the two,
so both take its name and format from here: `<state>/logs/<hop>.access.log`,
rotated to `.1`, `.2`, ... by the writer.

One line per request, nginx's `combined` format plus the request time, in
seconds with millisecond resolution (nginx `$request_time`)::

    127.0.0.10 - - [10/Oct/2025:13:55:36 +0000] "GET /health HTTP/1.1" 200 37 "-" "curl/8.5" 0.001

As nginx does, a quote, a backslash, a control byte or a byte above 0x7e inside
a quoted field is written as `\\xHH`, so a field never holds a raw quote and
`split(b'"')` finds the request and the status again.  A request refused before
its head was read is logged with `"-"` as the request.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from foobar_ref.observe.http_metrics import is_health_check

_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')


def access_log_path(state_dir: Path, hop: str) -> Path:
    return Path(state_dir) / "logs" / f"{hop}.access.log"


def _escape(value: bytes) -> bytes:
    if not _UNSAFE.search(value):
        return value
    return _UNSAFE.sub(lambda m: b"\\x%02X" % m.group()[0], value)


class LineFormat:
    """Formats lines; the timestamp text is made once per second, not once per request."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = b""

    def stamp(self, now_s: float) -> bytes:
        second = int(now_s)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second)).encode()
        return self._stamp

    def line(
        self,
        now_s: float,
        client: str,
        request: bytes | None,
        status: int,
        body_bytes: int,
        referer: bytes | None,
        user_agent: bytes | None,
        seconds: float,
    ) -> bytes:
        """`request`: the request line (`GET / HTTP/1.1`), None when no head was read."""
        return b'%s - - %s "%s" %d %d "%s" "%s" %.3f\n' % (
            client.encode("ascii", "replace"),
            self.stamp(now_s),
            _escape(request) if request else b"-",
            status,
            body_bytes,
            _escape(referer) if referer else b"-",
            _escape(user_agent) if user_agent else b"-",
            seconds,
        )


def parse_line(line: bytes) -> tuple[str, bool] | None:
    """(status code, is a health check) of one line, or None when it is not a line of this format."""
    parts = line.split(b'"', 3)
    if len(parts) < 4:
        return None
    after = parts[2].split(None, 1)
    if not after or len(after[0]) != 3 or not after[0].isdigit():
        return None
    request = parts[1].split(b" ", 2)
    target = request[1] if len(request) == 3 else b""
    return after[0].decode(), is_health_check(target)
