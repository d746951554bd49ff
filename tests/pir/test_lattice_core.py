"""The lattice PIR kernels of the core against a numpy reference of the same maths."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge import _core

N = _core.LWE_N
Q = 1 << 32
DELTA = 1 << 24


def matrix_a(seed: bytes, m: int) -> np.ndarray:
    """A by its definition: AES-128-CTR keystream (all-zero IV), little-endian u32s."""
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(enc.update(bytes(4 * N * m)), dtype="<u4").reshape(m, N)


def mat_mod(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # int64 products wrap mod 2^64, which keeps the residue mod 2^32 exact
    return (x.astype(np.int64) @ y.astype(np.int64)) % Q


def centred(db: np.ndarray) -> np.ndarray:
    return db.astype(np.int64) - 128


def errors_of(q: np.ndarray, s: np.ndarray, a: np.ndarray, cols: np.ndarray) -> np.ndarray:
    e = (q.astype(np.int64) - mat_mod(a, s.T).T) % Q
    e[np.arange(len(cols)), cols] -= DELTA
    return np.where(e >= Q // 2, e - Q, e)


dims = st.tuples(st.integers(1, 40), st.integers(1, 300), st.integers(1, 5))


@settings(max_examples=25, deadline=None)
@given(dims=dims, data=st.data())
def test_kernels_match_reference(dims: tuple[int, int, int], data: st.DataObject) -> None:
    rows, m, b = dims
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    db = rng.integers(0, 256, (rows, m), dtype=np.uint8)
    # extreme bytes: whole rows of 0 and of 255
    db[0, :] = data.draw(st.sampled_from([0, 255, 128]))
    seed = data.draw(st.binary(min_size=16, max_size=16))
    a = matrix_a(seed, m)
    hint = np.frombuffer(_core.lwe_hint(db, rows, m, seed), dtype="<u4").reshape(rows, N)
    assert np.array_equal(hint, mat_mod(centred(db), a))

    cols = rng.integers(0, m, b).astype(np.uint32)
    q_raw, s_raw = _core.lwe_query(seed, m, cols)
    q = np.frombuffer(q_raw, dtype="<u4").reshape(b, m)
    s = np.frombuffer(s_raw, dtype="<u4").reshape(b, N)
    e = errors_of(q, s, a, cols)
    assert np.abs(e).max() <= _core.LWE_TAIL

    ans = np.frombuffer(_core.lwe_answer(db, rows, m, q), dtype="<u4").reshape(b, rows)
    assert np.array_equal(ans, mat_mod(centred(db), q.T).T)
    out = np.frombuffer(_core.lwe_decode(hint, rows, s, ans), dtype=np.uint8).reshape(b, rows)
    assert np.array_equal(out, db[:, cols].T)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_patch_is_recomputed_hint(data: st.DataObject) -> None:
    nrows, m = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 100))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    seed = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    db = rng.integers(0, 256, (nrows, m), dtype=np.uint8)
    hint = np.frombuffer(_core.lwe_hint(db, nrows, m, seed), dtype="<u4").reshape(nrows, N).copy()
    k = data.draw(st.integers(0, 30))
    rows = rng.integers(0, nrows, k).astype(np.uint32)
    cols = rng.integers(0, m, k).astype(np.uint32)
    new = db.copy()
    for r, c in zip(rows, cols, strict=True):  # repeats apply in turn
        new[r, c] = rng.integers(0, 256)
    # one entry per distinct position, the total change
    pos = np.unique(np.stack([rows, cols], axis=1), axis=0).reshape(-1, 2)
    deltas = (new[pos[:, 0], pos[:, 1]].astype(np.int32)) - db[pos[:, 0], pos[:, 1]]
    _core.lwe_hint_patch(
        hint, seed, m, pos[:, 0].astype(np.uint32), pos[:, 1].astype(np.uint32), deltas
    )
    assert np.array_equal(hint, mat_mod(centred(new), matrix_a(seed, m)))
    # bytearray works too
    buf = bytearray(_core.lwe_hint(db, nrows, m, seed))
    _core.lwe_hint_patch(
        buf, seed, m, pos[:, 0].astype(np.uint32), pos[:, 1].astype(np.uint32), deltas
    )
    assert bytes(buf) == hint.tobytes()


def test_queries_look_uniform_and_errors_gaussian() -> None:
    m = 4000
    seed = bytes(range(16))
    q_raw, s_raw = _core.lwe_query(seed, m, np.array([7, 7, 3999], dtype=np.uint32))
    q = np.frombuffer(q_raw, dtype="<u4").reshape(3, m)
    s = np.frombuffer(s_raw, dtype="<u4").reshape(3, N)
    # each byte of the query words is uniform: chi-square over 256 bins, 48000 samples
    counts = np.bincount(q.view(np.uint8).ravel(), minlength=256)
    expected = counts.sum() / 256
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 400  # 255 degrees of freedom: 400 is far in the tail
    e = errors_of(q, s, matrix_a(seed, m), np.array([7, 7, 3999]))
    assert abs(e.mean()) < 0.3
    assert 5.8 < e.std() < 7.0
    # two queries for the same column share nothing
    assert not np.array_equal(q[0], q[1])


def test_decode_reports_noise_of_a_wrong_hint() -> None:
    rows_, m = 30, 200
    rng = np.random.default_rng(5)
    db = rng.integers(0, 256, (rows_, m), dtype=np.uint8)
    seed = bytes(16)
    hint = np.frombuffer(_core.lwe_hint(db, rows_, m, seed), dtype="<u4").reshape(rows_, N).copy()
    q, s = _core.lwe_query(seed, m, np.array([3], dtype=np.uint32))
    ans = _core.lwe_answer(db, rows_, m, q)
    good = _core.lwe_noise(hint, rows_, s, ans)[0]
    assert good < 64 * 128 * m
    assert _core.lwe_decode(hint, rows_, s, ans, 1 << 21) == db[:, 3].tobytes()
    hint[4] += np.uint32(12345)
    assert _core.lwe_noise(hint, rows_, s, ans)[0] > good
    with pytest.raises(_core.LweDecodingError):
        _core.lwe_decode(hint, rows_, s, ans, 1 << 18)


@pytest.mark.parametrize(
    "call",
    [
        lambda: _core.lwe_hint(bytes(10), 3, 4, bytes(16)),
        lambda: _core.lwe_hint(bytes(12), 3, 4, bytes(15)),
        lambda: _core.lwe_hint(b"", 0, 4, bytes(16)),
        lambda: _core.lwe_answer(bytes(12), 3, 4, bytes(4 * 5)),
        lambda: _core.lwe_answer(bytes(12), 3, 4, bytes(3)),
        lambda: _core.lwe_query(bytes(16), 4, np.array([4], dtype=np.uint32)),
        lambda: _core.lwe_query(bytes(16), 4, np.array([1], dtype=np.int64)),
        lambda: _core.lwe_query(bytes(16), 4, np.array([], dtype=np.uint32)),
        lambda: _core.lwe_decode(bytes(4 * N), 2, bytes(4 * N), bytes(8)),
        lambda: _core.lwe_decode(bytes(4 * N), 1, bytes(4 * N + 4), bytes(4)),
        lambda: _core.lwe_decode(bytes(4 * N), 1, bytes(4 * N), bytes(8)),
        lambda: _core.lwe_hint_patch(bytes(4 * N), bytes(16), 4, b"", b"", b""),
        lambda: _core.lwe_hint_patch(
            bytearray(4 * N),
            bytes(16),
            4,
            np.array([1], np.uint32),
            np.array([0], np.uint32),
            np.array([1], np.int32),
        ),
        lambda: _core.lwe_hint_patch(
            bytearray(4 * N),
            bytes(16),
            4,
            np.array([0], np.uint32),
            np.array([4], np.uint32),
            np.array([1], np.int32),
        ),
        lambda: _core.lwe_hint_patch(
            bytearray(4 * N),
            bytes(16),
            4,
            np.array([0], np.uint32),
            np.array([], np.uint32),
            np.array([1], np.int32),
        ),
    ],
)
def test_bad_shapes_are_value_errors(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()
