"""国密 primitives against the GB/T standards' worked examples, and SM2 across both
implementations (the core signs and verifies; the bundle verifier is pure Python)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge import _core
from rainbridge.crypto import sm2_pure
from rainbridge.crypto.gm import (
    DEFAULT_DISTID,
    Sm2PrivateKey,
    Sm2PublicKey,
    hmac_sm3,
    sm3,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from rainbridge.errors import CryptoError, InvalidSignatureError

# GB/T 32918.2 / GM/T 0003.5 example on the recommended curve (as in OpenSSL's sm2 tests)
D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
PX = "09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
PY = "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
K = bytes.fromhex("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21")
ZA = "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
MSG = b"message digest"


def test_sm3_gbt32905_examples() -> None:
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert (
        sm3(b"abcd" * 16).hex()
        == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    assert len(hmac_sm3(b"k", b"m")) == 32 and hmac_sm3(b"k", b"m") != hmac_sm3(b"k", b"n")


def test_sm4_gbt32907_example_1_and_the_million_encryptions() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert enc.update(key).hex() == "681edf34d206965e86b3e94f536e4246"
    # Example 2: the plaintext encrypted 1,000,000 times under the same key, in one ECB pass
    # per block would be slow in Python: chain 1,000 blocks of 1,000 encryptions
    block = key
    for _ in range(1000):
        e = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
        for _ in range(1000):
            block = e.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_round_trip_and_tampering() -> None:
    key, nonce = bytes(range(16)), bytes(12)
    sealed = sm4_gcm_encrypt(key, nonce, b"ledger key", b"aad")
    assert sm4_gcm_decrypt(key, nonce, sealed, b"aad") == b"ledger key"
    for bad in (
        sealed[:-1] + bytes([sealed[-1] ^ 1]),
        bytes([sealed[0] ^ 1]) + sealed[1:],
    ):
        with pytest.raises(CryptoError, match="authentication failed"):
            sm4_gcm_decrypt(key, nonce, bad, b"aad")
    with pytest.raises(CryptoError, match="authentication failed"):
        sm4_gcm_decrypt(key, nonce, sealed, b"other aad")
    with pytest.raises(CryptoError, match="16 bytes"):
        sm4_gcm_encrypt(b"short", nonce, b"")
    with pytest.raises(CryptoError, match="shorter than its tag"):
        sm4_gcm_decrypt(key, nonce, b"x", b"")


def test_sm2_key_za_and_signature_match_the_standard() -> None:
    pk = _core.sm2_public_key(D)
    assert pk.hex() == "04" + PX + PY
    assert _core.sm2_za(pk, DEFAULT_DISTID).hex() == ZA
    assert sm2_pure.sm2_za(pk, DEFAULT_DISTID).hex() == ZA
    sig = _core.sm2_sign_with_nonce(D, DEFAULT_DISTID, MSG, K)
    assert sig.hex().upper() == R + S
    assert _core.sm2_verify(pk, DEFAULT_DISTID, MSG, sig)
    assert sm2_pure.sm2_verify(pk, MSG, sig)
    Sm2PublicKey.from_bytes(pk).verify(sig, MSG)


def _flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


def test_sm2_rejects_any_change_and_out_of_range_scalars() -> None:
    pk = _core.sm2_public_key(D)
    sig = bytes.fromhex(R + S)
    n = sm2_pure.N
    bad_sigs = [
        _flip(sig, 0),
        _flip(sig, 63),
        bytes(32) + sig[32:],  # r = 0
        sig[:32] + bytes(32),  # s = 0
        n.to_bytes(32, "big") + sig[32:],  # r = n
        sig[:32] + (n + 1).to_bytes(32, "big"),  # s > n
        sig[:63],
    ]
    for bad in bad_sigs:
        assert not _core.sm2_verify(pk, DEFAULT_DISTID, MSG, bad)
        assert not sm2_pure.sm2_verify(pk, MSG, bad)
    assert not _core.sm2_verify(pk, DEFAULT_DISTID, MSG + b".", sig)
    assert not _core.sm2_verify(pk, b"1234567812345679", MSG, sig)
    other = _core.sm2_public_key(_flip(D, 31))
    assert not _core.sm2_verify(other, DEFAULT_DISTID, MSG, sig)
    with pytest.raises(ValueError, match="not a point of the curve"):
        _core.sm2_verify(_flip(pk, 64), DEFAULT_DISTID, MSG, sig)
    with pytest.raises(ValueError, match="not on the curve"):
        sm2_pure.sm2_verify(_flip(pk, 64), MSG, sig)
    with pytest.raises(InvalidSignatureError):
        Sm2PublicKey(pk).verify(_flip(sig, 5), MSG)
    with pytest.raises(CryptoError):
        Sm2PrivateKey(bytes(32))  # zero is not a private key
    with pytest.raises(ValueError, match="in \\[1, n-1\\]"):
        _core.sm2_sign_with_nonce(D, DEFAULT_DISTID, MSG, bytes(32))


@settings(max_examples=15, deadline=None)
@given(
    msg=st.binary(max_size=200),
    distid=st.binary(min_size=1, max_size=32).filter(lambda b: all(c < 128 for c in b)),
)
def test_sm2_signatures_agree_between_the_core_and_the_pure_verifier(
    msg: bytes, distid: bytes
) -> None:
    key = Sm2PrivateKey.generate()
    pk = key.public_key().to_bytes()
    sig = key.sign(msg, distid)
    assert sm2_pure.sm2_verify(pk, msg, sig, distid)
    assert _core.sm2_verify(pk, distid, msg, sig)
    bad = _flip(sig, len(msg) % 64)
    assert not sm2_pure.sm2_verify(pk, msg, bad, distid)
    assert not _core.sm2_verify(pk, distid, msg, bad)
    assert key.sign(msg, distid) != sig  # hedged: fresh randomness each time
    assert "secret" in repr(key) and key.to_bytes().hex() not in repr(key)
