"""Datasets registered at a node: CSV or Parquet files read in place."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rainbridge.errors import DataError

#: an ID longer than this many UTF-8 bytes is refused (the PSI hashing bounds inputs)
MAX_ID_BYTES = 256
_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class DatasetRef:
    """Where a dataset lives and what it holds (never its rows).

    Attributes
    ----------
    name : str
        The name the owner registered it under.
    path : str
        Absolute path of the file, read in place.
    format : str
        ``"csv"`` or ``"parquet"``.
    id_column : str or None
        The column that identifies a row (used by PSI).
    columns : dict[str, str]
        Column name to Arrow type name.
    num_rows : int
        Row count at registration.
    """

    name: str
    path: str
    format: str
    id_column: str | None
    columns: dict[str, str] = field(default_factory=dict)
    num_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetRef:
        return cls(
            name=d["name"],
            path=d["path"],
            format=d["format"],
            id_column=d.get("id_column"),
            columns=dict(d.get("columns") or {}),
            num_rows=int(d.get("num_rows") or 0),
        )


def detect_format(path: str | Path) -> str:
    """Return ``"csv"`` or ``"parquet"`` from the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise DataError(
        f"{Path(path).name}: unknown data format {suffix!r}; use a .csv or .parquet file"
    )


def _csv_read_options(block_size: int = 1 << 22) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(block_size=block_size)


def _csv_convert(id_column: str | None) -> pacsv.ConvertOptions:
    # IDs are always strings: "007" and "7" are different customers.
    types = {id_column: pa.string()} if id_column else {}
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=False)


def _schema(path: Path, fmt: str, id_column: str | None) -> pa.Schema:
    try:
        if fmt == "parquet":
            return pq.read_schema(path)
        with pacsv.open_csv(
            path, read_options=_csv_read_options(), convert_options=_csv_convert(id_column)
        ) as reader:
            return reader.schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot read the file as {fmt}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def inspect_dataset(
    name: str, path: str | Path, id_column: str | None, fmt: str | None = None
) -> DatasetRef:
    """Read a file's schema and row count in place and check its ID column.

    Raises
    ------
    DataError
        The file is missing or unreadable, or lacks ``id_column``; the message names both.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise DataError(f"dataset {name!r}: file {p} does not exist")
    fmt = fmt or detect_format(p)
    if fmt not in _FORMATS:
        raise DataError(f"dataset {name!r}: unsupported format {fmt!r}; use csv or parquet")
    schema = _schema(p, fmt, id_column)
    if id_column is not None and id_column not in schema.names:
        raise DataError(
            f"dataset {name!r}: file {p} has no column {id_column!r} "
            f"(columns: {', '.join(schema.names[:20])})"
        )
    num_rows = 0
    if fmt == "parquet":
        num_rows = pq.ParquetFile(p).metadata.num_rows
    else:
        for batch in iter_batches(p, fmt, columns=[schema.names[0]], id_column=id_column):
            num_rows += batch.num_rows
    return DatasetRef(
        name=name,
        path=str(p),
        format=fmt,
        id_column=id_column,
        columns={f.name: str(f.type) for f in schema},
        num_rows=num_rows,
    )


def iter_batches(
    path: str | Path,
    fmt: str,
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    batch_rows: int = 1 << 18,
) -> Iterator[pa.RecordBatch]:
    """Stream record batches of the named columns; memory is bounded by the batch size."""
    p = Path(path)
    try:
        if fmt == "parquet":
            pf = pq.ParquetFile(p)
            yield from pf.iter_batches(batch_size=batch_rows, columns=list(columns or []) or None)
            return
        convert = _csv_convert(id_column)
        if columns:
            convert.include_columns = list(columns)
        with pacsv.open_csv(p, read_options=_csv_read_options(), convert_options=convert) as r:
            yield from r
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise DataError(f"{p}: cannot read {fmt} data: {_short(exc)}") from exc


def read_ids(ref: DatasetRef, column: str | None = None) -> pa.Array:
    """Read the ID column as one Arrow large_string array (validated: no nulls, ≤256 bytes).

    Raises
    ------
    DataError
        The column is missing, holds nulls, or an ID exceeds ``MAX_ID_BYTES``.
    """
    col = column or ref.id_column
    if not col:
        raise DataError(f"dataset {ref.name!r}: no ID column given")
    if ref.columns and col not in ref.columns:
        raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column {col!r}")
    chunks: list[pa.Array] = []
    for batch in iter_batches(ref.path, ref.format, columns=[col], id_column=col):
        if col not in batch.schema.names:
            raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column {col!r}")
        arr = batch.column(col)
        if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
            arr = arr.cast(pa.string())
        chunks.append(arr.cast(pa.large_string()))
    ids = pa.concat_arrays(chunks) if chunks else pa.array([], type=pa.large_string())
    check_ids(ids, f"dataset {ref.name!r} column {col!r}")
    return ids


def check_ids(ids: pa.Array, what: str) -> None:
    """Refuse nulls and IDs longer than ``MAX_ID_BYTES`` (UTF-8 bytes)."""
    import pyarrow.compute as pc

    if ids.null_count:
        raise DataError(f"{what}: {ids.null_count} empty IDs; every row needs an ID")
    if len(ids):
        longest = pc.max(pc.binary_length(ids)).as_py()
        if longest is not None and longest > MAX_ID_BYTES:
            raise DataError(f"{what}: an ID is {longest} bytes long; the limit is {MAX_ID_BYTES}")


def read_columns(ref: DatasetRef, columns: Sequence[str]) -> pa.Table:
    """Read the named columns (all rows), refusing any column the file lacks."""
    missing = [c for c in columns if ref.columns and c not in ref.columns]
    if missing:
        names = ", ".join(map(repr, missing))
        raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column(s) {names}")
    batches = list(
        iter_batches(ref.path, ref.format, columns=list(columns), id_column=ref.id_column)
    )
    if not batches:
        schema = _schema(Path(ref.path), ref.format, ref.id_column)
        return pa.Table.from_batches([], schema=pa.schema([schema.field(c) for c in columns]))
    return pa.Table.from_batches(batches).select(list(columns))
