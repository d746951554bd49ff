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
