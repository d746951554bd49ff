"""Datasets registered at a node: CSV or Parquet files, or SQL tables and queries, read in
place (a SQL source through :mod:`rainbridge.data.sql_source`).

CSV files are read by the rules of :mod:`rainbridge.data.reading` (quoted newlines at any
size, NULL only for empty cells, declared types, the registered encoding); Parquet files keep
their own types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rainbridge.data import reading
from rainbridge.data.reading import short as _short
from rainbridge.errors import ConfigError, DataError

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
        Column name to Arrow type name (as a typed read gives them).
    num_rows : int
        Row count at registration.
    encoding : str or None
        A CSV file's text encoding (a Python codec name); None: UTF-8.
    column_types : dict[str, str]
        The owner's declared types of CSV columns (column to Arrow type name), applied at
        every read; other columns are inferred when computed on and kept as written when
        passed through.
    source : dict or None
        Format ``"sql"``: the database (URL with the password masked), the table or query,
        and the key of its credentials in :mod:`rainbridge.data.sql_source` (never the
        credentials themselves); ``path`` is then the masked URL.
    """

    name: str
    path: str
    format: str
    id_column: str | None
    columns: dict[str, str] = field(default_factory=dict)
    num_rows: int = 0
    encoding: str | None = None
    column_types: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] | None = None

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
            encoding=d.get("encoding") or None,
            column_types=dict(d.get("column_types") or {}),
            source=dict(d["source"]) if d.get("source") else None,
        )


def detect_format(path: str | Path) -> str:
    """Return ``"csv"`` or ``"parquet"`` from the file's suffix (``.tsv`` is tab-separated)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise DataError(
        f"{Path(path).name}: unknown data format {suffix!r}; use a .csv or .parquet file"
    )


def _schema(
    path: Path,
    fmt: str,
    id_column: str | None,
    *,
    encoding: str | None = None,
    declared: Mapping[str, str] | None = None,
    dataset: str | None = None,
) -> pa.Schema:
    """The file's schema as a typed read gives it (CSV: inferred from the first block)."""
    try:
        if fmt == "parquet":
            return pq.read_schema(path)
        with (
            reading.open_source(path, encoding) as source,
            pacsv.open_csv(
                source,
                read_options=reading.read_options(),
                parse_options=reading.parse_options(path),
                convert_options=reading.convert_options(declared or {}, id_column=id_column),
            ) as reader,
        ):
            schema = reader.schema
            schema.names  # noqa: B018 (column names that are not UTF-8 fail here)
            return schema
    except (pa.ArrowException, OSError, UnicodeError, LookupError) as exc:
        # ArrowException: also a Parquet file whose schema Arrow does not implement (an
        # integer wider than 64 bits), or one that announces more memory than exists
        what = f"dataset {dataset!r}: {path}" if dataset else str(path)
        if fmt == "csv" and reading.decoding_error(exc):
            raise reading.read_error(exc, what, fmt, encoding, dataset) from exc
        raise DataError(f"{what}: cannot read the file as {fmt}: {_short(exc)}") from exc


