"""Non-linear functions against numpy, within the bounds their module documents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from mpc_helpers import run2

from rainbridge.protocols.mpc import Mpc, Secret
from rainbridge.protocols.mpc import functions as F

Fn = Callable[[Mpc, Secret], Awaitable[Secret]]
ULP = 2.0**-16


def _q(x: np.ndarray) -> np.ndarray:
    return np.round(x / ULP) * ULP  # the fixed-point input the parties actually hold


def _apply(fn: Fn, x: np.ndarray) -> np.ndarray:
    async def prog(m: Mpc) -> object:
        a = await m.input(x if m.party == 0 else None, 0, x.shape)
        return await m.reveal(await fn(m, a))

    out, _, _ = run2(prog)
    return np.asarray(out)


def _within(got: np.ndarray, want: np.ndarray, rel: float, abs_: float) -> bool:
    return bool(np.all(np.abs(got - want) <= rel * np.abs(want) + abs_))


POS = _q(np.concatenate([2.0 ** np.linspace(-8, 27.9, 80), [1.0, 3.0, 1000.0, 123456.0]]))


@pytest.mark.parametrize(
    ("fn", "ref", "x", "rel", "abs_"),
    [
        (F.reciprocal, lambda v: 1 / v, POS, 2**-10, 2**-14),
        (F.sqrt, np.sqrt, np.concatenate([[0.0], POS]), 2**-10, 2**-14),
        (F.exp, np.exp, _q(np.linspace(-16, 18, 69)), 2**-10, 2**-14),
        (F.log, np.log, POS, 0.0, 2**-10),
        (F.sigmoid, lambda v: 1 / (1 + np.exp(-v)), _q(np.linspace(-40, 40, 81)), 0.0, 2**-12),
    ],
)
def test_functions_within_their_documented_bounds(
    fn: Fn, ref: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rel: float, abs_: float
) -> None:
    assert _within(_apply(fn, x), ref(x), rel, abs_)
    assert fn.__name__ in (F.__doc__ or "")  # the bound is documented


def test_division() -> None:
    y = _q(np.array([0.5, 3.0, 10.0, 1e5, 7.25]))
    x = _q(np.array([1.0, -7.5, 100.0, 3e5, 0.0]))

    async def prog(m: Mpc) -> object:
        a = await m.input(x if m.party == 0 else None, 0, x.shape)
        b = await m.input(y if m.party == 1 else None, 1, y.shape)
        return await m.reveal(await F.div(m, a, b), to=0)

    q, nothing, _ = run2(prog)
    assert nothing is None
    assert _within(q, x / y, 2**-9, 2**-14 * np.abs(x) + 2 * ULP)
