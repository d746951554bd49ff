"""The 国密 (ShangMi) primitives: SM3 hashing, SM2 signatures, SM4-GCM encryption.

SM3 and SM4 come from ``cryptography`` (OpenSSL); SM2 signatures from the native core
(RustCrypto's ``sm2``: hedged nonces, constant-time scalar arithmetic). All three are checked
against the GB/T standards' worked examples (tests/crypto/test_gm_vectors.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from rainbridge import _core
from rainbridge.errors import CryptoError, InvalidSignatureError

#: the default distinguishing identifier of GB/T 32918 (ENTL = 128 bits)
DEFAULT_DISTID = b"1234567812345678"
SM4_KEY_BYTES = 16
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16


def sm3(data: bytes) -> bytes:
    """SM3 digest (GB/T 32905), 32 bytes."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC-SM3, 32 bytes."""
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


@dataclass(frozen=True)
class Sm2PublicKey:
    """An SM2 public key: the uncompressed point ``04 || x || y`` (65 bytes)."""

    raw: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Sm2PublicKey:
        """Raises ``CryptoError`` unless ``data`` is a point of the curve."""
        try:
            _core.sm2_za(bytes(data), DEFAULT_DISTID)  # decodes and checks the point
        except ValueError as exc:
            raise CryptoError(str(exc)) from None
        return cls(bytes(data))

    def to_bytes(self) -> bytes:
        return self.raw

    def verify(self, signature: bytes, message: bytes, distid: bytes = DEFAULT_DISTID) -> None:
        """Raise ``InvalidSignatureError`` unless ``signature`` (r || s) signs ``message``."""
        try:
            ok = _core.sm2_verify(self.raw, distid, message, signature)
        except ValueError as exc:
            raise CryptoError(str(exc)) from None
        if not ok:
            raise InvalidSignatureError("the SM2 signature does not verify")


class Sm2PrivateKey:
    """An SM2 private key (32 bytes, in [1, n-2])."""

    def __init__(self, raw: bytes) -> None:
        try:
            self._signer = _core.Sm2Signer(bytes(raw), DEFAULT_DISTID)
        except ValueError as exc:
            raise CryptoError(str(exc)) from None
        self._public = Sm2PublicKey(self._signer.public_key())
        self._raw = bytes(raw)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        return cls(_core.sm2_random_private_key())

    @classmethod
    def from_bytes(cls, data: bytes) -> Sm2PrivateKey:
        return cls(data)

    def to_bytes(self) -> bytes:
        return self._raw

    def public_key(self) -> Sm2PublicKey:
        return self._public

    def sign(self, message: bytes, distid: bytes = DEFAULT_DISTID) -> bytes:
        """A signature ``r || s`` (64 bytes), hedged: fresh randomness and the key."""
        if distid == DEFAULT_DISTID:
            return self._signer.sign(message)
        return _core.sm2_sign(self._raw, distid, message)

    def __repr__(self) -> str:  # never show the key
        return "Sm2PrivateKey(<secret>)"


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """SM4-GCM (RFC 8998): ``ciphertext || tag`` (16-byte tag)."""
    _check(key, nonce)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    body = enc.update(plaintext) + enc.finalize()
    return body + enc.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`sm4_gcm_encrypt`; raises ``CryptoError`` on any tampering and
    returns no plaintext then."""
    _check(key, nonce)
    if len(sealed) < GCM_TAG_BYTES:
        raise CryptoError("SM4-GCM: the ciphertext is shorter than its tag")
    body, tag = sealed[:-GCM_TAG_BYTES], sealed[-GCM_TAG_BYTES:]
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        out = dec.update(body) + dec.finalize()
    except InvalidTag:
        raise CryptoError("SM4-GCM: authentication failed (wrong key or altered data)") from None
    return out


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != SM4_KEY_BYTES:
        raise CryptoError("an SM4 key is 16 bytes")
    if len(nonce) != GCM_NONCE_BYTES:
        raise CryptoError("an SM4-GCM nonce is 12 bytes")
