"""Writing outputs: all or nothing, so a failed job never leaves a partial file."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rainbridge.errors import ConfigError


def write_table_atomic(table: pa.Table, path: str | Path, fmt: str) -> Path:
    """Write ``table`` to ``path`` via a temporary file renamed into place on success."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.partial-{os.getpid()}")
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "csv":
            pacsv.write_csv(table, tmp)
        else:
            raise ConfigError(f"output format {fmt!r} is not supported; use parquet or csv")
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p
