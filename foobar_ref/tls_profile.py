"""The site's TLS profile, Mozilla's intermediate, and the two files the launcher writes for the balancer.

Theory of operation
-------------------
Mozilla's intermediate configuration (guidelines 5.7, ssl-config-generator):
TLS 1.2 and 1.3; TLS 1.3 suites AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305;
TLS 1.2 only ECDHE with AEAD ciphers; key-exchange groups X25519, prime256v1,
secp384r1; the client's cipher order, not the server's.  (The optional DHE-RSA
suites are left out: the site's key is ECDSA, and they need a DH group.)

Python 3.11's `ssl` sets ciphers and versions but has no call for the group
list (`set_ecdh_curve` sets a single curve), and OpenSSL's defaults add
secp521r1, X448, ffdhe*.  The supported way is OpenSSL's own configuration:
a `system_default` section that OpenSSL applies to every SSL_CTX it creates
(`openssl_conf_text`).  OpenSSL reads its configuration once, when the library
initialises, and in a Python process that happens at the first use of
libcrypto (hashlib, cryptography, ...), long before a hop imports `ssl`:
changing OPENSSL_CONF from inside the process is silently too late (checked on
this OpenSSL 3.0).  So the launcher writes the file into the state folder and
names it in the balancer's environment only (`OPENSSL_CONF`, shown by
`foobar-ref status`); no other process reads it.  The file replaces the
system's openssl.cnf for that one process (Debian's sets nothing but
diagnostics).  The balancer proves at start that the list is in force
(balancer/tls.py, `profile_problems`).

The ticket key file (80 random bytes, mode 0600) lets every balancer worker,
and every context after a certificate reload, resume the tickets of the others.
It is kept across restarts and renewed by `make`/`rm -r` of the state folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
GROUPS = ("X25519", "prime256v1", "secp384r1")
ALPN = ("http/1.1",)
TICKET_KEYS_BYTES = 80  # OpenSSL's SSL_CTX_set_tlsext_ticket_keys: 16 name + 32 HMAC + 32 AES


def openssl_conf_text() -> str:
    return "\n".join(
        [
            "# OpenSSL configuration for the balancer only (OPENSSL_CONF in its environment), written by foobar-ref.",
            "# It fixes what Python's ssl cannot: the key-exchange groups of Mozilla's intermediate profile.",
            "openssl_conf = foobar_ref_init",
            "",
            "[foobar_ref_init]",
            "ssl_conf = foobar_ref_ssl",
            "",
            "[foobar_ref_ssl]",
            "system_default = foobar_ref_tls",
            "",
            "[foobar_ref_tls]",
            f"Groups = {':'.join(GROUPS)}",
            "MinProtocol = TLSv1.2",
            "",
        ]
    )


def write_openssl_conf(path: Path) -> Path:
    """Write (or rewrite) the balancer's OpenSSL configuration; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(openssl_conf_text(), encoding="ascii")
    partial.replace(path)
    return path


def ensure_ticket_keys(path: Path) -> Path:
    """80 random bytes, mode 0600 from the start; an existing file of the right size is kept."""
    if path.is_file() and path.stat().st_size == TICKET_KEYS_BYTES:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(secrets.token_bytes(TICKET_KEYS_BYTES))
    partial.replace(path)
    return path
