"""The dealer-free setup: OT extension and Gilboa products, then the engine's operations on
its randomness, against numpy on the plaintext (the same checks as with a dealer)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import run2

from rainbridge.errors import ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc import Mpc, OneHot
from rainbridge.protocols.mpc.ot import OtExtension, OtProvider
from rainbridge.protocols.mpc.sort import sort
from rainbridge.protocols.mpc.stats import group_sums, moments


def _pair(job):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        mesh = LocalChannel.mesh("ot-test", ["p0", "p1"])
        exts = [OtExtension(mesh["p0"]["p1"]), OtExtension(mesh["p1"]["p0"])]
        await asyncio.gather(*(e.setup() for e in exts))
        return await asyncio.gather(job(0, exts[0]), job(1, exts[1]))

    return asyncio.run(main())


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 300), st.integers(1, 3))
def test_gilboa_products_share_x_times_y_in_both_directions(seed: int, n: int, w: int) -> None:
    rng = np.random.default_rng(seed)
    x = [rng.integers(0, 2**64, n, dtype=np.uint64) for _ in range(2)]
    y = [rng.integers(0, 2**64, (n, w), dtype=np.uint64) for _ in range(2)]

    async def job(i: int, ext: OtExtension) -> object:
        return await ext.products(x[i], y[i], bits=64, words=w, their_n=n)

    (u0, v0), (u1, v1) = _pair(job)
    with np.errstate(over="ignore"):
        assert np.array_equal(u0 + v1, x[0][:, None] * y[1])  # party 0 chose, 1 sent
        assert np.array_equal(u1 + v0, x[1][:, None] * y[0])


def test_bitwise_and_and_bit_products() -> None:
    rng = np.random.default_rng(3)
    n = 500
    x = rng.integers(0, 2**64, n, dtype=np.uint64)
    y = rng.integers(0, 2**64, (n, 1), dtype=np.uint64)
    bits = rng.integers(0, 2, n).astype(np.uint64)

    async def job(i: int, ext: OtExtension) -> object:
        if i == 0:
            a = await ext.products(x, None, bits=64, words=1, their_n=0, gf2=True)
            b = await ext.products(bits, None, bits=1, words=1, their_n=0)
            return a[0], b[0]
        a = await ext.products(None, y, bits=64, words=1, their_n=n, gf2=True)
        b = await ext.products(None, y, bits=1, words=1, their_n=n)
        return a[1], b[1]

    (u_and, u_bit), (v_and, v_bit) = _pair(job)
    assert np.array_equal(u_and[:, 0] ^ v_and[:, 0], x & y[:, 0])
    with np.errstate(over="ignore"):
        assert np.array_equal(u_bit[:, 0] + v_bit[:, 0], bits * y[:, 0])
    assert (u_and[:, 0] != x & y[:, 0]).any()  # a share alone is not the answer


def test_the_engine_on_dealer_free_randomness() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 50, 40)
    y = rng.normal(0, 50, 40)
    a = rng.normal(size=(6, 3))
    b = rng.normal(size=(3, 2))
    keys = rng.integers(0, 4, 40)
    vals = rng.integers(-1000, 1000, (40, 2))

    async def prog(m: Mpc) -> object:
        sx = await m.input(x if m.party == 0 else None, 0, x.shape)
        sy = await m.input(y if m.party == 1 else None, 1, y.shape)
        prod = await m.reveal(await m.mul(sx, sy))
        less = await m.reveal(await m.lt(sx, sy))
        sa = await m.input(a if m.party == 0 else None, 0, a.shape)
        sb = await m.input(b if m.party == 1 else None, 1, b.shape)
        mat = await m.reveal(await m.matmul(sa, sb))
        grouped = await m.reveal(
            await m.cross_product(
                OneHot(keys, 4) if m.party == 0 else None, vals if m.party == 1 else None,
                left=0, shape=(4, 40, 2),
            )
        )  # fmt: skip
        ordered, _ = await sort(m, sx)
        return prod, less, mat, grouped, await m.reveal(ordered)

    (prod, less, mat, grouped, ordered), _, _ = run2(prog, setup="ot")
    assert np.allclose(prod, x * y, atol=2 * 2**-16 * 100)
    assert np.array_equal(less, (x < y).astype(float))
    assert np.allclose(mat, a @ b, atol=1e-3)
    want = np.array([vals[keys == g].sum(axis=0) for g in range(4)])
    assert np.array_equal(grouped, want)
    assert np.allclose(ordered, np.sort(x), atol=2**-15)


def test_statistics_without_a_dealer_match_numpy() -> None:
    rng = np.random.default_rng(8)
    n = 120
    mine = [rng.integers(-500, 500, (n, 2)), rng.integers(-500, 500, (n, 1))]
    keys = rng.integers(0, 3, n)

    async def prog(m: Mpc) -> object:
        mo = await moments(m, mine[m.party], ["a", "b"] if m.party == 0 else ["c"],
                           (n, 1 if m.party == 0 else 2),
                           ["c"] if m.party == 0 else ["a", "b"], receiver=0)  # fmt: skip
        gs = await group_sums(
            m, key_party=1, keys=keys if m.party == 1 else None, groups=["x", "y", "z"],
            values=mine[0] if m.party == 0 else None, value_shape=(n, 2), receiver=0,
        )  # fmt: skip
        return mo, gs

    (mo, gs), _, _ = run2(prog, setup="ot")
    joined = np.hstack(mine)
    assert np.array_equal(mo.products, (joined.T @ joined).astype(float))
    assert np.array_equal(gs.sums, np.array([mine[0][keys == g].sum(axis=0) for g in range(3)]))


def test_a_truncated_correction_is_refused() -> None:
    async def run() -> None:
        mesh = LocalChannel.mesh("ot-bad", ["p0", "p1"])
        p0 = OtProvider(0, mesh["p0"]["p1"])
        ext1 = OtExtension(mesh["p1"]["p0"])
        await asyncio.gather(p0.setup(), ext1.setup())

        async def liar() -> None:  # takes party 0's choices, answers with a short correction
            await mesh["p1"]["p0"].recv("ot/1/u")
            await mesh["p1"]["p0"].send("ot/1/d", b"short")

        await asyncio.gather(p0.pair("xmul", (4,)), liar())

    with pytest.raises(ProtocolViolationError, match="expected"):
        asyncio.run(run())
