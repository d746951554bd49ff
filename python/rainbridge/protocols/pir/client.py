"""The client's side of keyword PIR: a replica of the sealed table, and opening answers.

Private mode: the client keeps a replica of the server's sealed table (copied once, then
kept current by deltas). A query sends only blinded OPRF elements; the client finalizes the
server's evaluations into tags and keys, finds the tags in its replica and opens the rows.
The server sees ``r·H(id)`` for a fresh random ``r`` per ID: a uniformly random group
element, the same size and shape whatever the ID and whether it is in the table.

k-anonymity mode: no replica; the query also names each ID's public bucket, and the answer
carries that bucket's rows. The server learns the bucket: the ID is one of the roughly ``k``
IDs of the table that share it (or an ID outside the table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rainbridge.errors import DataError
from rainbridge.protocols.pir.table import Delta, Rows, find, seal, split_outputs
from rainbridge.protocols.psi.records import RecordLayout


@dataclass
class Answer:
    """One queried ID: whether the table holds it, and its label (a dict) if it does."""

    id: str
    found: bool
    label: dict[str, Any] | None


def open_rows(
    layout: RecordLayout, rows: Rows, outputs: list[bytes], ids: list[str]
) -> list[Answer]:
    """Find each ID's tag among ``rows`` (sorted by tag) and open its label.

    The found rows are opened together: one AES-CTR call per version they were sealed in,
    one decoding of all their records."""
    if not outputs:
        return []
    tags, keys = split_outputs(outputs)
    at = find(rows.tags, tags)
    hit = np.flatnonzero(at >= 0)
    labels: list[dict[str, Any]] = [{} for _ in hit]
    if layout.size and len(hit):
        sealed = rows.sealed[at[hit]]
        versions = rows.versions[at[hit]]
        opened = np.empty_like(sealed)
        for v in np.unique(versions):
            sel = np.flatnonzero(versions == v)
            opened[sel] = seal(keys[hit[sel]], sealed[sel], int(v))
        labels = layout.decode(opened).to_pylist()
    answers = [Answer(ident, False, None) for ident in ids]
    for j, i in enumerate(hit.tolist()):
        answers[i] = Answer(ids[i], True, labels[j])
    return answers


@dataclass
class Replica:
    """A client's copy of one service's sealed table, at one key and version."""

    key_id: str
    version: int
    layout: RecordLayout
    bucket_bits: int
    rows: Rows
    #: a delta being copied in parts: (version, removed parts, added parts, items so far)
    pending: Any = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return self.layout.size

    def apply(self, delta: Delta) -> None:
        """Move to ``delta.version`` (which must be the next one)."""
        if delta.version != self.version + 1:
            raise DataError(f"delta {delta.version} does not follow version {self.version}")
        if delta.added.sealed.shape[1] != self.width:
            raise DataError("a delta's rows do not fit the replica's layout")
        at = find(self.rows.tags, delta.removed) if len(delta.removed) else np.zeros(0, int)
        keep = np.ones(len(self.rows), dtype=bool)
        keep[at[at >= 0]] = False
        merged = Rows(
            np.concatenate([self.rows.tags[keep], delta.added.tags]),
            np.concatenate([self.rows.versions[keep], delta.added.versions]),
            np.concatenate([self.rows.buckets[keep], delta.added.buckets]),
            np.concatenate([self.rows.sealed[keep], delta.added.sealed]),
        )
        order = np.argsort(merged.tags.view("V16").reshape(-1), kind="stable")
        self.rows = merged.take(order)
        self.version = delta.version

    def lookup(self, outputs: list[bytes], ids: list[str]) -> list[Answer]:
        return open_rows(self.layout, self.rows, outputs, ids)

    # -- persistence (the client node keeps replicas as files) ------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.frombuffer(v, np.uint8) for k, v in self.rows.to_bytes().items()}

    def meta(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "version": self.version,
            "layout": self.layout.to_json(),
            "bucket_bits": self.bucket_bits,
            "rows": len(self.rows),
        }

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, bytes], what: str) -> Replica:
        layout = layout_from(meta.get("layout"), what)
        width = layout.size
        rows = Rows.from_bytes(arrays, width, what)
        try:
            return cls(
                str(meta["key_id"]), int(meta["version"]), layout, int(meta["bucket_bits"]), rows
            )
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{what}: malformed replica metadata") from None


def layout_from(fields: Any, what: str) -> RecordLayout:
    """A layout a peer sent (each field checked)."""
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise DataError(f"{what}: malformed label layout")
    return RecordLayout.from_json(fields, [str(f.get("name")) for f in fields], what)
