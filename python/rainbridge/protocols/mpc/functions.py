"""Non-linear functions on secret fixed-point values, with their error bounds.

Each function first finds, for every element, the power of two it lies under: one batched
comparison of ``x`` against the public thresholds 2^k (k from -f to :data:`MAX_EXP`) gives
secret indicator bits e_k. Scaling by the secret 2^-(k+1) is then one batched
multiplication of those bits with locally shifted copies of ``x``, so that no product ever
leaves the fixed-point range; Newton's method or a short polynomial finishes on a value
normalised to [1/2, 1). Costs: one comparison of (f + MAX_EXP) times the input's size, then
about a dozen multiplications.

Bounds, with the default 16 fractional bits, as |error| ≤ rel·|f(x)| + abs (the abs term is
the fixed-point resolution showing through), measured against numpy on the fixed-point
input in tests/mpc/test_functions.py over the domains stated:

================  ==========================  ============  ============
function          domain                      rel           abs
================  ==========================  ============  ============
``reciprocal``    2^-8 ≤ x < 2^28             2^-10         2^-14
``div`` (x / y)   y as for reciprocal         2^-10         2^-14·|x|
``sqrt``          0 ≤ x < 2^28                2^-10         2^-14
``exp``           -16 ≤ x ≤ 18                2^-10         2^-14
``log``           2^-8 ≤ x < 2^28             —             2^-10
``sigmoid``       any (clamped to ±14)        —             2^-12
================  ==========================  ============  ============
"""

from __future__ import annotations

import math

import numpy as np

from rainbridge.protocols.mpc.engine import Mpc, Secret
from rainbridge.protocols.mpc.ring import Ring, encode

#: largest exponent the range search covers: 2^MAX_EXP (values must stay below 2^(62-2f))
MAX_EXP = 28
_NEWTON = 4


def _ks(mpc: Mpc) -> list[int]:
    return list(range(-mpc.frac, MAX_EXP))


async def _indicators(mpc: Mpc, x: Secret, thresholds: list[float]) -> Secret:
    """Integer bits e_i = [t_i ≤ x < t_(i+1)] for increasing public thresholds (the last
    interval open above), shape (len(thresholds), *x.shape): one batched comparison."""
    shape = (len(thresholds), *x.shape)
    t = encode(np.array(thresholds).reshape((-1,) + (1,) * len(x.shape)), x.frac)
    t = np.broadcast_to(t, shape)
    diff = np.broadcast_to(x.share, shape) - (t if mpc.party == 0 else np.zeros_like(t))
    ge = mpc.one_minus(await mpc.ltz(Secret(np.ascontiguousarray(diff), x.frac)))
    nxt = np.concatenate([ge.share[1:], np.zeros_like(ge.share[:1])])
    return Secret(ge.share - nxt, 0)


def _combine(mpc: Mpc, e: Secret, coeffs: list[float]) -> Secret:
    """Σ_k e_k · c_k for public reals c_k (local: the e_k are integer secrets)."""
    c = encode(np.array(coeffs).reshape((-1,) + (1,) * (e.share.ndim - 1)), mpc.frac)
    return Secret(np.asarray(np.sum(e.share * c, axis=0, dtype=np.uint64)), mpc.frac)


def _shift(mpc: Mpc, v: Secret, s: int) -> Ring:
    """This party's share of v · 2^s (a local shift; right shifts truncate)."""
    if s >= 0:
        return v.share << np.uint64(s)
    return mpc.truncate(Secret(v.share, v.frac + (-s)), -s).share


async def _select_scaled(
    mpc: Mpc, e: Secret, v: Secret, shifts: list[int], factors: list[float] | None = None
) -> Secret:
    """Σ_k e_k · v · 2^shifts[k] (· factors[k]): one batched multiplication of the bits by
    locally scaled copies of v, so no product ever leaves the fixed-point range."""
    copies = []
    for k, s in enumerate(shifts):
        c = Secret(_shift(mpc, v, s), v.frac)
        if factors is not None and factors[k] != 1.0:
            c = mpc.mul_public(c, factors[k])
        copies.append(c.share)
    prod = await mpc.mul(e, Secret(np.stack(copies), v.frac))
    return Secret(np.asarray(np.sum(prod.share, axis=0, dtype=np.uint64)), v.frac)


async def _normalise(mpc: Mpc, x: Secret) -> tuple[Secret, Secret, list[int]]:
    """(e, m, ks): octave bits of x > 0 and m = x · 2^-(k+1) in [1/2, 1)."""
    ks = _ks(mpc)
    e = await _indicators(mpc, x, [2.0**k for k in ks])
    m = await _select_scaled(mpc, e, x, [-(k + 1) for k in ks])
    return e, m, ks


