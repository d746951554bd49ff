"""Differential privacy for released aggregates: Laplace noise added inside the MPC.

The party that does **not** receive a result adds Laplace noise to its share of each released
value before the reveal, so the receiver only ever sees the noisy value (it cannot subtract
noise it never saw). Values are clipped to public bounds by their owners first, which fixes
the sensitivity to adding or removing one row: ``B_j`` for the sum of column j, ``B_j·B_k``
for a sum of products, 1 for a count. The privacy budget ε of one release is split evenly
over the values it releases (basic composition); a GROUP BY's groups are disjoint, so each
group gets the whole share (parallel composition).

Limits: the noise is drawn in floating point with numpy's generator seeded from the OS
(a production system would use a discrete Laplace sampler to rule out floating-point
attacks, Mironov 2012); the public row count of the alignment is not noised (both parties
know it from the PSI anyway); suppression of small groups uses the true counts.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(32), "little"))


def laplace(scale: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """Laplace(0, scale) samples (scale broadcast to ``shape``)."""
    return np.asarray(_rng().laplace(0.0, 1.0, size=shape) * np.asarray(scale, dtype=float))


def clip(values: npt.NDArray[np.float64], bounds: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Each column to [-B_j, B_j]."""
    b = np.asarray(bounds, dtype=float)
    return np.clip(values, -b, b)


def moment_noise(
    bounds: npt.NDArray[np.float64], epsilon: float, scale_units: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Integer noise for (sums, Gram matrix) of d columns with bounds B (in column units).

    ``scale_units`` converts each column to its integer encoding (10^decimals). The Gram
    noise is symmetric (the upper triangle mirrored), as the true matrix is.
    """
    d = len(bounds)
    k = d + d * (d + 1) // 2  # released values
    eps = epsilon / max(k, 1)
    b_int = bounds * scale_units
    sums = laplace(b_int / eps, (d,))
    upper = laplace(np.outer(b_int, b_int) / eps, (d, d))
    gram = np.triu(upper) + np.triu(upper, 1).T
    return np.rint(sums).astype(np.int64), np.rint(gram).astype(np.int64)


def group_noise(
    bounds: npt.NDArray[np.float64],
    epsilon: float,
    scale_units: npt.NDArray[np.float64],
    groups: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Integer noise for per-group (sums of m columns, counts): parallel over groups."""
    m = len(bounds)
    eps = epsilon / (m + 1)
    sums = laplace((bounds * scale_units) / eps, (groups, m))
    counts = laplace(1.0 / eps, (groups,))
    return np.rint(sums).astype(np.int64), np.rint(counts).astype(np.int64)
