"""OU decryption to 64-bit integers is exact or refused: a plaintext past 64 bits, however
far past, is refused (not read from its low bits)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge import _core

_SK = _core.OuSecretKey.generate(1024)
_PK = _SK.public_key()
_I64 = st.integers(-(2**63) + 1, 2**63 - 1)


@settings(max_examples=25, deadline=None)
@given(_I64, st.integers(-(2**62), 2**62))
def test_decrypt_i64_is_the_plaintext_or_refused(low: int, high: int) -> None:
    # two 126-bit slots: the plaintext is low + high · 2^126
    ct = _PK.encrypt_packed(np.array([low, high], dtype=np.int64), 2, 126)
    value = low + high * 2**126
    if -(2**63) <= value < 2**63:
        assert np.frombuffer(_SK.decrypt_i64(ct), "<i8").tolist() == [value]
    else:
        with pytest.raises(_core.InvalidElementError, match="64 bits"):
            _SK.decrypt_i64(ct)


def test_a_plaintext_past_128_bits_is_not_read_from_its_low_bits() -> None:
    for high in (16, -16, 1 << 40):
        ct = _PK.encrypt_packed(np.array([5, high], dtype=np.int64), 2, 126)
        with pytest.raises(_core.InvalidElementError, match="64 bits"):
            _SK.decrypt_i64(ct)


def _unpack_reference(values: list[int], enc_bits: int, slots: int, bits: int) -> list[int] | None:
    """What ``decrypt_packed`` must give for the plaintext Σ v_j·2^(j·enc_bits) read as
    ``slots`` slots of ``bits`` bits: signed digits, the top slot the rest — or None when
    the rest does not fit a signed slot (a forged or overflowed plaintext)."""
    x = sum(v << (j * enc_bits) for j, v in enumerate(values))
    out = []
    for _ in range(slots - 1):
        d = x % (1 << bits)
        if d >= 1 << (bits - 1):
            d -= 1 << bits
        out.append(d)
        x = (x - d) >> bits
    if not -(1 << (bits - 1)) <= x < 1 << (bits - 1):
        return None
    return [*out, x]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(2**62), 2**62), min_size=2, max_size=6),
    st.sampled_from([32, 60, 64, 126]),
    st.integers(1, 5),
)
def test_decrypt_packed_top_slot_is_the_plaintext_or_refused(
    values: list[int], bits: int, slots: int
) -> None:
    # a plaintext of more slots than the reader expects: its top slot must take the whole
    # rest, exactly, or be refused — never its low 128 bits, never a wrapped value
    room = _PK.plaintext_bits // bits
    values = [v >> max(0, 64 - bits) for v in values[:room]]  # each fits its slot
    slots = min(slots, len(values) - 1)
    enc = len(values)
    ct = _PK.encrypt_packed(np.array(values, dtype=np.int64), enc, bits)
    want = _unpack_reference(values, bits, slots, bits)
    if want is None:
        with pytest.raises(_core.InvalidElementError, match="slot"):
            _SK.decrypt_packed(ct, slots, bits, 0)
    else:
        got = np.frombuffer(_SK.decrypt_packed(ct, slots, bits, 0), "<f8").tolist()
        assert got == [float(v) for v in want]


def test_a_forged_top_slot_past_128_bits_is_refused() -> None:
    # two 126-bit slots read as one: its value would be 1 + 5·2^126, past i128 (the low
    # 128 bits read 1 + 2^126)
    ct = _PK.encrypt_packed(np.array([1, 5], dtype=np.int64), 2, 126)
    with pytest.raises(_core.InvalidElementError, match="slot"):
        _SK.decrypt_packed(ct, 1, 126, 0)
