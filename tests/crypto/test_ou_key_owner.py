"""The key owner's Okamoto–Uchiyama encryption (``OuSecretKey.encrypt_packed``, by CRT)
against the plaintext it encrypts and against the public key's ciphertexts."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge._core import OuSecretKey

CT = 256


@cache
def key() -> OuSecretKey:
    return OuSecretKey.generate(1024)


@st.composite
def packed_rows(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    slots = draw(st.integers(1, 4))
    bits = draw(st.integers(2, min(64, 339 // slots)))
    hi = (1 << (bits - 1)) - 1 if bits < 64 else 2**63 - 1
    value = st.one_of(st.sampled_from([0, 1, -1, hi, -hi]), st.integers(-hi, hi))
    rows = draw(st.integers(1, 4))
    flat = draw(st.lists(value, min_size=rows * slots, max_size=rows * slots))
    return np.array(flat, dtype="<i8").reshape(rows, slots), slots, bits


@settings(max_examples=40, deadline=None)
@given(packed_rows())
def test_decrypts_to_the_values(case: tuple[np.ndarray, int, int]) -> None:
    values, slots, bits = case
    sk = key()
    ct = sk.encrypt_packed(values, slots, bits)
    assert len(ct) == CT * len(values)
    got = np.frombuffer(sk.decrypt_packed(ct, slots, bits, 0)).reshape(values.shape)
    assert (got == values.astype(float)).all()


@settings(max_examples=20, deadline=None)
@given(packed_rows())
def test_adds_with_public_key_ciphertexts(case: tuple[np.ndarray, int, int]) -> None:
    values, slots, bits = case
    sk = key()
    pk = sk.public_key()
    # halves so that every slot's sum stays within the slot
    a, b = values // 2, -(values // 2)
    mixed = pk.add(sk.encrypt_packed(a, slots, bits), pk.encrypt_packed(b, slots, bits))
    got = np.frombuffer(sk.decrypt_packed(mixed, slots, bits, 0)).reshape(values.shape)
    assert (got == (a + b).astype(float)).all()
    # the public key's checks accept them: below n, non-zero, the same 256-byte layout
    assert len(pk.load(sk.encrypt_packed(a, slots, bits))) == len(values)


def test_randomised_like_the_public_key() -> None:
    sk = key()
    v = np.array([[3, -4]], dtype="<i8")
    assert sk.encrypt_packed(v, 2, 64) != sk.encrypt_packed(v, 2, 64)
    assert sk.encrypt_packed(b"", 2, 64) == b""


@pytest.mark.parametrize(
    ("values", "slots", "bits"),
    [
        (np.zeros(3, dtype="<i8"), 2, 64),  # rows of 2 do not divide 3 values
        (np.zeros(8, dtype="<i8"), 8, 126),  # past the plaintext space
        (np.zeros(2, dtype="<i8"), 0, 64),
        (np.zeros(2, dtype="<i8"), 1, 127),
        (b"\x00" * 7, 1, 64),  # not whole int64s
        (np.array([512, 0], dtype="<i8"), 2, 10),  # 512 overflows a signed 10-bit slot
        (np.array([0, -512], dtype="<i8"), 2, 10),
    ],
)
def test_refuses_bad_layouts_as_the_public_key(values: object, slots: int, bits: int) -> None:
    sk = key()
    with pytest.raises(ValueError):
        sk.public_key().encrypt_packed(values, slots, bits)
    with pytest.raises(ValueError):
        sk.encrypt_packed(values, slots, bits)
