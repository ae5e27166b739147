"""lb-01's TLS: Mozilla's intermediate profile, resumption, ALPN, and a certificate reload on SIGHUP.

Theory of operation
-------------------
`server_context` builds one `ssl.SSLContext` with the profile of
foobar_ref/tls_profile.py: TLS 1.2 and 1.3 only, the intermediate ciphers, the
client's order (`OP_CIPHER_SERVER_PREFERENCE` cleared), no compression, no
renegotiation (`OP_NO_RENEGOTIATION`: a client's renegotiation request gets a
no_renegotiation alert), ALPN `http/1.1` only (a client offering only `h2`
gets no ALPN, never h2).  The key-exchange groups come from the OpenSSL
configuration the launcher names in OPENSSL_CONF (see tls_profile.py for why
that is the way); `profile_problems` proves at start they are in force, with
two in-memory handshakes (a client offering only secp521r1 must fail, one
offering prime256v1 must pass), and says what is wrong otherwise.

Resumption (the topology's `tls` table):
- TLS 1.2: session IDs from OpenSSL's server cache (per context, so per
  process) and RFC 5077 tickets; TLS 1.3: tickets (two per handshake).
  OpenSSL drops a cached session whose connection ended without a clean TLS
  close; a client's bare TCP close (the common case) counts as clean here
  (`OP_IGNORE_UNEXPECTED_EOF`), and the shell sends close_notify on its side.
- Ticket keys come from a shared file when given (`ticket_keys_file`), so every
  worker and every context after a reload accepts every ticket; without it
  each context draws its own.
- `session_tickets = false`: OP_NO_TICKET and no TLS 1.3 tickets;
  `session_cache = false`: no session-ID cache (openssl_ctl.py).  Both off is
  HAProxy's `no-tls-tickets` + `tune.ssl.cachesize 0`: every handshake full.

Reload: `Certificates.reload()` builds a whole new context from the files and
swaps it in only when that worked, so a broken file leaves the old chain in
service.  Connections already open keep the SSL object (and the context) they
were made with; each new handshake takes `Certificates.context` at accept
time.  `reload_on_sighup` runs it on every SIGHUP and reports each outcome.
"""

from __future__ import annotations

import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from foobar_ref import tls_profile
from foobar_ref.balancer import openssl_ctl
from foobar_ref.topology_balancer import TlsSettings

DEFAULT_SETTINGS = TlsSettings()
TLS13_TICKETS = 2  # OpenSSL's default: two tickets per full handshake, one per resumption


class TlsSetupError(Exception):
    """The certificate, key or ticket keys cannot be used; the message names the file."""


def server_context(
    cert_file: Path, key_file: Path, settings: TlsSettings = DEFAULT_SETTINGS, ticket_keys_file: Path | None = None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(":".join(tls_profile.TLS12_CIPHERS))
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    # Most clients close without close_notify; OpenSSL 3 would take that for an error and drop the session from
    # its cache (no TLS 1.2 session-ID resumption).  HTTP/1.1 framing catches a truncated message anyway.
    context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # Mozilla: the client picks among equals
    context.set_alpn_protocols(list(tls_profile.ALPN))
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as err:
        raise TlsSetupError(f"cannot load --cert {cert_file} / --key {key_file}: {err}") from None
    _resumption(context, settings, ticket_keys_file)
    return context


def _resumption(context: ssl.SSLContext, settings: TlsSettings, ticket_keys_file: Path | None) -> None:
    try:
        if not settings.session_tickets:
            context.options |= ssl.OP_NO_TICKET
            context.num_tickets = 0
        elif ticket_keys_file is not None:
            openssl_ctl.set_ticket_keys(context, _read_ticket_keys(ticket_keys_file))
        else:
            context.num_tickets = TLS13_TICKETS
        if not settings.session_cache:
            openssl_ctl.session_cache_off(context)
    except openssl_ctl.OpenSslControlError as err:
        raise TlsSetupError(f"cannot set session resumption as asked: {err}") from None


def _read_ticket_keys(path: Path) -> bytes:
    try:
        keys = path.read_bytes()
    except OSError as err:
        raise TlsSetupError(f"cannot read ticket keys {path}: {err.strerror or err}") from None
    if len(keys) != tls_profile.TICKET_KEYS_BYTES:
        raise TlsSetupError(f"ticket keys {path}: expected {tls_profile.TICKET_KEYS_BYTES} bytes, found {len(keys)}")
    return keys


# --- is the profile in force? ----------------------------------------------------------------


def profile_problems(context: ssl.SSLContext) -> list[str]:
    """What differs from the intermediate profile's groups in this process (empty: all is well)."""
    problems = []
    if _handshake(context, "secp521r1") is None:
        problems.append(
            "secp521r1 is accepted: the group list is OpenSSL's default (start the balancer with "
            "OPENSSL_CONF naming the file foobar-ref writes, see foobar_ref/tls_profile.py)"
        )
    refused = _handshake(context, "prime256v1")
    if refused is not None:
        problems.append(f"prime256v1 is refused: {refused}")
    return problems


def _handshake(server: ssl.SSLContext, group: str) -> str | None:
    """An in-memory handshake with a client offering only `group`; None when it worked, else why not."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.set_ecdh_curve(group)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = [
        (client.wrap_bio(to_client, from_client), from_client, to_server),
        (server.wrap_bio(to_server, from_server, server_side=True), from_server, to_client),
    ]
    for _ in range(8):
        for end, outgoing, peer_incoming in ends:
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as err:
                return err.reason or str(err)
            peer_incoming.write(outgoing.read())
        if all(end.version() is not None for end, _, _ in ends):
            return None
    return "no handshake after 8 rounds"


# --- reload ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reloaded:
    generation: int
    error: str | None  # None: the new chain is in service


class Certificates:
    """The context new handshakes use, rebuilt from the files on demand."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        settings: TlsSettings = DEFAULT_SETTINGS,
        ticket_keys_file: Path | None = None,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.settings = settings
        self.ticket_keys_file = ticket_keys_file
        self.context = server_context(cert_file, key_file, settings, ticket_keys_file)
        self.generation = 1

    def reload(self) -> Reloaded:
        try:
            context = server_context(self.cert_file, self.key_file, self.settings, self.ticket_keys_file)
        except TlsSetupError as err:
            return Reloaded(self.generation, str(err))
        self.context = context
        self.generation += 1
        return Reloaded(self.generation, None)

    async def reload_on_sighup(self, report: Callable[[Reloaded], None]) -> None:
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                report(self.reload())
