"""A feature party's histograms by pairs of features decrypt to the plaintext sums, exactly
as one feature at a time: generated rows, bins, nodes and gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rainbridge._core import OuSecretKey
from rainbridge.protocols.fl.histograms import histograms, kept_cells, pair_min_rows

SK = OuSecretKey.generate(1024)
PK = SK.public_key()
SLOT = 40


def _plain(
    g: np.ndarray, bins: np.ndarray, pos: np.ndarray, nodes: list[int], n_bins: int
) -> np.ndarray:
    f = bins.shape[1]
    out = np.zeros((len(nodes), f, n_bins, 2), dtype=np.int64)
    for i, k in enumerate(nodes):
        for r in np.flatnonzero(pos == k):
            for j in range(f):
                out[i, j, bins[r, j]] += g[r]
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 60),
    features=st.integers(1, 5),
    n_bins=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
    min_rows=st.sampled_from([0, 1, 10, None]),
)
def test_pairs_decrypt_to_the_plaintext_sums(
    rows: int, features: int, n_bins: int, seed: int, min_rows: int | None
) -> None:
    rng = np.random.default_rng(seed)
    g = rng.integers(-(2**30), 2**30, size=(rows, 2))
    bins = rng.integers(0, n_bins, size=(rows, features)).astype(np.uint8)
    pos = rng.integers(-1, 5, size=rows).astype("<i4")  # -1: a row in no node
    nodes = sorted(rng.choice(6, size=int(rng.integers(1, 4)), replace=False).tolist())
    cts = PK.load(PK.encrypt_packed(g.astype("<i8"), 2, SLOT))
    out = histograms(PK, cts, bins, pos, np.asarray(nodes, "<i4"), n_bins, min_rows)
    got = np.frombuffer(SK.decrypt_packed(out, 2, SLOT, 0), "<f8")
    want = _plain(g, bins, pos, nodes, n_bins)
    assert np.array_equal(got.reshape(want.shape), want.astype(np.float64))


def test_pairs_are_used_only_for_nodes_with_many_rows() -> None:
    assert pair_min_rows(33) == 4 * 33 * 33
    rng = np.random.default_rng(3)
    rows, n_bins = 200, 4
    g = rng.integers(-1000, 1000, size=(rows, 2))
    bins = rng.integers(0, n_bins, size=(rows, 3)).astype(np.uint8)
    pos = np.where(np.arange(rows) < 150, 1, 2).astype("<i4")  # node 1 big, node 2 small
    cts = PK.load(PK.encrypt_packed(g.astype("<i8"), 2, SLOT))
    out = histograms(PK, cts, bins, pos, np.asarray([2, 1], "<i4"), n_bins, 100)
    got = np.frombuffer(SK.decrypt_packed(out, 2, SLOT, 0), "<f8")
    want = _plain(g, bins, pos, [2, 1], n_bins)
    assert np.array_equal(got.reshape(want.shape), want.astype(np.float64))


def test_repeated_nodes_are_refused() -> None:
    cts = PK.load(PK.encrypt_packed(np.zeros((2, 2), "<i8"), 2, SLOT))
    bins = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="distinct"):
        histograms(PK, cts, bins, np.zeros(2, "<i4"), np.asarray([0, 0], "<i4"), 2)


def test_only_bins_that_can_hold_rows_are_kept() -> None:
    keep = kept_cells([2, 0, 3], [False, True, False], 5)
    assert keep.tolist() == [
        [True, True, True, False, False],
        [True, False, False, False, True],
        [True, True, True, True, False],
    ]
