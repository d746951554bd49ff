"""A party's own columns for the ``stats`` component: read with SQL's NULL rules, and the
statistics their owner computes alone, exactly, over the aligned rows.

Types: integer columns stay int64 (no float round trip: sums are exact Python integers at
any size); real columns are float64; booleans count as integers 0/1. Any other type is
refused with the column's name. NULL (an empty CSV cell, a Parquet null) is a missing value:
every aggregate skips it. NaN and infinities are refused: they have no place in SQL's
aggregates, and a silent NaN would poison every sum it enters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rainbridge.errors import DataError
from rainbridge.protocols.mpc.encoding import exact_int_sum


@dataclass
class Column:
    """One numeric column over the aligned rows: values (anything where not valid) and the
    mask of non-NULL rows."""

    name: str
    values: npt.NDArray[Any]  # int64 or float64
    valid: npt.NDArray[np.bool_]
    is_int: bool

    @property
    def count(self) -> int:
        return int(self.valid.sum())

    @property
    def has_nulls(self) -> bool:
        return not bool(self.valid.all())

    def present(self) -> npt.NDArray[Any]:
        return self.values[self.valid]


def read_column(table: pa.Table, name: str) -> Column:
    """The column ``name`` of ``table`` as a :class:`Column` (see the module's type rules)."""
    col = table.column(name)
    arr = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    typ = arr.type
    if pa.types.is_dictionary(typ):
        arr = arr.dictionary_decode()
        typ = arr.type
    valid = (
        np.ones(len(arr), dtype=bool)
        if arr.null_count == 0
        else np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    )
    if pa.types.is_null(typ):  # a column with no value at all (an all-empty CSV column)
        return Column(name, np.zeros(len(arr), dtype=np.int64), valid & False, True)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        arr = _parsed(arr, name)
        typ = arr.type
    if pa.types.is_boolean(typ):
        values = np.asarray(pc.cast(arr, pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)
        return Column(name, values, valid, True)
    if pa.types.is_integer(typ):
        if pa.types.is_uint64(typ) and len(arr) and (pc.max(arr).as_py() or 0) >= 2**63:
            raise DataError(f"column {name!r} holds integers of 2^63 or more; not supported")
        values = np.asarray(pc.cast(arr, pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)
        return Column(name, values, valid, True)
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        values = np.asarray(pc.cast(arr, pa.float64()).fill_null(0.0).to_numpy(), dtype=float)
        bad = int((~np.isfinite(values) & valid).sum())
        if bad:
            raise DataError(
                f"column {name!r} holds {bad} NaN or infinite value(s): a missing value is "
                "NULL (an empty cell); replace them or filter those rows out"
            )
        return Column(name, values, valid, False)
    raise DataError(f"column {name!r} is not numeric ({typ}); aggregate a numeric column")


def _parsed(arr: pa.Array, name: str) -> pa.Array:
    """Text that holds numbers (a column passed through as written, read back for
    computing): integers when every value is one, else reals; other text is refused."""
    for typ in (pa.int64(), pa.float64()):
        try:
            return pc.cast(arr, typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    raise DataError(f"column {name!r} is not numeric (text); aggregate a numeric column")


def _float_sum(v: npt.NDArray[np.float64]) -> float:
    # math.fsum is exactly rounded; numpy's pairwise sum is within ε·log2(n)·Σ|x|, which is
    # enough and 20× faster on the large columns
    return math.fsum(v) if len(v) <= 1 << 16 else float(np.sum(v))


def _centered(col: Column) -> npt.NDArray[np.float64]:
    """The present values minus their mean, as precisely as float64 allows: integers are
    shifted by an integer first (exact), so values near 2^62 keep their spread."""
    v = col.present()
    if col.is_int:
        shift = int(v[0]) if len(v) else 0
        span = (int(v.max()) - int(v.min())) if len(v) else 0
        if span < 2**62 and abs(shift) < 2**62:
            d = (v - np.int64(shift)).astype(np.float64)
        else:
            d = v.astype(np.float64)
    else:
        d = v
    mean = float(np.mean(d)) if len(d) else 0.0
    out = d - mean
    # the corrected two-pass form removes what rounding left in the mean
    return out - float(np.mean(out)) if len(out) else out


def sum_of(col: Column) -> int | float | None:
    v = col.present()
    if not len(v):
        return None
    return exact_int_sum(v) if col.is_int else _float_sum(v)


def mean_of(col: Column) -> float | None:
    total = sum_of(col)
    if total is None:
        return None
    if isinstance(total, int):
        return total / col.count  # int / int: correctly rounded
    return total / col.count


def var_of(col: Column) -> float | None:
    if col.count < 2:
        return None
    d = _centered(col)
    return float(np.dot(d, d)) / (col.count - 1)


def std_of(col: Column) -> float | None:
    v = var_of(col)
    return None if v is None else math.sqrt(v)


def pair_moments(a: Column, b: Column) -> tuple[float | None, float | None]:
    """(sample covariance, correlation) over the rows where both are present; the
    correlation is NULL when either is constant there (as PostgreSQL has it)."""
    both = a.valid & b.valid
    n = int(both.sum())
    if n < 2:
        return None, None
    sub_a = Column(a.name, a.values[both], np.ones(n, dtype=bool), a.is_int)
    sub_b = Column(b.name, b.values[both], np.ones(n, dtype=bool), b.is_int)
    da, db = _centered(sub_a), _centered(sub_b)
    cov = float(np.dot(da, db)) / (n - 1)
    saa, sbb = float(np.dot(da, da)), float(np.dot(db, db))
    if saa == 0.0 or sbb == 0.0 or _constant(sub_a) or _constant(sub_b):
        return (0.0 if _constant(sub_a) or _constant(sub_b) else cov), None
    corr = float(np.dot(da, db)) / math.sqrt(saa * sbb)
    return cov, max(-1.0, min(1.0, corr))


def _constant(col: Column) -> bool:
    v = col.present()
    return bool(len(v) and v.min() == v.max())


def extreme(col: Column, which: str) -> int | float | None:
    v = col.present()
    if not len(v):
        return None
    x = v.min() if which == "min" else v.max()
    return int(x) if col.is_int else float(x)


def quantiles(col: Column, qs: list[float]) -> list[float | None]:
    """Continuous quantiles (linear interpolation, as ``quantile_cont``/``MEDIAN``)."""
    v = col.present()
    if not len(v):
        return [None] * len(qs)
    if col.is_int:
        v = np.sort(v)
        out: list[float | None] = []
        for q in qs:
            pos = q * (len(v) - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, len(v) - 1)
            # interpolate on exact integers: int64 differences may overflow as floats do not
            out.append(float(int(v[lo]) + (int(v[hi]) - int(v[lo])) * (pos - lo)))
        return out
    return [float(x) for x in np.quantile(v, qs)]


def histogram(col: Column, edges: list[float]) -> list[int]:
    keys = bin_keys(col, edges)
    return [int(c) for c in np.bincount(keys[keys >= 0], minlength=len(edges) - 1)]


def bin_keys(col: Column, edges: list[float]) -> npt.NDArray[np.int64]:
    """Each row's bin (the last bin includes its upper edge); -1 outside every bin or NULL."""
    e = np.asarray(edges, dtype=float)
    v = col.values.astype(np.float64)
    keys = np.searchsorted(e, v, side="right") - 1
    keys[v == e[-1]] = len(e) - 2
    keys[(v < e[0]) | (v > e[-1]) | ~col.valid] = -1
    return keys.astype(np.int64)
