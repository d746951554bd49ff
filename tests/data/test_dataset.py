"""Datasets read in place: schema, row count and clear errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbridge.data import inspect_dataset, read_columns, read_ids, write_table_atomic
from rainbridge.errors import ConfigError, DataError


def test_csv_and_parquet(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("customer_id,age\n007,31\n7,40\n身份,22\n")
    ref = inspect_dataset("a", csv, "customer_id")
    assert ref.num_rows == 3 and ref.format == "csv"
    assert read_ids(ref).to_pylist() == ["007", "7", "身份"]  # IDs stay strings
    pq.write_table(pa.table({"id": ["x", "y"], "v": [1.0, 2.0]}), tmp_path / "b.parquet")
    ref2 = inspect_dataset("b", tmp_path / "b.parquet", "id")
    assert ref2.num_rows == 2 and ref2.columns["v"] == "double"
    assert read_columns(ref2, ["v"]).column("v").to_pylist() == [1.0, 2.0]


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("cid,age\n1,2\n")
    with pytest.raises(DataError) as exc:
        inspect_dataset("a", csv, "customer_id")
    assert "a.csv" in str(exc.value) and "'customer_id'" in str(exc.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        inspect_dataset("a", tmp_path / "none.csv", "id")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read"):
        inspect_dataset("b", bad, "id")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match="format"):
        inspect_dataset("c", tmp_path / "x.xlsx", "id")


def test_overlong_and_null_ids_refused(tmp_path: Path) -> None:
    p = tmp_path / "long.parquet"
    pq.write_table(pa.table({"id": ["a" * 257]}), p)
    with pytest.raises(DataError, match="256"):
        read_ids(inspect_dataset("l", p, "id"))
    p2 = tmp_path / "null.parquet"
    pq.write_table(pa.table({"id": ["a", None]}), p2)
    with pytest.raises(DataError, match="empty IDs"):
        read_ids(inspect_dataset("n", p2, "id"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    t = pa.table({"a": [1]})
    out = write_table_atomic(t, tmp_path / "o" / "x.csv", "csv")
    assert out.read_text().startswith('"a"')
    with pytest.raises(ConfigError):
        write_table_atomic(t, tmp_path / "y.bin", "xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
