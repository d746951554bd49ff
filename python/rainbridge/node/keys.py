"""The node's keys: TLS identity and ledger-signing key, encrypted at rest, rotated live.

Layout of a node directory::

    node.crt / node.key      the current TLS certificate and its key (PKCS#8, encrypted)
    ledger.key               the ledger-signing key, sealed (AES-256-GCM or SM4-GCM)
    certs/<sha256>.pem       every certificate this node has had (old ones verify old entries)
    master.key               the master key, only where no other source is configured

The **master key** (32 random bytes) comes from ``$RAINBRIDGE_MASTER_KEY`` (hex or
base64url), else from the file named by the configuration's ``master_key_file`` (default
``DIR/master.key``, mode 0600). Keeping it in the node directory protects a copied database
or backup, not a stolen directory: production puts it elsewhere (an environment secret, a
mounted secret file) or, next, behind PKCS#11 (an HSM wraps the data keys instead). Two keys
are derived from it with HKDF (SHA-256, or SM3 under the 国密 suite): one is the password of
the TLS key file (PKCS#8, because OpenSSL's TLS stack must read that file itself), the other
seals the ledger key (AES-256-GCM, or SM4-GCM under ``gm``).

The ledger key's public half is carried in the TLS certificate (an extension), so a peer
that pins the certificate's fingerprint pins the ledger key with it. **Rotation** writes a
new key pair and certificate beside the old, signs the hand-over with the old ledger key,
switches files atomically, and keeps the old certificate under ``certs/`` so entries it
signed still verify; the node keeps serving throughout (see ``NodeService.rotate_keys``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rainbridge.audit.verify_ledger import ROTATION_DOMAIN
from rainbridge.crypto.certs import (
    CERT_FILE,
    KEY_FILE,
    TlsIdentity,
    _write_private,
    create_identity,
    fingerprint_pem,
)
from rainbridge.crypto.suites import SigningKey, Suite, get_suite
from rainbridge.errors import ConfigError

MASTER_KEY_ENV = "RAINBRIDGE_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
LEDGER_KEY_FILE = "ledger.key"
CERTS_DIR = "certs"


def parse_master_key(text: str, where: str) -> bytes:
    """32 bytes from hex or base64url text."""
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.urlsafe_b64decode(text + "==")
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{where}: the master key must be 32 bytes, as hex or base64url")
    return key


def master_key_path(directory: Path, configured: str = "") -> Path:
    return Path(configured) if configured else directory / MASTER_KEY_FILE


def load_master_key(directory: Path, configured: str = "") -> bytes:
    """The master key, from the environment or the key file.

    Raises
    ------
    ConfigError
        Neither source has one, or it is not 32 bytes.
    """
    env = os.environ.get(MASTER_KEY_ENV, "")
    if env.strip():
        return parse_master_key(env, f"${MASTER_KEY_ENV}")
    path = master_key_path(directory, configured)
    try:
        return parse_master_key(path.read_text(), str(path))
    except FileNotFoundError:
        raise ConfigError(
            f"no master key: set ${MASTER_KEY_ENV} or create {path} "
            "(`rainbridge node init` writes one)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the master key: {exc.strerror}") from None


def new_master_key(path: Path) -> bytes:
    """Generate a master key and write it to ``path`` (mode 0600)."""
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, key.hex().encode() + b"\n", 0o600)
    return key


def derive(suite: Suite, master: bytes, label: str) -> bytes:
    algorithm: hashes.HashAlgorithm = hashes.SM3() if suite.name == "gm" else hashes.SHA256()
    return HKDF(algorithm, 32, salt=None, info=f"rainbridge/{label}/v1".encode()).derive(master)


@dataclass
class NodeKeys:
    """The node's current TLS identity and ledger key, and its certificate history."""

    directory: Path
    suite: Suite
    identity: TlsIdentity
    ledger_key: SigningKey

    def __post_init__(self) -> None:
        # captured once: the identity's files are replaced in place by a rotation
        self.cert_pem = self.identity.cert_pem
        self.fingerprint = fingerprint_pem(self.cert_pem)

    # -- creation and loading ----------------------------------------------------------------

    @classmethod
    def create(
        cls, directory: Path, name: str, suite_name: str, master: bytes, **identity_args: object
    ) -> NodeKeys:
        """New keys for node ``name``: TLS key and certificate, ledger key, history."""
        suite = get_suite(suite_name)
        keys = cls._write(directory, name, suite, master, KEY_FILE, CERT_FILE, identity_args)
        return keys

    @classmethod
    def _write(
        cls,
        directory: Path,
        name: str,
        suite: Suite,
        master: bytes,
        key_file: str,
        cert_file: str,
        identity_args: dict[str, object],
    ) -> NodeKeys:
        ledger_key = suite.new_signing_key()
        identity = create_identity(
            directory,
            name,
            ledger_key=(ledger_key.alg, ledger_key.public_bytes()),
            key_password=_tls_password(suite, master),
            key_file=key_file,
            cert_file=cert_file,
            **identity_args,  # type: ignore[arg-type]
        )
        sealed = {
            "alg": ledger_key.alg,
            "suite": suite.name,
            "sealed": base64.b64encode(
                suite.seal(
                    derive(suite, master, "ledger-key"),
                    ledger_key.private_bytes(),
                    _aad(identity.fingerprint),
                )
            ).decode(),
            "certificate": identity.fingerprint,
        }
        ledger_file = LEDGER_KEY_FILE if key_file == KEY_FILE else f"{LEDGER_KEY_FILE}.next"
        _write_private(directory / ledger_file, json.dumps(sealed).encode(), 0o600)
        keep_certificate(directory, identity.cert_pem)
        return cls(directory, suite, identity, ledger_key)

    @classmethod
    def load(cls, directory: Path, suite_name: str, master_key_file: str = "") -> NodeKeys:
        """The keys in ``directory``, opened with the master key.

        Raises
        ------
        ConfigError
            A file is missing, or the master key does not open them.
        """
        suite = get_suite(suite_name)
        master = load_master_key(directory, master_key_file)
        path = directory / LEDGER_KEY_FILE
        try:
            sealed = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{directory}: no ledger key (run `rainbridge node init`)") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable ledger key ({type(exc).__name__})") from None
        if not isinstance(sealed, dict) or sealed.get("suite") != suite.name:
            got = sealed.get("suite") if isinstance(sealed, dict) else None
            raise ConfigError(
                f"{path}: sealed under the {got!r} suite, but the node is configured for "
                f"{suite.name!r}"
            )
        identity = TlsIdentity.load(directory, _tls_password(suite, master))
        try:
            raw = suite.unseal(
                derive(suite, master, "ledger-key"),
                base64.b64decode(sealed["sealed"]),
                _aad(identity.fingerprint),
            )
            ledger_key = suite.load_signing_key(str(sealed["alg"]), raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: unreadable ledger key ({type(exc).__name__})") from None
        return cls(directory, suite, identity, ledger_key)

    # -- rotation ---------------------------------------------------------------------------

    def prepare_rotation(self, name: str, master: bytes) -> tuple[NodeKeys, str]:
        """New TLS and ledger keys under temporary names, and the old key's hand-over
        signature; nothing in use changes until :meth:`commit_rotation`."""
        nxt = NodeKeys._write(
            self.directory, name, self.suite, master, f"{KEY_FILE}.next", f"{CERT_FILE}.next", {}
        )
        handover = self.ledger_key.sign(ROTATION_DOMAIN + bytes.fromhex(nxt.fingerprint))
        return nxt, handover.hex()

    def commit_rotation(self, nxt: NodeKeys) -> NodeKeys:
        """Rename the prepared files over the current ones (each rename is atomic)."""
        d = self.directory
        os.replace(d / f"{KEY_FILE}.next", d / KEY_FILE)
        os.replace(d / f"{CERT_FILE}.next", d / CERT_FILE)
        os.replace(d / f"{LEDGER_KEY_FILE}.next", d / LEDGER_KEY_FILE)
        identity = TlsIdentity(d / CERT_FILE, d / KEY_FILE, nxt.identity.key_password)
        return NodeKeys(d, self.suite, identity, nxt.ledger_key)


def _tls_password(suite: Suite, master: bytes) -> bytes:
    return derive(suite, master, "tls-key").hex().encode()


def _aad(fingerprint: str) -> bytes:
    # binds the sealed ledger key to its certificate: a swapped file does not open
    return b"rainbridge/ledger-key/" + fingerprint.encode()


def keep_certificate(directory: Path, cert_pem: str) -> str:
    """Store a certificate in the history (by fingerprint); returns the fingerprint."""
    fp = fingerprint_pem(cert_pem)
    d = directory / CERTS_DIR
    d.mkdir(exist_ok=True)
    p = d / f"{fp}.pem"
    if not p.exists():
        _write_private(p, cert_pem.encode(), 0o644)
    return fp


def certificate_history(directory: Path) -> dict[str, str]:
    """Every certificate this node has had, by fingerprint."""
    d = directory / CERTS_DIR
    return {p.stem: p.read_text() for p in sorted(d.glob("*.pem"))} if d.is_dir() else {}


def init_node_keys(
    directory: Path,
    name: str,
    suite_name: str = "standard",
    master_key_file: str = "",
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
) -> NodeKeys:
    """Keys of a new node: the master key (unless one is configured), TLS and ledger keys."""
    env = os.environ.get(MASTER_KEY_ENV, "").strip()
    if env:
        master = parse_master_key(env, f"${MASTER_KEY_ENV}")
    else:
        path = master_key_path(directory, master_key_file)
        if path.exists():
            master = load_master_key(directory, master_key_file)
        else:
            master = new_master_key(path)
    return NodeKeys.create(directory, name, suite_name, master, hosts=hosts)
