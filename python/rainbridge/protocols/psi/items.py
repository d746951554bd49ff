"""Items as the core wants them: one data buffer and int64 offsets, straight from Arrow.

No Python object is made per item: an Arrow ``large_string`` array already *is* a data buffer
plus ``n + 1`` int64 offsets, so the core reads the IDs in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


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


def distinct(ids: pa.Array) -> pa.Array:
    """The distinct IDs, in order of first occurrence."""
    return pc.unique(ids) if len(ids) else ids


def rows_in(ids: pa.Array, members: pa.Array) -> np.ndarray:
    """Row indices (ascending, int64) of ``ids`` whose value is in ``members``."""
    if len(ids) == 0 or len(members) == 0:
        return np.zeros(0, dtype=np.int64)
    mask = pc.is_in(ids, value_set=members)
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False)).astype(np.int64)
