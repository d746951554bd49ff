"""Joint statistics over a vertically split table against numpy on the joined plaintext."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import run2

from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.stats import crosstab, group_extrema, group_sums, moments, to_integers


def test_moments_match_numpy_on_the_joined_table() -> None:
    rng = np.random.default_rng(11)
    n = 500
    bank = np.column_stack([rng.normal(50_000, 9_000, n), rng.integers(18, 80, n)])
    telecom = np.column_stack([rng.normal(120, 30, n)])
    bank_i, tel_i = to_integers(bank, 2), to_integers(telecom, 2)

    async def prog(m: Mpc) -> object:
        if m.party == 0:
            return await moments(m, bank_i, ["income", "age"], tel_i.shape, ["spend"], 1, (2, 2))
        return await moments(m, tel_i, ["spend"], bank_i.shape, ["income", "age"], 1, (2, 2))

    r0, r1, _ = run2(prog)
    assert r0 is None  # the bank learns nothing
    z = np.column_stack([bank_i / 100, tel_i / 100])  # what the parties encoded
    assert r1.names == ["income", "age", "spend"] and r1.n == n
    assert np.allclose(r1.mean(), z.mean(axis=0), rtol=1e-12)
    assert np.allclose(r1.covariance(), np.cov(z, rowvar=False), rtol=1e-9)
    assert np.allclose(r1.correlation(), np.corrcoef(z, rowvar=False), atol=1e-9)
    assert np.allclose(r1.variance(), z.var(axis=0, ddof=1), rtol=1e-9)


@settings(max_examples=10, deadline=None)
@given(
    keys=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    k=st.integers(1, 5),
)
def test_group_by_with_keys_at_one_party_and_values_at_the_other(keys: list[int], k: int) -> None:
    key = np.array(keys)
    n = len(key)
    vals = np.column_stack([np.arange(n) * 3 - 7, np.arange(n) % 5]).astype(np.int64)
    groups = ["A", "B", "C", "D", "E"]

    async def prog(m: Mpc) -> object:
        return await group_sums(
            m,
            key_party=0,
            keys=key if m.party == 0 else None,
            groups=groups,
            values=vals if m.party == 1 else None,
            value_shape=vals.shape,
            receiver=0,
            min_group_size=k,
        )

    res, other, _ = run2(prog)
    assert other is None
    want = {
        groups[g]: (int((key == g).sum()), vals[key == g].sum(axis=0))
        for g in range(5)
        if (key == g).sum() >= k
    }
    assert res.groups == list(want)  # small groups suppressed, in order
    for i, grp in enumerate(res.groups):
        assert res.counts[i] == want[grp][0]
        assert np.array_equal(res.sums[i], want[grp][1])
    assert np.allclose(res.means(), res.sums / res.counts[:, None])


def test_a_party_without_columns_still_takes_part() -> None:
    mine = np.arange(12, dtype=np.int64).reshape(6, 2)
    empty = np.zeros((6, 0), dtype=np.int64)

    async def prog(m: Mpc) -> object:
        if m.party == 0:
            return await moments(m, mine, ["a", "b"], empty.shape, [], 0)
        return await moments(m, empty, [], mine.shape, ["a", "b"], 0)

    res, _, _ = run2(prog)
    assert res.names == ["a", "b"] and np.array_equal(res.sums, mine.sum(axis=0))
    assert np.array_equal(res.products, mine.T @ mine)


def test_dp_noise_is_added_by_the_other_party_and_scales_with_epsilon() -> None:
    rng = np.random.default_rng(4)
    a = to_integers(np.clip(rng.normal(50, 10, (400, 1)), -100, 100), 0)
    b = to_integers(np.clip(rng.normal(5, 2, (400, 1)), -10, 10), 0)
    bounds = np.array([100.0, 10.0])

    def run(eps: float) -> object:
        async def prog(m: Mpc) -> object:
            if m.party == 0:
                return await moments(m, a, ["a"], b.shape, ["b"], 0, dp=(eps, bounds))
            return await moments(m, b, ["b"], a.shape, ["a"], 0, dp=(eps, bounds))

        return run2(prog)[0]

    exact_sum = np.array([a.sum(), b.sum()], dtype=float)
    loose = run(1e9)
    assert np.allclose(loose.sums, exact_sum, atol=1)  # negligible noise
    errs = [np.abs(run(1.0).sums - exact_sum) for _ in range(3)]
    # per-value epsilon is 1/5 (2 sums + 3 Gram entries): scale B/0.2, i.e. 500 and 50
    assert all(np.any(e > 0) for e in errs)
    assert max(float(e[0]) for e in errs) < 500 * 20 and max(float(e[1]) for e in errs) < 50 * 20


def test_dp_group_counts_and_sums_are_noisy_only_for_the_receiver() -> None:
    key = np.array([0, 1] * 200)
    vals = np.ones((400, 1), dtype=np.int64) * 7

    async def prog(m: Mpc) -> object:
        return await group_sums(
            m,
            key_party=0,
            keys=key if m.party == 0 else None,
            groups=["x", "y"],
            values=vals if m.party == 1 else None,
            value_shape=vals.shape,
            receiver=0,
            dp=(0.5, np.array([10.0])),
        )

    res, _, _ = run2(prog)
    assert list(res.counts) == [200, 200]  # the key party receives: its own counts, exact
    assert not np.array_equal(res.sums[:, 0], [1400.0, 1400.0])  # the values' owner adds noise
    assert np.all(np.abs(res.sums[:, 0] - 1400.0) < 40 * 20)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 4))
def test_group_min_max_match_numpy_and_withhold_small_groups(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n, g = 60, 4
    keys = rng.integers(0, g, n)
    vals = rng.integers(-(10**9), 10**9, (n, 2))

    async def prog(m: Mpc) -> object:
        return await group_extrema(
            m,
            key_party=1,
            keys=keys if m.party == 1 else None,
            groups=g,
            values=vals if m.party == 0 else None,
            value_shape=vals.shape,
            receiver=1,
            min_group_size=k,
        )

    r0, r1, _ = run2(prog)
    assert r0 is None
    mins, maxs = r1
    for grp in range(g):
        sel = keys == grp
        if sel.sum() >= k:
            assert np.array_equal(mins[grp], vals[sel].min(axis=0))
            assert np.array_equal(maxs[grp], vals[sel].max(axis=0))
        else:  # an empty or withheld group reads as out of range
            assert np.all(maxs[grp] < -(2**60))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_crosstab_counts_match_numpy_and_small_cells_read_zero(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n, gr, gc = 200, 3, 5
    rk = rng.integers(0, gr, n)
    ck = rng.integers(-1, gc, n)  # -1: a value outside every bin
    want = np.zeros((gr, gc), dtype=np.int64)
    for a, b in zip(rk, ck, strict=True):
        if b >= 0:
            want[a, b] += 1
    want[want < k] = 0

    async def prog(m: Mpc) -> object:
        return await crosstab(
            m,
            row_party=0,
            keys=rk if m.party == 0 else ck,
            shape=(n, gr, gc),
            receiver=0,
            min_group_size=k,
        )

    r0, r1, _ = run2(prog)
    assert r1 is None and np.array_equal(r0, want)


def test_discrete_laplace_and_gaussian_noise_have_their_scales() -> None:
    from rainbridge.errors import ConfigError
    from rainbridge.protocols.mpc.dp import Mechanism, discrete_laplace

    x = discrete_laplace(20.0, (200_000,))
    assert x.dtype == np.int64
    # discrete Laplace with scale t: variance 2·e^(-1/t) / (1 - e^(-1/t))^2 ≈ 2t²
    q = np.exp(-1 / 20.0)
    assert np.var(x) == pytest.approx(2 * q / (1 - q) ** 2, rel=0.05)
    assert abs(np.mean(x)) < 0.5
    g = Mechanism(0.5, 1e-5).noise(10.0, 1, (200_000,))
    sigma = 10.0 * np.sqrt(2 * np.log(1.25 / 1e-5)) / 0.5
    assert np.std(g) == pytest.approx(sigma, rel=0.05)
    with pytest.raises(ConfigError, match="below 1"):
        Mechanism(2.0, 1e-5).noise(1.0, 1, (3,))
    with pytest.raises(ConfigError):
        Mechanism(0.0)