async def _recip_unit(mpc: Mpc, m: Secret) -> Secret:
    """1/m for m in [1/2, 1): Newton from the linear start 2.9142 - 2m (error ≤ 0.09)."""
    y = mpc.add_public(mpc.mul_public_int(m, -2), 2.9142)
    for _ in range(_NEWTON):
        my = await mpc.mul(m, y)
        y = await mpc.mul(y, mpc.add_public(mpc.neg(my), 2.0))
    return y


async def reciprocal(mpc: Mpc, x: Secret) -> Secret:
    """1/x for x > 0 (see the module's table for the domain and error)."""
    e, m, ks = await _normalise(mpc, x)
    r = await _recip_unit(mpc, m)  # in (1, 2]
    return await _select_scaled(mpc, e, r, [-(k + 1) for k in ks])


async def div(mpc: Mpc, x: Secret, y: Secret) -> Secret:
    """x / y for y > 0: x times the reciprocal of y."""
    return await mpc.mul(x, await reciprocal(mpc, y))


async def _rsqrt_unit(mpc: Mpc, m: Secret) -> Secret:
    """1/sqrt(m) for m in [1/2, 1): Newton from a linear start (error ≤ 0.04)."""
    y = mpc.add_public(mpc.mul_public(m, -0.8), 2.2)
    for _ in range(_NEWTON):
        y2 = await mpc.mul(y, y)
        my2 = await mpc.mul(m, y2)
        y = await mpc.mul(y, mpc.mul_public(mpc.add_public(mpc.neg(my2), 3.0), 0.5))
    return y


async def sqrt(mpc: Mpc, x: Secret) -> Secret:
    """sqrt(x) for x ≥ 0: sqrt(m) · 2^((k+1)/2), 0 for x = 0."""
    e, m, ks = await _normalise(mpc, x)
    root_m = await mpc.mul(m, await _rsqrt_unit(mpc, m))
    shifts = [(k + 1) // 2 for k in ks]
    factors = [math.sqrt(2.0) if (k + 1) % 2 else 1.0 for k in ks]
    return await _select_scaled(mpc, e, root_m, shifts, factors)


async def rsqrt(mpc: Mpc, x: Secret) -> Secret:
    """1/sqrt(x) for x > 0."""
    return await reciprocal(mpc, await sqrt(mpc, x))


# least-squares polynomials on [1/2, 1) and [0, 1), fitted once at import (numpy, plaintext)
def _fit(f: object, lo: float, hi: float, degree: int) -> list[float]:
    xs = np.linspace(lo, hi, 2001)
    return [float(c) for c in np.polynomial.polynomial.polyfit(xs, f(xs), degree)]  # type: ignore[operator]


_LOG_POLY = _fit(np.log, 0.5, 1.0, 7)
_EXP2_POLY = _fit(np.exp2, 0.0, 1.0, 6)


async def _poly(mpc: Mpc, x: Secret, coeffs: list[float]) -> Secret:
    """Σ c_i x^i by Horner's rule (degree multiplications)."""
    acc = mpc.add_public(mpc.mul_public_int(x, 0), coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = mpc.add_public(await mpc.mul(acc, x), c)
    return acc


async def log(mpc: Mpc, x: Secret) -> Secret:
    """Natural logarithm for x > 0: log x = (k+1)·ln 2 + log(m), m in [1/2, 1)."""
    e, m, ks = await _normalise(mpc, x)
    offset = _combine(mpc, e, [(k + 1) * math.log(2) for k in ks])
    return mpc.add(offset, await _poly(mpc, m, _LOG_POLY))


async def exp(mpc: Mpc, x: Secret) -> Secret:
    """e^x = 2^n · 2^r where x·log2(e) = n + r, n an integer, r in [0, 1)."""
    t = mpc.mul_public(x, 1.0 / math.log(2))
    js = _ks(mpc)
    e = await _indicators(mpc, t, [float(j) for j in js])  # e_j = [j ≤ t < j+1]
    r = mpc.sub(t, _combine(mpc, e, [float(j) for j in js]))
    return await _select_scaled(mpc, e, await _poly(mpc, r, _EXP2_POLY), js)


async def sigmoid(mpc: Mpc, x: Secret) -> Secret:
    """1 / (1 + e^-x), with x clamped to [-14, 14] (beyond, within 1e-6 of 0 or 1)."""
    lo = mpc.add_public(mpc.mul_public_int(x, 0), -14.0)
    hi = mpc.add_public(mpc.mul_public_int(x, 0), 14.0)
    xc = await mpc.minimum(await mpc.maximum(x, lo), hi)
    d = mpc.add_public(await exp(mpc, mpc.neg(xc)), 1.0)
    return await reciprocal(mpc, d)
