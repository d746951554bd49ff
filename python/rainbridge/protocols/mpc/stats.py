"""Joint statistics over a vertically partitioned table: two parties, rows aligned (after
PSI), each holding some columns; only the party the job names learns the result.

The statistics are computed exactly on integers: each party encodes its columns as integers
(:mod:`.encoding` chooses the scale from the data; :func:`moments` takes a public scale,
``round(v · 10^decimals)``, for differential privacy), products and sums are exact in
Z_2^64, and the receiver divides in plaintext. Exact as long as every sum stays below 2^63 in
absolute value: the callers check that bound before any share moves (the encodings) or by
construction (:func:`cross_block` over standardized values, bounded by Cauchy–Schwarz).

What the receiver learns is the **sufficient statistics** of what it asked for: the row
count, per-column sums, sums of squares and cross products (for means, variances,
covariances and correlations), per-group counts and sums (for GROUP BY). The other party
learns nothing (every message it sees is masked), except the row count and shapes, which
both know from the alignment. A party's statistics of its own columns are computed by it
alone and secret-shared (no multiplication needed); only cross-party terms use the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError
from rainbridge.protocols.mpc.dp import Mechanism, group_noise, moment_noise
from rainbridge.protocols.mpc.engine import Mpc, OneHot, Secret

#: rows per round of a cross product are chosen so a round moves about this many words
_CHUNK_WORDS = 1 << 23


def to_integers(values: npt.ArrayLike, decimals: int) -> npt.NDArray[np.int64]:
    """Columns as integers at 10^decimals (what a party shares)."""
    a = np.asarray(values, dtype=np.float64)
    scaled = np.rint(a * 10.0**decimals)
    if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled) >= 2.0**62):
        raise ConfigError("a value is missing, infinite or too large for exact statistics")
    return scaled.astype(np.int64)


@dataclass
class Moments:
    """What the receiver gets: n, Σx, and Σ x_i·x_j over the columns of both parties."""

    n: int
    names: list[str]
    sums: npt.NDArray[np.float64]
    products: npt.NDArray[np.float64]

    def mean(self) -> npt.NDArray[np.float64]:
        return self.sums / self.n

    def covariance(self) -> npt.NDArray[np.float64]:
        mu = self.mean()
        return (self.products - self.n * np.outer(mu, mu)) / (self.n - 1)

    def variance(self) -> npt.NDArray[np.float64]:
        return np.diag(self.covariance()).copy()

    def correlation(self) -> npt.NDArray[np.float64]:
        cov = self.covariance()
        # with DP noise a variance can come out negative: its correlations are then NaN
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.sqrt(np.diag(cov))
            return cov / np.outer(sd, sd)


async def moments(
    mpc: Mpc,
    mine: npt.NDArray[np.int64],
    my_names: list[str],
    their_shape: tuple[int, int],
    their_names: list[str],
    receiver: int,
    decimals: tuple[int, int] = (0, 0),
    dp: tuple[float | Mechanism, npt.NDArray[np.float64]] | None = None,
) -> Moments | None:
    """Σx and Σxxᵀ over party 0's columns followed by party 1's, revealed to ``receiver``.

    Parameters
    ----------
    mine : (n, d_me) int64
        This party's columns, integers (see :func:`to_integers`), rows in the aligned order.
    their_shape : (n, d_other)
        The other party's columns' shape (public).
    decimals : (party 0's, party 1's)
        The scales, to turn the integer results back into the columns' units.
    dp : (epsilon, bounds of every column, party 0's then party 1's), optional
        Differential privacy (:mod:`.dp`; ε alone: Laplace): the party that does not receive adds
        noise to its shares of the sums and the Gram matrix before they are revealed. The
        columns must already be clipped to the bounds by their owners.
    """
    n = mine.shape[0]
    if their_shape[0] != n:
        raise ConfigError("the parties' aligned tables have different row counts")
    x = np.ascontiguousarray(mine, dtype=np.int64)
    d0 = x.shape[1] if mpc.party == 0 else their_shape[1]
    d1 = their_shape[1] if mpc.party == 0 else x.shape[1]
    # each party's own blocks, computed locally and shared
    own_sum = x.sum(axis=0, dtype=np.int64)
    own_gram = (x.T @ x).astype(np.int64)
    s0 = await mpc.input(own_sum if mpc.party == 0 else None, 0, (d0,), integer=True)
    s1 = await mpc.input(own_sum if mpc.party == 1 else None, 1, (d1,), integer=True)
    g0 = await mpc.input(own_gram if mpc.party == 0 else None, 0, (d0, d0), integer=True)
    g1 = await mpc.input(own_gram if mpc.party == 1 else None, 1, (d1, d1), integer=True)
    cross = await _cross_shares(mpc, x, d0, d1)
    sums = Secret(np.concatenate([s0.share, s1.share]), 0)
    top = np.concatenate([g0.share, cross.share], axis=1)
    bottom = np.concatenate([cross.share.T, g1.share], axis=1)
    gram = Secret(np.concatenate([top, bottom], axis=0), 0)
    if dp is not None and mpc.party != receiver:
        eps, bounds = dp
        units = np.array([10.0 ** decimals[0]] * d0 + [10.0 ** decimals[1]] * d1)
        n_sums, n_gram = moment_noise(np.asarray(bounds, dtype=float), eps, units)
        sums = Secret(sums.share + n_sums.view(np.uint64), 0)
        gram = Secret(gram.share + n_gram.view(np.uint64), 0)
    s = await mpc.reveal(sums, to=receiver)
    g = await mpc.reveal(gram, to=receiver)
    if mpc.party != receiver:
        return None
    assert s is not None and g is not None
    scale = np.array([10.0 ** -decimals[0]] * d0 + [10.0 ** -decimals[1]] * d1)
    names = my_names + their_names if mpc.party == 0 else their_names + my_names
    return Moments(
        n=n,
        names=names,
        sums=s.astype(np.float64) * scale,
        products=g.astype(np.float64) * np.outer(scale, scale),
    )


async def cross_block(
    mpc: Mpc, mine: npt.NDArray[np.int64], their_width: int, receiver: int
) -> npt.NDArray[np.int64] | None:
    """``X0ᵀ X1`` of party 0's and party 1's integer columns (n rows each), revealed to
    ``receiver`` (int64, signed; the caller bounds the true sums inside ±2^63). One product
    of two private matrices per chunk of rows (:meth:`Mpc.cross_product`); the other party
    learns nothing."""
    d0 = mine.shape[1] if mpc.party == 0 else their_width
    d1 = their_width if mpc.party == 0 else mine.shape[1]
    cross = await _cross_shares(mpc, np.ascontiguousarray(mine, dtype=np.int64), d0, d1)
    out = await mpc.reveal(cross, to=receiver)
    return None if out is None else np.asarray(out).view(np.int64)


async def _cross_shares(mpc: Mpc, x: npt.NDArray[np.int64], d0: int, d1: int) -> Secret:
    """Shares of X0ᵀ X1 (party 0's columns by party 1's): a product of two private
    matrices, in chunks of rows."""
    n = x.shape[0]
    cross = Secret(np.zeros((d0, d1), dtype=np.uint64), 0)
    step = max(1, _CHUNK_WORDS // max(d0, d1, 1))
    for start in range(0, n if d0 and d1 else 0, step):
        end = min(n, start + step)
        part = await mpc.cross_product(
            x[start:end].T if mpc.party == 0 else None,
            x[start:end] if mpc.party == 1 else None,
            left=0,
            shape=(d0, end - start, d1),
        )
        cross.share += part.share
    return cross


@dataclass
class GroupSums:
    """Per group: the row count and the sums of the value columns."""

    groups: list[Any]
    counts: npt.NDArray[np.int64]
    sums: npt.NDArray[Any]  # (groups, value columns): float64, or int64 when not decoded

    def means(self) -> npt.NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.sums / self.counts[:, None]


async def group_sums(
    mpc: Mpc,
    *,
    key_party: int,
    keys: npt.NDArray[np.int64] | None,
    groups: list[Any],
    values: npt.NDArray[np.int64] | None,
    value_shape: tuple[int, int],
    receiver: int,
    decimals: int | None = 0,
    min_group_size: int = 1,
    dp: tuple[float | Mechanism, npt.NDArray[np.float64]] | None = None,
    noise_decimals: int = 0,
) -> GroupSums | None:
    """GROUP BY a key column of ``key_party`` with SUM/COUNT of the other party's values.

    ``keys`` are group indices (0..len(groups)-1) at the key party; ``values`` the other
    party's integer columns. With ``decimals`` None the sums come back as the exact integers
    (int64, signed: right while each true sum stays inside ±2^63 — the caller's encoding
    guarantees it), to be decoded by the caller. The sums are one product of two private matrices,
    one-hot(keys) · values (:meth:`Mpc.cross_product`), in chunks of rows; the key party
    never builds the one-hot matrix. Groups with fewer than ``min_group_size`` rows are
    suppressed (their count and sums are withheld, their rows enter no sum); the key party
    knows the counts already, so the test is done by it on plaintext.
    With ``dp`` (epsilon, bounds of the value columns), the party that does not receive adds
    Laplace noise to the sums and the counts it contributes (:mod:`.dp`); the values'
    integers are at 10^decimals (or 10^noise_decimals when the sums are not decoded here).
    """
    g = len(groups)
    n, m = value_shape
    if mpc.party == key_party:
        assert keys is not None
        if keys.shape != (n,) or (n and (keys.min() < 0 or keys.max() >= g)):
            raise ConfigError("group keys must be indices of the listed groups, one per row")
        counts = np.bincount(keys, minlength=g).astype(np.int64)
        keep = counts >= min_group_size
        # a suppressed group's rows join no group: its sums are never computed
        onehot: OneHot | None = OneHot(np.where(keep[keys], keys, -1), g)
    else:
        onehot = None
        counts = np.zeros(g, dtype=np.int64)
        keep = np.ones(g, dtype=bool)
    noise_sums = noise_counts = None
    unit_decimals = decimals if decimals is not None else noise_decimals
    if dp is not None and mpc.party != receiver:
        noise_sums, noise_counts = group_noise(
            np.asarray(dp[1], dtype=float), dp[0], np.full(m, 10.0**unit_decimals), g
        )
    if noise_counts is not None and mpc.party == key_party:
        counts = np.maximum(counts + noise_counts, 0)  # the key party shares noisy counts
    sums = np.zeros((g, m), dtype=np.uint64)
    step = max(1, _CHUNK_WORDS // max(g, m, 1))
    for start in range(0, n if m else 0, step):
        end = min(n, start + step)
        part = await mpc.cross_product(
            onehot.rows(start, end) if onehot is not None else None,
            values[start:end] if values is not None else None,
            left=key_party,
            shape=(g, end - start, m),
        )
        sums += part.share
    cnt = await mpc.input(
        np.where(keep, counts, 0) if mpc.party == key_party else None,
        key_party,
        (g,),
        integer=True,
    )
    masked = Secret(sums, 0)
    if noise_sums is not None:
        masked = Secret(masked.share + (noise_sums * keep[:, None]).view(np.uint64), 0)
    s = await mpc.reveal(masked, to=receiver)
    c = await mpc.reveal(cnt, to=receiver)
    if mpc.party != receiver:
        return None
    assert s is not None and c is not None
    shown = c > 0
    picked = np.asarray(s[shown]).view(np.int64)
    return GroupSums(
        groups=[grp for grp, ok in zip(groups, shown, strict=True) if ok],
        counts=np.asarray(c[shown], dtype=np.int64),
        sums=picked if decimals is None else picked.astype(np.float64) * 10.0**-decimals,
    )


#: min/max shift values by this much: a group's empty slots hold -_BIG, below every value
_BIG = 1 << 61
#: the largest |value| min/max accept, so every difference compared stays inside the ring
MAX_EXTREMUM = 1 << 60


async def group_extrema(
    mpc: Mpc,
    *,
    key_party: int,
    keys: npt.NDArray[np.int64] | None,
    groups: int,
    values: npt.NDArray[np.int64] | None,
    value_shape: tuple[int, int],
    receiver: int,
    min_group_size: int = 1,
    valid: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """Per group of the key party's ``keys``: MIN and MAX of the other party's columns.

    For every group and row, the product ``[key = g] · (v + 2^61)`` of the key party's
    private indicator and the value party's private value (one word each way, see
    :meth:`Mpc.private_product`) keeps the row's value in its group and puts ``-2^61`` elsewhere;
    a tree of comparisons then takes the maximum of each group (and of ``-v`` for the
    minimum). Costs groups · rows · columns · 2 comparisons in log2(rows) rounds — use it
    on up to about 10^6 cells per second of patience. The receiver learns the extrema of
    groups of at least ``min_group_size`` rows (others come back as ``-2^61`` and are to
    be withheld by the caller, which knows the counts from :func:`group_sums`). ``valid``
    (n, m) at the value party marks present values: a NULL joins no group, so a group whose
    values are all NULL also comes back as ``-2^61``.
    """
    n, m = value_shape
    if mpc.party == key_party:
        assert keys is not None
        counts = np.bincount(keys, minlength=groups)
        keep = counts >= min_group_size
        ind = (keys[None, :] == np.arange(groups)[:, None]) & keep[:, None]
        mine = np.broadcast_to(ind[:, :, None], (groups, n, 2 * m)).astype(np.uint64)
    else:
        assert values is not None
        if values.shape != (n, m):
            raise ConfigError(f"values have shape {values.shape}, expected {(n, m)}")
        if n and np.abs(values).max() >= MAX_EXTREMUM:
            raise ConfigError("a value is too large for MIN/MAX (|value| must stay below 2^60)")
        both = np.concatenate([values, -values], axis=1) + _BIG  # max of -v is -min
        if valid is not None:
            both[~np.concatenate([valid, valid], axis=1)] = 0  # -2^61 after the shift
        mine = np.broadcast_to(both.view(np.uint64)[None], (groups, n, 2 * m))
    prod = await mpc.private_product("xmul", np.ascontiguousarray(mine))
    if mpc.party == 0:
        prod -= np.uint64(_BIG)  # the public shift, once
    best = await mpc.max(Secret(prod, 0), axis=1)  # (groups, 2m)
    out = await mpc.reveal(best, to=receiver)
    if out is None:
        return None
    signed = np.asarray(out, dtype=np.int64)
    return -signed[:, m:], signed[:, :m]


async def crosstab(
    mpc: Mpc,
    *,
    row_party: int,
    keys: npt.NDArray[np.int64] | None,
    shape: tuple[int, int, int],
    receiver: int,
    min_group_size: int = 1,
) -> npt.NDArray[np.int64] | None:
    """Counts of rows per (row party's key, other party's key): a contingency table.

    ``shape`` is (rows, row groups, column groups); ``keys`` are this party's group indices
    (``-1``: the row counts nowhere, e.g. a value outside every histogram bin). One product
    of two private matrices, one-hot(row keys) · one-hot(column keys), in chunks of rows.
    Neither party knows a cell's count, so cells under ``min_group_size`` are withheld by a
    secure comparison: the receiver gets 0 for them, indistinguishable from an empty cell.
    """
    n, gr, gc = shape
    if keys is None or keys.shape != (n,):
        raise ConfigError("each party gives one group index per row")
    limit = gr if mpc.party == row_party else gc
    if n and (keys.min() < -1 or keys.max() >= limit):
        raise ConfigError("group keys must be indices of the listed groups (or -1)")
    cells = np.zeros((gr, gc), dtype=np.uint64)
    step = max(1, _CHUNK_WORDS // max(gr, gc, 1))
    for start in range(0, n, step):
        end = min(n, start + step)
        part_keys = keys[start:end]
        if mpc.party == row_party:
            left: OneHot | None = OneHot(part_keys, gr)
            right = None
        else:
            left = None
            right = np.zeros((end - start, gc), dtype=np.int64)
            rows = np.flatnonzero(part_keys >= 0)
            right[rows, part_keys[rows]] = 1
        part = await mpc.cross_product(left, right, left=row_party, shape=(gr, end - start, gc))
        cells += part.share
    table = Secret(cells, 0)
    if min_group_size > 1:
        small = await mpc.lt(table, Secret(_public(mpc, np.full((gr, gc), min_group_size)), 0))
        table = await mpc.mul(mpc.one_minus(small), table)
    out = await mpc.reveal(table, to=receiver)
    return None if out is None else np.asarray(out, dtype=np.int64)


def _public(mpc: Mpc, values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """A public integer array as shares (party 0 holds it, party 1 zeros)."""
    v = np.asarray(values, dtype=np.int64).view(np.uint64)
    return v.copy() if mpc.party == 0 else np.zeros_like(v)
