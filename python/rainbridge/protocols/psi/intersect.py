"""Plain intersection of fixed-width pseudo-random byte strings (the doubly-masked values).

Values are compared as ``(n, t)`` uint8 matrices, in the core: a hash table of the table's
rows keyed by their first 8 bytes (uniformly random, so no further hashing), probed in
parallel; every candidate is confirmed on all ``t`` bytes, so a key collision can never
create a false match.
"""

from __future__ import annotations

import numpy as np

from rainbridge import _core
from rainbridge.errors import ProtocolViolationError


def match(probe: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``probe[i] == table[j]`` (all ``t`` bytes equal).

    Both inputs are ``(n, t)`` uint8 arrays with ``t >= 8`` (distinct inputs under a random
    permutation of the group have distinct images; rows repeated in ``table`` give a pair
    each). Returns two int64 arrays of equal length, ``i`` ascending. A ``table`` whose rows
    repeat (or share their first 8 bytes) far beyond chance is refused with
    :class:`~rainbridge.errors.ProtocolViolationError`.
    """
    if probe.ndim != 2 or table.ndim != 2 or probe.shape[1] != table.shape[1]:
        raise ValueError("match expects two (n, t) arrays with the same t")
    if len(probe) == 0 or len(table) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    width = int(probe.shape[1])
    if width < 8:
        raise ValueError("match expects rows of at least 8 bytes")
    p = np.ascontiguousarray(probe, dtype=np.uint8)
    t = np.ascontiguousarray(table, dtype=np.uint8)
    try:
        ii, jj = _core.Rr22Receiver.match_rows(p, width, t, width)
    except ValueError:
        # the shapes are right, so the core refused a table whose rows repeat far beyond
        # chance: only a peer that deviates from the protocol sends one
        raise ProtocolViolationError(
            "the masked values repeat far beyond chance: a peer deviated from the protocol"
        ) from None
    return np.frombuffer(ii, dtype="<i8"), np.frombuffer(jj, dtype="<i8")


def truncation_bytes(n_leader: int, n_other: int, security_bits: int = 40) -> int:
    """Bytes kept of each doubly-masked value: at least log2(nA) + log2(nB) + 40 bits.

    This is the bound of the interconnection standard: a false match between two of the
    ``nA * nB`` pairs then has probability at most 2^-40. Never fewer than 8 bytes, since the
    intersection sorts on an 8-byte key.
    """
    bits = security_bits + max(1, n_leader).bit_length() + max(1, n_other).bit_length()
    return max(8, min(32, -(-bits // 8)))
