"""Oblivious sort and top-k against numpy on the plaintext."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import run2

from rainbridge.errors import ConfigError
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.sort import sort, top_k


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(-(10**12), 10**12), min_size=0, max_size=37),
    st.booleans(),
)
def test_sort_matches_numpy_and_carries_the_rows(keys: list[int], descending: bool) -> None:
    x = np.array(keys, dtype=np.int64)
    tag = np.arange(len(x))  # which row each key came from

    async def prog(m: Mpc) -> object:
        k = await m.input(x if m.party == 0 else None, 0, x.shape, integer=True)
        t = await m.input(tag if m.party == 1 else None, 1, x.shape, integer=True)
        s, (rows,) = await sort(m, k, [t], descending=descending)
        return await m.reveal(s), await m.reveal(rows)

    (s0, rows), _, _ = run2(prog)
    want = np.sort(x)[::-1] if descending else np.sort(x)
    assert np.array_equal(s0.astype(np.int64), want)
    # the carried row indices point back at the sorted keys (ties in any order)
    assert sorted(rows.astype(int).tolist()) == list(range(len(x)))
    assert np.array_equal(x[rows.astype(int)], want)


def test_top_k_of_fixed_point_values() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 100, 50)

    async def prog(m: Mpc) -> object:
        k = await m.input(x if m.party == 1 else None, 1, x.shape)
        best, _ = await top_k(m, k, 5)
        return await m.reveal(best, to=0)

    r0, r1, _ = run2(prog)
    assert r1 is None
    assert np.allclose(r0, np.sort(x)[::-1][:5], atol=2**-16)


def test_sort_refuses_bad_shapes() -> None:
    async def prog(m: Mpc) -> object:
        k = await m.input(np.zeros((2, 2)) if m.party == 0 else None, 0, (2, 2))
        return await sort(m, k)

    with pytest.raises(ConfigError, match="vector"):
        run2(prog)
