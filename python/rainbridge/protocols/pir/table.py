"""The server's side of keyword PIR: a table of labels sealed under an OPRF, and its changes.

Every row of the server's table is keyed by its ID's RFC 9497 OPRF output ``o = F(sk, id)``
(64 bytes): the row's *tag* is ``o[0:16]`` and its label record (the named columns, one
fixed width, :mod:`rainbridge.protocols.psi.records`) is sealed with AES-128-CTR under
``o[16:32]``, the counter starting at the version the row was written in (so a changed
label never reuses a keystream). Only someone who knows ``o`` can find or open a row, and
only the key holder can compute ``o`` — a client gets it for one ID per OPRF evaluation,
which the service meters and rate-limits.

The OPRF is the verifiable one (RFC 9497 mode 1, :mod:`rainbridge.crypto.voprf`): every
evaluation comes with a proof that it was computed under the key behind the table's public
key, which clients pin. A table's ``oprf_mode`` is recorded with it; a table saved without
one is of mode 0 (the plain OPRF, no proofs), and keeps being served as such, marked
unverifiable, until it is published again.

Each row also carries its ID's public *bucket* (the first bits of a SHA-256 of the ID, the
same at the client) for the k-anonymity mode, where a client names the bucket instead of
holding a replica of the whole table.

Changes are versions: ``update`` upserts and deletes rows and keeps the last
:data:`KEEP_VERSIONS` deltas, so a replica catches up by deltas instead of a full copy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rainbridge import _core
from rainbridge.crypto import oprf, voprf
from rainbridge.data import write_json_atomic
from rainbridge.errors import ConfigError, DataError
from rainbridge.protocols.psi.items import as_items, to_large_string
from rainbridge.protocols.psi.records import RecordLayout

TAG = 16
#: deltas kept for replicas to catch up; an older replica copies the table again
KEEP_VERSIONS = 64
_BUCKET_SEED = b"rainbridge/pir/bucket/v1"
#: IDs sealed at a time (bounds the per-ID Python objects alive during a build)
_CHUNK = 1 << 18


def key_id_of(public_key: bytes, oprf_mode: int) -> str:
    """Names an OPRF key: in mode 1 the first 32 hex digits of SHA-256(pkS) (what a
    ledger's ``pk_sha256`` starts with); in mode 0, as before, pkS's first 8 bytes."""
    if oprf_mode == voprf.MODE_VOPRF:
        return hashlib.sha256(public_key).hexdigest()[:32]
    return public_key[:8].hex()


def buckets_of(ids: pa.Array, bits: int) -> np.ndarray:
    """The public bucket (``bits`` bits) of each ID: what the k-anonymity mode reveals."""
    arr = to_large_string(ids)
    items = as_items(arr)
    dig = _core.rr22_digests(_BUCKET_SEED, items.data, items.offsets)
    top = np.frombuffer(dig, dtype=">u4")[::4].astype(np.uint32)
    return (top >> np.uint32(32 - bits)) if bits else np.zeros(len(arr), dtype=np.uint32)


def bucket_bits_for(rows: int, k: int) -> int:
    """Bits so that a bucket holds about ``k`` rows (at least 0)."""
    if rows <= k:
        return 0
    return min(24, math.floor(math.log2(rows / k)))


def split_outputs(outputs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Tags (n×16) and sealing keys (n×16) from 64-byte OPRF outputs."""
    raw = np.frombuffer(b"".join(outputs), dtype=np.uint8).reshape(-1, oprf.OUTPUT_SIZE)
    return np.ascontiguousarray(raw[:, :TAG]), np.ascontiguousarray(raw[:, TAG : 2 * TAG])


def seal(keys: np.ndarray, records: np.ndarray, version: int) -> np.ndarray:
    """Records sealed (or opened) under their keys, the counter from ``version``."""
    n, w = records.shape
    if w == 0 or n == 0:
        return records.copy()
    out = _core.aes_ctr_rows(keys, np.ascontiguousarray(records), w, version)
    return np.frombuffer(out, dtype=np.uint8).reshape(n, w)


@dataclass
class Rows:
    """Sealed rows: tags, the version each was sealed in, buckets and sealed records."""

    tags: np.ndarray  # (n, 16) uint8
    versions: np.ndarray  # (n,) uint64
    buckets: np.ndarray  # (n,) uint32
    sealed: np.ndarray  # (n, width) uint8

    @classmethod
    def empty(cls, width: int) -> Rows:
        return cls(
            np.zeros((0, TAG), np.uint8),
            np.zeros(0, np.uint64),
            np.zeros(0, np.uint32),
            np.zeros((0, width), np.uint8),
        )

    def __len__(self) -> int:
        return len(self.tags)

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(self.tags[idx], self.versions[idx], self.buckets[idx], self.sealed[idx])

    def to_bytes(self) -> dict[str, bytes]:
        return {
            "tags": self.tags.tobytes(),
            "versions": self.versions.astype("<u8").tobytes(),
            "buckets": self.buckets.astype("<u4").tobytes(),
            "sealed": self.sealed.tobytes(),
        }

    @classmethod
    def from_bytes(cls, parts: dict[str, bytes], width: int, what: str) -> Rows:
        """Rows from a peer's bytes, every length checked."""
        try:
            tags = np.frombuffer(parts["tags"], dtype=np.uint8)
            n = len(tags) // TAG
            versions = np.frombuffer(parts["versions"], dtype="<u8")
            buckets = np.frombuffer(parts["buckets"], dtype="<u4")
            sealed = np.frombuffer(parts["sealed"], dtype=np.uint8)
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{what}: malformed rows") from None
        if (
            len(tags) != n * TAG
            or len(versions) != n
            or len(buckets) != n
            or len(sealed) != n * width
        ):
            raise DataError(f"{what}: rows of inconsistent lengths")
        return cls(
            tags.reshape(n, TAG),
            versions.astype(np.uint64),
            buckets.astype(np.uint32),
            sealed.reshape(n, width),
        )


def _sort_by_tag(rows: Rows) -> Rows:
    order = np.argsort(rows.tags.view("V16").reshape(-1), kind="stable")
    return rows.take(order)


def find(tags: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each wanted tag, its row in the sorted ``tags`` or -1."""
    keys = tags.view("V16").reshape(-1)
    w = np.ascontiguousarray(wanted).view("V16").reshape(-1)
    at = np.searchsorted(keys, w)
    at = np.minimum(at, max(len(keys) - 1, 0))
    hit = (at < len(keys)) & (keys[at] == w) if len(keys) else np.zeros(len(w), dtype=bool)
    return np.where(hit, at, -1)


@dataclass
class Delta:
    """What changed from ``version - 1`` to ``version``."""

    version: int
    removed: np.ndarray  # (r, 16) tags
    added: Rows


@dataclass
class PirTable:
    """A service's sealed table at the server (see the module docstring)."""

    key: bytes
    layout: RecordLayout
    version: int
    rows: Rows
    bucket_bits: int
    deltas: list[Delta] = field(default_factory=list)
    #: rows ordered by bucket (the row numbers, and their buckets), built when first needed
    _by_bucket: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    #: held while a version is swapped in, and by readers that need one version throughout
    #: (a page of an answer or of a copy, with the version it is of)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    #: one update at a time (each builds on the version before it)
    _writing: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: 1: the verifiable OPRF (every evaluation proven); 0: a table sealed before it
    oprf_mode: int = voprf.MODE_VOPRF

    @property
    def public_key(self) -> bytes:
        return oprf.public_key(self.key)

    @property
    def key_id(self) -> str:
        """Names the OPRF key: a replica sealed under another key must be copied again."""
        return key_id_of(self.public_key, self.oprf_mode)

    @property
    def context(self) -> bytes:
        """The RFC 9497 context string the table's IDs are hashed under."""
        return oprf.context_string(self.oprf_mode)

    @property
    def width(self) -> int:
        return self.layout.size

    def describe(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "version": self.version,
            "key_id": self.key_id,
            "bucket_bits": self.bucket_bits,
            "layout": self.layout.to_json(),
            "width": self.width,
            **self.key_header(),
        }

    def key_header(self) -> dict[str, Any]:
        """What a client pins: the OPRF mode and, when its answers are proven (mode 1), the
        public key and its SHA-256."""
        if self.oprf_mode != voprf.MODE_VOPRF:
            return {"oprf_mode": self.oprf_mode, "verifiable": False}
        pk = self.public_key
        return {
            "oprf_mode": self.oprf_mode,
            "verifiable": True,
            "public_key": pk.hex(),
            "pk_sha256": hashlib.sha256(pk).hexdigest(),
        }

    @classmethod
    def build(
        cls,
        ids: pa.Array,
        labels: pa.Table,
        *,
        key: bytes | None = None,
        k: int = 256,
        version: int = 1,
        oprf_mode: int = voprf.MODE_VOPRF,
    ) -> PirTable:
        """Seal ``labels`` (one row per ID, IDs unique) under a fresh or given OPRF key
        (``oprf_mode`` 0 only to stand for a table sealed before the verifiable OPRF).

        Raises
        ------
        DataError
            Repeated IDs, or a label table of another length.
        """
        ids = to_large_string(ids)
        if labels.num_rows != len(ids):
            raise DataError(f"{labels.num_rows} label rows for {len(ids)} IDs")
        _check_unique(ids)
        layout = RecordLayout.of(labels)
        bits = bucket_bits_for(len(ids), k)
        key = key or oprf.random_key()
        if oprf_mode not in (oprf.MODE_OPRF, voprf.MODE_VOPRF):
            raise ConfigError(f"unknown OPRF mode {oprf_mode!r}")
        table = cls(key, layout, version, Rows.empty(layout.size), bits, oprf_mode=oprf_mode)
        table.rows = _sort_by_tag(table._seal(ids, labels, version))
        return table

    def _seal(self, ids: pa.Array, labels: pa.Table, version: int) -> Rows:
        """Seal rows in chunks, so the Python objects of one chunk only are alive at once."""
        parts = [
            self._seal_chunk(ids.slice(lo, _CHUNK), labels.slice(lo, _CHUNK), version)
            for lo in range(0, len(ids), _CHUNK)
        ]
        if not parts:
            return Rows.empty(self.width)
        return Rows(
            np.concatenate([p.tags for p in parts]),
            np.concatenate([p.versions for p in parts]),
            np.concatenate([p.buckets for p in parts]),
            np.concatenate([p.sealed for p in parts]),
        )

    def _seal_chunk(self, ids: pa.Array, labels: pa.Table, version: int) -> Rows:
        outputs = oprf.evaluate_direct(self.key, _as_bytes(ids), context=self.context)
        tags, keys = split_outputs(outputs)
        records = (
            self.layout.encode(labels.select(self.layout.names))
            if self.layout.fields
            else np.zeros((len(ids), 0), np.uint8)
        )
        return Rows(
            tags,
            np.full(len(ids), version, dtype=np.uint64),
            buckets_of(ids, self.bucket_bits),
            seal(keys, records, version),
        )

    def update(self, upsert_ids: pa.Array, upsert_labels: pa.Table, delete_ids: pa.Array) -> Delta:
        """A new version: rows of ``upsert_ids`` replaced or added, ``delete_ids`` removed.

        Labels keep the table's layout (a longer string than the layout allows, or another
        type, needs a rebuilt table: :class:`DataError`).
        """
        with self._writing:
            return self._update(upsert_ids, upsert_labels, delete_ids)

    def _update(self, upsert_ids: pa.Array, upsert_labels: pa.Table, delete_ids: pa.Array) -> Delta:
        upsert_ids, delete_ids = to_large_string(upsert_ids), to_large_string(delete_ids)
        _check_unique(upsert_ids)
        if upsert_labels.num_rows != len(upsert_ids):
            raise DataError(f"{upsert_labels.num_rows} label rows for {len(upsert_ids)} IDs")
        if len(upsert_ids) and self.layout.fields:
            fresh = RecordLayout.of(upsert_labels.select(self.layout.names))
            for old, new in zip(self.layout.fields, fresh.fields, strict=True):
                if old.kind != new.kind or new.size > old.size:
                    raise DataError(
                        f"label column {old.name!r} changed type or outgrew its width "
                        f"({new.kind}/{new.size} vs {old.kind}/{old.size}): rebuild the table"
                    )
        version = self.version + 1
        added = (
            self._seal(upsert_ids, upsert_labels, version)
            if len(upsert_ids)
            else Rows.empty(self.width)
        )
        gone_outputs = oprf.evaluate_direct(self.key, _as_bytes(delete_ids), context=self.context)
        gone = split_outputs(gone_outputs)[0]
        drop = np.concatenate([added.tags, gone]) if len(gone) else added.tags
        at = find(self.rows.tags, drop)
        removed = self.rows.tags[at[at >= 0]]
        keep = np.ones(len(self.rows), dtype=bool)
        keep[at[at >= 0]] = False
        merged = Rows(
            np.concatenate([self.rows.tags[keep], added.tags]),
            np.concatenate([self.rows.versions[keep], added.versions]),
            np.concatenate([self.rows.buckets[keep], added.buckets]),
            np.concatenate([self.rows.sealed[keep], added.sealed]),
        )
        rows = _sort_by_tag(merged)
        delta = Delta(version, removed, added)
        with self.lock:
            self.rows = rows
            self._by_bucket = None
            self.version = version
            self.deltas = [*self.deltas, delta][-KEEP_VERSIONS:]
        return delta

    def deltas_since(self, version: int) -> list[Delta] | None:
        """The deltas a replica at ``version`` needs, or None if it must copy the table."""
        if version == self.version:
            return []
        want = list(range(version + 1, self.version + 1))
        have = [d for d in self.deltas if d.version > version]
        return have if [d.version for d in have] == want else None

    @property
    def row_bytes(self) -> int:
        """Bytes of one row in a bucket-mode answer: tag, version and sealed record."""
        return TAG + 8 + self.width

    def _bucket_order(self) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            if self._by_bucket is None:
                order = np.argsort(self.rows.buckets, kind="stable")
                self._by_bucket = (order, self.rows.buckets[order])
            return self._by_bucket

    def check_buckets(self, buckets: np.ndarray) -> None:
        if len(buckets) and (buckets.min() < 0 or buckets.max() >= 1 << self.bucket_bits):
            raise DataError(f"buckets lie in 0..{(1 << self.bucket_bits) - 1}")

    def bucket_spans(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each bucket's rows start and end in the rows ordered by bucket."""
        self.check_buckets(buckets)
        _, ordered = self._bucket_order()
        b = buckets.astype(np.uint32)
        return (
            np.searchsorted(ordered, b, side="left"),
            np.searchsorted(ordered, b, side="right"),
        )

    def bucket_rows(
        self,
        buckets: np.ndarray,
        lo: int,
        hi: int,
        spans: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Rows:
        """Rows ``lo..hi`` of the named buckets' rows laid end to end (in the order named;
        ``spans``: their :meth:`bucket_spans`, if known).

        An answer of any size is read in slices like this one, never built whole.
        """
        starts, ends = spans if spans is not None else self.bucket_spans(buckets)
        sizes = ends - starts
        cum = np.concatenate([[0], np.cumsum(sizes)])
        lo, hi = max(0, lo), min(int(cum[-1]), hi)
        if hi <= lo:
            return Rows.empty(self.width)
        first = int(np.searchsorted(cum, lo, side="right")) - 1
        last = int(np.searchsorted(cum, hi, side="left"))
        parts = [
            np.arange(
                starts[i] + max(0, lo - cum[i]),
                starts[i] + min(int(sizes[i]), hi - cum[i]),
            )
            for i in range(first, last)
        ]
        order, _ = self._bucket_order()
        return self.rows.take(order[np.concatenate(parts)])

    def bucket(self, b: int) -> Rows:
        """The rows of one bucket."""
        if not 0 <= b < (1 << self.bucket_bits):
            raise DataError(f"bucket {b} outside 0..{(1 << self.bucket_bits) - 1}")
        arr = np.array([b], np.int64)
        n = int(np.diff(np.stack(self.bucket_spans(arr)), axis=0)[0, 0])
        return self.bucket_rows(arr, 0, n)

    # -- persistence -----------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the table (key file readable by the node only) and its metadata."""
        folder.mkdir(parents=True, exist_ok=True)
        key_path = folder / "oprf.key"
        if not key_path.exists() or key_path.read_bytes() != self.key:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key)
        tmp = folder / "rows.npz.tmp"
        parts = {k: np.frombuffer(v, np.uint8) for k, v in self.rows.to_bytes().items()}
        with open(tmp, "wb") as f:
            np.savez(
                f,
                tags=parts["tags"],
                versions=parts["versions"],
                buckets=parts["buckets"],
                sealed=parts["sealed"],
            )
        os.replace(tmp, folder / "rows.npz")
        write_json_atomic(self.describe(), folder / "table.json")

    @classmethod
    def load(cls, folder: Path) -> PirTable:
        try:
            meta = json.loads((folder / "table.json").read_text())
            key = (folder / "oprf.key").read_bytes()
            with np.load(folder / "rows.npz") as z:
                parts = {k: z[k].tobytes() for k in ("tags", "versions", "buckets", "sealed")}
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"PIR table in {folder} cannot be read: {exc}") from exc
        fields = meta["layout"]
        layout = RecordLayout.from_json(fields, [f["name"] for f in fields], "storage")
        width = layout.size
        rows = Rows.from_bytes(parts, width, f"PIR table in {folder}")
        # a table saved before the verifiable OPRF has no mode: it stays of mode 0
        mode = meta.get("oprf_mode", oprf.MODE_OPRF)
        if mode not in (oprf.MODE_OPRF, voprf.MODE_VOPRF):
            raise ConfigError(f"PIR table in {folder}: unknown OPRF mode {mode!r}")
        return cls(
            key, layout, int(meta["version"]), rows, int(meta["bucket_bits"]), oprf_mode=mode
        )


def _as_bytes(ids: pa.Array) -> list[bytes]:
    items = as_items(to_large_string(ids))
    data = bytes(items.data) if items.data is not None else b""
    off = items.offsets.tolist()
    return [data[off[i] : off[i + 1]] for i in range(len(off) - 1)]


def _check_unique(ids: pa.Array) -> None:
    import pyarrow.compute as pc

    distinct = pc.count_distinct(ids).as_py() if len(ids) else 0
    if distinct != len(ids):
        raise DataError(
            f"a PIR table's IDs must be unique: {len(ids) - distinct} rows repeat an ID"
        )
