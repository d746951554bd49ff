"""The dealer-free setup: OT extension and Gilboa products, then the engine's operations on
its randomness, against numpy on the plaintext (the same checks as with a dealer)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import run2

from rainbridge import _core
from rainbridge.errors import PeerDisconnectedError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc import Mpc, OneHot
from rainbridge.protocols.mpc.ot import OtExtension, OtProvider
from rainbridge.protocols.mpc.ot_kernels import _trim, _trimmed_bytes, _untrim
from rainbridge.protocols.mpc.sort import sort
from rainbridge.protocols.mpc.stats import group_sums, moments

SOURCES = ["silent", "iknp"]


def _pair(job, source: str = "silent"):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        mesh = LocalChannel.mesh("ot-test", ["p0", "p1"])
        exts = [
            OtExtension(mesh["p0"]["p1"], source=source),
            OtExtension(mesh["p1"]["p0"], source=source),
        ]
        await asyncio.gather(*(e.setup() for e in exts))
        return await asyncio.gather(job(0, exts[0]), job(1, exts[1]))

    return asyncio.run(main())


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 300), st.integers(1, 3), st.sampled_from(SOURCES))
def test_gilboa_products_share_x_times_y_in_both_directions(
    seed: int, n: int, w: int, source: str
) -> None:
    rng = np.random.default_rng(seed)
    x = [rng.integers(0, 2**64, n, dtype=np.uint64) for _ in range(2)]
    y = [rng.integers(0, 2**64, (n, w), dtype=np.uint64) for _ in range(2)]

    async def job(i: int, ext: OtExtension) -> object:
        return await ext.products(x[i], y[i], bits=64, words=w, their_n=n)

    (u0, v0), (u1, v1) = _pair(job, source)
    with np.errstate(over="ignore"):
        assert np.array_equal(u0 + v1, x[0][:, None] * y[1])  # party 0 chose, 1 sent
        assert np.array_equal(u1 + v0, x[1][:, None] * y[0])


@pytest.mark.parametrize("source", SOURCES)
def test_bitwise_and_and_bit_products(source: str) -> None:
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

    (u_and, u_bit), (v_and, v_bit) = _pair(job, source)
    assert np.array_equal(u_and[:, 0] ^ v_and[:, 0], x & y[:, 0])
    with np.errstate(over="ignore"):
        assert np.array_equal(u_bit[:, 0] + v_bit[:, 0], bits * y[:, 0])
    assert (u_and[:, 0] != x & y[:, 0]).any()  # a share alone is not the answer


def _run_ot(program, source: str):  # type: ignore[no-untyped-def]
    """run2's dealer-free session with a chosen OT source: (party 0's, party 1's result)."""

    async def main():  # type: ignore[no-untyped-def]
        mesh = LocalChannel.mesh("ot-src", ["p0", "p1"])

        async def party(i: int):  # type: ignore[no-untyped-def]
            ch = mesh[f"p{i}"][f"p{1 - i}"]
            prov = OtProvider(i, ch, source=source)
            await prov.setup()
            m = Mpc(i, ch, prov)
            out = await program(m)
            await m.close()
            return out

        return await asyncio.gather(party(0), party(1))

    return asyncio.run(main())


@pytest.mark.parametrize("source", SOURCES)
def test_the_engine_on_dealer_free_randomness(source: str) -> None:
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

    (prod, less, mat, grouped, ordered), _ = _run_ot(prog, source)
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
        p0 = OtProvider(0, mesh["p0"]["p1"], source="silent")
        ext1 = OtExtension(mesh["p1"]["p0"], source="silent")
        await asyncio.gather(p0.setup(), ext1.setup())

        async def liar() -> None:  # serves party 0's OTs, answers with a short correction
            assert ext1._silent is not None
            await ext1._silent.ensure(0, 4 * 64)
            await mesh["p1"]["p0"].recv("ot/1/u")
            await mesh["p1"]["p0"].send("ot/1/d", b"short")

        await asyncio.gather(p0.pair("xmul", (4,)), liar())

    with pytest.raises(ProtocolViolationError, match="expected"):
        asyncio.run(run())


def _silent_session() -> tuple[_core.SilentCotReceiver, _core.SilentCotSender]:
    r, a = _core.SilentCotReceiver.start()
    s = _core.SilentCotSender()
    s.on_matrix(r.on_base(s.on_setup(a)))
    return r, s


