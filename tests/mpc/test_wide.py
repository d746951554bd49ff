"""Per-group sums in Z_2^128 against Python's integers: exact past 2^63, NULL rows and
suppressed groups left out, either party receiving."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc.ot_kernels import add128, neg128, sub128
from rainbridge.protocols.mpc.wide import from_wide, group_sums_wide, sum128, to_wide

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _run(keys, values, groups, receiver, key_party=0, min_group_size=1):  # type: ignore[no-untyped-def]
    mesh = LocalChannel.mesh("wide-test", ["p0", "p1"])
    n, m = values.shape

    async def party(i: int):  # type: ignore[no-untyped-def]
        return await group_sums_wide(
            mesh[f"p{i}"][f"p{1 - i}"],
            party=i,
            key_party=key_party,
            keys=keys if i == key_party else None,
            groups=groups,
            values=values if i != key_party else None,
            shape=(n, m),
            receiver=receiver,
            min_group_size=min_group_size,
        )

    async def both():  # type: ignore[no-untyped-def]
        return await asyncio.gather(party(0), party(1))

    return asyncio.run(both())


@settings(max_examples=30, deadline=None)
@given(a=st.lists(st.tuples(I64, I64), min_size=1, max_size=40))
def test_128_bit_word_arithmetic(a: list[tuple[int, int]]) -> None:
    x = to_wide(np.array([p[0] for p in a], dtype=np.int64))
    y = to_wide(np.array([p[1] for p in a], dtype=np.int64))
    mod = 1 << 128

    def signed(v: int) -> int:
        v %= mod
        return v - mod if v >> 127 else v

    assert from_wide(add128(x, y)) == [signed(p + q) for p, q in a]
    assert from_wide(sub128(x, y)) == [signed(p - q) for p, q in a]
    assert from_wide(neg128(x)) == [signed(-p) for p, _ in a]
    assert from_wide(sum128(x, axis=0)) == signed(sum(p for p, _ in a))


@pytest.mark.parametrize("receiver", [0, 1])
def test_group_sums_are_exact_past_2_63(receiver: int) -> None:
    rng = np.random.default_rng(3)
    n, groups = 3000, 7
    keys = rng.integers(-1, groups, n)  # -1: a row in no group
    values = np.stack(
        [
            rng.integers(2**62, 2**63 - 1, n, dtype=np.int64),
            rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        ],
        axis=1,
    )
    out = _run(keys, values, groups, receiver, min_group_size=5)
    counts, sums = out[receiver]
    assert out[1 - receiver] is None
    for g in range(groups):
        rows = keys == g
        if rows.sum() >= 5:
            assert counts[g] == rows.sum()
            for j in range(2):
                assert sums[g][j] == sum(int(v) for v in values[rows, j])
                assert abs(sums[g][0]) > 2**63 or rows.sum() < 2
        else:
            assert counts[g] == 0 and sums[g] == [0, 0]


def test_the_value_party_may_hold_the_keys_side_one() -> None:
    keys = np.array([0, 1, 1, 0, 2], dtype=np.int64)
    values = np.array([[2**63 - 1], [5], [-(2**63)], [2**63 - 1], [7]], dtype=np.int64)
    counts, sums = _run(keys, values, 3, receiver=1, key_party=1)[1]
    assert counts == [2, 2, 1]
    assert sums == [[2 * (2**63 - 1)], [5 - 2**63], [7]]
