"""Products of private matrices whose entries have a public bit width: exact against numpy
modulo 2^64 with a dealer and without one, at the widths' extremes; entries beyond the
width refused at their party, a width the two parties disagree on refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_carry import SETUPS, _run

from rainbridge.errors import ConfigError, ProtocolViolationError
from rainbridge.net.local import LocalChannel
from rainbridge.protocols.mpc import Mpc
from rainbridge.protocols.mpc.ot import OtProvider


def _program(  # type: ignore[no-untyped-def]
    x: np.ndarray,
    y: np.ndarray,
    bits: int,
    right_bits: int | None = None,
    y_bits: int = 64,
    left_y_bits: int | None = None,
):
    p, n = x.shape
    q = y.shape[1]

    async def prog(m: Mpc) -> object:
        z = await m.cross_product(
            x if m.party == 0 else None,
            y if m.party == 1 else None,
            left=0,
            shape=(p, n, q),
            x_bits=bits if m.party == 0 or right_bits is None else right_bits,
            y_bits=left_y_bits if m.party == 0 and left_y_bits is not None else y_bits,
        )
        return z.share

    return prog


@pytest.mark.parametrize("setup", SETUPS)
@settings(max_examples=6, deadline=None)
@given(
    bits=st.sampled_from([2, 3, 27, 63, 64]),
    p=st.integers(1, 3),
    n=st.integers(0, 9),
    q=st.integers(1, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_bounded_entries_multiply_exactly(
    setup: str, bits: int, p: int, n: int, q: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    x = rng.integers(lo, hi, (p, n), dtype=np.int64, endpoint=True)
    x.flat[:2] = [lo, hi][: x.size]  # both extremes whenever there is room
    y = rng.integers(-(2**63), 2**63 - 1, (n, q), dtype=np.int64, endpoint=True)
    y.flat[:2] = [-(2**63), 2**63 - 1][: y.size]  # the chooser's extremes when Y chooses
    s0, s1, used = _run(_program(x, y, bits), setup)
    want = np.matmul(x.view(np.uint64), y.view(np.uint64))  # wraps modulo 2^64
    assert np.array_equal(s0 + s1, want)
    if setup != "dealer":
        # the chooser's OTs: one per bit of each entry of X, or 64 per entry of Y where
        # that moves fewer bytes
        assert used in ([p * n * bits, 0], [0, n * q * 64])
        assert (used[1] > 0) == _right_chooses(setup, (p, n, q), bits)


def _right_chooses(setup: str, shape: tuple[int, int, int], bits: int) -> bool:
    prov = OtProvider(
        0, LocalChannel.mesh("rule", ["a", "b"])["a"]["b"], source=setup.split("-")[0]
    )
    return prov._right_chooses(shape, bits)


@pytest.mark.parametrize("setup", ["iknp", "silent"])
def test_a_gradients_shape_takes_the_cheaper_orientation_and_stays_exact(setup: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(-(2**26), 2**26, (12, 256), dtype=np.int64)  # Xᵀ of a batch
    y = rng.integers(-(2**63), 2**63 - 1, (256, 1), dtype=np.int64, endpoint=True)
    s0, s1, used = _run(_program(x, y, 27), setup)
    assert np.array_equal(s0 + s1, np.matmul(x.view(np.uint64), y.view(np.uint64)))
    # IKNP: the residual's 64 bits choose (16 B each) rather than 12 · 27 feature bits;
    # silent OT, whose choices cost a bit each, keeps the features' bits (fewer bytes)
    want = [0, 256 * 64] if setup == "iknp" else [12 * 256 * 27, 0]
    assert used == want


@pytest.mark.parametrize("setup", ["dealer", "iknp"])
def test_an_entry_beyond_the_width_is_refused_at_the_left_party(setup: str) -> None:
    x = np.array([[1, 2**26]], dtype=np.int64)
    y = np.ones((2, 1), dtype=np.int64)
    with pytest.raises(ConfigError, match="beyond 27-bit"):
        _run(_program(x, y, 27), setup)


def test_a_width_the_parties_disagree_on_is_refused() -> None:
    x = np.array([[1, -3]], dtype=np.int64)
    y = np.ones((2, 1), dtype=np.int64)
    with pytest.raises(ProtocolViolationError, match="bad entry width"):
        _run(_program(x, y, 27, right_bits=30), "iknp")
    with pytest.raises(ConfigError, match="2 to 64"):
        _run(_program(x, y, 1), "iknp")


@pytest.mark.parametrize(
    "told",
    [b"", b"\x00", b"\x1b", b"\x02\x40", b"\x1a\x40", b"\x40\x40", b"\x1b\x00",
     b"\x1b\x3f", b"\x1b\x40\x00"],
)  # fmt: skip
def test_a_malformed_entry_width_is_refused(told: bytes) -> None:
    # the right party (entries of 27 bits, Y's of 64) hears the left's announcement, the
    # first message of the product: only 27 (or 1 for one-hot groups) and 64 is an
    # orientation both can agree on
    y = np.ones((2, 1), dtype=np.int64)

    async def prog(m: Mpc) -> object:
        if m.party == 0:
            assert isinstance(m.provider, OtProvider)
            await m.provider.ot.ch.send("ot/bits", told)
            return None
        return await m.cross_product(None, y, left=0, shape=(1, 2, 1), x_bits=27)

    with pytest.raises(ProtocolViolationError, match="bad entry width"):
        _run(prog, "iknp")


@pytest.mark.parametrize("setup", SETUPS)
@settings(max_examples=6, deadline=None)
@given(
    y_bits=st.sampled_from([1, 2, 18, 63, 64]),
    p=st.integers(1, 13),
    n=st.integers(0, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_narrow_right_entries_multiply_exactly(
    setup: str, y_bits: int, p: int, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**26), 2**26 - 1, (p, n), dtype=np.int64, endpoint=True)
    top = 2**y_bits - 1
    y = rng.integers(0, top, (n, 1), dtype=np.uint64, endpoint=True)
    y.flat[:2] = [top, 0][: y.size]
    s0, s1, used = _run(_program(x, y.view(np.int64), 27, y_bits=y_bits), setup)
    assert np.array_equal(s0 + s1, np.matmul(x.view(np.uint64), y))
    if setup != "dealer":
        prov = OtProvider(
            0, LocalChannel.mesh("rule", ["a", "b"])["a"]["b"], source=setup.split("-")[0]
        )
        right = prov._right_chooses((p, n, 1), 27, y_bits)
        assert used == ([0, n * y_bits] if right else [p * n * 27, 0])


@pytest.mark.parametrize("setup", ["iknp", "silent"])
def test_a_narrow_residual_chooses_by_its_own_bits(setup: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(-(2**26), 2**26, (12, 256), dtype=np.int64)
    y = rng.integers(0, 2**18, (256, 1), dtype=np.int64)
    s0, s1, used = _run(_program(x, y, 27, y_bits=18), setup)
    assert np.array_equal(s0 + s1, np.matmul(x.view(np.uint64), y.view(np.uint64)))
    # 18 OTs per row, with either source, rather than 12 · 27 (or 64 per row with IKNP)
    assert used == [0, 256 * 18]


@pytest.mark.parametrize("setup", ["dealer", "iknp"])
def test_a_right_entry_beyond_its_width_is_refused(setup: str) -> None:
    x = np.array([[1, 2]], dtype=np.int64)
    y = np.array([[3], [2**18]], dtype=np.int64)
    with pytest.raises(ConfigError, match="more than 18 bits"):
        _run(_program(x, y, 27, y_bits=18), setup)
    with pytest.raises(ConfigError, match="more than 18 bits"):
        _run(_program(x, -np.ones((2, 1), dtype=np.int64), 27, y_bits=18), setup)


def test_a_right_width_the_parties_disagree_on_is_refused() -> None:
    x = np.array([[1, -3]], dtype=np.int64)
    y = np.ones((2, 1), dtype=np.int64)
    with pytest.raises(ProtocolViolationError, match="bad entry width"):
        _run(_program(x, y, 27, y_bits=18, left_y_bits=19), "iknp")
    with pytest.raises(ConfigError, match="1 to 64"):
        _run(_program(x, y, 27, y_bits=0), "iknp")
