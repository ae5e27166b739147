"""The local CA and the site certificate: contents, file modes, renewal, and a real TLS handshake on 127.0.54.1."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from foobar_ref import certs

NAMES = ("www.foobar.com", "foobar.com")
SERVER_IP = "127.0.54.1"
CLIENT_IP = "127.0.54.11"
IO_TIMEOUT_S = 3.0


def load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def paths(tmp_path: Path) -> certs.CertPaths:
    return certs.ensure(tmp_path / "state", NAMES)


def test_files_live_in_the_state_folder_with_private_modes(paths: certs.CertPaths, tmp_path: Path) -> None:
    assert paths.folder == tmp_path / "state" / "certs"
    assert mode(paths.folder) == 0o700
    assert mode(paths.ca_key) == 0o600 and mode(paths.site_key) == 0o600
    assert mode(paths.ca_cert) == 0o644 and mode(paths.site_cert) == 0o644
    assert sorted(p.name for p in paths.folder.iterdir()) == ["ca.crt", "ca.key", "site.crt", "site.key"]


def test_keys_are_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        made = certs.make(tmp_path, NAMES)
    finally:
        os.umask(previous)
    assert mode(made.site_key) == 0o600 and mode(made.ca_key) == 0o600 and mode(made.folder) == 0o700


def test_the_leaf_is_a_server_certificate_for_the_names(paths: certs.CertPaths) -> None:
    leaf, ca_in_chain = load(paths.site_cert)
    ca = load(paths.ca_cert)[0]
    assert ca_in_chain == ca  # site.crt is leaf then CA
    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == list(
        NAMES
    )
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert dt.timedelta(days=30) < lifetime <= dt.timedelta(days=398)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) and leaf.public_key().curve.name == "secp256r1"
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.key_identifier
    leaf.verify_directly_issued_by(ca)


def test_the_ca_may_sign_only_leaves_for_the_site_domain(paths: certs.CertPaths) -> None:
    ca = load(paths.ca_cert)[0]
    ext = ca.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    names = ext.get_extension_for_class(x509.NameConstraints)
    assert names.critical and [d.value for d in names.value.permitted_subtrees or []] == ["foobar.com"]
    assert "foobar-ref local CA" in ca.subject.rfc4514_string()
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_ensure_keeps_valid_certificates(paths: certs.CertPaths, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in (paths.ca_cert, paths.ca_key, paths.site_cert, paths.site_key)}
    again = certs.ensure(tmp_path / "state", NAMES)
    assert again == paths
    assert {p: p.read_bytes() for p in before} == before


def test_ensure_reissues_an_expiring_leaf_under_the_same_ca(tmp_path: Path) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    old = certs.make(tmp_path, NAMES, now=long_ago)
    ca_before, leaf_before = old.ca_cert.read_bytes(), load(old.site_cert)[0]
    renewed = certs.ensure(tmp_path, NAMES)
    leaf = load(renewed.site_cert)[0]
    assert renewed.ca_cert.read_bytes() == ca_before  # the CA a browser trusts is kept
    assert leaf.serial_number != leaf_before.serial_number
    assert leaf.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=60)


def test_ensure_reissues_when_the_names_change(paths: certs.CertPaths, tmp_path: Path) -> None:
    ca_before = paths.ca_cert.read_bytes()
    certs.ensure(tmp_path / "state", ("api.foobar.com",) + NAMES)
    leaf = load(paths.site_cert)[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "api.foobar.com" in sans.get_values_for_type(x509.DNSName)
    assert paths.ca_cert.read_bytes() == ca_before  # still inside the CA's foobar.com constraint
    certs.ensure(tmp_path / "state", ("www.example.org",))
    assert paths.ca_cert.read_bytes() != ca_before  # outside it: a new CA


def test_ensure_replaces_a_leaf_signed_by_someone_else(paths: certs.CertPaths, tmp_path: Path) -> None:
    stranger = certs.make(tmp_path / "other", NAMES)
    paths.site_cert.write_bytes(stranger.site_cert.read_bytes())
    paths.site_key.write_bytes(stranger.site_key.read_bytes())
    certs.ensure(tmp_path / "state", NAMES)
    load(paths.site_cert)[0].verify_directly_issued_by(load(paths.ca_cert)[0])


def test_make_starts_over_with_a_new_ca(paths: certs.CertPaths, tmp_path: Path) -> None:
    ca_before = paths.ca_cert.read_bytes()
    certs.make(tmp_path / "state", NAMES)
    assert paths.ca_cert.read_bytes() != ca_before


def test_names_that_cannot_be_certified_are_refused(tmp_path: Path) -> None:
    for bad in [(), ("127.0.1.1",), ("a..b",), ("x" * 64 + ".com",)]:
        with pytest.raises(certs.CertError):
            certs.ensure(tmp_path, bad)


def test_describe_tells_names_validity_key_and_fingerprints(paths: certs.CertPaths) -> None:
    text = "\n".join(certs.describe(paths))
    leaf = load(paths.site_cert)[0]
    fingerprint = ":".join(f"{b:02X}" for b in leaf.fingerprint(hashes.SHA256()))
    assert "names      www.foobar.com, foobar.com" in text
    assert "CN=foobar-ref local CA" in text and "limited to foobar.com" in text
    assert fingerprint in text and "ECDSA P-256" in text and "(mode 0600)" in text
    assert "days left" in text and "EXPIRED" not in text


def test_describe_reports_missing_files_without_failing(tmp_path: Path) -> None:
    lines = certs.describe(certs.CertPaths.of_state(tmp_path))
    assert sum("missing" in line for line in lines) >= 2


# --- the chain in a real TLS handshake ------------------------------------------------


@contextmanager
def tls_server(paths: certs.CertPaths) -> Iterator[tuple[str, int]]:
    """Serve one TLS connection on 127.0.54.1 with site.crt / site.key; it answers b'ok'."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths.site_cert, paths.site_key)
    listener = socket.create_server((SERVER_IP, 0))
    listener.settimeout(IO_TIMEOUT_S)

    def serve() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(IO_TIMEOUT_S)
            with context.wrap_socket(raw, server_side=True) as tls:
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError):
            return  # the client refused our certificate: that is what some tests want

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        thread.join(IO_TIMEOUT_S)
        listener.close()