def inspect_dataset(
    name: str,
    path: str | Path,
    id_column: str | None,
    fmt: str | None = None,
    *,
    encoding: str | None = None,
    column_types: Mapping[str, str] | Iterable[str] | None = None,
) -> DatasetRef:
    """Read a file's schema and row count in place and check its ID column.

    A CSV file is read through once: every value must decode in ``encoding`` (UTF-8 without
    one) and every value of a declared column must be of its type, or it is refused now.

    Raises
    ------
    DataError
        The file is missing or unreadable, not text in its encoding, holds a value that is not
        of its column's declared type, names a column twice, or lacks ``id_column``; the
        message names them.
    ConfigError
        An unknown encoding or type name, a declared column the file lacks, a non-string type
        declared for the ID column, or an encoding or types given for a Parquet file.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise DataError(f"dataset {name!r}: file {p} does not exist")
    fmt = fmt or detect_format(p)
    if fmt not in _FORMATS:
        raise DataError(f"dataset {name!r}: unsupported format {fmt!r}; use csv or parquet")
    enc = reading.encoding_of(encoding)
    declared = reading.column_types(column_types)
    if fmt == "parquet" and (enc or declared):
        raise ConfigError(
            f"dataset {name!r}: a Parquet file carries its own types and encoding; "
            "--encoding and --column-type apply to CSV files"
        )
    if id_column is not None and declared.get(id_column, "string") != "string":
        raise ConfigError(
            f"dataset {name!r}: the ID column {id_column!r} is always text "
            f"(declared {declared[id_column]}): '007' and '7' are different IDs"
        )
    schema = _schema(p, fmt, id_column, encoding=enc, declared=declared, dataset=name)
    # two columns of one name: a job could not say which it reads (and the catalogue keeps one)
    twice = sorted({c for i, c in enumerate(schema.names) if c in schema.names[:i]})
    if twice:
        raise DataError(
            f"dataset {name!r}: file {p} names column {', '.join(map(repr, twice[:5]))} "
            "more than once; give every column a name of its own"
        )
    unknown = [c for c in declared if c not in schema.names]
    if unknown:
        raise ConfigError(
            f"dataset {name!r}: file {p} has no column {', '.join(map(repr, unknown))} "
            f"to declare a type for (columns: {', '.join(schema.names[:20])})"
        )
    if id_column is not None and id_column not in schema.names:
        raise DataError(
            f"dataset {name!r}: file {p} has no column {id_column!r} "
            f"(columns: {', '.join(schema.names[:20])})"
        )
    ref = DatasetRef(
        name=name,
        path=str(p),
        format=fmt,
        id_column=id_column,
        columns={f.name: str(f.type) for f in schema},
        encoding=enc,
        column_types=declared,
    )
    num_rows = 0
    if fmt == "parquet":
        try:
            num_rows = pq.ParquetFile(p).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            what = f"dataset {name!r}: {p}"
            raise DataError(f"{what}: cannot read parquet data: {_short(exc)}") from exc
    else:
        # every column once: decodes every byte and converts every declared value
        for batch in iter_dataset(ref, text=True):
            num_rows += batch.num_rows
    return replace(ref, num_rows=num_rows)


def iter_batches(
    path: str | Path,
    fmt: str,
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    batch_rows: int = 1 << 18,
    *,
    encoding: str | None = None,
    column_types: Mapping[str, str] | None = None,
    text: bool = False,
    block_size: int | None = None,
    dataset: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream record batches of the named columns; memory is bounded by the batch size.

    CSV: the ID column is text, declared columns have their declared type, and the others are
    inferred, or with ``text=True`` kept as text exactly as written (and marked so). Parquet:
    the file's own types.
    """
    p = Path(path)
    what = f"dataset {dataset!r}: {p}" if dataset else str(p)
    declared = dict(column_types or {})
    try:
        if fmt == "parquet":
            pf = pq.ParquetFile(p)
            yield from pf.iter_batches(batch_size=batch_rows, columns=list(columns or []) or None)
            return
        names: Sequence[str] = columns or ()
        if text and not columns:
            names = _schema(p, fmt, id_column, encoding=encoding, dataset=dataset).names
        as_written = [c for c in names if c not in declared and c != id_column] if text else []
        convert = reading.convert_options(
            declared, id_column=id_column, text_columns=as_written, include=columns or None
        )
        with (
            reading.open_source(p, encoding) as source,
            pacsv.open_csv(
                source,
                read_options=reading.read_options(block_size),
                parse_options=reading.parse_options(p),
                convert_options=convert,
            ) as r,
        ):
            for batch in r:
                if as_written:
                    t = reading.mark_text(pa.Table.from_batches([batch]), as_written)
                    yield from t.to_batches() or [pa.RecordBatch.from_pylist([], t.schema)]
                else:
                    yield batch
    except (pa.ArrowException, OSError, KeyError, UnicodeError, LookupError) as exc:
        raise reading.read_error(exc, what, fmt, encoding, dataset) from exc


