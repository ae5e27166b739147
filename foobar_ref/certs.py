"""A local certificate authority and the site's certificate, made by the project.

Theory of operation
-------------------
Browsers trust a server's certificate when a chain of signatures leads from it to
a CA they already trust.  Nobody public will sign a certificate for a name that
resolves to 127.0.1.1, so the project makes its own tiny CA once and asks the
learner to trust it (certs/README.md shows how).  Everything lives in
``<state>/certs`` (mode 0700), never in the repository:

    ca.crt    the CA certificate: the file a browser or `curl --cacert` trusts
    ca.key    the CA's private key (mode 0600): it signs new site certificates
    site.crt  the leaf for the site's names, followed by ca.crt (the chain lb-01 sends)
    site.key  the leaf's private key (mode 0600), read by lb-01 only

Both keys are ECDSA P-256.  The CA is limited by a critical *name constraint* to
the site's domain: even if its key leaked, a browser that trusts it would refuse
a certificate it signed for any other domain.  The leaf lives 90 days (browsers
refuse leaves valid for more than 398 days) and is re-issued by `ensure` when it
is missing, expires within `RENEW_BEFORE`, was not signed by the current CA, or
does not cover the names asked for.  The CA is kept as long as it is valid and
its constraint covers the names, so a browser that trusts it keeps trusting the
re-issued leaves.  `make` starts over with a new CA.

Private keys are written to a temporary file created with mode 0600 from the
start (``os.open(..., 0o600)``), then renamed into place: there is no moment
when a key sits on disk readable by others, and no half-written file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("www.foobar.com", "foobar.com")
CA_NAME = "foobar-ref local CA"
CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=90)
MAX_LEAF_LIFETIME = dt.timedelta(days=398)  # CA/Browser Forum limit browsers enforce
RENEW_BEFORE = dt.timedelta(days=30)  # re-issue the leaf when it has less left than this
CLOCK_SKEW = dt.timedelta(minutes=5)  # not-before set this far in the past
KEY_MODE = 0o600
CERT_MODE = 0o644
FOLDER_MODE = 0o700


class CertError(Exception):
    """Certificates that cannot be made or read; the message says which file and why."""


@dataclass(frozen=True)
class CertPaths:
    """The four files of one certificate folder (``<state>/certs``)."""

    folder: Path

    @classmethod
    def of_state(cls, state_dir: str | Path) -> CertPaths:
        return cls(Path(state_dir) / "certs")

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def site_cert(self) -> Path:
        return self.folder / "site.crt"

    @property
    def site_key(self) -> Path:
        return self.folder / "site.key"


# --- public API -------------------------------------------------------------


def ensure(state_dir: str | Path, names: Sequence[str] = DEFAULT_NAMES, now: dt.datetime | None = None) -> CertPaths:
    """Make the CA and the leaf when missing, expiring or not covering `names`; return their paths."""
    names = _check_names(names)
    now = now or _utcnow()
    paths = CertPaths.of_state(state_dir)
    _make_folder(paths.folder)
    ca = _load_ca(paths, names, now)
    if ca is None:
        return make(state_dir, names, now)
    if not _leaf_is_good(paths, ca[1], names, now):
        _write_leaf(paths, *ca, names, now)
    return paths


def make(state_dir: str | Path, names: Sequence[str] = DEFAULT_NAMES, now: dt.datetime | None = None) -> CertPaths:
    """Make a new CA and a new leaf, replacing whatever was there."""
    names = _check_names(names)
    now = now or _utcnow()
    paths = CertPaths.of_state(state_dir)
    _make_folder(paths.folder)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue_ca(ca_key, names, now)
    _write_private(paths.ca_key, _key_pem(ca_key))
    _write_public(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_leaf(paths, ca_key, ca_cert, names, now)
    return paths


def describe(paths: CertPaths, now: dt.datetime | None = None) -> list[str]:
    """Lines for `foobar-ref certs`: what each certificate says and where its key is."""
    now = now or _utcnow()
    lines: list[str] = [f"folder   {paths.folder}  (mode {_mode(paths.folder)})"]
    for title, cert_path, key_path in (("CA", paths.ca_cert, paths.ca_key), ("site", paths.site_cert, paths.site_key)):
        lines.append(f"{title:<8} {cert_path}")
        try:
            cert = _read_certs(cert_path)[0]
        except CertError as err:
            lines.append(f"  problem    {err}")
            continue
        lines += _describe_cert(cert, now)
        lines.append(f"  key        {_key_type(cert)}, {key_path} (mode {_mode(key_path)})")
    lines.append(f"trust the CA in a browser or curl: see certs/README.md (curl --cacert {paths.ca_cert})")
    return lines


# --- issuing ----------------------------------------------------------------


def _issue_ca(key: ec.EllipticCurvePrivateKey, names: Sequence[str], now: dt.datetime) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "foobar-ref"),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
        ]
    )
    permitted = [x509.DNSName(d) for d in _constraint_domains(names)]
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
        .add_extension(ski, critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _issue_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now: dt.datetime,
) -> x509.Certificate:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + LEAF_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_leaf(
    paths: CertPaths,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: Sequence[str],
    now: dt.datetime,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _issue_leaf(ca_key, ca_cert, key, names, now)
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    _write_private(paths.site_key, _key_pem(key))
    _write_public(paths.site_cert, chain)


def _constraint_domains(names: Iterable[str]) -> list[str]:
    """The fewest names whose subtrees hold every name: (www.foobar.com, foobar.com) -> [foobar.com]."""
    unique = sorted(set(names), key=lambda n: (n.count("."), n))
    kept: list[str] = []
    for name in unique:
        if not any(_within(name, domain) for domain in kept):
            kept.append(name)
    return kept


def _within(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


# --- checking what is on disk -------------------------------------------------


def _load_ca(
    paths: CertPaths, names: Sequence[str], now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """The CA key and certificate if both are usable for `names` at `now`; None means make a new one."""
    try:
        cert = _read_certs(paths.ca_cert)[0]
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    except (CertError, OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc - RENEW_BEFORE:
        return None
    try:
        constraint = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return key, cert
    permitted = [d.value for d in constraint.permitted_subtrees or [] if isinstance(d, x509.DNSName)]
    if not all(any(_within(n, d) for d in permitted) for n in names):
        return None
    return key, cert


def _leaf_is_good(paths: CertPaths, ca_cert: x509.Certificate, names: Sequence[str], now: dt.datetime) -> bool:
    try:
        leaf = _read_certs(paths.site_cert)[0]
        key = serialization.load_pem_private_key(paths.site_key.read_bytes(), password=None)
        leaf.verify_directly_issued_by(ca_cert)
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (CertError, OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if key.public_key() != leaf.public_key():
        return False
    if not set(names) <= set(sans.get_values_for_type(x509.DNSName)):
        return False
    return leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc - RENEW_BEFORE


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise CertError(f"{path}: missing (foobar-ref certs makes it)") from None
    except OSError as err:
        raise CertError(f"{path}: cannot read: {err.strerror}") from None
    except ValueError as err:
        raise CertError(f"{path}: not a PEM certificate: {err}") from None
    return certs


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(n.strip().lower().rstrip(".") for n in names)
    if not cleaned:
        raise CertError("no names to certify")
    for name in cleaned:
        labels = name.split(".")
        if len(name) > 253 or not all(0 < len(label) <= 63 for label in labels) or _is_ip(name):
            raise CertError(f"{name!r} is not a DNS name a certificate can hold")
    return cleaned


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# --- describing ---------------------------------------------------------------


def _describe_cert(cert: x509.Certificate, now: dt.datetime) -> list[str]:
    left = round((cert.not_valid_after_utc - now).total_seconds() / 86400)
    state = f"{left} days left" if left >= 0 else "EXPIRED"
    lines = [
        f"  subject    {cert.subject.rfc4514_string()}",
        f"  issuer     {cert.issuer.rfc4514_string()}",
        f"  valid      {cert.not_valid_before_utc:%Y-%m-%d %H:%M} -> {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        f" ({state})",
    ]
    extensions = {type(e.value): e.value for e in cert.extensions}
    san = extensions.get(x509.SubjectAlternativeName)
    if isinstance(san, x509.SubjectAlternativeName):
        lines.append(f"  names      {', '.join(san.get_values_for_type(x509.DNSName))}")
    limits = extensions.get(x509.NameConstraints)
    if isinstance(limits, x509.NameConstraints):
        domains = ", ".join(str(d.value) for d in limits.permitted_subtrees or [])
        lines.append(f"  limited to {domains} (name constraint)")
    lines.append(f"  sha256     {_fingerprint(cert, hashes.SHA256())}")
    lines.append(f"  sha1       {_fingerprint(cert, hashes.SHA1())}")  # browsers still show it
    return lines


def _fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(algorithm))


def _key_type(cert: x509.Certificate) -> str:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(public.curve.name, public.curve.name)
        return f"ECDSA {curve}"
    return type(public).__name__


def _mode(path: Path) -> str:
    try:
        return f"{path.stat().st_mode & 0o777:04o}"
    except OSError:
        return "missing"


# --- writing --------------------------------------------------------------------


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_folder(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=FOLDER_MODE)
    except FileExistsError:
        if not folder.is_dir():
            raise CertError(f"{folder}: exists and is not a folder") from None
        if folder.stat().st_mode & 0o077:
            folder.chmod(FOLDER_MODE)  # a folder (not a key): tightening it leaks nothing


def _write_private(path: Path, data: bytes) -> None:
    _write_atomic(path, data, KEY_MODE)


def _write_public(path: Path, data: bytes) -> None:
    _write_atomic(path, data, CERT_MODE)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write to a new file created with `mode`, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
