"""Two OpenSSL settings Python's `ssl` has no call for: the server session cache mode and the ticket keys.

Theory of operation
-------------------
`ssl.SSLContext` wraps one OpenSSL `SSL_CTX`; libssl's own `SSL_CTX_ctrl` sets
what the module does not expose:

- `SSL_CTRL_SET_SESS_CACHE_MODE` with `SSL_SESS_CACHE_OFF`: no server-side
  session-ID cache (HAProxy's `tune.ssl.cachesize 0`), for full-handshake
  benchmarks;
- `SSL_CTRL_SET_TLSEXT_TICKET_KEYS`: the 80 bytes (16 name, 32 HMAC, 32 AES)
  that encrypt session tickets.  OpenSSL draws them at random per `SSL_CTX`,
  so a ticket would resume only on the context that issued it; loaded from one
  file, every worker and every context after a certificate reload resume each
  other's tickets (HAProxy's `tls-ticket-keys`).

The `SSL_CTX *` is the first field after the object header of CPython's
`PySSLContext` (Modules/_ssl.c); there is no supported way to reach it.  So
`_ssl_ctx` never trusts the layout: it reads the options back through
`SSL_CTX_get_options` and refuses (`OpenSslControlError`) unless they are the
context's own, before anything is written.  libssl is the one `_ssl` is linked
against (the same soname, so `dlopen` returns the loaded copy).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import ssl

SSL_CTRL_SET_SESS_CACHE_MODE = 44
SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58
SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
SSL_SESS_CACHE_OFF = 0
SSL_SESS_CACHE_SERVER = 2
TICKET_KEYS_BYTES = 80


class OpenSslControlError(Exception):
    """libssl cannot be reached safely from here; the message says why."""


@functools.cache
def _libssl() -> ctypes.CDLL:
    name = ctypes.util.find_library("ssl")
    if name is None:
        raise OpenSslControlError("libssl not found")
    lib = ctypes.CDLL(name)
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    return lib


def _ssl_ctx(context: ssl.SSLContext) -> ctypes.c_void_p:
    """The context's SSL_CTX pointer, checked by reading its options back twice (one option flipped)."""
    address = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    lib = _libssl()
    if not address or lib.SSL_CTX_get_options(address) != int(context.options):
        raise OpenSslControlError("this Python's ssl.SSLContext does not hold its SSL_CTX where expected")
    probe = ssl.OP_NO_COMPRESSION if ssl.OP_NO_COMPRESSION else ssl.OP_NO_TICKET
    context.options ^= probe
    try:
        moved = lib.SSL_CTX_get_options(address) != int(context.options)
    finally:
        context.options ^= probe
    if moved:
        raise OpenSslControlError("SSL_CTX options read back do not follow the context's")
    return ctypes.c_void_p(address)


def session_cache_off(context: ssl.SSLContext) -> None:
    """No server-side session-ID cache on this context."""
    _libssl().SSL_CTX_ctrl(_ssl_ctx(context), SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_OFF, None)


def set_ticket_keys(context: ssl.SSLContext, keys: bytes) -> None:
    """Encrypt and decrypt session tickets with `keys` (80 bytes)."""
    if len(keys) != TICKET_KEYS_BYTES:
        raise ValueError(f"ticket keys are {TICKET_KEYS_BYTES} bytes, not {len(keys)}")
    buffer = ctypes.create_string_buffer(keys, TICKET_KEYS_BYTES)
    done = _libssl().SSL_CTX_ctrl(_ssl_ctx(context), SSL_CTRL_SET_TLSEXT_TICKET_KEYS, TICKET_KEYS_BYTES, buffer)
    if done != 1:
        raise OpenSslControlError("libssl refused the ticket keys")


def ticket_keys(context: ssl.SSLContext) -> bytes:
    """The keys the context encrypts tickets with (tests compare contexts with it)."""
    buffer = ctypes.create_string_buffer(TICKET_KEYS_BYTES)
    _libssl().SSL_CTX_ctrl(_ssl_ctx(context), SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEYS_BYTES, buffer)
    return buffer.raw
