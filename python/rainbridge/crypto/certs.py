"""Node identities: a private key and a self-signed X.509 certificate, pinned by fingerprint.

Peers authenticate each other by the SHA-256 fingerprint of the DER certificate, exchanged
out of band (``rainbridge node init`` prints it, ``rainbridge peer add`` takes it): no
certificate authority is trusted, so none can be subverted to impersonate a peer.

What this protects against: impersonation by anyone without the pinned certificate's private
key (a CA-issued certificate for the same name is worthless here); a private key readable by
other local users (written 0600, atomically, never world-readable even for an instant); a
mismatched or unreadable key pair (refused when loading, with a message, instead of an
opaque TLS error); stale identities (certificates carry a validity period, checked by both
ends of every connection). Keys are ECDSA P-256, which every OpenSSL build negotiates in TLS
1.3 (Ed25519 certificates are not accepted by all of them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rainbridge.audit import verify_ledger as _verifier
from rainbridge.errors import AuthenticationError, ConfigError

KEY_FILE = "node.key"
#: the ledger-key extension's OID, shared with the stand-alone verifier
LEDGER_KEY_OID = _verifier.LEDGER_KEY_OID
CERT_FILE = "node.crt"


def fingerprint_der(der: bytes) -> str:
    """SHA-256 of a DER certificate, lowercase hex (64 characters)."""
    return hashlib.sha256(der).hexdigest()


def fingerprint_pem(pem: bytes | str) -> str:
    """SHA-256 fingerprint of a PEM certificate; ``ConfigError`` if it is not one."""
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
    """Whether two fingerprints (any accepted spelling) are equal; constant time."""
    return hmac.compare_digest(normalise_fingerprint(a), normalise_fingerprint(b))


def der_to_pem(der: bytes) -> str:
    """PEM text of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class TlsIdentity:
    """A node's certificate and key files, and the certificate's fingerprint."""

    cert_path: Path
    key_path: Path
    #: the password of an encrypted key file (derived from the node's master key)
    key_password: bytes | None = None

    @property
    def cert_pem(self) -> str:
        return self.cert_path.read_text()

    @property
    def fingerprint(self) -> str:
        return fingerprint_pem(self.cert_pem)

    @property
    def not_valid_after(self) -> dt.datetime:
        """When the certificate expires (UTC)."""
        return _load_pem_cert(self.cert_path.read_bytes(), self.cert_path).not_valid_after_utc

    @classmethod
    def load(cls, directory: str | Path, key_password: bytes | None = None) -> TlsIdentity:
        """The identity in ``directory`` (``node.crt`` and ``node.key``), checked.

        ``key_password`` opens an encrypted key file (see :mod:`rainbridge.node.keys`).

        Raises
        ------
        ConfigError
            The files are missing or unreadable, or the key does not belong to the certificate.
        """
        d = Path(directory)
        ident = cls(d / CERT_FILE, d / KEY_FILE, key_password)
        if not ident.cert_path.is_file() or not ident.key_path.is_file():
            raise ConfigError(f"{d}: no node identity here (run `rainbridge node init`)")
        cert = _load_pem_cert(ident.cert_path.read_bytes(), ident.cert_path)
        try:
            key = serialization.load_pem_private_key(ident.key_path.read_bytes(), key_password)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{ident.key_path}: cannot open the node's private key "
                f"({'wrong master key?' if key_password else 'it may need the master key'})"
            ) from None
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
            raise ConfigError(
                f"{ident.key_path} is not the key of {ident.cert_path}; restore the pair "
                "or create a new identity (and have peers pin its fingerprint)"
            )
        return ident


def _load_pem_cert(data: bytes, where: object) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{where}: not a PEM certificate ({exc})") from None


def check_validity(der: bytes, peer: str, *, now: dt.datetime | None = None) -> None:
    """Refuse a certificate outside its validity period (``AuthenticationError``).

    OpenSSL checks this too when the certificate is in its trust store; this check also
    covers fingerprint-only pinning and gives a message that says what is wrong.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise AuthenticationError(f"peer {peer!r} presented an unreadable certificate") from None
    now = now or dt.datetime.now(dt.UTC)
    if now > cert.not_valid_after_utc:
        raise AuthenticationError(
            f"peer {peer!r} presented a certificate that expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; it must create a new identity"
        )
    if now < cert.not_valid_before_utc:
        raise AuthenticationError(
            f"peer {peer!r} presented a certificate not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check both clocks)"
        )


def create_identity(
    directory: str | Path,
    name: str,
    *,
    now: dt.datetime | None = None,
    days: int = 730,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ledger_key: tuple[str, bytes] | None = None,
    key_password: bytes | None = None,
    key_file: str = KEY_FILE,
    cert_file: str = CERT_FILE,
) -> TlsIdentity:
    """Generate an ECDSA P-256 key and a self-signed certificate for node ``name``.

    Parameters
    ----------
    directory
        Where ``node.key`` (mode 0600) and ``node.crt`` are written; created if missing.
        An identity already there is replaced (its peers must pin the new fingerprint).
    name
        The node's name: the certificate's CN and a DNS SAN.
    now
        The issuing time; injectable so tests can make expired or not-yet-valid certificates.
    days
        Validity period (default two years).
    hosts
        More SANs (IP addresses or DNS names), by default the loopback ones for demos.
    ledger_key
        ``(algorithm, public key)`` of the node's ledger-signing key, carried in a
        non-critical extension so that pinning the certificate also pins that key.
    key_password
        Encrypt the key file (PKCS#8, best available encryption) under this password.
    key_file, cert_file
        File names in ``directory`` (a rotation writes new ones before switching).

    Returns
    -------
    TlsIdentity
        Its ``fingerprint`` is what peers pin.
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
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if ledger_key is not None:
        builder = builder.add_extension(ledger_key_extension(*ledger_key), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(key_password)
        if key_password
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    key_path = d / key_file
    cert_path = d / cert_file
    _write_private(key_path, key_pem, 0o600)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return TlsIdentity(cert_path, key_path, key_password)


def ledger_key_extension(alg: str, public_key: bytes) -> x509.UnrecognizedExtension:
    """The extension that binds a ledger-signing key to a node certificate.

    Its value is a DER OCTET STRING around ``{"alg": ..., "key": hex}``; the stand-alone
    verifier (:mod:`rainbridge.audit.verify_ledger`) reads it with ``cryptography`` alone.
    """
    body = json.dumps({"alg": alg, "key": public_key.hex()}, separators=(",", ":")).encode()
    # DER length: short form below 128 bytes, else one length byte (a key is far below 256)
    length = bytes([len(body)]) if len(body) < 0x80 else bytes([0x81, len(body)])
    der = b"\x04" + length + body
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(LEDGER_KEY_OID), der)


def _write_private(path: Path, data: bytes, mode: int, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, the file having ``mode`` from its creation.

    A temporary file created with ``mode`` and renamed over ``path``: an existing file with
    looser permissions is replaced, not reused, and a crash leaves the old file or the new
    one, never half of either.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exactly ``mode``, whatever the umask
            f.write(data)
            f.flush()
            if sync:  # a file rewritten on every ledger append is left to the OS
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def check_pinned(der: bytes | None, expected: str, peer: str) -> None:
    """Refuse unless the certificate ``der`` has the pinned fingerprint ``expected``."""
    if not der:
        raise AuthenticationError(f"peer {peer!r} presented no certificate")
    if not same_fingerprint(fingerprint_der(der), expected):
        raise AuthenticationError(
            f"peer {peer!r} presented a certificate that is not the one pinned for it"
        )
