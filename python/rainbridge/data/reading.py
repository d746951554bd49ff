"""How a dataset's bytes become Arrow columns: CSV parsing, declared types, NULLs, encodings.

The rules, the same for every CSV read:

* quoted values may hold the delimiter, doubled quotes and newlines (``\\n`` or ``\\r\\n``),
  at any file size: a value that straddles the reader's block boundary is parsed whole;
* an empty cell is NULL, whatever the column's type, and so is a quoted empty string ``""``
  (as DuckDB reads CSV); no other spelling is NULL: ``NULL``, ``NA``, ``N/A`` and ``null``
  are text (and make a numeric column a text column);
* a column the owner declared (``--column-type col=TYPE``) is read as that type; a column
  with no declared type is inferred (numbers, booleans, dates, timestamps, else text) when it
  is computed on, and kept as text exactly as written when it is only passed through;
* the file is decoded with the encoding given at registration (UTF-8 without one).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv

from rainbridge.errors import ConfigError, DataError

#: Bytes of CSV parsed at a time. A quoted value may span blocks; a single row must fit.
CSV_BLOCK_SIZE = 1 << 22

#: Field metadata marking a column kept as text exactly as written (not a declared string):
#: a typed read of a Parquet file infers such a column's type as a CSV read would.
TEXT_AS_WRITTEN = b"rainbridge.text"

#: The types an owner may declare for a CSV column, by name (canonical name: Arrow's).
COLUMN_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "date32": pa.date32(),
    "date32[day]": pa.date32(),
    "timestamp[s]": pa.timestamp("s"),
    "timestamp[ms]": pa.timestamp("ms"),
    "timestamp[us]": pa.timestamp("us"),
}

_UTF8 = codecs.lookup("utf-8").name


def type_of(name: str) -> pa.DataType:
    """The Arrow type a declared type name stands for."""
    try:
        return COLUMN_TYPES[name.strip().lower()]
    except KeyError:
        known = ", ".join(k for k in COLUMN_TYPES if k not in ("float64", "date32[day]"))
        raise ConfigError(f"column type {name!r} is not one of: {known}") from None


def column_types(declared: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """Declared column types, checked, by canonical name: ``{col: type}`` or ``col=TYPE`` items.

    Raises
    ------
    ConfigError
        An item is not ``col=TYPE``, a column is declared twice, or a type is unknown.
    """
    if not declared:
        return {}
    items: list[tuple[str, str]] = []
    if isinstance(declared, Mapping):
        items = [(str(k), str(v)) for k, v in declared.items()]
    else:
        for item in declared:
            col, eq, typ = str(item).rpartition("=")
            if not eq or not col or not typ:
                raise ConfigError(f"column type {item!r}: expected COLUMN=TYPE")
            items.append((col, typ))
    out: dict[str, str] = {}
    for col, typ in items:
        if col in out:
            raise ConfigError(f"column {col!r}: its type is declared twice")
        out[col] = str(type_of(typ))
    return out


def encoding_of(name: str | None) -> str | None:
    """The codec's canonical name, or None for UTF-8 (read without transcoding).

    Raises
    ------
    ConfigError
        Python knows no codec of that name.
    """
    if name is None or not name.strip():
        return None
    try:
        codec = codecs.lookup(name.strip()).name
    except (LookupError, ValueError):  # ValueError: a NUL or a lone surrogate in the name
        raise ConfigError(
            f"encoding {name!r} is unknown; use e.g. utf-8, gb18030, gbk, big5 or latin-1"
        ) from None
    return None if codec == _UTF8 else codec


def read_options(block_size: int | None = None) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(block_size=block_size or CSV_BLOCK_SIZE)


class CsvSource(io.RawIOBase):
    """A CSV file's bytes as UTF-8, in reads that never end between a CR and what follows.

    Arrow's CSV reader drops a LF that begins a block after a block that ended in CR, even
    inside a quoted value (``"a\r\nb"`` would be read as ``"a\rb"``): a read that would end
    in CR is one byte short instead, so the CR and its LF reach the reader together. A file
    in another encoding is decoded here (strictly: a byte that does not decode is an error).
    """

    def __init__(self, raw: IO[bytes], encoding: str | None = None) -> None:
        super().__init__()
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)("strict") if encoding else None
        self._buf = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self, n: int) -> None:
        while not self._eof and len(self._buf) < n:
            chunk = self._raw.read(max(n - len(self._buf), 1 << 16))
            if not chunk:
                self._eof = True
            if self._decoder is not None:
                chunk = self._decoder.decode(chunk, final=self._eof).encode("utf-8")
            self._buf += chunk

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            while not self._eof:
                self._fill(len(self._buf) + (1 << 22))
            n = len(self._buf)
        self._fill(n + 1)  # one byte past the read: is the last byte a CR with more to come?
        k = min(n, len(self._buf))
        if k > 1 and self._buf[k - 1] == 0x0D and len(self._buf) > k:
            k -= 1
        out = bytes(self._buf[:k])
        del self._buf[:k]
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_source(path: str | Path, encoding: str | None) -> CsvSource:
    return CsvSource(open(path, "rb"), encoding)  # closed with the source


def parse_options(path: str | Path) -> pacsv.ParseOptions:
    # Without newlines_in_values a quoted newline ends the row when it falls on a block
    # boundary: a valid file would be read as other rows.
    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    return pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)


def convert_options(
    declared: Mapping[str, str],
    *,
    id_column: str | None = None,
    text_columns: Iterable[str] = (),
    include: Iterable[str] | None = None,
) -> pacsv.ConvertOptions:
    """Typed reads infer what is not declared; ``text_columns`` are read as written."""
    types: dict[str, pa.DataType] = {c: pa.string() for c in text_columns}
    types.update({c: type_of(t) for c, t in declared.items()})
    if id_column:
        types[id_column] = pa.string()  # "007" and "7" are different customers
    opts = pacsv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    if include is not None:
        opts.include_columns = list(include)
    return opts


def mark_text(table: pa.Table, columns: Iterable[str]) -> pa.Table:
    """``table`` with ``columns`` marked as text kept as written."""
    marked = set(columns)
    fields = [
        f.with_metadata({**(f.metadata or {}), TEXT_AS_WRITTEN: b"as-written"})
        if f.name in marked
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def is_marked_text(f: pa.Field) -> bool:
    return bool(f.metadata) and TEXT_AS_WRITTEN in f.metadata and pa.types.is_string(f.type)


def infer_types(table: pa.Table) -> pa.Table:
    """Text columns typed as a CSV read would type them (one inference over all rows)."""
    if table.num_columns == 0 or table.num_rows == 0:
        return table
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    buf = sink.getvalue()
    if buf.size >= (1 << 31) - 1:
        return table  # too large for one block: left as text (exact; computing on it refuses)
    out = pacsv.read_csv(
        pa.BufferReader(buf),
        read_options=pacsv.ReadOptions(block_size=max(buf.size + 1, 1 << 16)),
        # a row whose columns are all NULL is an empty line: it still counts
        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=convert_options({}),
    )
    return out.rename_columns(table.column_names)


def decoding_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the bytes were not text in the expected encoding."""
    if isinstance(exc, UnicodeError):
        return True
    text = str(exc).lower()
    return "utf8" in text or "utf-8" in text or "codec can't decode" in text


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def read_error(
    exc: BaseException, what: str, fmt: str, encoding: str | None, dataset: str | None
) -> DataError:
    """The typed error for a failed read: what, where, and what to do about it."""
    if fmt == "csv" and decoding_error(exc):
        add = f"rainbridge dataset add {dataset or 'NAME'} --path … --encoding"
        if encoding is None:
            return DataError(
                f"{what} is not valid UTF-8 ({short(exc)}); register it with its encoding, "
                f"e.g. `{add} gb18030` (or gbk, big5, latin-1)"
            )
        return DataError(
            f"{what} is not valid {encoding} text ({short(exc)}); register it with the "
            f"encoding it was written in (`{add} ENCODING`)"
        )
    text = short(exc)
    hint = ""
    if "conversion error" in text.lower():
        hint = (
            "; a column's type is inferred from the first rows: declare it with "
            f"`rainbridge dataset add {dataset or 'NAME'} … --column-type COLUMN=string`"
        )
    elif "straddl" in text.lower():
        hint = f"; a row is longer than {CSV_BLOCK_SIZE} bytes"
    return DataError(f"{what}: cannot read {fmt} data: {text}{hint}")
