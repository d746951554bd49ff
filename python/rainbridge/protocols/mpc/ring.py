"""The ring Z_2^64 and fixed-point encoding.

Values are numpy ``uint64`` arrays; addition and multiplication wrap modulo 2^64 natively.
A real number v is encoded as round(v · 2^f) in two's complement (``f`` fractional bits, 16
by default), so the representable range is about ±2^(63-f) and the resolution 2^-f.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError

RING_BITS = 64
DEFAULT_FRAC_BITS = 16
U64 = np.uint64
Ring = npt.NDArray[np.uint64]


def check_frac_bits(f: int) -> int:
    if not isinstance(f, int) or not 0 <= f <= 30:
        raise ConfigError(f"fixed-point precision {f!r}: expected 0 to 30 fractional bits")
    return f


def encode(values: npt.ArrayLike, frac_bits: int) -> Ring:
    """Fixed-point encoding of ``values`` (integers when ``frac_bits`` is 0)."""
    a = np.asarray(values)
    if frac_bits == 0 and np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64).view(np.uint64).copy()
    scaled = np.rint(np.asarray(a, dtype=np.float64) * float(1 << frac_bits))
    limit = float(1 << 62)
    if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled) >= limit):
        raise ConfigError(
            f"a value does not fit the fixed-point range (±2^{62 - frac_bits}) "
            f"at {frac_bits} fractional bits"
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode(ring: Ring, frac_bits: int) -> npt.NDArray[np.float64] | npt.NDArray[np.int64]:
    """Inverse of :func:`encode` (two's complement, then scaled)."""
    signed = np.asarray(ring, dtype=np.uint64).view(np.int64)
    if frac_bits == 0:
        return signed.copy()
    return signed.astype(np.float64) / float(1 << frac_bits)


def byte_view(a: Ring) -> memoryview:
    """A writable byte view of an array, no copy when it is contiguous; empty arrays (a party
    with no columns) get an empty view, which memoryview cannot cast."""
    c = np.ascontiguousarray(a)
    if c.size == 0:
        return memoryview(bytearray())
    return c.data.cast("B")