def iter_dataset(
    ref: DatasetRef,
    columns: Sequence[str] | None = None,
    *,
    id_column: str | None = None,
    text: bool = False,
    batch_rows: int = 1 << 18,
    block_size: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """:func:`iter_batches` of a registered dataset, with its encoding and declared types."""
    if ref.format == "sql":
        from rainbridge.data.sql_source import iter_sql

        return iter_sql(ref, columns, batch_rows=batch_rows)
    return iter_batches(
        ref.path,
        ref.format,
        columns,
        id_column if id_column is not None else ref.id_column,
        batch_rows,
        encoding=ref.encoding,
        column_types=ref.column_types,
        text=text,
        block_size=block_size,
        dataset=ref.name,
    )


MissingIds = Literal["refuse", "keep"]


def read_ids(
    ref: DatasetRef, column: str | None = None, *, missing: MissingIds = "refuse"
) -> pa.Array:
    """Read the ID column as one Arrow large_string array, exactly as written.

    An ID is missing when it is NULL or empty (``""``): with ``missing="refuse"`` (default)
    any is refused, with ``"keep"`` they are returned (see :func:`missing_ids`).

    Raises
    ------
    DataError
        The column is missing, an ID is missing (``missing="refuse"``), or an ID exceeds
        ``MAX_ID_BYTES``.
    """
    col = column or ref.id_column
    if not col:
        raise DataError(f"dataset {ref.name!r}: no ID column given")
    if ref.columns and col not in ref.columns:
        raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column {col!r}")
    chunks: list[pa.Array] = []
    for batch in iter_dataset(ref, [col], id_column=col):
        if col not in batch.schema.names:
            raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column {col!r}")
        chunks.append(as_ids(batch.column(col), f"dataset {ref.name!r} column {col!r}"))
    ids = pa.concat_arrays(chunks) if chunks else pa.array([], type=pa.large_string())
    what = f"dataset {ref.name!r} column {col!r}"
    if missing == "refuse":
        check_ids(ids, what)
    else:
        check_id_lengths(ids, what)
    return ids


def as_ids(arr: pa.Array | pa.ChunkedArray, what: str = "the ID column") -> pa.Array:
    """An ID column as large_string (numbers in a Parquet file as their text).

    Raises
    ------
    DataError
        A value is not UTF-8 text (a Parquet binary column), or the column's type has no
        text form (a list, a struct); the message names ``what``.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:
        if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
            arr = arr.cast(pa.string())
        return arr.cast(pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"{what} cannot be read as IDs ({arr.type}): {_short(exc)}; IDs are text"
        ) from exc


def missing_ids(ids: pa.Array) -> pa.Array:
    """Boolean mask of the missing IDs: NULL or the empty string."""
    return pc.fill_null(pc.equal(pc.binary_length(ids), 0), True)


def check_ids(ids: pa.Array, what: str, hint: str = "every row needs an ID") -> None:
    """Refuse missing IDs (NULL or empty) and IDs longer than ``MAX_ID_BYTES`` (UTF-8 bytes)."""
    n = count_missing(ids)
    if n:
        raise DataError(f"{what}: {n} empty IDs (empty text or NULL); {hint}")
    check_id_lengths(ids, what)


def count_missing(ids: pa.Array) -> int:
    if not len(ids):
        return 0
    return int(pc.sum(missing_ids(ids)).as_py() or 0)


def check_id_lengths(ids: pa.Array, what: str) -> None:
    """Refuse IDs longer than ``MAX_ID_BYTES`` (UTF-8 bytes)."""
    if len(ids):
        longest = pc.max(pc.binary_length(ids)).as_py()
        if longest is not None and longest > MAX_ID_BYTES:
            raise DataError(f"{what}: an ID is {longest} bytes long; the limit is {MAX_ID_BYTES}")


def read_columns(ref: DatasetRef, columns: Sequence[str], *, text: bool = False) -> pa.Table:
    """Read the named columns (all rows), refusing any column the file lacks.

    A typed read (default) is for computing: declared types, else inferred (empty cells are
    NULL); a Parquet column that an earlier component kept as written is inferred alike.
    ``text=True`` is for passing columns through: a CSV column without a declared type is
    text exactly as written (``007`` stays ``007``), marked so in its field metadata.
    """
    missing = [c for c in columns if ref.columns and c not in ref.columns]
    if missing:
        names = ", ".join(map(repr, missing))
        raise DataError(f"dataset {ref.name!r}: file {ref.path} has no column(s) {names}")
    batches = list(iter_dataset(ref, list(columns), text=text))
    if not batches:
        schema = _schema(
            Path(ref.path),
            ref.format,
            ref.id_column,
            encoding=ref.encoding,
            declared=ref.column_types,
            dataset=ref.name,
        )
        fields = [schema.field(c) for c in columns]
        if text and ref.format == "csv":
            fields = [
                f
                if f.name in ref.column_types or f.name == ref.id_column
                else pa.field(f.name, pa.string())
                for f in fields
            ]
            table = pa.Table.from_batches([], schema=pa.schema(fields))
            return reading.mark_text(
                table,
                [c for c in columns if c not in ref.column_types and c != ref.id_column],
            )
        return pa.Table.from_batches([], schema=pa.schema(fields))
    table = pa.Table.from_batches(batches).select(list(columns))
    if not text and ref.format == "parquet":
        marked = [f.name for f in table.schema if reading.is_marked_text(f)]
        if marked:
            typed = reading.infer_types(table.select(marked))
            for c in marked:
                table = table.set_column(table.column_names.index(c), c, typed.column(c))
    return table
