"""Encryption with nonces made ahead of use (``OuSecretKey.nonces``, ``OuNonceMaker``,
``encrypt_packed_ahead``): the values decrypt, a nonce is never used twice, another key's
nonces are refused. Byte equality with the ordinary path for the same randomness is in
rust/tests/ou_ahead.rs."""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rainbridge._core import OuNonceMaker, OuSecretKey

CT = 256


@cache
def key() -> OuSecretKey:
    return OuSecretKey.generate(1024)


def _plain(sk: OuSecretKey, ct: bytes, slots: int, bits: int) -> np.ndarray:
    return np.frombuffer(sk.decrypt_packed(ct, slots, bits, 0), dtype="<f8")


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(0, 40),
    ahead=st.lists(st.integers(0, 20), max_size=3),
    bits=st.sampled_from([8, 33, 64]),
    seed=st.integers(0, 2**32 - 1),
)
@example(rows=0, ahead=[], bits=8, seed=0)  # an empty (0, 2) int64 array is a valid input
@example(rows=3, ahead=[2, 2], bits=64, seed=1)  # more nonces than rows
def test_any_split_of_rows_decrypts(rows: int, ahead: list[int], bits: int, seed: int) -> None:
    sk = key()
    hi = (1 << (bits - 1)) - 1
    vals = np.random.default_rng(seed).integers(-hi, hi, size=(rows, 2), endpoint=True)
    vals = np.ascontiguousarray(vals, dtype="<i8")
    parts = [sk.nonces(k) for k in ahead]
    if sum(ahead) > rows:  # more nonces than rows: refused, none spent into a ciphertext
        with pytest.raises(ValueError, match="nonces for"):
            sk.encrypt_packed_ahead(vals, 2, bits, parts)
        return
    ct = sk.encrypt_packed_ahead(vals, 2, bits, parts)
    assert len(ct) == CT * rows
    assert (_plain(sk, ct, 2, bits) == vals.reshape(-1)).all()
    assert all(len(p) == 0 for p in parts)  # spent


def test_spent_nonces_are_refused() -> None:
    sk = key()
    vals = np.arange(8, dtype="<i8")
    nonces = sk.nonces(8)
    assert len(nonces) == 8
    a = sk.encrypt_packed_ahead(vals, 1, 64, [nonces])
    assert "spent" in repr(nonces)
    with pytest.raises(ValueError, match="used once"):
        sk.encrypt_packed_ahead(vals, 1, 64, [nonces])
    b = sk.encrypt_packed_ahead(vals, 1, 64, [sk.nonces(8)])
    assert a != b  # fresh randomness each time
    assert (_plain(sk, b, 1, 64) == vals).all()


def test_another_keys_nonces_are_refused() -> None:
    sk, other = key(), OuSecretKey.generate(1024)
    vals = np.arange(4, dtype="<i8")
    with pytest.raises(ValueError, match="another OU key"):
        sk.encrypt_packed_ahead(vals, 1, 64, [other.nonces(4)])
    with pytest.raises(ValueError, match="two different OU keys"):
        sk.encrypt_packed_ahead(vals, 1, 64, [sk.nonces(1), other.nonces(1)])


def test_the_maker_fills_in_the_background_and_hands_out_once() -> None:
    sk = key()
    maker = OuNonceMaker(sk)
    maker.fill(5000)
    deadline = time.monotonic() + 60
    while maker.ready < 5000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert maker.ready == 5000
    got = maker.take(4500)
    assert [len(n) for n in got] == [4500]
    assert maker.ready == 0  # the rest discarded, never handed out later
    assert maker.take(10) == []
    vals = np.arange(2 * 4500, dtype="<i8").reshape(-1, 2)
    ct = sk.encrypt_packed_ahead(vals, 2, 64, got)
    assert (_plain(sk, ct, 2, 64) == vals.reshape(-1)).all()
    # a take while filling stops the filler: what it was making is dropped
    maker.fill(100_000)
    first = maker.take(100_000)
    time.sleep(0.5)
    assert maker.ready == 0
    assert sum(len(n) for n in first) <= 100_000


def test_the_same_nonces_twice_in_one_call_are_refused() -> None:
    sk = key()
    vals = np.arange(8, dtype="<i8")
    nonces = sk.nonces(4)
    # the second mutable borrow of the same object fails before anything is taken
    with pytest.raises(RuntimeError, match="borrowed"):
        sk.encrypt_packed_ahead(vals, 1, 64, [nonces, nonces])
    assert len(nonces) == 4
    ct = sk.encrypt_packed_ahead(vals, 1, 64, [nonces])
    assert (_plain(sk, ct, 1, 64) == vals).all()
    with pytest.raises(ValueError, match="used once"):
        sk.encrypt_packed_ahead(vals, 1, 64, [nonces])


def test_nonces_taken_by_a_failed_encryption_are_spent() -> None:
    sk = key()
    nonces = sk.nonces(4)
    with pytest.raises(ValueError, match="does not fit"):
        sk.encrypt_packed_ahead(np.full(4, 1 << 20, dtype="<i8"), 1, 8, [nonces])
    # lost, never reusable: a nonce serves at most one ciphertext
    assert "spent" in repr(nonces)
    with pytest.raises(ValueError, match="used once"):
        sk.encrypt_packed_ahead(np.arange(4, dtype="<i8"), 1, 64, [nonces])


def test_only_empty_arrays_skip_the_contiguity_check() -> None:
    sk = key()
    strided = np.arange(16, dtype="<i8").reshape(4, 4)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        sk.encrypt_packed_ahead(strided, 2, 64, [])
    with pytest.raises(ValueError, match="C-contiguous"):
        sk.encrypt_packed(strided, 2, 64)
    empty = np.empty((0, 4), dtype="<i8")[:, ::2]
    assert sk.encrypt_packed_ahead(empty, 2, 64, []) == b""
    assert sk.encrypt_packed(np.empty((0, 2), dtype="<i8"), 2, 64) == b""
