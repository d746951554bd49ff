"""Writing outputs: all or nothing, so a failed job never leaves a partial file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rainbridge.errors import ConfigError


def _atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write`` a temporary file beside ``path``, renamed into place on success."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.partial-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def write_table_atomic(table: pa.Table, path: str | Path, fmt: str) -> Path:
    """Write ``table`` to ``path`` (parquet or csv), all or nothing."""
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"output format {fmt!r} is not supported; use parquet or csv")
    if fmt == "parquet":
        return _atomic(path, lambda tmp: pq.write_table(table, tmp))
    return _atomic(path, lambda tmp: pacsv.write_csv(table, tmp))


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as JSON to ``path`` (a model part, a report), all or nothing."""
    return _atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))
