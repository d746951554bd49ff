"""Differential privacy for released aggregates: Laplace or Gaussian noise added inside the MPC.

The party that does **not** receive a result adds Laplace noise to its share of each released
value before the reveal, so the receiver only ever sees the noisy value (it cannot subtract
noise it never saw). Values are clipped to public bounds by their owners first, which fixes
the sensitivity to adding or removing one row: ``B_j`` for the sum of column j, ``B_j·B_k``
for a sum of products, 1 for a count. The privacy budget ε of one release is split evenly
over the values it releases (basic composition); a GROUP BY's groups are disjoint, so each
group gets the whole share (parallel composition).

Two mechanisms. Laplace (pure ε-DP): the released values are integers (the fixed scale of
the statistics), so the noise is the *discrete* Laplace distribution with scale Δ/ε', drawn
as the difference of two geometric variables (Canonne, Kamath, Steinke 2020) — integer noise
leaves no floating-point low bits to attack (Mironov 2012). Gaussian ((ε, δ)-DP, ε' < 1 per
value): σ = Δ·sqrt(2 ln(1.25/δ'))/ε' (Dwork and Roth, Theorem A.1), rounded to an integer,
which is post-processing. ε and δ are split evenly over the released values.

Limits: the generator is numpy's, seeded from the OS; the public row count of the alignment
is not noised (both parties know it from the PSI anyway); suppression of small groups uses
the true counts; a dataset's budget counts ε (δ is per job, not accumulated).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError


@dataclass(frozen=True)
class Mechanism:
    """ε (and δ > 0 for the Gaussian mechanism) of one release."""

    epsilon: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        if not self.epsilon > 0 or not 0 <= self.delta < 1:
            raise ConfigError("differential privacy needs ε > 0 and 0 ≤ δ < 1")

    def noise(self, sensitivity: npt.ArrayLike, parts: int, shape: tuple[int, ...]) -> Any:
        """Integer noise for ``shape`` values whose sensitivities (in integer units) are
        ``sensitivity``; the release's budget is split over ``parts`` values."""
        eps = self.epsilon / max(parts, 1)
        sens = np.broadcast_to(np.asarray(sensitivity, dtype=float), shape)
        if self.delta == 0:
            return discrete_laplace(sens / eps, shape)
        delta = self.delta / max(parts, 1)
        if eps >= 1:
            raise ConfigError(
                f"the Gaussian mechanism needs ε below 1 per released value; this release "
                f"gives each {eps:g} (lower ε or use the Laplace mechanism)"
            )
        sigma = sens * math.sqrt(2 * math.log(1.25 / delta)) / eps
        return np.rint(_rng().normal(0.0, 1.0, size=shape) * sigma).astype(np.int64)


def as_mechanism(dp: float | Mechanism) -> Mechanism:
    return dp if isinstance(dp, Mechanism) else Mechanism(float(dp))


def discrete_laplace(scale: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.int64]:
    """Integers with P(x) ∝ exp(-|x| / scale): the difference of two geometric variables."""
    t = np.broadcast_to(np.asarray(scale, dtype=float), shape)
    p = -np.expm1(-1.0 / np.maximum(t, 1e-300))  # 1 - e^(-1/t), accurate for large t
    rng = _rng()
    # numpy's geometric counts trials (support 1, 2, …): the two 1s cancel
    return (rng.geometric(p, size=shape) - rng.geometric(p, size=shape)).astype(np.int64)


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(32), "little"))


def clip(values: npt.NDArray[np.float64], bounds: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Each column to [-B_j, B_j]."""
    b = np.asarray(bounds, dtype=float)
    return np.clip(values, -b, b)


def moment_noise(
    bounds: npt.NDArray[np.float64],
    epsilon: float | Mechanism,
    scale_units: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Integer noise for (sums, Gram matrix) of d columns with bounds B (in column units).

    ``scale_units`` converts each column to its integer encoding (10^decimals). The Gram
    noise is symmetric (the upper triangle mirrored), as the true matrix is.
    """
    mech = as_mechanism(epsilon)
    d = len(bounds)
    k = d + d * (d + 1) // 2  # released values
    b_int = bounds * scale_units
    sums = mech.noise(b_int, k, (d,))
    upper = mech.noise(np.outer(b_int, b_int), k, (d, d))
    gram = np.triu(upper) + np.triu(upper, 1).T
    return sums, gram


def group_noise(
    bounds: npt.NDArray[np.float64],
    epsilon: float | Mechanism,
    scale_units: npt.NDArray[np.float64],
    groups: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Integer noise for per-group (sums of m columns, counts): parallel over groups."""
    mech = as_mechanism(epsilon)
    m = len(bounds)
    sums = mech.noise(bounds * scale_units, m + 1, (groups, m))
    counts = mech.noise(1.0, m + 1, (groups,))
    return sums, counts
