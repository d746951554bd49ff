"""Node identities: a private key and a self-signed X.509 certificate, pinned by fingerprint.

Peers authenticate each other by the SHA-256 fingerprint of the DER certificate, exchanged
out of band (``rainbridge node init`` prints it, ``rainbridge peer add`` takes it): no
certificate authority is trusted, so none can be subverted to impersonate a peer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rainbridge.errors import AuthenticationError, ConfigError

KEY_FILE = "node.key"
CERT_FILE = "node.crt"


def fingerprint_der(der: bytes) -> str:
    """SHA-256 of a DER certificate, lowercase hex (64 characters)."""
    return hashlib.sha256(der).hexdigest()


def fingerprint_pem(pem: bytes | str) -> str:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"not a PEM certificate: {exc}") from None
    return fingerprint_der(cert.public_bytes(serialization.Encoding.DER))


def normalise_fingerprint(fp: str) -> str:
    """Accepts ``AB:CD:...`` or plain hex; returns lowercase hex, or raises ConfigError."""
    clean = fp.replace(":", "").strip().lower()
    if len(clean) != 64 or any(c not in "0123456789abcdef" for c in clean):
        raise ConfigError("a fingerprint is 64 hex digits (SHA-256 of the peer's certificate)")
    return clean


def same_fingerprint(a: str, b: str) -> bool:
    return hmac.compare_digest(normalise_fingerprint(a), normalise_fingerprint(b))


def der_to_pem(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class TlsIdentity:
    """A node's certificate and key files, and the certificate's fingerprint."""

    cert_path: Path
    key_path: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_path.read_text()

    @property
    def fingerprint(self) -> str:
        return fingerprint_pem(self.cert_pem)

    @classmethod
    def load(cls, directory: str | Path) -> TlsIdentity:
        d = Path(directory)
        ident = cls(d / CERT_FILE, d / KEY_FILE)
        if not ident.cert_path.is_file() or not ident.key_path.is_file():
            raise ConfigError(f"{d}: no node identity here (run `rainbridge node init`)")
        return ident


def create_identity(
    directory: str | Path,
    name: str,
    *,
    now: dt.datetime | None = None,
    days: int = 730,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
) -> TlsIdentity:
    """Generate an ECDSA P-256 key and a self-signed certificate for node ``name``.

    ``now`` is injectable so tests can make certificates that are expired or not yet valid.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Rainbridge node"),
        ]
    )
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path = d / KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path = d / CERT_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsIdentity(cert_path, key_path)


def check_pinned(der: bytes | None, expected: str, peer: str) -> None:
    """Refuse unless the certificate ``der`` has the pinned fingerprint ``expected``."""
    if not der:
        raise AuthenticationError(f"peer {peer!r} presented no certificate")
    if not same_fingerprint(fingerprint_der(der), expected):
        raise AuthenticationError(
            f"peer {peer!r} presented a certificate that is not the one pinned for it"
        )
