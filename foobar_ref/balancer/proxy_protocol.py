"""PROXY protocol v1: the one text line firewall-1 sends before relaying a connection.

Theory of operation
-------------------
Firewall-1 is a TCP proxy, so every connection lb-01 accepts comes from the
firewall's address.  To let lb-01 learn the client's real address (for
X-Forwarded-For and the log), the firewall first writes one line, as HAProxy's
`send-proxy` does (haproxy doc/proxy-protocol.txt, section 2.1)::

    PROXY TCP4 203.0.113.7 127.0.1.1 51234 443\\r\\n

then relays the client's bytes (for the https port: the TLS ClientHello).

Two pure steps, bytes in and values out, so the shell only reads and the tests
drive them directly:

- `split_line(buffer)` finds the line in what arrived so far and returns it and
  the bytes after it (which belong to the client), or None while more is needed.
  It refuses as early as it can: the first bytes must spell `PROXY `, a CR must
  be followed by LF, and the line (CRLF included) is at most 107 bytes.
- `parse(line)` checks the fields strictly: single spaces, `TCP4` with dotted
  quads (no leading zeros), `TCP6` with IPv6 addresses, ports 0-65535 in decimal
  without leading zeros, or `UNKNOWN` (the sender could not tell; the fields
  after it are ignored and the peer's address stands).

Anything else raises `ProxyProtocolError`; the shell closes the connection.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LINE_BYTES = 107  # CRLF included (the longest TCP6 line)
PREFIX = b"PROXY "
_PORT = re.compile(rb"^(0|[1-9][0-9]{0,4})$")


class ProxyProtocolError(ValueError):
    """Not a valid PROXY v1 line: the connection is closed."""


@dataclass(frozen=True)
class ProxyHeader:
    """What the line says: for UNKNOWN the addresses are None (use the peer's)."""

    protocol: str  # TCP4 | TCP6 | UNKNOWN
    source_ip: str | None = None
    destination_ip: str | None = None
    source_port: int | None = None
    destination_port: int | None = None


def split_line(buffer: bytes) -> tuple[bytes, bytes] | None:
    """(line without CRLF, bytes after it), or None while the line is incomplete."""
    head = buffer[: len(PREFIX)]
    if PREFIX[: len(head)] != head:
        raise ProxyProtocolError(f"does not start with 'PROXY ': {head!r}")
    end = _line_end(buffer[:MAX_LINE_BYTES])
    if end is None:
        if len(buffer) >= MAX_LINE_BYTES:
            raise ProxyProtocolError(f"no CRLF within {MAX_LINE_BYTES} bytes")
        return None
    return buffer[:end], buffer[end + 2 :]


def _line_end(window: bytes) -> int | None:
    """Offset of the first CRLF; a LF without CR, or a CR followed by anything but LF, is refused."""
    for offset, byte in enumerate(window):
        if byte == 0x0A:
            raise ProxyProtocolError(f"bare LF at byte {offset}")
        if byte == 0x0D:
            if offset + 1 == len(window):
                return None  # the LF may be in the next chunk
            if window[offset + 1] != 0x0A:
                raise ProxyProtocolError(f"bare CR at byte {offset}")
            return offset
    return None


def parse(line: bytes) -> ProxyHeader:
    """The fields of one line (without its CRLF)."""
    if len(line) + 2 > MAX_LINE_BYTES:
        raise ProxyProtocolError(f"line longer than {MAX_LINE_BYTES} bytes")
    if not line.startswith(PREFIX):
        raise ProxyProtocolError("does not start with 'PROXY '")
    fields = line.split(b" ")
    if fields[1] == b"UNKNOWN":
        return ProxyHeader("UNKNOWN")
    if len(fields) != 6:
        raise ProxyProtocolError(f"expected 6 space-separated fields, found {len(fields)}")
    protocol = fields[1]
    if protocol == b"TCP4":
        family: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address] = ipaddress.IPv4Address
    elif protocol == b"TCP6":
        family = ipaddress.IPv6Address
    else:
        raise ProxyProtocolError(f"unknown protocol {protocol[:16]!r} (expected TCP4, TCP6 or UNKNOWN)")
    source, destination = (_address(family, field) for field in fields[2:4])
    source_port, destination_port = (_port(field) for field in fields[4:6])
    return ProxyHeader(protocol.decode(), source, destination, source_port, destination_port)


def _address(family: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address], field: bytes) -> str:
    try:
        if b"%" in field:
            raise ValueError("scoped address")
        return str(family(field.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError(f"not an {family.__name__[:4]} address: {field[:48]!r}") from None


def _port(field: bytes) -> int:
    if not _PORT.match(field) or int(field) > 65535:
        raise ProxyProtocolError(f"not a port (0-65535, no leading zeros): {field[:16]!r}")
    return int(field)


def format_line(header: ProxyHeader) -> bytes:
    """The line a sender writes (for tests and tools): the inverse of `parse`."""
    if header.protocol == "UNKNOWN":
        return b"PROXY UNKNOWN\r\n"
    fields = (header.protocol, header.source_ip, header.destination_ip, header.source_port, header.destination_port)
    return ("PROXY " + " ".join(str(f) for f in fields) + "\r\n").encode("ascii")
