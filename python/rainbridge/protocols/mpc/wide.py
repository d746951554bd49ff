"""Per-group sums in Z_2^128: exact integer sums whatever the values' size.

``SUM(v) GROUP BY k`` with the keys at one party and int64 values at the other: a sum over
up to 2^64 rows of values below 2^63 stays below 2^127, so in Z_2^128 it never wraps — the
answer is exact where the 64-bit engine would have to refuse (``rows · max|v| ≥ 2^62``).

One correlated OT per (group, row) with a 128-bit correlation (:meth:`OtExtension.
bit_products_wide`): the key party chooses by its indicator ``[key = g]``, the value party
offers its row's values, and the two end with additive shares of ``[key = g] · v`` modulo
2^128, which each sums over its rows locally. The OT extension runs between the two data
parties even when a dealer serves the rest of the job (it needs no third party).

Security model: semi-honest, the two parties alone (base OTs on Diffie–Hellman in
ristretto255, the extension on AES as a correlation-robust hash, as :mod:`.ot`). The key
party learns nothing (it sees pads and masked corrections); the value party learns nothing
(it sees the key party's masked choice matrix); the receiver learns the per-group sums of
groups of at least ``min_group_size`` rows, and their counts. The number of groups and rows
are public, as for :func:`rainbridge.protocols.mpc.stats.group_sums`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError, ParameterMismatchError, ProtocolViolationError
from rainbridge.net.channel import Channel
from rainbridge.protocols.mpc.ot import MAX_BATCH, OtExtension
from rainbridge.protocols.mpc.ot_kernels import add128
from rainbridge.protocols.mpc.ring import byte_view

_M32 = np.uint64(0xFFFF_FFFF)


def sum128(a: npt.NDArray[np.uint64], axis: int) -> npt.NDArray[np.uint64]:
    """Σ over ``axis`` modulo 2^128 of values whose last axis is (low, high): the low words
    are summed in 32-bit halves so that no carry is lost (up to 2^32 terms)."""
    lo, hi = a[..., 0], a[..., 1]
    with np.errstate(over="ignore"):  # wrapping is the point
        s_ll = np.asarray((lo & _M32).sum(axis=axis, dtype=np.uint64))
        s_lh = np.asarray((lo >> np.uint64(32)).sum(axis=axis, dtype=np.uint64))
        s_h = np.asarray(hi.sum(axis=axis, dtype=np.uint64))
        low = s_ll + (s_lh << np.uint64(32))
        carry = (low < s_ll).astype(np.uint64)
        return np.stack([low, s_h + (s_lh >> np.uint64(32)) + carry], axis=-1)


def to_wide(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """int64 values sign-extended to (low, high) words of Z_2^128."""
    v = np.asarray(values, dtype=np.int64)
    return np.stack([v.view(np.uint64), (v >> 63).view(np.uint64)], axis=-1)


def from_wide(a: npt.NDArray[np.uint64]) -> list[Any]:
    """(…, 2) words of Z_2^128 as signed Python integers (nested lists)."""
    flat = a.reshape(-1, 2)
    out = []
    for lo, hi in flat:
        x = (int(hi) << 64) | int(lo)
        out.append(x - (1 << 128) if x >> 127 else x)
    return np.asarray(out, dtype=object).reshape(a.shape[:-1]).tolist()  # type: ignore[no-any-return]


async def group_sums_wide(
    channel: Channel,
    *,
    party: int,
    key_party: int,
    keys: npt.NDArray[np.int64] | None,
    groups: int,
    values: npt.NDArray[np.int64] | None,
    shape: tuple[int, int],
    receiver: int,
    min_group_size: int = 1,
    prefix: str = "wide",
) -> tuple[list[int], list[list[int]]] | None:
    """Exact per-group sums of the value party's int64 columns, revealed to ``receiver``:
    (counts, sums) per group — a suppressed group (fewer than ``min_group_size`` rows) has
    count 0 and sums 0 — or None at the other party.

    ``keys`` (n,) are group indices at the key party (-1: the row is in no group);
    ``values`` (n, m) at the value party; ``shape`` = (n, m) is public.
    """
    n, m = shape
    ot = OtExtension(channel, prefix=f"{prefix}/ot")
    await ot.setup()
    counts = np.zeros(groups, dtype=np.int64)
    if party == key_party:
        if keys is None or keys.shape != (n,) or (n and (keys.min() < -1 or keys.max() >= groups)):
            raise ConfigError("group keys must be indices of the listed groups, one per row")
        counts = np.bincount(keys[keys >= 0], minlength=groups).astype(np.int64)
        keep = counts >= min_group_size
        keys = np.where((keys >= 0) & keep[np.maximum(keys, 0)], keys, -1)
        counts = np.where(keep, counts, 0)
    elif values is None or values.shape != (n, m):
        raise ConfigError(f"the values must have shape {(n, m)}")
    total = np.zeros((groups, m, 2), dtype=np.uint64)
    step = max(1, MAX_BATCH // max(groups, 1))
    for start in range(0, n if groups and m else 0, step):
        end = min(n, start + step)
        rows = end - start
        if party == key_party:
            assert keys is not None
            part = keys[start:end]
            bits = (part[None, :] == np.arange(groups)[:, None]).astype(np.uint64).reshape(-1)
            u, _ = await ot.bit_products_wide(bits, None, pairs=m, their_n=0)
            assert u is not None
            total = add128(total, sum128(u.reshape(groups, rows, m, 2), axis=1))
        else:
            assert values is not None
            wide = to_wide(values[start:end])  # (rows, m, 2)
            y = np.broadcast_to(wide[None], (groups, rows, m, 2)).reshape(groups * rows, m, 2)
            _, v = await ot.bit_products_wide(None, np.ascontiguousarray(y), pairs=m,
                                              their_n=groups * rows)  # fmt: skip
            assert v is not None
            total = add128(total, sum128(v.reshape(groups, rows, m, 2), axis=1))
    tag = f"{prefix}/reveal"
    if party != receiver:
        payload = {"counts": counts.tolist()} if party == key_party else {}
        await channel.send_json(tag + "/meta", payload)
        await channel.send(tag, byte_view(np.ascontiguousarray(total)))
        return None
    meta = await channel.recv_json(tag + "/meta")
    theirs = np.empty_like(total)
    got = await channel.recv_into(tag, byte_view(theirs))
    if got != theirs.nbytes:
        raise ProtocolViolationError(f"the other party sent {got} bytes, expected {theirs.nbytes}")
    if party != key_party:
        c = meta.get("counts") if isinstance(meta, dict) else None
        if not isinstance(c, list) or len(c) != groups or not all(isinstance(x, int) for x in c):
            raise ParameterMismatchError("the other party sent malformed group counts")
        counts = np.asarray(c, dtype=np.int64)
    sums = from_wide(add128(total, theirs))
    return [int(c) for c in counts], sums
