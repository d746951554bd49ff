"""Columnar data access: datasets are read in place (CSV or Parquet) through Arrow.

A :class:`DatasetRef` records where a dataset lives and its shape, and how to read it (a CSV
file's encoding and declared column types); nothing here copies a dataset. Readers stream
record batches so memory stays bounded by the batch size, not by the file's size. The rules a
CSV file is read by are in :mod:`rainbridge.data.reading`.
"""

from rainbridge.data.dataset import (
    DatasetRef,
    detect_format,
    inspect_dataset,
    iter_batches,
    iter_dataset,
    read_columns,
    read_ids,
)
from rainbridge.data.output import write_json_atomic, write_table_atomic

__all__ = [
    "DatasetRef",
    "detect_format",
    "inspect_dataset",
    "iter_batches",
    "iter_dataset",
    "read_columns",
    "read_ids",
    "write_json_atomic",
    "write_table_atomic",
]