def handshake(address: tuple[str, int], ca_file: Path, name: str) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection(address, IO_TIMEOUT_S, source_address=(CLIENT_IP, 0))
    with raw, context.wrap_socket(raw, server_hostname=name) as tls:
        return tls.recv(16)


@pytest.mark.parametrize("name", NAMES)
def test_the_chain_verifies_with_the_ca(paths: certs.CertPaths, name: str) -> None:
    with tls_server(paths) as address:
        assert handshake(address, paths.ca_cert, name) == b"ok"


def test_another_ca_fails_verification(paths: certs.CertPaths, tmp_path: Path) -> None:
    other = certs.make(tmp_path / "other", NAMES)
    with (
        tls_server(paths) as address,
        pytest.raises(
            ssl.SSLCertVerificationError,
            match="certificate verify failed: self-signed certificate in certificate chain",
        ),
    ):
        handshake(address, other.ca_cert, "www.foobar.com")


def test_a_name_outside_the_certificate_fails_verification(paths: certs.CertPaths) -> None:
    with tls_server(paths) as address, pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(address, paths.ca_cert, "shop.foobar.com")


def test_the_name_constraint_holds_even_for_a_leaf_the_ca_signs(paths: certs.CertPaths, tmp_path: Path) -> None:
    """A leaf for another domain, signed with the real CA key, is refused by the verifier."""
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = load(paths.ca_cert)[0]
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    rogue = certs._issue_leaf(ca_key, ca, key, ("bank.example",), now)
    forged = certs.CertPaths(tmp_path / "forged")
    forged.folder.mkdir()
    forged.site_cert.write_bytes(rogue.public_bytes(serialization.Encoding.PEM) + paths.ca_cert.read_bytes())
    forged.site_key.write_bytes(certs._key_pem(key))
    with tls_server(forged) as address, pytest.raises(ssl.SSLCertVerificationError, match="subtree"):
        handshake(address, paths.ca_cert, "bank.example")
