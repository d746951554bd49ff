"""Fixed-width binary records of a table's rows: how PSI payload columns travel encrypted.

Every row becomes one record of the same width (a validity byte and a fixed-size field per
column; strings and binaries padded to the longest value of their column), so a ciphertext's
length says nothing about the row it carries. The layout (names, types, widths) is sent in
the clear before any record: it reveals the columns' types and the longest string of each,
and which string columns are text kept as written (not declared strings), so the receiver
reads them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rainbridge.errors import DataError, ProtocolViolationError

#: A record may not exceed this many bytes (it is padded, so every row pays for the longest).
MAX_RECORD = 1 << 16

# Fixed-width kinds: the arrow type and the numpy dtype of its stored value.
_FIXED: dict[str, tuple[pa.DataType, str]] = {
    "int8": (pa.int8(), "<i1"),
    "int16": (pa.int16(), "<i2"),
    "int32": (pa.int32(), "<i4"),
    "int64": (pa.int64(), "<i8"),
    "uint8": (pa.uint8(), "<u1"),
    "uint16": (pa.uint16(), "<u2"),
    "uint32": (pa.uint32(), "<u4"),
    "uint64": (pa.uint64(), "<u8"),
    "float": (pa.float32(), "<f4"),
    "double": (pa.float64(), "<f8"),
    "bool": (pa.bool_(), "<u1"),
    "date32[day]": (pa.date32(), "<i4"),
    "timestamp[s]": (pa.timestamp("s"), "<i8"),
    "timestamp[ms]": (pa.timestamp("ms"), "<i8"),
    "timestamp[us]": (pa.timestamp("us"), "<i8"),
    "timestamp[ns]": (pa.timestamp("ns"), "<i8"),
}
_VARIABLE = {"string": pa.string(), "binary": pa.binary()}
_LEN = np.dtype("<u4")
#: field metadata of a string column kept as written (as :mod:`rainbridge.data.reading` marks)
_AS_WRITTEN = {b"rainbridge.text": b"as-written"}


@dataclass(frozen=True)
class Field:
    """One column of a record: its name, kind (an arrow type's name) and value bytes."""

    name: str
    kind: str
    size: int  # value bytes; for strings and binaries: the longest value
    text: bool = False  # a string column kept as written (inferred where computed on)

    @property
    def width(self) -> int:
        extra = _LEN.itemsize if self.kind in _VARIABLE else 0
        return 1 + extra + self.size


def _kind(t: pa.DataType) -> str | None:
    if pa.types.is_null(t):
        return "null"  # a column with no value at all (a CSV column left empty)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_timestamp(t) and t.tz is not None:
        return None
    name = str(t)
    return name if name in _FIXED else None


@dataclass(frozen=True)
class RecordLayout:
    """How a table's rows are laid out as records."""

    fields: tuple[Field, ...]

    @property
    def size(self) -> int:
        """Bytes of a record (0 for no columns)."""
        return sum(f.width for f in self.fields)

    @property
    def width(self) -> int:
        """Bytes of a record as encrypted (at least one: a cipher needs a byte)."""
        return max(1, self.size)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @classmethod
    def of(cls, table: pa.Table) -> RecordLayout:
        """The layout for ``table``'s columns (strings sized to their longest value)."""
        fields = []
        for name, col in zip(table.column_names, table.columns, strict=True):
            kind = _kind(col.type)
            if kind is None:
                raise DataError(
                    f"payload column {name!r} has type {col.type}, which PSI payloads do not "
                    "carry (integers, floats, booleans, dates, timestamps without a time "
                    "zone, strings and binaries do)"
                )
            if kind == "null":
                size = 0
            elif kind in _VARIABLE:
                lengths = pc.binary_length(col.cast(pa.large_binary()))
                longest = pc.max(lengths).as_py() if len(col) else 0
                size = int(longest or 0)
            else:
                size = np.dtype(_FIXED[kind][1]).itemsize
            meta = table.schema.field(name).metadata or {}
            text = kind == "string" and b"rainbridge.text" in meta
            fields.append(Field(name, kind, size, text))
        layout = cls(tuple(fields))
        if layout.width > MAX_RECORD:
            raise DataError(
                f"payload records would be {layout.width} bytes (at most {MAX_RECORD}): "
                "name fewer or shorter columns"
            )
        return layout

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"name": f.name, "kind": f.kind, "size": f.size, **({"text": True} if f.text else {})}
            for f in self.fields
        ]

    @classmethod
    def from_json(cls, obj: Any, names: list[str], peer: str) -> RecordLayout:
        """A peer's layout, checked: the agreed columns, known kinds, sane sizes."""
        bad = ProtocolViolationError(f"peer {peer!r} sent an invalid payload layout")
        if not isinstance(obj, list) or len(obj) != len(names):
            raise bad
        fields = []
        for item, name in zip(obj, names, strict=True):
            if not isinstance(item, dict) or item.get("name") != name:
                raise bad
            kind, size = item.get("kind"), item.get("size")
            if kind not in _FIXED and kind not in _VARIABLE and kind != "null":
                raise bad
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < MAX_RECORD:
                raise bad
            if kind in _FIXED and size != np.dtype(_FIXED[kind][1]).itemsize:
                raise bad
            if kind == "null" and size:
                raise bad
            text = item.get("text", False)
            if not isinstance(text, bool) or (text and kind != "string"):
                raise bad
            fields.append(Field(name, kind, size, bool(text)))
        layout = cls(tuple(fields))
        if layout.width > MAX_RECORD:
            raise bad
        return layout

    def encode(self, table: pa.Table) -> np.ndarray:
        """Rows of ``table`` (its columns in this layout's order) as ``(n, width)`` bytes."""
        n = table.num_rows
        out = np.zeros((n, self.width), dtype=np.uint8)
        at = 0
        for f in self.fields:
            col = table.column(f.name).combine_chunks()
            out[:, at] = np.asarray(col.is_valid(), dtype=np.uint8)
            at += 1
            if f.kind == "null":
                continue
            if f.kind in _VARIABLE:
                arr = pc.fill_null(col.cast(pa.large_binary()), b"")
                offsets = np.frombuffer(arr.buffers()[1], dtype="<i8")[
                    arr.offset : arr.offset + n + 1
                ]
                lengths = np.diff(offsets)
                out[:, at : at + 4] = lengths.astype(_LEN).view(np.uint8).reshape(n, 4)
                at += 4
                data = np.frombuffer(arr.buffers()[2] or b"", dtype=np.uint8)
                block = np.zeros((n, f.size), dtype=np.uint8)
                # row-major boolean assignment lays the values out one after the other
                block[np.arange(f.size) < lengths[:, None]] = data[offsets[0] : offsets[-1]]
                out[:, at : at + f.size] = block
            else:
                typ, dt = _FIXED[f.kind]
                store = pa.uint8() if f.kind == "bool" else pa.from_numpy_dtype(np.dtype(dt))
                vals = pc.fill_null(col.cast(typ).cast(store), 0).to_numpy(zero_copy_only=False)
                out[:, at : at + f.size] = (
                    np.ascontiguousarray(vals, dtype=dt).view(np.uint8).reshape(n, f.size)
                )
            at += f.size
        return out

    def decode(self, records: np.ndarray) -> pa.Table:
        """The table that :meth:`encode` made ``records`` from."""
        n = len(records)
        columns: dict[str, pa.Array] = {}
        marked: list[str] = []
        at = 0
        for f in self.fields:
            valid = records[:, at] == 1
            if np.any(records[:, at] > 1):
                raise DataError(f"payload column {f.name!r}: a record is damaged")
            at += 1
            mask = None if valid.all() else ~valid
            if f.kind == "null":
                if valid.any():
                    raise DataError(f"payload column {f.name!r}: a record is damaged")
                arr = pa.nulls(n)
            elif f.kind in _VARIABLE:
                lengths = np.ascontiguousarray(records[:, at : at + 4]).view(_LEN).reshape(n)
                at += 4
                if n and int(lengths.max()) > f.size:
                    raise DataError(f"payload column {f.name!r}: a record is damaged")
                block = records[:, at : at + f.size]
                data = block[np.arange(f.size) < lengths[:, None]]
                offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
                arr = pa.Array.from_buffers(
                    pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
                )
                try:
                    arr = arr.cast(_VARIABLE[f.kind])
                except pa.ArrowInvalid:
                    raise DataError(f"payload column {f.name!r}: invalid UTF-8") from None
                if mask is not None:
                    arr = pc.if_else(pa.array(valid), arr, pa.nulls(n, arr.type))
            else:
                typ, dt = _FIXED[f.kind]
                vals = np.ascontiguousarray(records[:, at : at + f.size]).view(dt).reshape(n)
                if f.kind == "bool":
                    arr = pa.array(vals != 0, mask=mask)
                else:
                    arr = pa.array(vals, mask=mask).cast(typ)
            at += f.size
            columns[f.name] = arr
            if f.text:
                marked.append(f.name)
        if not columns:
            return pa.table({})
        table = pa.table(columns)
        fields = [fl.with_metadata(_AS_WRITTEN) if fl.name in marked else fl for fl in table.schema]
        return table.cast(pa.schema(fields)) if marked else table