@settings(max_examples=5, deadline=None)
@given(st.lists(st.integers(1, 50_000), min_size=1, max_size=3))
def test_silent_correlated_ots_satisfy_m_equals_k_xor_b_delta(sizes: list[int]) -> None:
    r, s = _silent_session()
    delta = np.frombuffer(s.delta(), dtype=np.uint64)
    for m in sizes:
        trees, keys = s.on_request(r.request(m))
        packed, rows = r.on_trees(trees)
        b = np.unpackbits(np.frombuffer(packed, np.uint8), count=m, bitorder="little")
        k = np.frombuffer(keys, dtype=np.uint64).reshape(m, 2)
        mm = np.frombuffer(rows, dtype=np.uint64).reshape(m, 2)
        assert np.array_equal(mm, k ^ (b[:, None].astype(np.uint64) * delta[None, :]))


def test_silent_messages_of_the_wrong_shape_are_refused_and_lose_nothing() -> None:
    r, s = _silent_session()
    req = r.request(1000)
    with pytest.raises(ValueError, match="request"):
        s.on_request(req[:-1])
    with pytest.raises(ValueError):
        s.on_request((0).to_bytes(8, "little") + req[8:])
    trees, keys = s.on_request(req)
    with pytest.raises(ValueError, match="tree message"):
        r.on_trees(trees[:-16])
    _, rows = r.on_trees(trees)  # the refused message left the batch as it was
    assert len(rows) == len(keys) == 16 * 1000
    with pytest.raises(ValueError, match="without a request"):
        r.on_trees(trees)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 64), st.integers(1, 3), st.integers(0, 2**32))
def test_trimmed_corrections_keep_what_bit_k_needs(bits: int, words: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 5
    d = rng.integers(0, 2**64, (n, bits, words), dtype=np.uint64)
    t = _trim(d)
    assert t.size == n * words * _trimmed_bytes(bits)
    back = _untrim(t, n, bits, words)
    shifts = np.arange(bits, dtype=np.uint64)[None, :, None]
    assert np.array_equal(back << shifts, d << shifts)  # equal modulo 2^(64-k)
    assert _trimmed_bytes(64) == 288


@pytest.mark.parametrize("where", ["batch", "correction"])
def test_a_peer_leaving_during_silent_ot_fails_the_other_cleanly(where: str) -> None:
    async def run() -> None:
        mesh = LocalChannel.mesh("ot-quit", ["p0", "p1"], timeout=5)
        p0 = OtProvider(0, mesh["p0"]["p1"], source="silent")
        ext1 = OtExtension(mesh["p1"]["p0"], source="silent")
        await asyncio.gather(p0.setup(), ext1.setup())

        async def quitter() -> None:
            if where == "correction":
                assert ext1._silent is not None
                await ext1._silent.ensure(8 * 64, 8 * 64)
            await mesh["p1"]["p0"].abort("out of memory")

        await asyncio.gather(p0.begin_triple("mul", (8,), (8,)), quitter())

    with pytest.raises(PeerDisconnectedError, match="out of memory"):
        asyncio.run(run())


def test_a_forged_silent_batch_is_refused() -> None:
    async def run() -> None:
        mesh = LocalChannel.mesh("ot-forge", ["p0", "p1"], timeout=5)
        p0 = OtProvider(0, mesh["p0"]["p1"], source="silent")
        ext1 = OtExtension(mesh["p1"]["p0"], source="silent")
        await asyncio.gather(p0.setup(), ext1.setup())

        async def forger() -> None:  # answers party 0's request with a short tree message
            ch = mesh["p1"]["p0"]
            await ch.recv("ot/cot/0/q")
            await ch.send("ot/cot/0/t", bytes(48))

        await asyncio.gather(p0.pair("xmul", (4,)), forger())

    with pytest.raises(ProtocolViolationError, match="silent OT batch"):
        asyncio.run(run())


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(SOURCES))
def test_triples_and_comparisons_match_plaintext_in_both_sources(seed: int, source: str) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 100, 30)
    y = rng.normal(0, 100, 30)

    async def prog(m: Mpc) -> object:
        sx = await m.input(x if m.party == 0 else None, 0, x.shape)
        sy = await m.input(y if m.party == 1 else None, 1, y.shape)
        return await m.reveal(await m.mul(sx, sy)), await m.reveal(await m.lt(sx, sy))

    (prod, less), _ = _run_ot(prog, source)
    assert np.allclose(prod, x * y, atol=2 * 2**-16 * 200)
    assert np.array_equal(less, (x < y).astype(float))
