"""The comparison's carry tree: bit compaction against a per-bit reference, and the sign of
shared 64-bit values against plain arithmetic for chosen splits of each value into shares,
with a dealer and without one (both OT sources, both kernel sets)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import run2

from rainbridge.errors import ConfigError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.bits import (
    carry_widths,
    deposit_odd,
    even_bits,
    low_mask,
    odd_bits,
    word_dtype,
)
from rainbridge.protocols.mpc.engine import Secret
from rainbridge.protocols.mpc.ot import OtProvider

U64 = st.integers(0, 2**64 - 1)
EDGES = [0, 1, 2**62, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 0x5555555555555555]
WORDS = st.one_of(st.sampled_from(EDGES), U64)
WIDTHS = [2, 4, 6, 8, 10, 16, 20, 30, 32, 34, 64]
SETUPS = ["dealer", "iknp", "silent", "iknp-numpy"]


def _ref_pick(x: int, width: int, first: int) -> int:
    return sum(((x >> (2 * j + first)) & 1) << j for j in range(width // 2))


@settings(max_examples=60, deadline=None)
@given(st.lists(WORDS, min_size=0, max_size=20), st.sampled_from(WIDTHS))
def test_even_and_odd_bits_match_a_per_bit_reference(xs: list[int], width: int) -> None:
    a = np.array(xs, dtype=np.uint64)
    assert [int(v) for v in even_bits(a, width)] == [_ref_pick(x, width, 0) for x in xs]
    assert [int(v) for v in odd_bits(a, width)] == [_ref_pick(x, width, 1) for x in xs]
    # deposit_odd puts them back where they were, and nothing else
    odd_mask = int("10" * 32, 2) & ((1 << width) - 1)
    assert [int(v) for v in deposit_odd(odd_bits(a, width), width)] == [x & odd_mask for x in xs]
    half = (1 << (width // 2)) - 1
    assert [int(v) for v in odd_bits(deposit_odd(a, width), width)] == [x & half for x in xs]


def test_bit_helpers_refuse_what_they_cannot_do() -> None:
    for f in (even_bits, odd_bits, deposit_odd):
        with pytest.raises(ValueError, match="odd word width"):
            f(np.zeros(1, np.uint64), 3)
    with pytest.raises(ValueError, match="word width"):
        low_mask(0)
    with pytest.raises(ValueError, match="do not fit"):
        word_dtype(65)
    assert [word_dtype(b) for b in (1, 8, 9, 16, 17, 32, 33, 64)] == [
        np.uint8, np.uint8, np.uint16, np.uint16, np.uint32, np.uint32, np.uint64, np.uint64,
    ]  # fmt: skip


def _run(program: Any, setup: str) -> tuple[Any, Any, list[int]]:
    """(party 0's result, party 1's, each party's random OTs received; zeros with a dealer)."""
    if setup == "dealer":
        r0, r1, _ = run2(program)
        return r0, r1, [0, 0]
    source, _, kernels = setup.partition("-")

    async def main() -> list[Any]:
        mesh = LocalChannel.mesh("carry", ["p0", "p1"])

        async def party(i: int) -> tuple[Any, int]:
            ch = mesh[f"p{i}"][f"p{1 - i}"]
            prov = OtProvider(i, ch, source=source, kernels=kernels or "core")
            await prov.setup()
            m = Mpc(i, ch, prov)
            before = prov.ot.random_ots
            out = await program(m)
            used = prov.ot.random_ots - before
            await m.close()
            return out, used

        return list(await asyncio.gather(party(0), party(1)))

    (r0, n0), (r1, n1) = asyncio.run(main())
    return r0, r1, [n0, n1]


def _sign_program(values: np.ndarray, shares0: np.ndarray) -> Any:
    """Shares chosen by the test: party 0 holds ``shares0``, party 1 the rest of each value."""
    rest = values - shares0  # wraps modulo 2^64

    async def prog(m: Mpc) -> object:
        mine = shares0 if m.party == 0 else rest
        return await m.reveal(await m.ltz(Secret(mine.copy(), 0)))

    return prog


@pytest.mark.parametrize("setup", SETUPS)
@settings(max_examples=8, deadline=None)
@given(data=st.lists(st.tuples(WORDS, WORDS), min_size=0, max_size=40))
def test_the_sign_of_any_split_is_exact(setup: str, data: list[tuple[int, int]]) -> None:
    values = np.array([v for v, _ in data], dtype=np.uint64)
    shares0 = np.array([s for _, s in data], dtype=np.uint64)
    r0, _, _ = _run(_sign_program(values, shares0), setup)
    assert [int(v) for v in np.asarray(r0).reshape(-1)] == [int(v >= 2**63) for v, _ in data]


@pytest.mark.parametrize("setup", SETUPS)
def test_carries_through_every_bit_and_other_shapes(setup: str) -> None:
    # share splits whose carry runs the whole length (all-ones plus one), stops at each
    # bit, or never starts; in a 2-D array and a single value
    ones = 2**63 - 1
    pairs = [(0, ones), (2**63, ones), (2**63 - 1, 2**63 - 1)]
    pairs += [((1 << k) - 1 + (1 << 63), (1 << k) - 1) for k in range(64)]
    pairs += [(v, v) for v in EDGES]
    values = np.array([v for v, _ in pairs], dtype=np.uint64).reshape(-1, 1)
    shares0 = np.array([s for _, s in pairs], dtype=np.uint64).reshape(-1, 1)
    r0, r1, _ = _run(_sign_program(values, shares0), setup)
    assert r0.shape == values.shape
    assert np.array_equal(r0, (values >= np.uint64(2**63)).astype(r0.dtype))
    assert np.array_equal(r0, r1)
    s0, _, _ = _run(_sign_program(np.array(2**63 + 5, np.uint64), np.array(7, np.uint64)), setup)
    assert np.asarray(s0).reshape(-1).tolist() == [1]


@pytest.mark.parametrize("setup", ["iknp", "silent"])
def test_a_comparison_costs_the_stated_random_ots(setup: str) -> None:
    n = 37
    values = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    _, _, used = _run(_sign_program(values, values[::-1].copy()), setup)
    # each party chooses for half of the 63 generate bits (32 and 31, padded to 32) and
    # for one end of the tree's gates, one OT serving a level's two gates that share a p
    # bit (63 OTs for 125 gates); party 0 for the final bit (ltz's docstring: 191)
    assert used == [(32 + 63 + 1) * n, (32 + 63) * n]


@pytest.mark.parametrize("setup", ["iknp", "silent"])
@settings(max_examples=5, deadline=None)
@given(bits=st.sampled_from([1, 2, 31, 63, 64]), data=st.lists(st.tuples(WORDS, WORDS), max_size=9))
def test_direct_private_products_are_exact(
    setup: str, bits: int, data: list[tuple[int, int]]
) -> None:
    # x0 ∘ x1 for private values, x0's bits above ``bits`` zero (the method's contract)
    x0 = np.array([a for a, _ in data], dtype=np.uint64) & low_mask(bits)
    x1 = np.array([b for _, b in data], dtype=np.uint64)

    async def prog(m: Mpc) -> object:
        assert isinstance(m.provider, OtProvider)
        mine = x0 if m.party == 0 else x1
        return [await m.provider.direct_private(k, mine.copy(), bits) for k in ("xand", "xmul")]

    (and0, mul0), (and1, mul1), _ = _run(prog, setup)
    assert np.array_equal(and0 ^ and1, x0 & x1 & low_mask(bits))
    assert np.array_equal(mul0 + mul1, x0 * x1)


def _bit_matrix(words: np.ndarray, width: int) -> np.ndarray:
    """(N, width) of 0.0/1.0: bit k of each word."""
    w = np.asarray(words, dtype=np.uint64)
    return ((w[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(float)


@pytest.mark.parametrize("setup", SETUPS)
def test_every_opened_bit_is_masked_afresh(setup: str) -> None:
    # what a party sends at each level, XOR the p and g shares it opens, is its mask: every
    # bit of it must be uniform and independent of every other (other levels, the other
    # operand, other elements), and each level sends its width in the narrowest words
    n = 2048
    widths = [64, 32, 16, 8, 4, 2]
    bytes_per_element = [16, 8, 4, 2, 1, 1]  # ltz's docstring: 32 in all
    rng = np.random.default_rng(5)
    values = rng.integers(0, 2**64, n, dtype=np.uint64)
    shares0 = rng.integers(0, 2**64, n, dtype=np.uint64)

    async def prog(m: Mpc) -> object:
        opened: list[tuple[np.ndarray, np.ndarray]] = []
        sent: list[list[np.ndarray]] = []
        exchange, carry_level = m._exchange, m._carry_level

        async def spy_level(p: Any, g: Any, width: int, level: Any) -> Any:
            opened.append((p.copy(), g.copy()))
            return await carry_level(p, g, width, level)

        async def spy(what: str, arrays: Any, dtype: Any = np.uint64) -> list[Any]:
            if what == "carry":
                sent.append([np.asarray(a, dtype=dtype).copy() for a in arrays])
            return await exchange(what, arrays, dtype)

        m._carry_level = spy_level  # type: ignore[method-assign]
        m._exchange = spy  # type: ignore[method-assign]
        mine = shares0 if m.party == 0 else values - shares0
        await m.ltz(Secret(mine.copy(), 0))
        return opened, sent

    r0, r1, _ = _run(prog, setup)
    for opened, sent in (r0, r1):
        assert [sum(a.itemsize for a in arrays) for arrays in sent] == bytes_per_element
        cols = []
        for (p, g), arrays, w in zip(opened, sent, widths, strict=True):
            if w == 64:
                msgs = [a.astype(np.uint64) for a in arrays]
            else:
                (both,) = arrays
                both = both.astype(np.uint64)
                assert not (both >> np.uint64(2 * w)).any()
                msgs = [both >> np.uint64(w), both & low_mask(w)]
            masks = [msg ^ (x & low_mask(w)) for msg, x in zip(msgs, (p, g), strict=True)]
            if w == 64:  # no mask shared by two elements
                assert all(len(set(mask.tolist())) == n for mask in masks)
            cols += [_bit_matrix(mask, w) for mask in masks]
        bits = np.concatenate(cols, axis=1)  # (n, 252): every mask bit
        freq = bits.mean(axis=0)
        assert ((freq > 0.4) & (freq < 0.6)).all(), freq
        # two distinct bits agree on about half the elements (a reused mask bit agrees on
        # all of them, a complemented one on none)
        agree = (bits.T @ bits + (1 - bits).T @ (1 - bits)) / n
        np.fill_diagonal(agree, 0.5)
        assert ((agree > 0.4) & (agree < 0.6)).all()


@pytest.mark.parametrize("setup", SETUPS)
@settings(max_examples=5, deadline=None)
@given(data=st.lists(st.tuples(WORDS, WORDS, st.booleans(), st.booleans()), max_size=12))
def test_select_by_a_shared_bit_is_exact(
    setup: str, data: list[tuple[int, int, bool, bool]]
) -> None:
    # b = b0 ⊕ b1 times x = x0 + x1, the bit broadcast over two copies of x
    x0 = np.array([a for a, _, _, _ in data], dtype=np.uint64)
    x1 = np.array([b for _, b, _, _ in data], dtype=np.uint64)
    b0 = np.array([int(c) for _, _, c, _ in data], dtype=np.uint64)
    b1 = np.array([int(d) for _, _, _, d in data], dtype=np.uint64)

    async def prog(m: Mpc) -> object:
        x, b = (x0, b0) if m.party == 0 else (x1, b1)
        wide = Secret(np.stack([x, x + np.uint64(m.party)]), 0)  # the second is x + 1
        ot = m.provider.ot if isinstance(m.provider, OtProvider) else None
        before = ot.random_ots if ot else 0
        z = await m.select(b.copy(), wide)
        return z.share, (ot.random_ots - before if ot else None)

    (z0, used0), (z1, used1), _ = _run(prog, setup)
    bit = (b0 ^ b1).astype(bool)
    x = x0 + x1
    want = np.stack([np.where(bit, x, 0), np.where(bit, x + np.uint64(1), 0)]).astype(np.uint64)
    assert np.array_equal(z0 + z1, want)
    if setup != "dealer":  # each party chooses once per element of x
        assert used0 == used1 == 2 * len(data)


@pytest.mark.parametrize("setup", SETUPS)
def test_max_min_relu_stay_exact_at_the_extremes(setup: str) -> None:
    big = 2**62 - 1
    xs = np.array([0, 1, -1, big, -big, 5, -7, big, -big], dtype=np.int64)
    ys = np.array([0, -1, 1, -big, big, 5, -7, big - 1, -big + 1], dtype=np.int64)

    async def prog(m: Mpc) -> object:
        a = await m.input(xs if m.party == 0 else None, 0, xs.shape, integer=True)
        b = await m.input(ys if m.party == 1 else None, 1, ys.shape, integer=True)
        return [
            await m.reveal(await m.maximum(a, b)),
            await m.reveal(await m.minimum(a, b)),
            await m.reveal(await m.relu(a)),
        ]

    (mx, mn, relu), _, _ = _run(prog, setup)
    assert np.array_equal(mx, np.maximum(xs, ys))
    assert np.array_equal(mn, np.minimum(xs, ys))
    assert np.array_equal(relu, np.maximum(xs, 0))


def test_select_refuses_a_share_that_is_not_a_bit() -> None:
    async def prog(m: Mpc) -> object:
        with pytest.raises(ConfigError, match="0 or 1"):
            await m.select(np.array([0, 2], dtype=np.uint64), Secret(np.zeros(2, np.uint64), 0))
        return True

    assert _run(prog, "dealer")[:2] == (True, True)
    assert _run(prog, "iknp")[:2] == (True, True)


def _narrow_program(values: np.ndarray, shares0: np.ndarray, bits: int) -> Any:
    rest = values - shares0  # wraps modulo 2^64

    async def prog(m: Mpc) -> object:
        mine = shares0 if m.party == 0 else rest
        bit = await m.ltz_bit(Secret(mine.copy(), 0), bits)
        return await m.reveal(await m._additive_bit(bit))

    return prog


@pytest.mark.parametrize("setup", SETUPS)
@settings(max_examples=6, deadline=None)
@given(
    bits=st.sampled_from([2, 3, 4, 5, 8, 16, 19, 29, 32, 33, 47, 63, 64]),
    data=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), WORDS), max_size=30),
)
def test_a_narrow_comparison_is_exact_within_its_bound(
    setup: str, bits: int, data: list[tuple[float, int]]
) -> None:
    # values anywhere in [-2^(bits-1), 2^(bits-1)), the edges included, split by shares
    # over the whole ring: the bits above the width differ between the shares
    lo = -(2 ** (bits - 1))
    vals = [lo + int(f * 2**bits) for f, _ in data] + [lo, -1, 0, 2 ** (bits - 1) - 1]
    shares = [s for _, s in data] + [2**64 - 1, 2**63, 5, 2**63 - 1]
    values = np.array([v % 2**64 for v in vals], dtype=np.uint64)
    r0, r1, _ = _run(_narrow_program(values, np.array(shares, dtype=np.uint64), bits), setup)
    assert [int(v) for v in np.asarray(r0).reshape(-1)] == [int(v < 0) for v in vals]
    assert np.array_equal(r0, r1)


@pytest.mark.parametrize("setup", ["iknp", "silent"])
@pytest.mark.parametrize(("bits", "gen", "tree"), [(32, 16, 31), (19, 9, 21), (29, 14, 30)])
def test_a_narrow_comparison_costs_its_width(setup: str, bits: int, gen: int, tree: int) -> None:
    n = 29
    values = (np.arange(n, dtype=np.uint64) - np.uint64(14)) * np.uint64(1 << (bits - 7))
    _, _, used = _run(_narrow_program(values, values[::-1].copy(), bits), setup)
    # bits - 1 generate bits split between the parties (the larger half each way), one OT
    # each way per gate pair of every level (odd levels padded), one for the conversion
    assert used == [(gen + tree + 1) * n, (gen + tree) * n]
    assert sum(w // 2 for w in carry_widths(bits)[0]) == tree


def test_carry_levels_pad_odd_widths() -> None:
    assert carry_widths(64) == ([64, 32, 16, 8, 4, 2], [False] * 6)
    assert carry_widths(19) == ([20, 10, 6, 4, 2], [True, False, True, True, False])
    assert carry_widths(3) == ([4, 2], [True, False])
    assert carry_widths(2) == ([2], [False])
    with pytest.raises(ValueError, match="over 1 leaves"):
        carry_widths(1)


def test_a_comparison_refuses_a_width_it_has_no_tree_for() -> None:
    async def prog(m: Mpc) -> object:
        for bits in (-1, 0, 1, 65, 128):
            with pytest.raises(ConfigError, match="2 to 64"):
                await m.ltz_bit(Secret(np.zeros(3, np.uint64), 0), bits)
        return True

    r0, r1, _ = _run(prog, "dealer")
    assert r0 and r1
