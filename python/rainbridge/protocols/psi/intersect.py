"""Plain intersection of fixed-width pseudo-random byte strings (the doubly-masked values).

Values are compared as ``(n, t)`` uint8 matrices. The first 8 bytes serve as a uint64 sort key
(the values are uniformly random, so keys rarely collide); every candidate match is then
confirmed on all ``t`` bytes, so a key collision can never create a false match.
"""

from __future__ import annotations

import numpy as np


def _keys(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values[:, :8]).view("<u8").reshape(-1)


def match(
    probe: np.ndarray, table: np.ndarray, chunk: int = 1 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``probe[i] == table[j]`` (all ``t`` bytes equal).

    Both inputs are ``(n, t)`` uint8 arrays with ``t >= 8`` and distinct rows (distinct
    inputs under a random permutation of the group have distinct images). Returns two int64
    arrays of equal length, ``i`` ascending.
    """
    if probe.ndim != 2 or table.ndim != 2 or probe.shape[1] != table.shape[1]:
        raise ValueError("match expects two (n, t) arrays with the same t")
    empty = np.zeros(0, dtype=np.int64)
    if len(probe) == 0 or len(table) == 0:
        return empty, empty.copy()
    tk = _keys(table)
    order = np.argsort(tk, kind="stable")
    sorted_keys = tk[order]
    del tk
    if len(probe) > chunk:
        # Probe in slices so temporary arrays stay small whatever the set sizes.
        parts = [
            _match_sorted(probe[lo : lo + chunk], table, order, sorted_keys)
            for lo in range(0, len(probe), chunk)
        ]
        starts = range(0, len(probe), chunk)
        ii = np.concatenate([p[0] + lo for p, lo in zip(parts, starts, strict=True)])
        jj = np.concatenate([p[1] for p in parts])
        return ii.astype(np.int64), jj.astype(np.int64)
    return _match_sorted(probe, table, order, sorted_keys)


def _match_sorted(
    probe: np.ndarray, table: np.ndarray, order: np.ndarray, sorted_keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    empty = np.zeros(0, dtype=np.int64)
    pk = _keys(probe)
    left = np.searchsorted(sorted_keys, pk, side="left")
    right = np.searchsorted(sorted_keys, pk, side="right")
    hits = np.flatnonzero(right > left)
    if len(hits) == 0:
        return empty, empty.copy()
    single = hits[right[hits] - left[hits] == 1]
    cand = order[left[single]]
    ok = (probe[single] == table[cand]).all(axis=1)
    pi: list[np.ndarray] = [single[ok]]
    pj: list[np.ndarray] = [cand[ok]]
    # Rare: several table rows share a probe's 64-bit key; check each of them in full.
    for i in hits[right[hits] - left[hits] > 1]:
        for pos in range(left[i], right[i]):
            j = order[pos]
            if np.array_equal(probe[i], table[j]):
                pi.append(np.array([i], dtype=np.int64))
                pj.append(np.array([j], dtype=np.int64))
    ii = np.concatenate(pi).astype(np.int64)
    jj = np.concatenate(pj).astype(np.int64)
    sort = np.argsort(ii, kind="stable")
    return ii[sort], jj[sort]


def truncation_bytes(n_leader: int, n_other: int, security_bits: int = 40) -> int:
    """Bytes kept of each doubly-masked value: at least log2(nA) + log2(nB) + 40 bits.

    This is the bound of the interconnection standard: a false match between two of the
    ``nA * nB`` pairs then has probability at most 2^-40. Never fewer than 8 bytes, since the
    intersection sorts on an 8-byte key.
    """
    bits = security_bits + max(1, n_leader).bit_length() + max(1, n_other).bit_length()
    return max(8, min(32, -(-bits // 8)))
