"""The two-party engine against numpy on the plaintext: exact for integers, within one unit
in the last place (per multiplication) for fixed point."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mpc_helpers import run2

from rainbridge.errors import ConfigError
from rainbridge.protocols.mpc import Mpc, OneHot, decode, encode

ULP = 2.0**-16
ints = hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(-(2**40), 2**40))
reals = st.floats(-1000, 1000, allow_nan=False, allow_infinity=False)


def test_encoding_round_trips_and_refuses_out_of_range() -> None:
    x = np.array([0.0, 1.5, -2.25, 1e6])
    assert np.array_equal(decode(encode(x, 16), 16), x)
    assert np.array_equal(decode(encode(np.array([-5, 7]), 0), 0), [-5, 7])
    with pytest.raises(ConfigError, match="fixed-point range"):
        encode(np.array([2.0**50]), 16)
    with pytest.raises(ConfigError, match="fixed-point range"):
        encode(np.array([np.nan]), 16)


@settings(max_examples=15, deadline=None)
@given(x=ints)
def test_integer_sharing_addition_and_products_are_exact(x: np.ndarray) -> None:
    y = (x[::-1] // 3).copy()

    async def prog(m: Mpc) -> object:
        a = await m.input(x if m.party == 0 else None, 0, x.shape, integer=True)
        b = await m.input(y if m.party == 1 else None, 1, y.shape, integer=True)
        s = m.add(a, b)
        d = m.sub(a, b)
        p = await m.mul(a, b)
        k = m.mul_public_int(a, -3)
        return [await m.reveal(v) for v in (s, d, p, k)]

    r0, r1, _ = run2(prog)
    for got, want in zip(r0, [x + y, x - y, x * y, -3 * x], strict=True):
        assert np.array_equal(got, want)  # exact, wrapping as int64 would
    assert all(np.array_equal(a, b) for a, b in zip(r0, r1, strict=True))


@settings(max_examples=15, deadline=None)
@given(xs=st.lists(st.tuples(reals, reals), min_size=1, max_size=30))
def test_fixed_point_products_within_one_ulp(xs: list[tuple[float, float]]) -> None:
    x = np.array([a for a, _ in xs])
    y = np.array([b for _, b in xs])

    async def prog(m: Mpc) -> object:
        a = await m.input(x if m.party == 0 else None, 0, x.shape)
        b = await m.input(y if m.party == 1 else None, 1, y.shape)
        return [
            await m.reveal(await m.mul(a, b)),
            await m.reveal(m.mul_public(a, 0.3)),
            await m.reveal(m.add_public(b, 2.5)),
        ]

    (p, q, r), _, _ = run2(prog)
    xq, yq = np.round(x / ULP) * ULP, np.round(y / ULP) * ULP
    assert np.all(np.abs(p - xq * yq) <= 2 * ULP)
    c = np.round(0.3 / ULP) * ULP  # the public constant is encoded too
    assert np.all(np.abs(q - xq * c) <= 2 * ULP)
    assert np.allclose(r, yq + 2.5)


def test_matrix_product_and_reveal_to_one_party() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(20, 7))
    b = rng.normal(size=(7, 5))

    async def prog(m: Mpc) -> object:
        x = await m.input(a if m.party == 0 else None, 0, a.shape)
        y = await m.input(b if m.party == 1 else None, 1, b.shape)
        z = await m.matmul(x, y)
        return await m.reveal(z, to=1)

    r0, r1, _ = run2(prog)
    assert r0 is None  # only party 1 learns it
    assert np.allclose(r1, a @ b, atol=8 * 7 * ULP)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 4),
    st.integers(1, 3),
    st.sampled_from([0, 1]),
    st.integers(0, 2**32),
)
def test_cross_product_of_two_private_matrices_is_exact(
    p: int, n: int, q: int, left: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**40), 2**40, (p, n))
    y = rng.integers(-(2**20), 2**20, (n, q))

    async def prog(m: Mpc) -> object:
        z = await m.cross_product(
            x if m.party == left else None,
            y if m.party != left else None,
            left=left,
            shape=(p, n, q),
        )
        return await m.reveal(z)

    r0, r1, _ = run2(prog)
    assert np.array_equal(r0, x @ y) and np.array_equal(r1, x @ y)


@pytest.mark.parametrize("groups", [3, 40])  # a pass per group, and the sorted path
def test_one_hot_cross_product_sums_groups_and_skips_negative_keys(groups: int) -> None:
    rng = np.random.default_rng(groups)
    n = 500
    keys = rng.integers(-1, groups, n)
    y = rng.integers(-1000, 1000, (n, 2))
    want = np.array([y[keys == g].sum(axis=0) for g in range(groups)])

    async def prog(m: Mpc) -> object:
        z = await m.cross_product(
            OneHot(keys, groups) if m.party == 1 else None,
            y if m.party == 0 else None,
            left=1,
            shape=(groups, n, 2),
        )
        return await m.reveal(z, to=0)

    r0, _, _ = run2(prog)
    assert np.array_equal(r0, want)


def test_cross_product_refuses_wrong_shapes() -> None:
    async def prog(m: Mpc) -> object:
        return await m.cross_product(
            np.zeros((2, 3)) if m.party == 0 else None,
            np.zeros((4, 1)) if m.party else None,
            left=0,
            shape=(2, 3, 1),
        )

    with pytest.raises(ConfigError, match="right matrix has shape"):
        run2(prog)


def test_comparisons_signs_min_max() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(scale=1000, size=200), [0.0, -ULP, ULP, 2.0**30, -(2.0**30)]])
    y = np.concatenate([rng.normal(scale=1000, size=200), [0.0, 0.0, 0.0, 0.0, 0.0]])

    async def prog(m: Mpc) -> object:
        a = await m.input(x if m.party == 0 else None, 0, x.shape)
        b = await m.input(y if m.party == 1 else None, 1, y.shape)
        return [
            await m.reveal(await m.ltz(a)),
            await m.reveal(await m.lt(a, b)),
            await m.reveal(await m.ge(a, b)),
            await m.reveal(await m.maximum(a, b)),
            await m.reveal(await m.minimum(a, b)),
            await m.reveal(await m.sign(a)),
            await m.reveal(await m.relu(a)),
            await m.reveal(await m.max(a)),
            await m.reveal(await m.min(b)),
        ]

    (ltz, lt, ge, mx, mn, sg, relu, amax, bmin), _, _ = run2(prog)
    assert np.array_equal(ltz, (x < 0).astype(int))
    assert np.array_equal(lt, (x < y).astype(int))
    assert np.array_equal(ge, (x >= y).astype(int))
    assert np.allclose(mx, np.maximum(x, y), atol=ULP)
    assert np.allclose(mn, np.minimum(x, y), atol=ULP)
    assert np.array_equal(sg, np.where(x < 0, -1, 1))
    assert np.allclose(relu, np.maximum(x, 0), atol=2 * ULP)
    assert abs(float(amax) - x.max()) <= ULP and abs(float(bmin) - y.min()) <= ULP


def test_integer_comparison_is_exact_near_the_extremes() -> None:
    x = np.array([2**62 - 1, -(2**62), 1, -1, 0], dtype=np.int64)

    async def prog(m: Mpc) -> object:
        a = await m.input(x if m.party == 0 else None, 0, x.shape, integer=True)
        return await m.reveal(await m.ltz(a))

    r0, _, m0 = run2(prog)
    assert np.array_equal(r0, [0, 1, 0, 1, 0])
    assert m0.rounds == 8 + 1  # seven AND rounds, one to convert the bit, one to reveal


def test_shapes_are_checked() -> None:
    async def prog(m: Mpc) -> object:
        a = await m.input(np.ones((2, 3)) if m.party == 0 else None, 0, (2, 3))
        with pytest.raises(ConfigError, match="cannot multiply matrices"):
            await m.matmul(a, a)
        return True

    assert run2(prog)[0] is True
