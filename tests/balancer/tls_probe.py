"""Hand-built TLS ClientHellos, for offers no client library will make (RC4, EXPORT, SSLv3, ...).

`client_hello(version, suites)` returns a whole TLS record; `server_verdict(sock)`
reads the server's first record and says what it was: a ServerHello (with the
suite chosen), an alert (with its description code), or a close.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
from dataclasses import dataclass

TLS_1_0, TLS_1_1, TLS_1_2, SSL_3 = 0x0301, 0x0302, 0x0303, 0x0300
ALERT_HANDSHAKE_FAILURE = 40
ALERT_PROTOCOL_VERSION = 70
ALERT_UNRECOGNIZED_NAME = 112
_GROUPS = (0x001D, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1
_SIGNATURES = (0x0403, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501)
MAX_RECORD_BYTES = 5 + 16384 + 2048


def _vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def _extension(kind: int, data: bytes) -> bytes:
    return struct.pack("!H", kind) + _vector(data, 2)


def client_hello(version: int, suites: list[int], server_name: str | None = "www.foobar.com") -> bytes:
    """One TLS record holding a ClientHello that offers `version` (no supported_versions: no TLS 1.3)."""
    extensions = [
        _extension(0x000A, _vector(b"".join(struct.pack("!H", g) for g in _GROUPS), 2)),
        _extension(0x000B, _vector(b"\x00", 1)),  # ec_point_formats: uncompressed
        _extension(0x000D, _vector(b"".join(struct.pack("!H", s) for s in _SIGNATURES), 2)),
        _extension(0xFF01, _vector(b"", 1)),  # renegotiation_info, empty: a first handshake
    ]
    if server_name is not None:
        name = b"\x00" + _vector(server_name.encode("ascii"), 2)
        extensions.append(_extension(0x0000, _vector(name, 2)))
    body = struct.pack("!H", version) + os.urandom(32) + _vector(b"", 1)
    body += _vector(b"".join(struct.pack("!H", s) for s in suites), 2) + _vector(b"\x00", 1)
    body += _vector(b"".join(extensions), 2)
    handshake = b"\x01" + _vector(body, 3)
    return b"\x16" + struct.pack("!H", min(version, TLS_1_0)) + _vector(handshake, 2)


@dataclass(frozen=True)
class Verdict:
    kind: str  # server_hello | alert | closed | other
    code: int | None = None  # the chosen suite, or the alert description


def server_verdict(sock: socket.socket) -> Verdict:
    """The server's first record, as far as it tells whether the offer was taken."""
    header = _read_exactly(sock, 5)
    if len(header) < 5:
        return Verdict("closed")
    kind, _, length = struct.unpack("!BHH", header)
    body = _read_exactly(sock, min(length, MAX_RECORD_BYTES))
    if kind == 0x15 and len(body) >= 2:
        return Verdict("alert", body[1])
    if kind == 0x16 and body[:1] == b"\x02" and len(body) >= 39:
        session_id_bytes = body[38]
        suite_at = 39 + session_id_bytes
        return Verdict("server_hello", struct.unpack("!H", body[suite_at : suite_at + 2])[0])
    return Verdict("other", kind)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    try:
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def request_then_half_close(sock: socket.socket, context: ssl.SSLContext, server_name: str, data: bytes) -> bytes:
    """TLS over memory BIOs on a plain socket, so the write side can be shut with a bare FIN (no close_notify).

    Returns every plaintext byte the server sent until it closed.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake") from None
            incoming.write(chunk)
    tls.write(data)
    sock.sendall(outgoing.read())
    sock.shutdown(socket.SHUT_WR)
    plain = b""
    while chunk := sock.recv(65536):
        incoming.write(chunk)
        plain += _drain(tls)
    return plain


def _drain(tls: ssl.SSLObject) -> bytes:
    data = b""
    while True:
        try:
            piece = tls.read(65536)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            return data
        if not piece:
            return data
        data += piece
