"""Keyword PIR (匿踪查询) and unbalanced PSI: an OPRF-sealed table at the server, queried
by clients that hold a replica (private mode) or name a bucket (k-anonymity mode)."""

from rainbridge.protocols.pir.client import Answer, Replica, open_rows
from rainbridge.protocols.pir.table import PirTable, Rows, buckets_of

__all__ = ["Answer", "PirTable", "Replica", "Rows", "buckets_of", "open_rows"]
