"""Integer encodings of a party's column, chosen by its owner from the data itself.

Sums inside the two-party engine are exact in Z_2^64: a sum of encoded values is right as
long as the true sum of the integers stays inside (-2^63, 2^63). The owner of a column knows
its values, so it picks the encoding — and checks that bound — before any share moves:

* an integer column is encoded as itself (exact);
* a real column whose values all have at most 9 decimal places (money, rates, most
  recorded measurements) is encoded exactly as integers at 10^d, d as small as possible;
* any other real column is encoded at a power of two 2^f, f as large as the bound allows,
  each value rounded *stochastically* to one of its two neighbouring multiples of 2^-f
  (unbiased, independent errors of less than 2^-f): a sum over c rows is then off by at
  most ``sqrt(c · ln(2/p) / 2) · 2^-f`` except with probability p = 2^-40 (Hoeffding), far
  tighter than the worst case c · 2^-f. The receiver turns that into a bound on each result
  and refuses a result whose bound exceeds the documented precision.

A sum over ``rows`` rows fits when ``rows · max|encoded value| < 2^62``; when an exact
encoding cannot fit, a real column falls back to the power-of-two one (approximate, bounded)
and an integer column is refused by the caller (its sums must be exact).

What the choice reveals to the party that decodes the result: the base and exponent — the
number of decimal places of the column, or a power of two within a factor two of
``rows · max|x|`` — and whether the encoding was exact. Nothing else about the values.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

#: sums of encoded values must stay below 2^SUM_BITS in absolute value (one bit of margin)
SUM_BITS = 62
#: the most decimal places an exact decimal encoding uses
MAX_DECIMALS = 9
#: the probability that a stated error bound of an approximate encoding fails
FAILURE = 2.0**-40
_LOG_TERM = math.log(2 / FAILURE)


@dataclass(frozen=True)
class Encoding:
    """``value = integer / base^exp``; ``exact``: no value was rounded."""

    base: int
    exp: int
    exact: bool

    @property
    def order_preserving(self) -> bool:
        """Base 0: the float's own bits as an ordered integer (for MIN/MAX only)."""
        return self.base == 0

    @property
    def unit(self) -> Fraction:
        """The value of one integer step, exactly."""
        return Fraction(1, self.base**self.exp) if self.exp >= 0 else Fraction(self.base**-self.exp)

    def sum_error(self, count: int) -> float:
        """A bound on the error of a sum of ``count`` encoded values (0 when exact); it holds
        except with probability ``FAILURE`` (stochastic rounding, Hoeffding)."""
        if self.exact or count <= 0:
            return 0.0
        return min(float(count), math.sqrt(count * _LOG_TERM / 2)) * float(self.unit)

    def decode(self, total: int) -> Fraction:
        if self.order_preserving:
            return Fraction(float_of_key(total))
        return total * self.unit

    def to_json(self) -> list[Any]:
        return [self.base, self.exp, self.exact]

    @classmethod
    def from_json(cls, data: Any) -> Encoding:
        if not (isinstance(data, list) and len(data) == 3):
            raise ValueError("an encoding is [base, exp, exact]")
        base, exp, exact = data
        if base not in (0, 2, 10) or not isinstance(exp, int) or abs(exp) > 1100:
            raise ValueError("bad encoding")
        return cls(int(base), int(exp), bool(exact))


def _fits(max_abs: float, rows: int, bits: int) -> bool:
    return max_abs * max(rows, 1) < 2.0**bits


def choose(
    values: npt.NDArray[Any], valid: npt.NDArray[np.bool_], rows: int, bits: int = SUM_BITS
) -> Encoding | None:
    """The encoding of one column for sums over up to ``rows`` rows, each encoded value's
    magnitude times ``rows`` below ``2^bits``. Integer columns: exact or None (does not fit).
    Real columns: exact decimal when it fits, else the finest power of two that does."""
    v = values[valid]
    if np.issubdtype(values.dtype, np.integer):
        big = int(np.abs(v.astype(np.float64)).max()) if len(v) else 0
        return Encoding(10, 0, True) if _fits(float(big), rows, bits) else None
    if len(v) == 0:
        return Encoding(10, 0, True)
    max_abs = float(np.abs(v).max())
    if max_abs == 0.0:
        return Encoding(10, 0, True)
    sample = v[:1024]
    for d in range(MAX_DECIMALS + 1):
        scaled = max_abs * 10.0**d
        if scaled >= 2.0**53 or not _fits(scaled, rows, bits):
            break
        # exact when the decimal reading of every value is the float itself (a sample
        # rules most scales out before the whole column is read)
        if _decimal(sample, d) and _decimal(v, d):
            return Encoding(10, d, True)
    # one bit of margin for the stochastic rounding's extra step
    f = bits - 2 - math.ceil(math.log2(max_abs * max(rows, 1)))
    scaled_v = np.ldexp(v, f)
    return Encoding(2, f, bool(np.array_equal(np.rint(scaled_v), scaled_v)))


def stochastic_round(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """``floor(x + U)``, U uniform in [0, 1) from the OS's randomness: unbiased, each error
    in (-1, 1) and independent of the others."""
    rng = np.random.default_rng(secrets.randbits(128))
    return np.floor(x + rng.random(x.shape)).astype(np.int64)


def _decimal(v: npt.NDArray[np.float64], d: int) -> bool:
    return bool(np.array_equal(np.rint(v * 10.0**d) / 10.0**d, v))


def encode(
    values: npt.NDArray[Any], valid: npt.NDArray[np.bool_], enc: Encoding
) -> npt.NDArray[np.int64]:
    """The integers of ``values`` under ``enc``; 0 where not ``valid`` (NULL rows add
    nothing to a sum)."""
    if np.issubdtype(values.dtype, np.integer):
        out = np.asarray(values, dtype=np.int64).copy()
        if enc.exp:
            out *= enc.base**enc.exp
    else:
        v = np.where(valid, values, 0.0)
        if enc.base == 10:
            out = np.rint(v * 10.0**enc.exp).astype(np.int64)
        elif enc.exact:
            out = np.ldexp(v, enc.exp).astype(np.int64)
        else:
            out = stochastic_round(np.ldexp(v, enc.exp))
    out[~valid] = 0
    return out


#: float keys drop this many low mantissa bits so that every key stays below 2^60
_KEY_SHIFT = 3
_MAG = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def float_keys(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Integers in the order of the floats (IEEE 754 bits, sign folded), each below 2^60 in
    magnitude: comparing keys compares the values. The low 3 mantissa bits are dropped, so
    a key stands for its value within a relative 2^-49."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    mag = (bits & _MAG) >> _KEY_SHIFT
    return np.where(bits < 0, -mag, mag)


def float_of_key(key: int) -> float:
    mag = np.array([abs(int(key)) << _KEY_SHIFT], dtype=np.int64).view(np.float64)[0]
    return -float(mag) if key < 0 else float(mag)


def exact_int_sum(values: npt.NDArray[np.int64]) -> int:
    """Σ of int64 values as an exact Python integer (no wrap at 2^63): the high and low
    halves are summed separately, each in int64 without overflow for up to 2^31 rows."""
    total = 0
    for start in range(0, len(values), 1 << 30):
        v = np.asarray(values[start : start + (1 << 30)], dtype=np.int64)
        hi = (v >> 32).sum(dtype=np.int64)
        lo = (v & 0xFFFFFFFF).sum(dtype=np.int64)
        total += (int(hi) << 32) + int(lo)
    return total
