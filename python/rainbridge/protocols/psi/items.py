"""Items as the core wants them: one data buffer and int64 offsets, straight from Arrow.

No Python object is made per item: an Arrow ``large_string`` array already *is* a data buffer
plus ``n + 1`` int64 offsets, so the core reads the IDs in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rainbridge import _core


@dataclass(frozen=True)
class Items:
    """A batch of byte strings: ``data[offsets[i]:offsets[i+1]]`` is item ``i``."""

    data: pa.Buffer | bytes
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(len(self.offsets) - 1)


def to_large_string(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``large_string`` array (int64 offsets) from any string-like array."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], type=pa.large_string())
    if not pa.types.is_large_string(ids.type):
        ids = ids.cast(pa.large_string())
    return ids


def as_items(arr: pa.Array) -> Items:
    """View a ``large_string`` array (possibly a slice) as :class:`Items` without copying."""
    if not pa.types.is_large_string(arr.type):
        raise TypeError("as_items expects a large_string array")
    n = len(arr)
    bufs = arr.buffers()
    if n == 0 or bufs[1] is None:
        return Items(data=b"", offsets=np.zeros(1, dtype=np.int64))
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=arr.offset + n + 1)[arr.offset :]
    data = bufs[2] if bufs[2] is not None else b""
    return Items(data=data, offsets=offsets)


@dataclass(frozen=True)
class Distinct:
    """The distinct IDs of a column and, when there were duplicates, each row's group."""

    values: pa.Array
    #: per row, the index of its value in ``values``; None when every row is distinct
    group: np.ndarray | None

    def rows(self, mask: np.ndarray) -> np.ndarray:
        """Ascending row indices whose value is selected by ``mask`` (over ``values``)."""
        if self.group is None:
            return np.flatnonzero(mask).astype(np.int64)
        return np.flatnonzero(mask[self.group]).astype(np.int64)


def distinct_ids(ids: pa.Array) -> Distinct:
    """Group equal IDs without a hash table of strings (which costs ~100 bytes per row).

    Rows are sorted by a 64-bit hash computed in the core; neighbours with equal hashes are
    then compared as strings, so only true duplicates are merged. In the astronomically rare
    case of two different IDs sharing a hash, fall back to Arrow's exact (heavier) grouping.
    """
    n = len(ids)
    if n < 2:
        return Distinct(ids, None)
    items = as_items(ids)
    h = np.frombuffer(_core.items_hash64(items.data, items.offsets), dtype="<u8")
    order = np.argsort(h, kind="stable")
    same = h[order[1:]] == h[order[:-1]]
    del h
    if not same.any():
        return Distinct(ids, None)
    pairs = np.flatnonzero(same)
    left = ids.take(pa.array(order[pairs]))
    right = ids.take(pa.array(order[pairs + 1]))
    equal = pc.equal(left, right).to_numpy(zero_copy_only=False)
    if not equal.all():
        return _distinct_exact(ids)
    is_new = np.ones(n, dtype=bool)
    is_new[pairs + 1] = False
    group = np.empty(n, dtype=np.int64)
    group[order] = np.cumsum(is_new) - 1
    first_rows = order[is_new]  # stable sort: the first row of each run is its first occurrence
    return Distinct(ids.take(pa.array(first_rows)), group)


def _distinct_exact(ids: pa.Array) -> Distinct:
    enc = pc.dictionary_encode(ids)
    return Distinct(
        enc.dictionary.cast(pa.large_string()),
        enc.indices.to_numpy(zero_copy_only=False).astype(np.int64),
    )
