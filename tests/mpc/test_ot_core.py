"""The core's OT kernels (rust/src/gilboa.rs) against the numpy reference in ot.py: the same
inputs give byte-identical messages and shares, so a party may run either; wrong lengths are
refused with ValueError (core) and ProtocolViolationError (a peer's message), never a crash."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainbridge import _core
from rainbridge.errors import ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc.ot import OtExtension
from rainbridge.protocols.mpc.ot_kernels import (
    KAPPA,
    _choice_bits_core,
    _CoreHash,
    _gilboa_receive_core,
    _gilboa_send_core,
    _Hash,
    _IknpReceiverCore,
    _IknpReceiverReference,
    _IknpSenderCore,
    _IknpSenderReference,
    _Streams,
    choice_bits_reference,
    gilboa_receive_reference,
    gilboa_send_reference,
)

U64 = np.uint64


def _words(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2**64, shape, dtype=U64)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32),
    st.sampled_from([0, 1, 2, 3, 7, 31, 33, 64, 65]),
    st.integers(1, 64),
    st.integers(1, 3),
    st.booleans(),
    st.integers(0, 2**62),
)
def test_gilboa_kernels_match_the_reference(
    seed: int, n: int, bits: int, words: int, gf2: bool, first: int
) -> None:
    _check_gilboa_kernels(seed, n, bits, words, gf2, first)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32),
    st.sampled_from([0, 1, 3, 33]),
    st.integers(1, 64),
    st.integers(1, 64),
    st.integers(0, 2**62),
)
def test_gf2_kernels_match_the_reference_for_every_word_count(
    seed: int, n: int, bits: int, words: int, first: int
) -> None:
    # one OT of a GF(2) product pads up to 64 words, each by its own bit of the hash: the
    # comparison uses 1 and 2 words, but the kernels take any count up to 64
    v = _check_gilboa_kernels(seed, n, bits, words, True, first)
    if words > 1 and n * bits >= 64:
        # no bit of a hash pads two words: the sender's shares (its pads) differ by word
        assert all(not np.array_equal(v[:, 0], v[:, w]) for w in range(1, words))


def _check_gilboa_kernels(
    seed: int, n: int, bits: int, words: int, gf2: bool, first: int
) -> np.ndarray:
    """Core against reference for one shape; the sender's shares."""
    rng = np.random.default_rng(seed)
    x = _words(rng, (n,))
    y = _words(rng, (n, words))
    delta = _words(rng, (2,))
    t_rows = _words(rng, (n * bits, 2))
    q_rows = t_rows ^ (choice_bits_bits(x, bits)[:, None] * delta[None, :])

    assert _same(_choice_bits_core(x, bits), choice_bits_reference(x, bits))
    d_ref, v_ref = gilboa_send_reference(q_rows, delta, first, y, bits, words, gf2)
    d, v = _gilboa_send_core(q_rows, delta, first, y, bits, words, gf2)
    assert _same(d, d_ref) and _same(v, v_ref)
    u_ref = gilboa_receive_reference(t_rows, first, x, d_ref, bits, words, gf2)
    u = _gilboa_receive_core(t_rows, first, x, d, bits, words, gf2)
    assert _same(u, u_ref)
    # and the shares are those of the product (of x's low bits)
    xs = x & U64((1 << bits) - 1)
    with np.errstate(over="ignore"):
        if gf2:
            assert np.array_equal(u ^ v, xs[:, None] & y)
        else:
            assert np.array_equal(u + v, xs[:, None] * y)
    return v


def choice_bits_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """OT i·bits + k's choice, bit k of x[i], as a uint64 0/1 per OT."""
    return ((x[:, None] >> np.arange(bits, dtype=U64)) & U64(1)).reshape(-1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 300), st.integers(1, 6), st.integers(0, 2**62))
def test_the_hash_matches_the_reference(seed: int, m: int, words: int, first: int) -> None:
    rows = _words(np.random.default_rng(seed), (m, 2))
    assert _same(_CoreHash()(rows, first, words), _Hash()(rows, first, words))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(0, 20_000), min_size=1, max_size=5))
