"""The node-wide crypto suites: which hash, signature and at-rest cipher a node uses.

``standard``: SHA-256, Ed25519 (RFC 8032), AES-256-GCM. ``gm`` (国密): SM3 (GB/T 32905),
SM2 signatures (GB/T 32918, default distinguishing ID), SM4-GCM (GB/T 32907, RFC 8998).
The suite covers what the node itself hashes, signs and encrypts: ledger entries, job-record
countersignatures and keys at rest. The data plane stays on TLS 1.3 with its own suites under
either (see docs/GOVERNANCE.md, "国密").
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rainbridge.errors import ConfigError, CryptoError

SUITE_NAMES = ("standard", "gm")


class SigningKey(Protocol):
    """A ledger-signing private key."""

    alg: str

    def sign(self, message: bytes) -> bytes: ...
    def public_bytes(self) -> bytes: ...
    def private_bytes(self) -> bytes: ...


@dataclass
class Ed25519Key:
    key: Ed25519PrivateKey
    alg: str = "ed25519"

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def public_bytes(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def private_bytes(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )


@dataclass
class Sm2Key:
    raw: bytes
    alg: str = "sm2"

    def __post_init__(self) -> None:
        from rainbridge.crypto.gm import Sm2PrivateKey

        self._key = Sm2PrivateKey.from_bytes(self.raw)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_bytes(self) -> bytes:
        return self._key.public_key().to_bytes()

    def private_bytes(self) -> bytes:
        return self.raw


@dataclass(frozen=True)
class Suite:
    """One crypto suite: hash, signature algorithm and at-rest AEAD."""

    name: str
    signature: str
    hash_name: str

    def hash(self, data: bytes) -> bytes:
        if self.name == "gm":
            h = hashes.Hash(hashes.SM3())
            h.update(data)
            return h.finalize()
        return hashlib.sha256(data).digest()

    def new_signing_key(self) -> SigningKey:
        if self.signature == "sm2":
            from rainbridge.crypto.gm import Sm2PrivateKey

            return Sm2Key(Sm2PrivateKey.generate().to_bytes())
        return Ed25519Key(Ed25519PrivateKey.generate())

    def load_signing_key(self, alg: str, raw: bytes) -> SigningKey:
        if alg == "sm2":
            return Sm2Key(raw)
        if alg == "ed25519":
            return Ed25519Key(Ed25519PrivateKey.from_private_bytes(raw))
        raise ConfigError(f"unknown ledger-key algorithm {alg!r}")

    # -- at rest: AES-256-GCM or SM4-GCM under a key derived from the master key -----------

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        if self.name == "gm":
            from rainbridge.crypto.gm import sm4_gcm_encrypt

            return nonce + sm4_gcm_encrypt(key[:16], nonce, plaintext, aad)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)

    def unseal(self, key: bytes, sealed: bytes, aad: bytes) -> bytes:
        nonce, body = sealed[:12], sealed[12:]
        try:
            if self.name == "gm":
                from rainbridge.crypto.gm import sm4_gcm_decrypt

                return sm4_gcm_decrypt(key[:16], nonce, body, aad)
            return AESGCM(key).decrypt(nonce, body, aad)
        except (InvalidTag, ValueError, CryptoError):
            raise CryptoError(
                "cannot decrypt a sealed key: wrong master key, or the file was altered"
            ) from None


STANDARD = Suite("standard", "ed25519", "sha256")
GM = Suite("gm", "sm2", "sm3")


def get_suite(name: str) -> Suite:
    """The suite called ``name`` (``standard`` or ``gm``)."""
    if name == "standard":
        return STANDARD
    if name == "gm":
        return GM
    raise ConfigError(f"crypto_suite {name!r}: expected one of {', '.join(SUITE_NAMES)}")
