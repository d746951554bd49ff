"""The client's side of keyword PIR: a replica of the sealed table, and opening answers.

Private mode: the client keeps a replica of the server's sealed table (copied once, then
kept current by deltas). A query sends only blinded OPRF elements; the client finalizes the
server's evaluations into tags and keys, finds the tags in its replica and opens the rows.
The server sees ``r·H(id)`` for a fresh random ``r`` per ID: a uniformly random group
element, the same size and shape whatever the ID and whether it is in the table.

k-anonymity mode: no replica; the query also names each ID's public bucket, and the answer
carries that bucket's rows. The server learns the bucket: the ID is one of the roughly ``k``
IDs of the table that share it (or an ID outside the table).

Both modes pin the service's OPRF key (:class:`PinnedKey`, kept with the replica): a
verifiable (mode 1) service proves every evaluation under its public key, and an answer
under any other key, or without a valid proof, is refused before anything is read or
changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rainbridge.crypto import oprf, voprf
from rainbridge.errors import DataError
from rainbridge.protocols.pir.table import Delta, Rows, find, key_id_of, seal, split_outputs
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


@dataclass(frozen=True)
class PinnedKey:
    """The OPRF key a client holds a service to: its name, mode and (mode 1) public key."""

    key_id: str
    oprf_mode: int
    public_key: bytes | None = None

    @property
    def verifiable(self) -> bool:
        return self.oprf_mode == voprf.MODE_VOPRF

    @classmethod
    def from_header(cls, obj: Any, what: str) -> PinnedKey:
        """The key a service's header (an answer, a sync page, its info) names, checked: in
        mode 1 the public key must be a valid element whose digest is the key ID. A header
        without a mode is a mode-0 service's."""
        if not isinstance(obj, dict) or not isinstance(obj.get("key_id"), str):
            raise DataError(f"{what}: no key ID")
        key_id, mode = obj["key_id"], obj.get("oprf_mode", oprf.MODE_OPRF)
        if mode == oprf.MODE_OPRF:
            return cls(key_id, mode)
        if mode != voprf.MODE_VOPRF:
            raise DataError(f"{what}: unknown OPRF mode {mode!r}")
        try:
            pk = bytes.fromhex(obj.get("public_key") or "")
        except (TypeError, ValueError):
            raise DataError(f"{what}: malformed public key") from None
        if len(pk) != oprf.ELEMENT_SIZE or key_id_of(pk, mode) != key_id:
            raise DataError(f"{what}: the public key does not match the key ID {key_id!r}")
        oprf.group().validate(pk)
        return cls(key_id, mode, pk)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key_id": self.key_id, "oprf_mode": self.oprf_mode}
        if self.public_key is not None:
            out["public_key"] = self.public_key.hex()
        return out


@dataclass
class Replica:
    """A client's copy of one service's sealed table, at one key and version."""

    key_id: str
    version: int
    layout: RecordLayout
    bucket_bits: int
    rows: Rows
    #: the key the rows are sealed under, as pinned when the replica was copied
    oprf_mode: int = oprf.MODE_OPRF
    public_key: bytes | None = None
    #: a delta being copied in parts: (version, removed parts, added parts, items so far)
    pending: Any = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return self.layout.size

    @property
    def pinned(self) -> PinnedKey:
        return PinnedKey(self.key_id, self.oprf_mode, self.public_key)

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
            **self.pinned.to_json(),
        }

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, bytes], what: str) -> Replica:
        layout = layout_from(meta.get("layout"), what)
        width = layout.size
        rows = Rows.from_bytes(arrays, width, what)
        pin = PinnedKey.from_header(meta, what)  # a replica saved without a mode is of mode 0
        try:
            return cls(
                str(meta["key_id"]),
                int(meta["version"]),
                layout,
                int(meta["bucket_bits"]),
                rows,
                pin.oprf_mode,
                pin.public_key,
            )
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{what}: malformed replica metadata") from None


def layout_from(fields: Any, what: str) -> RecordLayout:
    """A layout a peer sent (each field checked)."""
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise DataError(f"{what}: malformed label layout")
    return RecordLayout.from_json(fields, [str(f.get("name")) for f in fields], what)
