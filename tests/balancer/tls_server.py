"""A TLS keep-alive HTTP server built on balancer/tls.py, run as its own process by the TLS tests.

    python -m tests.balancer.tls_server --listen IP:PORT --cert FILE --key FILE
        [--ticket-keys FILE] [--no-tickets] [--no-session-cache]

It does for TLS what the balancer's shell will do: one `Certificates`, each
handshake with `certificates.context` taken at accept, `reload_on_sighup`, a
READY line, then every request is answered `generation N` (the context that
made its connection).  Reload outcomes are printed as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
from pathlib import Path

import trio

from foobar_ref.balancer.tls import Certificates, TlsSetupError, profile_problems
from foobar_ref.runtime import http_trio
from foobar_ref.topology_balancer import TlsSettings


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def serve(listener: trio.SocketListener, certificates: Certificates) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        generation = certificates.generation
        tls = trio.SSLStream(stream, certificates.context, server_side=True, https_compatible=True)
        try:
            with trio.fail_after(5.0):
                await tls.do_handshake()
            body = f"generation {generation}".encode()
            async for exchange in http_trio.server(tls):
                await exchange.respond(200, [(b"Content-Type", b"text/plain")], body)
            with trio.move_on_after(1.0):
                await tls.aclose()  # close_notify: OpenSSL drops the cached session of an unclean close
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, ssl.SSLError):
            pass
        finally:
            await trio.aclose_forcefully(tls)

    await trio.serve_listeners(handle, [listener])


async def main(args: argparse.Namespace) -> None:
    settings = TlsSettings(session_tickets=not args.no_tickets, session_cache=not args.no_session_cache)
    try:
        certificates = Certificates(args.cert, args.key, settings, args.ticket_keys)
    except TlsSetupError as err:
        print(f"tls_server: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    ip, port = args.listen.rsplit(":", 1)
    listener = (await trio.open_tcp_listeners(int(port), host=ip))[0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, listener, certificates)
        nursery.start_soon(certificates.reload_on_sighup, lambda r: say(event="reloaded", **r.__dict__))
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            say(event="profile", problems=profile_problems(certificates.context))
            print("READY", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--ticket-keys", type=Path)
    parser.add_argument("--no-tickets", action="store_true")
    parser.add_argument("--no-session-cache", action="store_true")
    trio.run(main, parser.parse_args())
