"""The labels of upserted PIR rows, read by the datasets' rules: JSON values as a table of
the published table's column types, as a CSV cell of that type would read."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from rainbridge.errors import DataError
from rainbridge.protocols.pir.table import PirTable


def label_schema(table: PirTable) -> pa.Schema:
    """The label columns ``table`` was published with, and their types."""
    empty = table.layout.decode(np.zeros((0, max(1, table.width)), np.uint8))
    return pa.schema([pa.field(f.name, f.type) for f in empty.schema])


def labels_of(rows: list[dict[str, Any]], schema: pa.Schema, what: str) -> pa.Table:
    """Upserted labels (JSON values) as a table of the published ``schema``.

    The rules are the datasets' CSV rules: a text value is read as a CSV cell of its
    column's type would be (``"404"`` and ``"007"`` in a string column stay that text, in
    an integer column they are 404 and 7), and an empty text or a null is NULL, whatever the
    type. A JSON number or boolean is read as its text in a column of numbers or booleans;
    in a string column an integer is its decimal text and anything else is refused, as is a
    value in a column the table was published without any value in.

    Raises
    ------
    DataError
        A value that is not of its column's type; the message names the column and value.
    """
    columns = []
    for f in schema:
        texts = [_text_of(r.get(f.name), f, what) for r in rows]
        columns.append(_typed(texts, f, what))
    return pa.Table.from_arrays(columns, schema=schema)


def _text_of(value: Any, f: pa.Field, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None  # an empty cell is NULL, for every type
    string_like = pa.types.is_string(f.type) or pa.types.is_binary(f.type)
    if isinstance(value, bool):
        if string_like:
            raise DataError(f"{what}: label {f.name!r} is text; send {value!r} as a string")
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not string_like:
        return repr(value)
    raise DataError(
        f"{what}: label {f.name!r} ({f.type}) cannot hold {type(value).__name__} "
        f"{str(value)[:40]!r}; send it as text"
    )


def _typed(texts: list[str | None], f: pa.Field, what: str) -> pa.Array:
    """Texts converted as the CSV reader converts a cell of type ``f.type``."""
    if pa.types.is_null(f.type):
        given = [t for t in texts if t is not None]
        if given:
            raise DataError(
                f"{what}: label {f.name!r} was published without any value (an empty column), "
                f"so it cannot hold {given[0][:40]!r}: republish the table with values in it"
            )
        return pa.nulls(len(texts))
    if pa.types.is_string(f.type):
        return pa.array(texts, pa.string())  # kept as written
    if not texts:
        return pa.array([], f.type)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table({"v": pa.array(texts, pa.string())}), sink)
    buf = sink.getvalue()
    try:
        out = pacsv.read_csv(
            pa.BufferReader(buf),
            read_options=pacsv.ReadOptions(block_size=max(buf.size + 1, 1 << 16)),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"v": f.type},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        reason = re.sub(r"^In CSV column #\d+: ", "", text)[:200]
        raise DataError(
            f"{what}: label {f.name!r} is {f.type} in the published table: {reason}"
        ) from None
    col = out.column("v").combine_chunks()
    if len(col) != len(texts):
        raise DataError(f"{what}: label {f.name!r}: {len(col)} values read for {len(texts)}")
    return col