def test_iknp_expansion_matches_the_reference(seed: int, sizes: list[int]) -> None:
    rng = np.random.default_rng(seed)
    k0, k1 = os.urandom(16 * KAPPA), os.urandom(16 * KAPPA)
    s_bits = rng.integers(0, 2, KAPPA).astype(np.uint8)
    recv = (_IknpReceiverReference(k0, k1), _IknpReceiverCore(k0, k1))
    send = (_IknpSenderReference(k0, s_bits), _IknpSenderCore(k0, s_bits))
    for m in sizes:  # consecutive reads: the streams continue at unaligned byte offsets
        r = rng.integers(0, 256, (m + 7) // 8, dtype=np.uint8)
        if m % 8:
            r[-1] &= (1 << (m % 8)) - 1  # packbits leaves the unused bits zero
        (u_ref, t_ref), (u, t) = recv[0].choose(r, m), recv[1].choose(r, m)
        assert _same(u, u_ref) and _same(t, t_ref)
        assert _same(send[1].rows(u, m), send[0].rows(u_ref, m))


def test_the_core_streams_are_openssls_ctr_streams() -> None:
    keys = os.urandom(16 * KAPPA)
    ref, core = _Streams(keys), _core.OtStreams(keys)
    for n in [0, 1, 15, 16, 17, 1000, 3]:
        assert core.read(n) == ref.read(n).tobytes()


@pytest.mark.parametrize("source", ["iknp", "silent"])
def test_a_core_party_and_a_numpy_party_agree(source: str) -> None:
    """The wire format does not depend on the kernels: one party on each still multiplies."""
    rng = np.random.default_rng(5)
    n = 333
    x = [_words(rng, (n,)) for _ in range(2)]
    y = [_words(rng, (n, 2)) for _ in range(2)]

    async def main():  # type: ignore[no-untyped-def]
        mesh = LocalChannel.mesh("ot-mix", ["p0", "p1"])
        exts = [
            OtExtension(mesh["p0"]["p1"], source=source, kernels="core"),
            OtExtension(mesh["p1"]["p0"], source=source, kernels="numpy"),
        ]
        await asyncio.gather(*(e.setup() for e in exts))

        async def job(i: int):  # type: ignore[no-untyped-def]
            a = await exts[i].products(x[i], y[i], bits=64, words=2, their_n=n)
            b = await exts[i].products(x[i], y[i][:, :1], bits=64, words=1, their_n=n, gf2=True)
            c = await exts[i].products(x[i] & U64(1), y[i], bits=1, words=2, their_n=n)
            return a, b, c

        return await asyncio.gather(job(0), job(1))

    got = asyncio.run(main())
    with np.errstate(over="ignore"):
        for i, j in [(0, 1), (1, 0)]:
            (ai, bi, ci), (aj, bj, cj) = got[i], got[j]
            assert np.array_equal(ai[0] + aj[1], x[i][:, None] * y[j])
            assert np.array_equal(bi[0][:, 0] ^ bj[1][:, 0], x[i] & y[j][:, 0])
            assert np.array_equal(ci[0] + cj[1], (x[i] & U64(1))[:, None] * y[j])


def test_the_core_refuses_wrong_lengths_with_value_errors() -> None:
    rows = np.zeros((64, 2), dtype=U64)
    y = np.zeros((1, 1), dtype=U64)
    delta = bytes(16)
    with pytest.raises(ValueError):
        _core.gilboa_send(rows[:63], delta, 0, y, 64, 1, False)
    with pytest.raises(ValueError):
        _core.gilboa_send(rows, delta[:15], 0, y, 64, 1, False)
    with pytest.raises(ValueError):
        _core.gilboa_send(rows, delta, 0, y, 65, 1, False)
    with pytest.raises(ValueError):
        _core.gilboa_send(rows, delta, 0, y, 64, 0, False)
    with pytest.raises(ValueError):
        _core.gilboa_receive(rows, 0, y[0], bytes(287), 64, 1, False)
    with pytest.raises(ValueError):
        _core.gilboa_receive(rows, 0, y[0], bytes(7), 64, 1, True)
    with pytest.raises(ValueError):
        _core.gilboa_receive(rows[:1], 0, y[0], bytes(288), 64, 1, False)
    with pytest.raises(ValueError):
        _core.ot_choice_bits(y, 0)
    with pytest.raises(ValueError):
        _core.ot_hash(bytes(15), 0, 1)
    r = _core.IknpReceiver(bytes(16 * KAPPA), bytes(16 * KAPPA))
    with pytest.raises(ValueError):
        r.choose(bytes(2), 8)
    s = _core.IknpSender(bytes(16 * KAPPA), bytes(16))
    with pytest.raises(ValueError):
        s.rows(bytes(KAPPA - 1), 8)
    with pytest.raises(ValueError):
        _core.IknpSender(bytes(16 * KAPPA - 1), bytes(16))
    with pytest.raises(ValueError):
        _core.IknpReceiver(bytes(16 * KAPPA), bytes(3))


@pytest.mark.parametrize("which", ["u", "d"])
@pytest.mark.parametrize("kernels", ["core", "numpy"])
def test_a_peer_message_of_the_wrong_length_is_a_protocol_violation(
    which: str, kernels: str
) -> None:
    n = 10
    x = np.arange(n, dtype=U64)
    y = np.ones((n, 1), dtype=U64)

    async def main() -> None:
        mesh = LocalChannel.mesh("ot-bad", ["p0", "p1"])
        honest = OtExtension(mesh["p0"]["p1"], kernels=kernels)
        peer = OtExtension(mesh["p1"]["p0"], kernels=kernels)
        await asyncio.gather(honest.setup(), peer.setup())
        ch = mesh["p1"]["p0"]

        async def cheat() -> None:
            # the honest party receives for x and sends for y: the peer does the opposite
            if which == "u":
                await ch.send("ot/1/u", bytes(KAPPA * (n * 64 // 8) - 1))
            else:
                await ch.send("ot/1/u", bytes(KAPPA * (n * 64 // 8)))
                await ch.recv("ot/1/u")
                await ch.send("ot/1/d", bytes(n * 288 - 1))

        with pytest.raises(ProtocolViolationError):
            await asyncio.gather(honest.products(x, y, bits=64, words=1, their_n=n), cheat())

    asyncio.run(main())
